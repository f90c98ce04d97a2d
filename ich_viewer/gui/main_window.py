"""A minimal main window: open paths, scroll slices in a brain window, see what was skipped.

The full viewer (series browser, presets, classification, thresholds, Grad-CAM) is built on this
in a later issue; this window already shows the core's behaviour: first slice early, reasons for
skipped files, geometry warnings, and the permanent not-for-diagnosis notice.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QLabel, QMainWindow, QMessageBox, QSlider, QVBoxLayout, QWidget

import ich_viewer
from ich_viewer.core.errors import IchViewerError
from ich_viewer.core.series import LoadResult, Series
from ich_viewer.core.windows import PRESETS

pg.setConfigOptions(imageAxisOrder="row-major", antialias=False)

NOT_FOR_DIAGNOSIS = "Teaching and demonstration only: not for diagnostic use"


class MainWindow(QMainWindow):
    def __init__(self) -> None:
        super().__init__()
        self.setWindowTitle("ICH Viewer")
        self.resize(900, 800)
        self.result: LoadResult | None = None
        self.series: Series | None = None
        self._loader = None

        self.view = pg.GraphicsLayoutWidget()
        self.viewbox = self.view.addViewBox(lockAspect=True, invertY=True)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.viewbox.addItem(self.image)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.valueChanged.connect(self._show_slice)
        self.info = QLabel("Open a folder, a zip or DICOM files (ich-viewer PATH), or run ich-viewer --demo.")
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.addWidget(self.view, 1)
        layout.addWidget(self.slider)
        layout.addWidget(self.info)
        self.setCentralWidget(central)
        self.statusBar().addPermanentWidget(QLabel(NOT_FOR_DIAGNOSIS))
        self._poll = QTimer(self, interval=50)
        self._poll.timeout.connect(self._on_progress)

    def open_paths(self, paths: list[Path]) -> bool:
        """Scan, show the first series' middle slice as soon as it decodes; False if nothing usable."""
        try:
            self.result = ich_viewer.load(paths)
        except IchViewerError as exc:
            QMessageBox.warning(self, "ICH Viewer", str(exc))
            return False
        self.series = self.result.series[0]
        self._loader = self.series.loader()
        self.slider.setRange(0, len(self.series) - 1)
        self.slider.setValue(len(self.series) // 2)
        self._poll.start()
        self._on_progress()
        return True

    def _on_progress(self) -> None:
        if self._loader is None:
            return
        self._show_slice(self.slider.value())
        series, skipped = self.series, self.result.skipped
        text = (f"{series.description or '(no description)'}: {len(series)} slices, "
                f"decoded {self._loader.done}/{len(series)}")
        if skipped:
            text += f"; {len(skipped)} file(s) skipped: " + "; ".join(f"{Path(s.path).name}: {s.reason}" for s in skipped[:3])
        if series.geometry.warnings:
            text += "; " + "; ".join(series.geometry.warnings)
        self.info.setText(text)
        if self._loader.finished:
            self._poll.stop()

    def _show_slice(self, index: int) -> None:
        if self._loader is None or not self._loader.ready[index]:
            return
        brain = PRESETS["brain"]
        self.image.setImage(np.asarray(self._loader.array[index]), levels=(brain.low, brain.high), autoLevels=False)
