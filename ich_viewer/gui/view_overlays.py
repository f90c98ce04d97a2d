"""What the slice view draws on the viewport rather than on the image: the corner text, orientation markers,
the scale bar and the Grad-CAM colour bar.

Each item is a child of the pyqtgraph ViewBox itself, not of its view coordinates (the ViewBox's
``childGroup``), so its position is in viewport pixels: it stays where it is when the image is zoomed or
panned. What they show is computed in the core (:mod:`ich_viewer.core.view_geometry`).
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QFont, QGradient, QLinearGradient, QPainterPath, QPen
from PySide6.QtWidgets import QGraphicsDropShadowEffect, QGraphicsPathItem, QGraphicsRectItem, QGraphicsTextItem

from ich_viewer.core.inference import CAM_BLANK
from ich_viewer.core.view_geometry import scale_bar, scale_label

TEXT_COLOUR = QColor(230, 230, 230)
MARKER_COLOUR = QColor(255, 220, 120)
MARGIN = 6  # viewport pixels between an item and the edge
EDGES = ("left", "right", "top", "bottom")
Z = 1000  # above the image and the overlay


def _text(parent, size: int = 9, bold: bool = False, colour: QColor = TEXT_COLOUR) -> QGraphicsTextItem:
    item = QGraphicsTextItem(parent)
    font = QFont("Sans", size)
    font.setBold(bold)
    item.setFont(font)
    item.setDefaultTextColor(colour)
    item.document().setDocumentMargin(1)
    shadow = QGraphicsDropShadowEffect(blurRadius=0, offset=QPointF(1, 1), color=QColor(0, 0, 0))
    item.setGraphicsEffect(shadow)  # legible on bone as on air
    item.setZValue(Z)
    item.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
    return item


class ViewportOverlays:
    """The viewport-anchored items of one ViewBox; :meth:`layout` places them after a resize or zoom."""

    def __init__(self, viewbox):
        self.viewbox = viewbox
        self.corner = _text(viewbox)
        self.markers = {edge: _text(viewbox, 11, bold=True, colour=MARKER_COLOUR) for edge in EDGES}
        self.scale_line = QGraphicsPathItem(viewbox)
        self.scale_line.setPen(QPen(TEXT_COLOUR, 2))
        self.scale_line.setZValue(Z)
        self.scale_text = _text(viewbox)
        self.colour_bar = ColourBar(viewbox)
        self.mm_per_pixel: float | None = None  # the image's column spacing; None: no scale bar
        viewbox.sigResized.connect(lambda *_: self.layout())
        viewbox.sigRangeChanged.connect(lambda *_: self.layout())

    # ------------------------------------------------------------------ content

    def set_corner_text(self, text: str) -> None:
        self.corner.setPlainText(text)
        self.layout()

    def set_markers(self, markers: dict[str, str] | None) -> None:
        """Letters for the four edges (core/view_geometry.py), or None to show none."""
        for edge, item in self.markers.items():
            item.setPlainText(markers[edge] if markers else "")
            item.setVisible(bool(markers))
        self.layout()

    def set_pixel_spacing(self, mm_per_pixel: float | None) -> None:
        self.mm_per_pixel = mm_per_pixel
        self.layout()

    # ------------------------------------------------------------------ placement

    def layout(self) -> None:
        rect = self.viewbox.boundingRect()
        w, h = rect.width(), rect.height()
        self.corner.setPos(MARGIN, MARGIN - 2)
        self._wrap(self.corner, w - 2 * MARGIN)
        corner = self.corner.mapRectToParent(self.corner.boundingRect()) if self.corner.toPlainText() else QRectF()
        for edge, item in self.markers.items():
            size = item.boundingRect()
            x = {"left": MARGIN, "right": w - size.width() - MARGIN}.get(edge, (w - size.width()) / 2)
            y = {"top": MARGIN - 2, "bottom": h - size.height() - MARGIN}.get(edge, (h - size.height()) / 2)
            if edge == "top" and corner.right() + 4 > x and not corner.isEmpty():
                y = corner.bottom() + 2  # a long corner line (a warning) would hide it: below the text
            item.setPos(x, y)
        self._place_scale_bar(w, h)
        self.colour_bar.place(w, h)

    @staticmethod
    def _wrap(item: QGraphicsTextItem, width: float) -> None:
        """Wrap ``item`` at ``width`` only when a line is longer: a narrow view cut the corner's last words off."""
        item.setTextWidth(-1)  # its natural width again, then wrap only if that does not fit
        if item.boundingRect().width() > width > 0:
            item.setTextWidth(max(width, 40.0))

    def _place_scale_bar(self, w: float, h: float) -> None:
        """A round length in mm at the bottom left, for the zoom shown now."""
        # image pixels per screen pixel, from the range itself: at sigRangeChanged, viewPixelSize() still holds the
        # zoom before (its cache is renewed with the matrix, later), so the bar read 3-5% short after a fit
        screen_px = self.viewbox.viewRect().width() / w if w > 0 else 0.0
        bar = None if self.mm_per_pixel is None else scale_bar(self.mm_per_pixel * screen_px, w)
        self.scale_line.setVisible(bar is not None)
        self.scale_text.setVisible(bar is not None)
        if bar is None:
            return
        length_mm, length_px = bar
        x0, y = MARGIN + 4, h - MARGIN - 4
        path = QPainterPath(QPointF(x0, y - 5))
        path.lineTo(x0, y)
        path.lineTo(x0 + length_px, y)
        path.lineTo(x0 + length_px, y - 5)
        self.scale_line.setPath(path)
        self.scale_text.setPlainText(scale_label(length_mm))
        text = self.scale_text.boundingRect()
        self.scale_text.setPos(x0 + (length_px - text.width()) / 2, y - text.height() - 2)

    @property
    def scale_bar_mm(self) -> float | None:
        """The length the bar shows (None when hidden)."""
        if not self.scale_text.isVisible():
            return None
        return float(self.scale_text.toPlainText().split()[0])

    @property
    def scale_bar_px(self) -> float:
        return self.scale_line.path().boundingRect().width()


