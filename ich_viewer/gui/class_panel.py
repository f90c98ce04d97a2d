"""The six classes: this slice's probability, the series' maximum, and whether each is flagged
(on this slice, or somewhere in the study). Clicking a class's row goes to its worst slice."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import QHeaderView, QTableWidget, QTableWidgetItem

from ich_viewer.core.contract import CLASSES
from ich_viewer.core.viewer_model import ViewerModel

FLAG_COLOUR = QColor(200, 60, 40)


class ClassPanel(QTableWidget):
    HEADERS = ("class", "slice", "max", "flag")

    def __init__(self, parent=None):
        super().__init__(len(CLASSES), len(self.HEADERS), parent)
        self.setHorizontalHeaderLabels(self.HEADERS)
        self.verticalHeader().setVisible(False)
        self.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.setSelectionMode(QTableWidget.SelectionMode.NoSelection)
        # Tab reaches it, a click does not take the keys from the slices: without a mouse, arrows pick a row and
        # Enter goes to that class's worst slice, as a click does.
        self.setFocusPolicy(Qt.FocusPolicy.TabFocus)
        self.setTabKeyNavigation(False)  # Tab moves on to the next control, not to the next cell
        for row, name in enumerate(CLASSES):
            self.setItem(row, 0, QTableWidgetItem(name))
            self.item(row, 0).setToolTip(f"click, or Enter: go to the slice where {name} is most probable")
            for col in (1, 2, 3):
                item = QTableWidgetItem("-")
                item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                self.setItem(row, col, item)
        self.setMinimumHeight(self.verticalHeader().length() + self.horizontalHeader().height() + 4)

    def bind(self, viewer: ViewerModel) -> None:
        """Follow ``viewer``: the current slice, the prediction as it arrives, the thresholds."""
        refresh = lambda *_: self.show_viewer(viewer)  # noqa: E731
        for event in (viewer.series_opened, viewer.slice_changed, viewer.prediction_changed, viewer.thresholds_changed):
            event.connect(refresh)
        self.cellClicked.connect(lambda row, _column: viewer.go_to_worst(CLASSES[row]))
        self.cellActivated.connect(lambda row, _column: viewer.go_to_worst(CLASSES[row]))

    def show_viewer(self, viewer: ViewerModel) -> None:
        flags = viewer.slice_flags()
        if viewer.prediction is None or flags is None:
            self.show_values(None, None, None, None)
            return
        self.show_values(viewer.prediction.probabilities[viewer.index], viewer.maxima(), flags[viewer.index],
                         flags.any(0))

    def show_values(self, slice_probabilities: np.ndarray | None, study_max: np.ndarray | None,
                    slice_flags: np.ndarray | None, study_flags: np.ndarray | None) -> None:
        for row in range(len(CLASSES)):
            current = None if slice_probabilities is None else slice_probabilities[row]
            maximum = None if study_max is None else study_max[row]
            self.item(row, 1).setText("-" if current is None or np.isnan(current) else f"{current:.2f}")
            self.item(row, 2).setText("-" if maximum is None or np.isnan(maximum) else f"{maximum:.2f}")
            flagged_here = bool(slice_flags is not None and slice_flags[row])
            flagged_study = bool(study_flags is not None and study_flags[row])
            self.item(row, 3).setText("slice" if flagged_here else ("study" if flagged_study else ""))
            brush = QBrush(FLAG_COLOUR) if flagged_here or flagged_study else QBrush()
            font = self.item(row, 0).font()
            font.setBold(flagged_study)
            for col in range(4):
                self.item(row, col).setForeground(brush)
                self.item(row, col).setFont(font)
