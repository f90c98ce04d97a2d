"""Regenerate the README screenshots from the real window (offscreen, at 1280x800 and 1920x1080).

    QT_QPA_PLATFORM=offscreen .venv/bin/python docs/screenshots.py
    QT_QPA_PLATFORM=offscreen .venv/bin/python docs/screenshots.py --model OLD.onnx --real-only

Opens the demo phantom study with the bundled model, waits for classification, goes to the slice
where the model is most suspicious of any hemorrhage, and grabs: the main window with the "any"
Grad-CAM overlay (at both sizes), the threshold panel, and the model card dialog. Then real CT from
hospitals the model never saw, each as ``screenshot-<case>-<model version>.png``: pydicom-data's
``693_J2KR.dcm`` (a large subdural) and CQ500-CT-0 (contrast-enhanced, outside the intended use; from
``../shared/data`` when it is there). ``--model`` takes those with another model file (the "before"
pictures of a model change).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QSettings  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from ich_viewer.core.model import IchModel  # noqa: E402
from ich_viewer.demo import demo_study_dir  # noqa: E402
from ich_viewer.gui.dialogs import ModelCardDialog  # noqa: E402
from ich_viewer.gui.main_window import MainWindow  # noqa: E402

OUT = Path(__file__).resolve().parent
CQ500 = OUT.parents[1] / "shared" / "data" / "cq500-ct0"


def wait(app, condition, timeout=120.0):
    end = time.monotonic() + timeout
    while not condition():
        app.processEvents()
        time.sleep(0.02)
        if time.monotonic() > end:
            raise TimeoutError("the window did not get there in time")


def study_window(app, settings_dir: Path, size: tuple[int, int], path: Path, model: IchModel | None = None,
                 slice_index: int | None = None) -> MainWindow:
    """A fresh window (its own settings: no remembered layout) on ``path``, classified, at ``slice_index``
    (default: the slice most suspicious of any hemorrhage) with the "any" Grad-CAM shown even under threshold."""
    settings = QSettings(str(settings_dir / f"{size[0]}x{size[1]}-{path.name}.ini"), QSettings.Format.IniFormat)
    window = MainWindow(settings=settings, model=model)
    window.resize(*size)
    window.show()
    window.open_paths([path])
    wait(app, lambda: window.viewer.prediction is not None and window.viewer.prediction.complete
         and window.classify is None)
    if slice_index is None:
        slice_index = int(window.viewer.prediction.probabilities[:, 0].argmax())
    window.viewer.go_to(slice_index)
    window.cam_controls.cam_class.setCurrentIndex(1)  # "any" (0 is no overlay)
    window.cam_controls.cam_below.setChecked(True)
    app.processEvents()
    return window


def real_ct(app, settings_dir: Path, model: IchModel | None) -> None:
    from pydicom.data import get_testdata_file

    cases = [("693_J2KR", Path(get_testdata_file("693_J2KR.dcm", download=False)), 0)]
    if CQ500.is_dir():
        cases.append(("cq500-ct0", CQ500, 150))  # a slice through the lateral ventricles
    for name, path, index in cases:
        window = study_window(app, settings_dir, (1280, 800), path, model, index)
        window.grab().save(str(OUT / f"screenshot-{name}-{window.viewer.model.card.version}.png"))
        window.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="take the real-CT pictures with this model file instead")
    parser.add_argument("--real-only", action="store_true", help="only the real-CT pictures")
    args = parser.parse_args()
    app = QApplication(sys.argv[:1])
    model = IchModel(args.model) if args.model else None
    with tempfile.TemporaryDirectory() as settings_dir:
        real_ct(app, Path(settings_dir), model)
        if args.real_only:
            return 0
        window = study_window(app, Path(settings_dir), (1280, 800), demo_study_dir())
        window.grab().save(str(OUT / "screenshot-demo.png"))
        window.findChild(type(window.threshold_panel)).grab().save(str(OUT / "screenshot-thresholds.png"))
        model = window.viewer.model
        dialog = ModelCardDialog(model.card, model.path, model.sha256, window, model.weights_sha256, model.quantised)
        dialog.resize(900, 700)
        dialog.show()
        app.processEvents()
        dialog.grab().save(str(OUT / "screenshot-model-card.png"))
        dialog.close()
        window.close()
        window = study_window(app, Path(settings_dir), (1920, 1080), demo_study_dir())
        window.grab().save(str(OUT / "screenshot-demo-1920x1080.png"))
        window.close()
    print("wrote", *(p.name for p in sorted(OUT.glob("screenshot-*.png"))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
