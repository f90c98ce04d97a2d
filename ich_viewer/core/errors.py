"""One small hierarchy of typed errors. Each message says what happened and what to do about it."""

from __future__ import annotations

import re


class IchViewerError(Exception):
    """Base class for every error the application raises on purpose (shown to the user as-is)."""


class NoImagesFoundError(IchViewerError):
    """Nothing usable (a decodable CT image) was found under the given paths.

    ``skipped`` lists every file that was looked at, with the reason it was not used, so the
    caller can show why (e.g. "MR image, not CT", "truncated file").
    """

    def __init__(self, message: str, skipped: tuple = ()):
        super().__init__(message)
        self.skipped = tuple(skipped)


class DecodeError(IchViewerError):
    """Pixel data could not be decoded; the message names the transfer syntax and what decodes it."""


class ModelError(IchViewerError):
    """A model file is missing, damaged, changed, or does not meet the model contract."""


class CalibrationError(IchViewerError):
    """A site calibration that cannot be done: too few normal slices or studies, a bad flag rate or name, or
    a site presets file that cannot be read."""


def one_line(exc: BaseException) -> str:
    """An exception as one short line for a skip reason or message: pydicom puts each plugin's own message
    (the useful part) on the lines after the first. An operating-system error keeps its reason and drops the file
    name it carries, which is the user's path (and anonymised output must not show it)."""
    if isinstance(exc, OSError) and exc.strerror and exc.filename is not None:
        return exc.strerror
    text = " ".join(str(exc).split()) or type(exc).__name__
    if " " not in text and text != type(exc).__name__:  # a bare key or number ("3126") says nothing alone
        text = f"{type(exc).__name__} {text}"
    return text.replace("Unable to decode as exceptions were raised by all available plugins: ", "")[:200]


# C0 and C1 control characters, and the Unicode controls that reorder or hide text on a terminal
_FORMAT_CONTROLS = "\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060\u2066-\u2069\ufeff"  # zero-width, line separators
_ANY_CONTROL = re.compile("[\x00-\x1f" + _FORMAT_CONTROLS + "]")
_CONTROL_BUT_LAYOUT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f" + _FORMAT_CONTROLS + "]")  # not \t \n \r


def _escaped(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escaped_controls(text: str) -> str:
    """``text`` (a file's description or name) as one line that cannot steer a terminal: every control
    character, newline included, written as its escape (an ESC sequence in a description cleared the
    screen and set the window title; a newline forged a line of output)."""
    return _ANY_CONTROL.sub(_escaped, text)


def terminal_safe(text: str) -> str:
    """``escaped_controls`` but keeping newlines, tabs and carriage returns: for whole outputs (a CSV, a progress
    line) whose layout is ours."""
    return _CONTROL_BUT_LAYOUT.sub(_escaped, text)