class ColourBar:
    """The Grad-CAM's colour scale at the bottom right: 0 to 1 on the fixed scale of the series (never
    stretched per slice), titled with the class shown."""

    WIDTH, HEIGHT = 12, 140
    #: In a short view the bar takes at most this share of the height, so its title stays off the head.
    MAX_SHARE, MIN_HEIGHT = 0.25, 50

    def __init__(self, parent):
        self.bar = QGraphicsRectItem(0, 0, self.WIDTH, self.HEIGHT, parent)
        self.bar.setPen(QPen(TEXT_COLOUR, 1))
        self.bar.setZValue(Z)
        self.title = _text(parent)
        self.ticks = {value: _text(parent, 8) for value in ("1", "0.5", "0")}
        for value, item in self.ticks.items():
            item.setPlainText(value)
        self.size = (0.0, 0.0)  # the viewport's, at the last placement
        self.set_visible(False)

    def set_lookup_table(self, lut: np.ndarray) -> None:
        """The overlay's RGBA table (row 0: value 0): drawn opaque, as the colours read at full opacity."""
        gradient = QLinearGradient(0, 1, 0, 0)  # in the bar's own box: it follows the bar's height
        gradient.setCoordinateMode(QGradient.CoordinateMode.ObjectBoundingMode)
        for i in np.linspace(0, len(lut) - 1, 16).astype(int):
            r, g, b = (int(v) for v in lut[i][:3])
            gradient.setColorAt(i / (len(lut) - 1), QColor(r, g, b))
        self.bar.setBrush(QBrush(gradient))

    def set_class(self, name: str | None, blank: bool = False) -> None:
        """The class whose map is shown, or None to hide the bar with the overlay; ``blank``: the map draws
        nothing on this slice, which the title says rather than leaving a flagged slice's map silently empty."""
        self.title.setPlainText(f"Grad-CAM: {name}\n{CAM_BLANK if blank else 'fixed scale'}" if name else "")
        self.set_visible(name is not None)
        self.place(*self.size)  # the title's width changed with its text

    def set_note(self, name: str, note: str) -> None:
        """The title alone, for a class whose map is hidden on this slice: no scale, as nothing is drawn."""
        self.title.setPlainText(f"Grad-CAM: {name}\n{note}")
        self.set_visible(False)
        self.title.setVisible(True)
        self.place(*self.size)

    def set_visible(self, visible: bool) -> None:
        for item in (self.bar, self.title, *self.ticks.values()):
            item.setVisible(visible)

    def isVisible(self) -> bool:  # noqa: N802 - as Qt's items say it
        return self.bar.isVisible()

    def place(self, w: float, h: float) -> None:
        self.size = (w, h)
        height = max(self.MIN_HEIGHT, min(self.HEIGHT, self.MAX_SHARE * h))
        x, y = w - MARGIN - 8 - self.WIDTH, h - MARGIN - 16 - height
        self.bar.setRect(0, 0, self.WIDTH, height)
        self.bar.setPos(x, y)
        for value, item in self.ticks.items():
            size = item.boundingRect()
            item.setPos(x - size.width() - 2, y + (1 - float(value)) * height - size.height() / 2)
        title = self.title.boundingRect()
        above_bar = y - title.height() - 10
        alone = h - MARGIN - 16 - title.height()  # a note without its bar sits where the bar would end
        self.title.setPos(x + self.WIDTH - title.width(), above_bar if self.bar.isVisible() else alone)
