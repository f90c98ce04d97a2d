"""One slider per class, the card's presets, and what each position trades on validation patients.

Compact (a class's read-out goes under its slider, so the dock is narrow) and clicked, never focused: the
sliders, boxes and buttons take no keyboard focus, so arrow keys and Page keys keep moving slices.

The sliders run on a logit scale: high-sensitivity thresholds (0.0002 to 0.09 for the bundled model) sit in the
first tenth of a linear slider, a few pixels wide; on a logit scale each decade near 0 or 1 has room.
"""

from __future__ import annotations

import math

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import (QCheckBox, QGridLayout, QHBoxLayout, QLabel, QPushButton, QSizePolicy, QSlider,
                               QVBoxLayout, QWidget)

from ich_viewer.core.contract import CLASSES, NOT_CALIBRATED
from ich_viewer.core.thresholds import Thresholds, threshold_text
from ich_viewer.core.viewer_model import ViewerModel

STEPS = 4000  # slider positions: about 0.001 apart at 0.5, finer towards 0 and 1
LOWEST = 1e-4  # the slider's ends: thresholds from 0.0001 to 0.9999
_SPAN = math.log((1 - LOWEST) / LOWEST)  # the logit of the highest end; the lowest is its negative


def slider_position(threshold: float) -> int:
    """The slider position nearest ``threshold`` on the logit scale (the ends for 0 and 1)."""
    t = min(max(threshold, LOWEST), 1 - LOWEST)
    return round((math.log(t / (1 - t)) + _SPAN) / (2 * _SPAN) * STEPS)


def threshold_at(position: int) -> float:
    """The threshold at a slider position, the inverse of ``slider_position``."""
    return 1 / (1 + math.exp(-(position / STEPS * 2 * _SPAN - _SPAN)))


