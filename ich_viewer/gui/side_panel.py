"""The left panel: the series browser, the six classes, and the Grad-CAM controls."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QCheckBox, QComboBox, QFormLayout, QLabel, QSlider, QVBoxLayout, QWidget

from ich_viewer.core.contract import CLASSES
from ich_viewer.core.viewer_model import TOP_CLASS, ViewerModel
from ich_viewer.gui.class_panel import ClassPanel
from ich_viewer.gui.dialogs import SeriesBrowser
from ich_viewer.gui.slice_view import SliceView


class CamControls(QWidget):
    """The class and the under-threshold choice belong to ``viewer``; opacity and colours only to ``view``."""

    def __init__(self, viewer: ViewerModel, view: SliceView, parent=None):
        super().__init__(parent)
        self.cam_class = QComboBox()
        self.cam_class.addItems([TOP_CLASS, *CLASSES])
        self.cam_class.currentTextChanged.connect(lambda text: viewer.set_cam(cls=text))
        self.cam_below = QCheckBox("show under threshold")
        self.cam_below.toggled.connect(lambda checked: viewer.set_cam(below_threshold=checked))
        self.cam_opacity = QSlider(Qt.Orientation.Horizontal)
        self.cam_opacity.setRange(0, 100)
        self.cam_opacity.setValue(60)
        self.cam_opacity.valueChanged.connect(lambda v: view.set_overlay_opacity(v / 100))
        self.cam_map = QComboBox()
        self.cam_map.addItems(["inferno", "viridis", "magma", "plasma"])
        self.cam_map.currentTextChanged.connect(view.set_colormap)
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("Grad-CAM class", self.cam_class)
        form.addRow("opacity", self.cam_opacity)
        form.addRow("colours", self.cam_map)
        form.addRow("", self.cam_below)


class SidePanel(QWidget):
    def __init__(self, viewer: ViewerModel, view: SliceView, parent=None):
        super().__init__(parent)
        self.browser, self.classes, self.cam_controls = SeriesBrowser(), ClassPanel(), CamControls(viewer, view)
        self.classes.bind(viewer)
        layout = QVBoxLayout(self)
        for title, widget, stretch in (("<b>Studies and series</b>", self.browser, 1),
                                       ("<b>Model output</b> (probabilities)", self.classes, 0)):
            layout.addWidget(QLabel(title))
            layout.addWidget(widget, stretch)
        layout.addWidget(self.cam_controls)
