"""A frame that shows which of the image and the plot has the keys.

Both take focus (arrows move slices there) but drew nothing when they had it, so a keyboard user who pressed Tab
could not tell where the next key would go. While one has focus, its ViewBox (the image's area, the plot's
axes box) has a 2 px border in the palette's highlight colour; a ViewBox border takes no room, so nothing moves
(a widget border cut the plot's "slice" label). Each widget calls this from its own focusIn/focusOut handlers:
an event filter object on them was still called while the window was torn down, and crashed the program at exit.
"""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QWidget


def show_focus(widget: QWidget, viewbox: pg.ViewBox, focused: bool) -> None:
    colour = widget.palette().color(QPalette.ColorRole.Highlight)
    viewbox.setBorder(pg.mkPen(colour, width=2) if focused else None)
