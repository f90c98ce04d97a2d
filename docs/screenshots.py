"""Regenerate the README screenshots from the real window (offscreen, at 1280x800 and 1920x1080).

    QT_QPA_PLATFORM=offscreen .venv/bin/python docs/screenshots.py

Opens the demo phantom study with the bundled model, waits for classification, goes to the slice
where the model is most suspicious of a subdural hemorrhage, and grabs: the main window with the
Grad-CAM overlay (at both sizes), the threshold panel, and the model card dialog.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QSettings  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from ich_viewer.demo import demo_study_dir  # noqa: E402
from ich_viewer.core.contract import CLASSES  # noqa: E402
from ich_viewer.gui.dialogs import ModelCardDialog  # noqa: E402
from ich_viewer.gui.main_window import MainWindow  # noqa: E402

OUT = Path(__file__).resolve().parent


def wait(app, condition, timeout=120.0):
    end = time.monotonic() + timeout
    while not condition():
        app.processEvents()
        time.sleep(0.02)
        if time.monotonic() > end:
            raise TimeoutError("the window did not get there in time")


def demo_window(app, settings_dir: Path, size: tuple[int, int]) -> MainWindow:
    """A fresh window (its own settings: no remembered layout) on the demo at the most suspicious subdural slice."""
    settings = QSettings(str(settings_dir / f"{size[0]}x{size[1]}.ini"), QSettings.Format.IniFormat)
    window = MainWindow(settings=settings)
    window.resize(*size)
    window.show()
    window.open_paths([demo_study_dir()])
    wait(app, lambda: window.viewer.prediction is not None and window.viewer.prediction.complete
         and window.classify is None)
    subdural = CLASSES.index("subdural")
    window.viewer.go_to(int(window.viewer.prediction.probabilities[:, subdural].argmax()))
    window.cam_controls.cam_class.setCurrentIndex(subdural + 1)
    window.cam_controls.cam_below.setChecked(True)
    app.processEvents()
    return window


def main() -> int:
    app = QApplication(sys.argv[:1])
    with tempfile.TemporaryDirectory() as settings_dir:
        window = demo_window(app, Path(settings_dir), (1280, 800))
        window.grab().save(str(OUT / "screenshot-demo.png"))
        window.findChild(type(window.threshold_panel)).grab().save(str(OUT / "screenshot-thresholds.png"))
        dialog = ModelCardDialog(window.viewer.model.card, window.viewer.model.path, window.viewer.model.sha256, window)
        dialog.resize(900, 700)
        dialog.show()
        app.processEvents()
        dialog.grab().save(str(OUT / "screenshot-model-card.png"))
        dialog.close()
        window.close()
        window = demo_window(app, Path(settings_dir), (1920, 1080))
        window.grab().save(str(OUT / "screenshot-demo-1920x1080.png"))
        window.close()
    print("wrote", *(p.name for p in sorted(OUT.glob("screenshot-*.png"))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
