"""The slice view: CT in one ImageItem, the Grad-CAM in a second one above it, HU under the cursor, and
on the viewport (gui/view_overlays.py) the corner text, orientation markers, a scale bar and the colour bar.

Keys (while the view has focus, and forwarded by the main window): wheel / arrows / PageUp /
PageDown / Home / End move through slices; right-drag changes level (vertical) and width
(horizontal); left-drag pans; Ctrl+wheel zooms; :meth:`SliceView.fit` and :meth:`SliceView.actual_size`
are the View menu's fit-to-window and 1:1.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QObject, QPointF, QRectF, Qt, Signal

from ich_viewer.core.contract import CLASSES
from ich_viewer.core.inference import cam_blank
from ich_viewer.core.viewer_model import ViewerModel
from ich_viewer.core.windows import Window, WindowFunction, apply_window, composite_rgb
from ich_viewer.gui.focus_frame import show_focus
from ich_viewer.gui.view_overlays import ViewportOverlays

pg.setConfigOptions(imageAxisOrder="row-major", antialias=False)
INVERTED_GREY = np.arange(255, -1, -1, dtype=np.uint8)


class SliceView(pg.GraphicsLayoutWidget):
    """Shows one HU slice with a window (or the model's 3-window composite) and an optional overlay."""

    sliceStep = Signal(int)  # +-n slices requested (wheel, keys)
    windowChanged = Signal(object)  # the Window after a right-drag
    hoverText = Signal(str)  # "x, y: HU" under the cursor

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setBackground("k")
        self.viewbox = self.addViewBox(lockAspect=True, invertY=True, enableMenu=False)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.overlay = pg.ImageItem(axisOrder="row-major")
        self.overlay.setZValue(10)
        self.overlay.setOpacity(0.6)
        self.viewbox.addItem(self.image)
        self.viewbox.addItem(self.overlay)
        self.overlays = ViewportOverlays(self.viewbox)  # fixed to the viewport: stays put when zoomed or panned
        self.corner = self.overlays.corner
        self.set_colormap("inferno")
        self.hu: np.ndarray | None = None
        self.window = Window("brain", 40, 80)
        self.composite: tuple[Window, ...] | None = None
        self.function: WindowFunction = "linear"
        self._drag_start: tuple[QPointF, Window] | None = None
        self.scene().sigMouseMoved.connect(self._on_mouse_moved)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)

    # ------------------------------------------------------------------ following a viewer model

    def bind(self, viewer: ViewerModel) -> None:
        """Show ``viewer``'s current slice, window and Grad-CAM; wheel, keys and right-drag change them."""
        self.viewer = viewer
        self.sliceStep.connect(lambda n: viewer.go_to(viewer.index + n))
        self.windowChanged.connect(viewer.set_window)
        viewer.slice_changed.connect(lambda _: self.show_current())
        # thresholds_changed also carries "flag this series outside the intended use", which the corner text says
        viewer.thresholds_changed.connect(lambda: (self.refresh_overlay(), self._show_corner_text()))
        viewer.prediction_changed.connect(lambda batch: (batch is None or viewer.index in batch.indices)
                                          and self.refresh_overlay())
        # A right-drag changes the window on every mouse move: only the image and its text are redone then.
        viewer.window_changed.connect(self._on_window_changed)
        viewer.cam_changed.connect(self.refresh_overlay)
        viewer.anonymised_changed.connect(lambda _: self._show_corner_text())
        viewer.series_opened.connect(lambda study, series: self._on_series_opened(series))

    def _on_series_opened(self, series) -> None:
        # a millimetre as long across as down: rows 0.49 mm apart and columns 0.98 mm showed the head squashed 2:1
        self.viewbox.setAspectLocked(True, ratio=series.pixel_aspect)
        self.overlays.set_markers(self.viewer.orientation_markers())
        # across the columns: the bar is horizontal; none where the files state no spacing (1 mm is a guess)
        self.overlays.set_pixel_spacing(series.pixel_spacing[1] if series.pixel_spacing_known else None)

    def show_current(self, autorange: bool = False) -> None:
        """The viewer's current slice, once decoded (blank until then), with its overlay and corner text."""
        viewer = self.viewer
        if viewer.loader is None or not viewer.loader.ready[viewer.index]:
            self.set_slice(None)
            return
        self.set_slice(viewer.loader.slice(viewer.index), autorange)
        self.refresh_overlay()
        self._show_corner_text()

    def refresh_overlay(self) -> None:
        values = self.viewer.overlay()
        self.set_overlay(values)
        bar, hidden = self.overlays.colour_bar, self.viewer.cam_hidden_note(values)
        if hidden is not None:  # a class the user chose, hidden here: its title says so, without a scale
            bar.set_note(CLASSES[self.viewer.cam_class_index()], hidden)
        else:
            bar.set_class(None if values is None else CLASSES[self.viewer.cam_class_index()], blank=cam_blank(values))

    def _on_window_changed(self) -> None:
        if self.viewer.window_function != self.function:
            self.function = self.viewer.window_function
            self._render()
        if self.viewer.composite:
            self.set_composite(self.viewer.composite)
        elif self.viewer.window != self.window or self.composite:  # not already shown (a right-drag here)
            self.set_window(self.viewer.window)
        self._show_corner_text()

    def _show_corner_text(self) -> None:
        self.set_corner_text("\n".join(self.viewer.corner_lines()))

    # ------------------------------------------------------------------ content

    def set_slice(self, hu: np.ndarray | None, autorange: bool = False) -> None:
        self.hu = hu
        self._render()
        if autorange and hu is not None:
            self.fit()

    def fit(self) -> None:
        """The whole image, as large as the viewport allows (the View menu's fit to window)."""
        if self.hu is not None:
            self.viewbox.setRange(QRectF(0, 0, self.hu.shape[1], self.hu.shape[0]), padding=0.01)

    def actual_size(self) -> None:
        """One image pixel per screen pixel, around the point now in the middle of the viewport (1:1)."""
        size = self.viewbox.boundingRect()
        centre = self.viewbox.viewRect().center()
        self.viewbox.setRange(QRectF(centre.x() - size.width() / 2, centre.y() - size.height() / 2,
                                     size.width(), size.height()), padding=0)

    def zoom(self, factor: float) -> None:
        """``factor`` times larger, around the middle of the view (the View menu's zoom, for the keyboard)."""
        self.viewbox.scaleBy((1 / factor, 1 / factor))

    def set_window(self, window: Window) -> None:
        self.window, self.composite = window, None
        self._render()

    def set_composite(self, windows: tuple[Window, ...]) -> None:
        """The model view: one window per colour channel, as the model's input channels."""
        self.composite = windows
        self._render()

    def set_overlay(self, values: np.ndarray | None) -> None:
        """Values in [0, 1] (already on the model's fixed scale), or None to hide."""
        if values is None:
            self.overlay.clear()
            self.overlay.setVisible(False)
            return
        self.overlay.setImage(values, levels=(0.0, 1.0), autoLevels=False)
        self.overlay.setVisible(True)

    def set_overlay_opacity(self, opacity: float) -> None:
        self.overlay.setOpacity(opacity)

    def set_colormap(self, name: str) -> None:
        """The colour map with an alpha ramp: zero is transparent, so only where the model looked shows."""
        lut = pg.colormap.get(name).getLookupTable(0.0, 1.0, 256, alpha=True)
        lut[:, 3] = np.clip(np.linspace(0, 400, 256), 0, 255).astype(np.uint8)
        self.overlay.setLookupTable(lut)
        self.overlays.colour_bar.set_lookup_table(lut)

    def set_corner_text(self, text: str) -> None:
        self.overlays.set_corner_text(text)

    def _render(self) -> None:
        if self.hu is None:
            self.image.clear()
            return
        # MONOCHROME1 is shown white for its lowest value, as DICOM asks; the model view's colours are the model's
        monochrome1 = self.viewer.series is not None and self.viewer.series.monochrome1
        self.image.setLookupTable(INVERTED_GREY if monochrome1 and not self.composite else None)
        if self.composite:
            self.image.setImage(composite_rgb(self.hu, self.composite, self.function), levels=(0.0, 1.0),
                                autoLevels=False)
        elif self.function == "linear":  # the image's own levels: no copy of the slice
            self.image.setImage(self.hu, levels=(self.window.low, self.window.high), autoLevels=False)
        else:
            self.image.setImage(apply_window(self.hu, self.window, self.function), levels=(0.0, 1.0),
                                autoLevels=False)

    # ------------------------------------------------------------------ interaction

    def focusInEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().focusInEvent(event)
        show_focus(self, self.viewbox, True)  # where the keys go

    def focusOutEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().focusOutEvent(event)
        show_focus(self, self.viewbox, False)

    def wheelEvent(self, event) -> None:  # noqa: N802 - Qt override
        if event.modifiers() & Qt.KeyboardModifier.ControlModifier:
            super().wheelEvent(event)  # zoom
            return
        self.step_by_wheel(event)

    def step_by_wheel(self, event) -> None:
        """One slice per wheel notch: towards the feet when turned away from the user."""
        if event.angleDelta().y() == 0:
            return
        steps = event.angleDelta().y() // 120 or (1 if event.angleDelta().y() > 0 else -1)
        self.sliceStep.emit(-int(steps))
        event.accept()

    def mousePressEvent(self, event) -> None:  # noqa: N802
        if event.button() == Qt.MouseButton.RightButton:
            self._drag_start = (event.position(), self.window)
            event.accept()
            return
        super().mousePressEvent(event)

    def mouseMoveEvent(self, event) -> None:  # noqa: N802
        if self._drag_start is not None:
            start, window = self._drag_start
            delta = event.position() - start
            width = max(1.0, window.width + 2.0 * delta.x())
            self.window = Window("custom", window.center - 2.0 * delta.y(), width)
            self.composite = None
            self._render()
            self.windowChanged.emit(self.window)
            event.accept()
            return
        super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event) -> None:  # noqa: N802
        if self._drag_start is not None and event.button() == Qt.MouseButton.RightButton:
            self._drag_start = None
            event.accept()
            return
        super().mouseReleaseEvent(event)

    def _on_mouse_moved(self, position) -> None:
        if self.hu is None:
            return
        point = self.viewbox.mapSceneToView(position)
        row, col = int(np.floor(point.y())), int(np.floor(point.x()))
        if 0 <= row < self.hu.shape[0] and 0 <= col < self.hu.shape[1]:
            self.hoverText.emit(f"x {col}, y {row}: {self.hu[row, col]:.0f} HU")
        else:
            self.hoverText.emit("")


class WheelMovesSlices(QObject):
    """Event filter for controls a plain wheel turn would change by accident on its way across the window
    (threshold sliders, the Grad-CAM combo boxes, the slice slider, whose wheel ran the other way): the turn
    moves slices, as over the image. A threshold is changed by dragging or clicking its slider."""

    def __init__(self, view: SliceView):
        super().__init__(view)
        self.view = view

    def watch(self, *widgets) -> None:
        for widget in widgets:
            widget.installEventFilter(self)

    def eventFilter(self, watched, event) -> bool:  # noqa: N802 - Qt override
        if event.type() == QEvent.Type.Wheel:
            self.view.step_by_wheel(event)
            return True
        return False
