"""The left panel: the series browser, the six classes, and the Grad-CAM controls."""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, QRect, QSize, Qt
from PySide6.QtWidgets import (QCheckBox, QComboBox, QFormLayout, QHeaderView, QLabel, QSlider, QStyledItemDelegate,
                               QVBoxLayout, QWidget)

from ich_viewer.core.contract import CLASSES
from ich_viewer.core.viewer_model import TOP_CLASS, ViewerModel
from ich_viewer.gui.class_panel import ClassPanel
from ich_viewer.gui.dialogs import SeriesBrowser
from ich_viewer.gui.slice_view import SliceView


class TypingPicksAnEntry(QObject):
    """Plain keys typed into a focused drop-down pick its entry (Qt's keyboard search) instead of setting off the
    window's one-key shortcuts: "a" for "any" turned the anonymised display off and showed the patient's name,
    "s" for subdural switched sigmoid windowing. Keys with Ctrl or Alt still reach the window."""

    def eventFilter(self, watched, event) -> bool:  # noqa: N802 - Qt override
        if event.type() == QEvent.Type.ShortcutOverride:
            held = event.modifiers() & ~(Qt.KeyboardModifier.ShiftModifier | Qt.KeyboardModifier.KeypadModifier)
            if held == Qt.KeyboardModifier.NoModifier and event.text().isprintable() and event.text().strip():
                event.accept()  # the widget wants the key: no shortcut runs, the key press comes to it
                return True
        return False


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
        # Focused by Tab only, never by a click: after clicking here, arrow and Page keys still move slices,
        # and without a mouse Tab reaches them (Escape gives the keys back to the image).
        for widget in (self.cam_class, self.cam_opacity, self.cam_map, self.cam_below):
            widget.setFocusPolicy(Qt.FocusPolicy.TabFocus)
        self.typing = TypingPicksAnEntry(self)
        for combo in (self.cam_class, self.cam_map):
            combo.installEventFilter(self.typing)


class _WrappedFirstColumn(QStyledItemDelegate):
    """Row heights for names wrapped to the first column's width (QTreeView asks its delegate for a row's
    height without saying how wide the column is, so wrapped text would be cut to one line)."""

    def __init__(self, tree):
        super().__init__(tree)
        self.tree = tree

    def text_width(self, index) -> int:
        """Room for the text in column 0 at ``index``'s depth: the column less indentation, icon and margins."""
        depth, parent = 0, index.parent()
        while parent.isValid():
            depth, parent = depth + 1, parent.parent()
        indent = self.tree.indentation() * (depth + int(self.tree.rootIsDecorated()))
        return max(self.tree.header().sectionSize(0) - indent - 8, 16)

    def sizeHint(self, option, index) -> QSize:  # noqa: N802 - Qt override
        hint = super().sizeHint(option, index)
        if index.column() != 0:
            return hint
        bounds = option.fontMetrics.boundingRect(QRect(0, 0, self.text_width(index), 1 << 20),
                                                 Qt.TextFlag.TextWordWrap, str(index.data() or ""))
        return QSize(hint.width(), max(hint.height(), bounds.height() + 4))


def fit_columns(tree) -> None:
    """Date and slice count as wide as their text; the names take the rest and wrap at spaces, never cut off
    and never pushed out of sight behind a horizontal scroll bar."""
    header = tree.header()
    header.setStretchLastSection(False)
    header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
    for column in range(1, tree.columnCount()):
        header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
    tree.setWordWrap(True)
    tree.setItemDelegate(_WrappedFirstColumn(tree))
    tree.setTextElideMode(Qt.TextElideMode.ElideNone)
    tree.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    header.sectionResized.connect(lambda *_: tree.doItemsLayout())  # row heights follow the wrapped width


class SidePanel(QWidget):
    def __init__(self, viewer: ViewerModel, view: SliceView, parent=None):
        super().__init__(parent)
        self.browser, self.classes, self.cam_controls = SeriesBrowser(), ClassPanel(), CamControls(viewer, view)
        self.classes.bind(viewer)
        fit_columns(self.browser)
        self.browser.setFocusPolicy(Qt.FocusPolicy.TabFocus)  # clicked to open a series; the keys stay with the slices
        layout = QVBoxLayout(self)
        for title, widget, stretch in (("<b>Studies and series</b>", self.browser, 1),
                                       ("<b>Model output</b> (probabilities)", self.classes, 0)):
            layout.addWidget(QLabel(title))
            layout.addWidget(widget, stretch)
        layout.addWidget(self.cam_controls)