class ThresholdPanel(QWidget):
    """Shows ``viewer``'s thresholds; a slider or a preset button changes them through the viewer."""

    def __init__(self, viewer: ViewerModel, parent=None):
        super().__init__(parent)
        self.viewer = viewer
        self.thresholds: Thresholds | None = None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 0, 6, 0)  # the read-outs end clear of the dock's edge
        self.preset_row = QHBoxLayout()
        layout.addLayout(self.preset_row)
        self.preset_label = QLabel("")
        self.preset_label.setWordWrap(True)
        grid = QGridLayout()
        grid.setVerticalSpacing(1)
        layout.addLayout(grid)
        layout.addWidget(self.preset_label)
        layout.addStretch(1)  # keep the sliders together at the top of a tall dock
        # No taller than its content: in a tall window the plot above it takes the rest, not empty space.
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Maximum)
        self.sliders: dict[str, QSlider] = {}
        self.values: dict[str, QLabel] = {}
        self.readouts: dict[str, QLabel] = {}
        self.flag_boxes: dict[str, QCheckBox] = {}
        for row, name in enumerate(CLASSES):
            box = QCheckBox(name)
            box.setObjectName(f"flag_{name}")
            box.setToolTip("flag this class; a class the model card marks not calibrated is off by default")
            box.toggled.connect(lambda on, n=name: self.thresholds is not None and self.viewer.set_class_enabled(n, on))
            slider = QSlider(Qt.Orientation.Horizontal)
            slider.setRange(0, STEPS)
            slider.setPageStep(STEPS // 40)
            slider.setObjectName(f"threshold_{name}")
            slider.setAccessibleName(f"{name} threshold")  # its value is a position: the description says the threshold
            slider.setToolTip("the threshold, on a logit scale: finer near 0 and 1, where the sensitive and the "
                              "specific thresholds are; a preset's threshold is one of its positions")
            slider.valueChanged.connect(lambda value, n=name: self._on_slider(n, value))
            value, readout = QLabel("-"), QLabel("")
            value.setMinimumWidth(40)
            secondary_text(readout)
            # Wrapped: a long "not flagged: never reaches precision 0.70" widened the dock and shrank the image.
            readout.setWordWrap(True)
            readout.setAlignment(Qt.AlignmentFlag.AlignRight)
            for widget in (box, slider):  # Tab reaches them; a click leaves the keys with the slices
                widget.setFocusPolicy(Qt.FocusPolicy.TabFocus)
            grid.addWidget(box, 2 * row, 0)
            grid.addWidget(slider, 2 * row, 1)
            grid.addWidget(value, 2 * row, 2)
            grid.addWidget(readout, 2 * row + 1, 0, 1, 3)
            self.sliders[name], self.values[name], self.readouts[name] = slider, value, readout
            self.flag_boxes[name] = box
        grid.setColumnStretch(1, 1)
        self.setEnabled(False)
        viewer.model_changed.connect(lambda _: self.set_thresholds(viewer.thresholds))
        viewer.thresholds_changed.connect(lambda: self.thresholds is not None and self._sync())

    def resizeEvent(self, event) -> None:
        """As tall as the wrapped read-outs need at this width: a dock lays its widget out by its size hint, which
        knows nothing of wrapping, so in a narrow dock "NOT CALIBRATED, not flagged (P 0.02 R 0.44 Sp 0.86)"
        was cut at "Sp" instead of taking a second line."""
        super().resizeEvent(event)
        needed = self.layout().heightForWidth(self.width())
        if needed > 0 and needed != self.minimumHeight():
            self.setMinimumHeight(needed)

    def set_thresholds(self, thresholds: Thresholds | None) -> None:
        self.thresholds = thresholds
        while self.preset_row.count():
            widget = self.preset_row.takeAt(0).widget()
            if widget is not None:
                widget.deleteLater()
        self.setEnabled(thresholds is not None)
        if thresholds is None:
            return
        for name in thresholds.preset_names:
            button = QPushButton(name.replace("_", " "))
            button.setObjectName(f"preset_{name}")
            button.setToolTip(thresholds.card.preset_rules.get(name) or thresholds.extra_rules.get(name, ""))
            button.setFocusPolicy(Qt.FocusPolicy.TabFocus)
            button.setAutoDefault(True)  # Enter presses it when focused, as Space does
            button.clicked.connect(lambda _=False, n=name: self.apply_preset(n))
            self.preset_row.addWidget(button)
        # Tab in the order they are seen: the presets at the top came after every slider (made later, at first)
        buttons = [self.preset_row.itemAt(i).widget() for i in range(self.preset_row.count())]
        chain = [*buttons, *(w for name in CLASSES for w in (self.flag_boxes[name], self.sliders[name]))]
        for before, after in zip(chain, chain[1:]):
            QWidget.setTabOrder(before, after)
        self._sync()

    def _preset_buttons(self) -> list[str]:
        return [self.preset_row.itemAt(i).widget().objectName().removeprefix("preset_")
                for i in range(self.preset_row.count())]

    def apply_preset(self, name: str) -> None:
        self.viewer.apply_preset(name)

    def _sync(self) -> None:
        if self._preset_buttons() != self.thresholds.preset_names:  # a site preset was added (calibration)
            self.set_thresholds(self.thresholds)
            return
        for name, slider in self.sliders.items():
            slider.blockSignals(True)
            slider.setValue(slider_position(self.thresholds.values[name]))
            slider.blockSignals(False)
            box = self.flag_boxes[name]
            box.blockSignals(True)
            box.setChecked(self.thresholds.enabled[name])
            box.blockSignals(False)
            self._show(name)
        rule = self.thresholds.rule
        self.preset_label.setText(f"preset: {self.thresholds.preset.replace('_', ' ')}"
                                  + (f" ({rule})" if rule else "")
                                  + ". Precision / recall / specificity on the model's validation patients.")

    def _on_slider(self, name: str, value: int) -> None:
        if self.thresholds is None:
            return
        # A position that rounds to a preset's threshold gives that threshold exactly: a preset's 0.0002 lies
        # between positions, and a user who moves the slider away must be able to come back to it.
        presets = {preset[name] for preset in self.thresholds.presets.values()}
        exact = [t for t in presets if slider_position(t) == value]
        self.viewer.set_threshold(name, exact[0] if exact else threshold_at(value))

    def _show(self, name: str) -> None:
        value = self.thresholds.values[name]
        self.values[name].setText(threshold_text(value))
        readout = self.thresholds.readout(name)
        text = "no validation curve" if readout is None else _point(readout, "  ")
        # the curve's point lies below the slider: say where, or a preset's numbers seem to break its rule
        at = "" if readout is None or abs(readout["measured_at"] - value) < 0.0005 else \
            f"  (at {readout['measured_at']:.3f})"
        measured = "" if readout is None else (
            f"Measured on the validation patients at threshold {readout['measured_at']:.4g}, the curve's nearest point "
            "at or below this one" + ("; no positive slice is found there, so precision is not given"
                                      if readout["precision"] is None else ""))
        why = self.thresholds.not_flagged().get(name)
        if self.thresholds.card.calibration[name] == NOT_CALIBRATED:  # a long line already: the point is in the tooltip
            text = ("NOT CALIBRATED" + ("" if self.thresholds.enabled[name] else ", not flagged")
                    + f" ({text if readout is None else _point(readout, ' ')})")  # single spaces: one line if it fits
        elif not why:
            text += at
        else:  # the preset's rule cannot be met: say so instead of showing numbers it does not reach
            # The reason's gist on the line (" on the validation slices" is in the tooltip): one line, not two
            text = f"not flagged: {why.split(': ', 1)[-1].split(' on the ')[0]}"
        self.readouts[name].setText(text)
        self.sliders[name].setAccessibleDescription(f"threshold {threshold_text(value)}; {text}")
        self.readouts[name].setToolTip("\n".join(part for part in (why, measured) if part))


def secondary_text(label: QLabel) -> None:
    """Text a step quieter than the rest, from the palette: grey 128 on the light grey window was 3.4:1, under the
    4.5:1 that small text needs; 70% of the way from the window's colour to the text's is about 8:1, light or dark."""
    palette = label.palette()
    text, window = palette.color(QPalette.ColorRole.WindowText), palette.color(QPalette.ColorRole.Window)
    palette.setColor(QPalette.ColorRole.WindowText, QColor(*(round(0.7 * t + 0.3 * w) for t, w in
                                                            zip(text.getRgb()[:3], window.getRgb()[:3]))))
    label.setPalette(palette)


def _point(readout: dict, gap: str) -> str:
    """The curve's point, "P 0.02  R 0.44  Sp 0.86": each name bound to its value by a no-break space, so a
    narrow dock wraps between the pairs, never inside one ("Sp" alone at a line's end)."""
    pairs = (("P", _share(readout["precision"])), ("R", _share(readout["recall"])),
             ("Sp", f"{readout['specificity']:.2f}"))
    return gap.join(f"{name}\N{NO-BREAK SPACE}{value}" for name, value in pairs)


def _share(value: float | None) -> str:
    """A precision or recall: "-" for none, three decimals under 0.01 (recall 0.001 is not "0.00")."""
    if value is None:
        return "-"
    return f"{value:.3f}" if 0 < value < 0.01 else f"{value:.2f}"
