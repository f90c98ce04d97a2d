"""The status bar's room for its messages on a narrow window (a 1366 x 768 laptop at 150% is 911 px wide).

QStatusBar draws a message only left of its first permanent widget, and its layout shrinks the message, never
the permanent widgets: at the smallest window "Flagged: any, intraparenchymal, ..." was cut to "Flag". The
model's name and the other-files count now give up width first (cut with an ellipsis, whole in their tooltip),
and a summary that still does not fit is said with the classes' abbreviations.
"""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt
from PySide6.QtWidgets import QLabel, QStatusBar

QWIDGETSIZE_MAX = (1 << 24) - 1  # Qt's "no maximum"

#: The room a message keeps left of the permanent widgets ("Flagged: any, EDH, IPH, IVH, SAH, SDH" is 230 px).
MESSAGE_RESERVE_PX = 240
MIN_LABEL_PX = 60
SPACING_PX = 8  # per widget: the layout's spacing and the frame QStatusBar draws around each
EDGES_PX = 24  # the message's 6 px inset, its 2 px gap and the bar's right margin, measured at 18, with slack


class ElidedLabel(QLabel):
    """Plain text on one line, cut with an ellipsis when the label is narrower than the text. ``text()`` is the
    whole text; the tooltip shows it whole when it is cut, unless the caller set a tooltip of its own."""

    def __init__(self, text: str = ""):
        super().__init__()
        self.setTextFormat(Qt.TextFormat.PlainText)  # a card's name is the file's text, not markup
        self.whole_text, self.own_tooltip = "", False
        self.setText(text)

    def setText(self, text: str) -> None:  # noqa: N802 - Qt override
        self.whole_text = text
        self.updateGeometry()
        self._elide()

    def text(self) -> str:
        return self.whole_text

    def setToolTip(self, tip: str) -> None:  # noqa: N802 - Qt override
        self.own_tooltip = bool(tip)
        super().setToolTip(tip)

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt override
        margin = 2 * self.margin() + self.contentsMargins().left() + self.contentsMargins().right()
        # elidedText keeps the whole text only with one pixel more than its advance
        return QSize(self.fontMetrics().horizontalAdvance(self.whole_text) + 1 + margin, super().sizeHint().height())

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt override
        return QSize(min(MIN_LABEL_PX, self.sizeHint().width()), super().minimumSizeHint().height())

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        self._elide()

    def _elide(self) -> None:
        shown = self.fontMetrics().elidedText(self.whole_text, Qt.TextElideMode.ElideRight, self.contentsRect().width())
        super().setText(shown)
        if not self.own_tooltip:
            QLabel.setToolTip(self, self.whole_text if shown != self.whole_text else "")


def share_room(status: QStatusBar, permanent: list, elided: list[ElidedLabel], message: str) -> None:
    """Cap the ``elided`` labels, in proportion to their text, only as far as ``message`` needs (at most
    MESSAGE_RESERVE_PX): with no message, or room enough, they are whole. The others of ``permanent`` (the
    notice, the skipped files' button, the HU under the cursor) keep their full width."""
    reserve = min(MESSAGE_RESERVE_PX, status.fontMetrics().horizontalAdvance(message) + EDGES_PX) if message else 0
    fixed = sum(w.sizeHint().width() + SPACING_PX for w in permanent if w.isVisibleTo(status) and w not in elided)
    wanted = sum(label.sizeHint().width() for label in elided)
    room = status.width() - fixed - reserve - SPACING_PX * len(elided)  # for the labels' text
    for label in elided:
        label.setMaximumWidth(QWIDGETSIZE_MAX if wanted <= room else
                              max(MIN_LABEL_PX, label.sizeHint().width() * max(0, room) // wanted))


def message_room(status: QStatusBar, permanent: list) -> int:
    """How many pixels a message has, from the bar's left to its first visible ``permanent`` widget, as the
    layout will place them (it may not have run yet)."""
    taken = sum(min(w.sizeHint().width(), w.maximumWidth()) + SPACING_PX for w in permanent if w.isVisibleTo(status))
    return status.width() - taken - EDGES_PX


def fitting(status: QStatusBar, permanent: list, whole: str, short: str) -> str:
    """``whole`` if it fits the message's room, else ``short`` (the same facts with abbreviations)."""
    return whole if status.fontMetrics().horizontalAdvance(whole) <= message_room(status, permanent) else short
