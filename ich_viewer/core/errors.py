"""One small hierarchy of typed errors. Each message says what happened and what to do about it."""

from __future__ import annotations


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
