"""Per-slice probability of each class along the series, thresholds dashed; a click jumps there."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QSizePolicy

from ich_viewer.core.contract import CLASSES
from ich_viewer.core.viewer_model import ViewerModel
from ich_viewer.gui.focus_frame import show_focus

FIRST_SLICE = 1  # the x axis numbers slices as the window and triage do (the viewer's index + 1)
COLOURS = ((230, 230, 230), (255, 140, 0), (220, 50, 50), (80, 160, 255), (120, 220, 120), (200, 120, 255))


class SliceAxis(pg.AxisItem):
    """Slice numbers: whole numbers only (no 0.2 steps on a one-slice plot) and never an SI scale ("x0.001")."""

    def __init__(self, orientation="bottom", **kwargs):
        super().__init__(orientation, **kwargs)
        self.enableAutoSIPrefix(False)

    def tickSpacing(self, minVal, maxVal, size):  # noqa: N802 - pyqtgraph override
        levels = [(spacing, offset) for spacing, offset in super().tickSpacing(minVal, maxVal, size) if spacing >= 1]
        return levels or [(1.0, 0.0)]


class ProbabilityPlot(pg.PlotWidget):
    sliceClicked = Signal(int)

    def __init__(self, parent=None):
        super().__init__(parent, axisItems={"bottom": SliceAxis()})
        self.setMinimumHeight(150)
        self.setYRange(0, 1, padding=0.02)
        self.setLabel("left", "probability")
        self.setLabel("bottom", "slice")
        self.setMouseEnabled(x=False, y=False)
        self.hideButtons()
        self.curves = {n: self.plot([], [], pen=pg.mkPen(c, width=2)) for n, c in zip(CLASSES, COLOURS)}
        # The legend is a column right of the curves, never over them.
        self.legend = pg.LegendItem(labelTextSize="8pt", verSpacing=-6)
        for name, curve in self.curves.items():
            self.legend.addItem(curve, name)
        self.plotItem.layout.addItem(self.legend, 2, 3)
        # Its own height at the top of the column: stretched to the plot's height, each label drew at the top of
        # its row and its colour at the bottom, a swatch nearer the next class's name than its own.
        self.legend.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)
        self.plotItem.layout.setAlignment(self.legend, Qt.AlignmentFlag.AlignTop)
        self.lines = {n: pg.InfiniteLine(angle=0, pen=pg.mkPen(c, width=1, style=Qt.PenStyle.DashLine))
                      for n, c in zip(CLASSES, COLOURS)}
        for line in self.lines.values():
            self.addItem(line)
        self.cursor = pg.InfiniteLine(angle=90, pen=pg.mkPen((255, 255, 0), width=1))
        self.addItem(self.cursor)
        self.scene().sigMouseClicked.connect(self._on_click)
        self.n_slices = 0
        self.fit_slices(0)

    def bind(self, viewer: ViewerModel) -> None:
        """Follow ``viewer`` (curves, thresholds, cursor); a click on the plot moves its slice."""
        viewer.series_opened.connect(lambda _study, series: (self.fit_slices(len(series)), self.show_probabilities(None)))
        viewer.prediction_changed.connect(
            lambda _: self.show_probabilities(None if viewer.prediction is None else viewer.prediction.probabilities))
        viewer.thresholds_changed.connect(lambda: self.show_thresholds(viewer.thresholds.values))
        viewer.slice_changed.connect(self.set_cursor)
        viewer.series_opened.connect(lambda *_: self.set_cursor(viewer.index))
        self.sliceClicked.connect(viewer.go_to)

    def show_probabilities(self, probabilities: np.ndarray | None) -> None:
        if probabilities is None:
            for curve in self.curves.values():
                curve.setData([], [])
            return
        self.n_slices = len(probabilities)
        x = np.arange(len(probabilities)) + FIRST_SLICE
        for c, (name, colour) in enumerate(zip(CLASSES, COLOURS)):
            column = probabilities[:, c]
            if len(x) == 1:  # a single slice is a dot (a line needs two), once it is computed
                finite = bool(np.isfinite(column[0]))
                self.curves[name].setData(x[:finite], column[:finite], symbol="o", symbolSize=7, symbolBrush=colour,
                                          symbolPen=None)
            else:  # not yet computed (NaN) slices are gaps, not zeros
                self.curves[name].setData(x, column, connect="finite", symbol=None)
        self.fit_slices(len(probabilities))

    def fit_slices(self, n: int) -> None:
        """x from the first slice to the last, half a slice beyond each (one slice or none: the one tick 1)."""
        self.setXRange(FIRST_SLICE - 0.5, max(n, 1) + FIRST_SLICE - 0.5, padding=0)

    def show_thresholds(self, values: dict[str, float]) -> None:
        for name, line in self.lines.items():
            line.setValue(values[name])

    def set_cursor(self, index: int) -> None:
        self.cursor.setValue(index + FIRST_SLICE)

    def _on_click(self, event) -> None:
        if not self.n_slices:
            return
        point = self.plotItem.vb.mapSceneToView(event.scenePos())
        index = int(round(point.x())) - FIRST_SLICE
        if 0 <= index < self.n_slices:
            self.sliceClicked.emit(index)

    def focusInEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().focusInEvent(event)
        show_focus(self, self.plotItem.vb, True)  # where the keys go

    def focusOutEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().focusOutEvent(event)
        show_focus(self, self.plotItem.vb, False)
