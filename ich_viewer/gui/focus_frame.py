"""A frame that shows which of the image and the plot has the keys.

Both take focus (arrows move slices there) but drew nothing when they had it, so a keyboard user who pressed Tab
could not tell where the next key would go. While one has focus, its ViewBox (the image's area, the plot's
axes box) has a 2 px border in the palette's highlight colour; a ViewBox border takes no room, so nothing moves
(a widget border cut the plot's "slice" label).
"""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtCore import QEvent, QObject
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QWidget


class FocusFrame(QObject):
    def __init__(self, widget: QWidget, viewbox: pg.ViewBox):
        super().__init__(widget)
        self.widget, self.viewbox = widget, viewbox
        widget.installEventFilter(self)
        self.draw(widget.hasFocus())

    def draw(self, focused: bool) -> None:
        colour = self.widget.palette().color(QPalette.ColorRole.Highlight)
        self.viewbox.setBorder(pg.mkPen(colour, width=2) if focused else None)

    def eventFilter(self, watched: QWidget, event: QEvent) -> bool:  # noqa: N802 - Qt override
        if event.type() in (QEvent.Type.FocusIn, QEvent.Type.FocusOut):
            self.draw(event.type() == QEvent.Type.FocusIn)
        return False
