"""Exports for teaching and hand-over, drawn with Qt from the ViewerModel's state (never a screen grab).

- :func:`render_slice`: the current slice at its own resolution (rows x columns), windowed as shown, with
  the Grad-CAM shown and the slice's probabilities, thresholds and preset, the model and the disclaimer
  burned in; the patient's name, ID and date only when the display is not anonymised.
- :func:`draw_summary` / :func:`write_summary_pdf`: a one-page study summary (per class the maximum, its
  worst slice with that class's Grad-CAM, threshold and preset; study and model identity; the disclaimer),
  written by Qt's own PDF writer. The layout draws on any QPaintDevice, so the same page can be drawn
  into an image to look at.

Each returns the strings it drew, so what reaches the page can be checked (no name when anonymised).
"""

from __future__ import annotations

import math
from datetime import date
from pathlib import Path

import numpy as np
from PySide6.QtCore import QMarginsF, QRectF, Qt
from PySide6.QtGui import QColor, QFont, QFontMetricsF, QImage, QPageLayout, QPageSize, QPainter, QPdfWriter

import ich_viewer
from ich_viewer.core.body_mask import body_mask
from ich_viewer.core.contract import ABBREVIATIONS, CLASSES
from ich_viewer.core.errors import DecodeError, IchViewerError
from ich_viewer.core.inference import CAM_BLANK_NOTE, cam_blank, cam_overlay, display_scale
from ich_viewer.core.results import NOTICE
from ich_viewer.core.thresholds import threshold_text
from ich_viewer.core.viewer_model import ViewerModel
from ich_viewer.core.windows import apply_window, composite_rgb, to_uint8

OVERLAY_OPACITY = 0.6  # the slice view's default
FLAG_RED, NOTICE_RED, TEXT = QColor(255, 90, 70), QColor(200, 40, 30), QColor(235, 235, 235)
MARKER = QColor(255, 220, 120)  # the view's orientation letters


def default_lut() -> np.ndarray:
    """The slice view's overlay table: inferno with an alpha ramp (zero is transparent)."""
    import pyqtgraph as pg

    lut = pg.colormap.get("inferno").getLookupTable(0.0, 1.0, 256, alpha=True)
    lut[:, 3] = np.clip(np.linspace(0, 400, 256), 0, 255).astype(np.uint8)
    return lut


# ---------------------------------------------------------------------- pixels


def windowed_rgb(viewer: ViewerModel, hu: np.ndarray) -> np.ndarray:
    """uint8 [H, W, 3]: ``hu`` in the viewer's window (or its model view), as the slice view shows it."""
    function = viewer.window_function
    if viewer.composite:
        return to_uint8(composite_rgb(hu, viewer.composite, function))
    grey = to_uint8(apply_window(hu, viewer.window, function))
    if viewer.series is not None and viewer.series.monochrome1:  # its lowest value is white, as in the view
        grey = 255 - grey
    return np.repeat(grey[..., None], 3, axis=2)


def blend(rgb: np.ndarray, values: np.ndarray | None, lut: np.ndarray, opacity: float) -> np.ndarray:
    """``values`` ([H, W] in [0, 1]) through the RGBA ``lut`` over ``rgb``, at ``opacity``, as the view draws it."""
    if values is None:
        return rgb
    colours = lut[np.clip(np.round(values * (len(lut) - 1)), 0, len(lut) - 1).astype(int)].astype(np.float32)
    alpha = colours[..., 3:4] / 255.0 * opacity
    return np.round(rgb * (1.0 - alpha) + colours[..., :3] * alpha).astype(np.uint8)


def to_qimage(rgb: np.ndarray) -> QImage:
    rgb = np.ascontiguousarray(rgb, np.uint8)
    h, w = rgb.shape[:2]
    return QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()  # copy: owns its pixels


def current_slice(viewer: ViewerModel, index: int | None = None) -> np.ndarray:
    index = viewer.index if index is None else index
    if viewer.series is None or viewer.loader is None:
        raise IchViewerError("There is nothing to export yet: open a series first.")
    try:
        return viewer.loader.slice(index, timeout=30.0)
    except (DecodeError, TimeoutError) as exc:
        raise IchViewerError(f"Slice {index + 1} cannot be exported: {exc}") from None


def class_cam(viewer: ViewerModel, index: int, c: int, hu: np.ndarray) -> np.ndarray | None:
    """Class ``c``'s Grad-CAM on slice ``index`` as the viewer would show it there (fixed scale, inside the
    head, none under the threshold unless the user asked); None when not shown."""
    prediction = viewer.prediction
    if prediction is None or not prediction.done[index]:
        return None
    scale = display_scale(prediction, c, viewer.model.card.cam_scale[CLASSES[c]])
    threshold = float(viewer.thresholds.as_array()[c]) if viewer.flags_shown else np.inf
    values = cam_overlay(prediction.cam[index, c], hu.shape, scale, float(prediction.probabilities[index, c]),
                         threshold, viewer.cam_below_threshold)
    return None if values is None else values * body_mask(hu)


def no_cam_reason(viewer: ViewerModel, index: int, c: int, cam: np.ndarray | None) -> str:
    """Why class ``c``'s thumbnail on slice ``index`` shows no Grad-CAM, in a few words."""
    if cam is not None:
        return "Grad-CAM blank"
    if not viewer.flags_shown:  # a series outside the intended use shows no flags, so no map either
        return "no Grad-CAM: outside intended use"
    if viewer.prediction is None or not viewer.prediction.done[index]:
        return "no Grad-CAM: not classified"
    why = viewer.thresholds.not_flagged().get(CLASSES[c])  # "under threshold" read as measured for these
    return f"no Grad-CAM: {why.split(':')[0]}" if why else "no Grad-CAM: under threshold"


# ---------------------------------------------------------------------- text


def class_line(viewer: ViewerModel, c: int, probability: float, flagged: bool, short: bool = False) -> str:
    """'subdural 0.873  threshold 0.420  FLAGGED', or why a class is not flagged; ``short`` names the class
    by its abbreviation ('SDH ...'), for a narrow image where the whole line would be cut short."""
    key = CLASSES[c]
    name = ABBREVIATIONS[key] if short else key
    p = "-" if np.isnan(probability) else f"{probability:.3f}"
    why = viewer.thresholds.not_flagged().get(key)
    if why:
        return f"{name} {p}  not flagged ({why.split(':')[0]})"
    if not viewer.flags_shown:  # each line says why, as the PDF does: "any 0.967" alone reads as under threshold
        return f"{name} {p}  not flagged (outside intended use)"
    return f"{name} {p}  threshold {threshold_text(viewer.thresholds.values[key])}" + ("  FLAGGED" if flagged else "")


def model_lines(viewer: ViewerModel) -> list[str]:
    card, thresholds = viewer.model.card, viewer.thresholds
    return [f"model {card.name} {card.version}", f"thresholds: {thresholds.preset.replace('_', ' ')} preset"]


class _Text:
    """Draws lines with ``painter`` and keeps every string drawn."""

    def __init__(self, painter: QPainter, drawn: list[str]):
        self.painter, self.drawn = painter, drawn

    def line(self, x: float, y: float, text: str, colour: QColor = TEXT, width: float | None = None,
             align=Qt.AlignmentFlag.AlignLeft, box: QColor | None = None) -> float:
        """``text`` with its top at ``y`` (elided to ``width``); returns the next line's top."""
        metrics = QFontMetricsF(self.painter.font())
        if width is not None:
            text = metrics.elidedText(text, Qt.TextElideMode.ElideRight, width)
        w, h = metrics.horizontalAdvance(text), metrics.height()
        left = x - w if align == Qt.AlignmentFlag.AlignRight else x
        if box is not None:
            self.painter.fillRect(QRectF(left - 2, y, w + 4, h), box)
        self.painter.setPen(colour)
        self.painter.drawText(QRectF(left, y, w + 1, h), int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop), text)
        self.drawn.append(text)
        return y + h

    def paragraph(self, x: float, y: float, width: float, text: str, colour: QColor = TEXT,
                  box: QColor | None = None) -> float:
        """``text`` wrapped at word boundaries inside ``width``; returns the next line's top."""
        rect = self.measure(width, text)
        if box is not None:
            self.painter.fillRect(QRectF(x - 2, y, rect.width() + 4, rect.height()), box)
        flags = int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop | Qt.TextFlag.TextWordWrap)
        self.painter.setPen(colour)
        self.painter.drawText(QRectF(x, y, width, rect.height()), flags, text)
        self.drawn.append(text)
        return y + rect.height()

    def measure(self, width: float, text: str) -> QRectF:
        flags = int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop | Qt.TextFlag.TextWordWrap)
        return self.painter.boundingRect(QRectF(0, 0, width, 10000), flags, text)


# ---------------------------------------------------------------------- the slice PNG


PNG_MIN_SIDE = 512  # a CT slice's usual matrix: smaller images are scaled up to it for legible text
PNG_MAX_SIDE = 4096


def png_scale(rows: int, columns: int) -> int:
    """The whole factor a slice is scaled by in the PNG: 1 from ``PNG_MIN_SIDE`` up (2 for 256, 3 for 200), and
    never past ``PNG_MAX_SIDE`` on the long side (a 1 x 512 image is not made 512 x 262,144)."""
    wanted = math.ceil(PNG_MIN_SIDE / max(1, min(rows, columns)))
    return max(1, min(wanted, PNG_MAX_SIDE // max(1, rows, columns)))


def square_millimetres(image: QImage, aspect: float) -> QImage:
    """``image`` stretched so that a millimetre is as long across as down, for pixels ``aspect`` times wider than
    tall (non-square PixelSpacing: rows 0.98 mm apart and columns 0.49 mm exported the head squashed 2:1)."""
    if abs(aspect - 1.0) < 1e-3:
        return image
    w, h = (image.width() * aspect, image.height()) if aspect > 1 else (image.width(), image.height() / aspect)
    shrink = min(1.0, PNG_MAX_SIDE / max(w, h))
    return image.scaled(max(1, round(w * shrink)), max(1, round(h * shrink)), Qt.AspectRatioMode.IgnoreAspectRatio,
                        Qt.TransformationMode.SmoothTransformation)


def render_slice(viewer: ViewerModel, lut: np.ndarray | None = None,
                 opacity: float = OVERLAY_OPACITY) -> tuple[QImage, list[str]]:
    """The current slice with its overlay, orientation letters and text burned in, and the strings drawn: at rows x
    columns, or a whole multiple of it (smoothly scaled) that is at least ``PNG_MIN_SIDE`` on its short side, then
    stretched to square millimetres where the pixels are not square. The text's size follows
    the image's, with a floor to stay legible: on a 256 px slice at its own size it covered about 40% of it."""
    hu = current_slice(viewer)
    overlay = viewer.overlay()  # drawn and described below: computed once
    rgb = blend(windowed_rgb(viewer, hu), overlay, default_lut() if lut is None else lut, opacity)
    factor = png_scale(*rgb.shape[:2])
    image = to_qimage(rgb)
    if factor > 1:
        image = image.scaled(image.width() * factor, image.height() * factor, Qt.AspectRatioMode.IgnoreAspectRatio,
                             Qt.TransformationMode.SmoothTransformation)
    image = square_millimetres(image, viewer.series.pixel_aspect)
    drawn: list[str] = []
    h, w = image.height(), image.width()
    painter = QPainter(image)
    try:
        font = QFont("DejaVu Sans")
        font.setPixelSize(max(8, round(min(h, w) / 42)))
        painter.setFont(font)
        text, shade = _Text(painter, drawn), QColor(0, 0, 0, 150)
        margin, line_h = 3.0, QFontMetricsF(font).height()
        y = margin
        left = viewer.corner_lines()
        for line in left:
            y = text.line(margin, y, line, width=w - 2 * margin, box=shade)
        right = model_lines(viewer) + ([f"Grad-CAM: {CLASSES[viewer.cam_class_index()]}"
                                        + (f" ({CAM_BLANK_NOTE})" if cam_blank(overlay) else "")]
                                       if overlay is not None else [])
        metrics = QFontMetricsF(font)
        widest = [max((metrics.horizontalAdvance(t) for t in lines), default=0.0) for lines in (left, right)]
        y = margin if sum(widest) + 3 * margin <= w else y  # side by side, or under each other on a narrow image
        for line in right:
            y = text.line(w - margin, y, line, align=Qt.AlignmentFlag.AlignRight, box=shade)
        top_text_end = max(y, margin + line_h * len(left))
        prediction, flags = viewer.prediction, viewer.slice_flags()
        rows = []
        if prediction is not None and prediction.done[viewer.index]:
            for c in range(len(CLASSES)):
                flagged, probability = bool(flags[viewer.index, c]), float(prediction.probabilities[viewer.index, c])
                line = class_line(viewer, c, probability, flagged)
                if metrics.horizontalAdvance(line) > w - 2 * margin:  # "FLAGGED" must not be cut off the end
                    line = class_line(viewer, c, probability, flagged, short=True)
                rows.append((line, FLAG_RED if flagged else TEXT))
        else:
            rows.append(("not classified", TEXT))
        bold = QFont(font)
        bold.setBold(True)
        painter.setFont(bold)  # the disclaimer is never cut short: it wraps on a narrow image
        notice_h = text.measure(w - 2 * margin, NOTICE).height()
        painter.setFont(font)
        y = h - margin - line_h * len(rows) - notice_h
        if markers := viewer.orientation_markers():
            painter.setFont(bold)
            _draw_markers(text, markers, w, top_text_end, y, margin)
            painter.setFont(font)
        for line, colour in rows:
            y = text.line(margin, y, line, colour, width=w - 2 * margin, box=shade)
        painter.setFont(bold)
        text.paragraph(margin, y, w - 2 * margin, NOTICE, QColor(255, 210, 60), box=QColor(0, 0, 0, 200))
    finally:
        painter.end()
    return image, drawn


def _draw_markers(text: _Text, markers: dict[str, str], w: float, top: float, bottom: float, margin: float) -> None:
    """The view's orientation letters at the middle of each edge, between the text at the top and at the bottom:
    without them an export of a series with mirrored rows showed the patient's left on the left, unsaid."""
    metrics = QFontMetricsF(text.painter.font())
    line_h = metrics.height()
    middle = (top + bottom - line_h) / 2
    shade = QColor(0, 0, 0, 150)
    text.line(w / 2 - metrics.horizontalAdvance(markers["top"]) / 2, top, markers["top"], MARKER, box=shade)
    text.line(w / 2 - metrics.horizontalAdvance(markers["bottom"]) / 2, bottom - line_h, markers["bottom"], MARKER,
              box=shade)
    text.line(margin, middle, markers["left"], MARKER, box=shade)
    text.line(w - margin, middle, markers["right"], MARKER, align=Qt.AlignmentFlag.AlignRight, box=shade)


def export_png(viewer: ViewerModel, path: Path, lut: np.ndarray | None = None,
               opacity: float = OVERLAY_OPACITY) -> list[str]:
    image, drawn = render_slice(viewer, lut, opacity)
    if not image.save(str(path), "PNG"):
        raise IchViewerError(f"Could not write {path}: check the folder exists and can be written to.")
    return drawn


# ---------------------------------------------------------------------- the study summary


def study_lines(viewer: ViewerModel) -> list[str]:
    study, series, prediction = viewer.study, viewer.series, viewer.prediction
    lines = []
    if viewer.anonymised:
        lines.append("anonymised: patient name, ID, study date and identifiers left out")
    else:
        patient = study.patient
        lines.append(f"patient {patient.name or '(no name)'}  ID {patient.id or '-'}  study date {study.date or '-'}")
    lines.append(f"study: {study.description or '(no description)'};  series: {series.description or '(no description)'}")
    lines.append(f"{len(series)} slices of {series.rows} x {series.columns}; "
                 f"{int(prediction.done.sum())} classified" + (f", {len(prediction.failed)} unreadable" if prediction.failed else "")
                 + ("" if prediction.complete else " (classification not complete)"))
    flagged = viewer.flagged_classes()
    lines.append("flagged: " + (", ".join(flagged) if flagged else "nothing"))
    if viewer.use_check.outside:
        lines.append(viewer.use_check.sentence + ("" if viewer.flags_shown else ": nothing flagged"))
    if not viewer.anonymised:
        lines.append(f"study UID {study.uid}")
    return lines


def class_cell_lines(viewer: ViewerModel, c: int, maxima: np.ndarray, flagged: bool) -> list[str]:
    name, thresholds = CLASSES[c], viewer.thresholds
    worst = viewer.worst_slice(name)
    lines = [name, "FLAGGED" if flagged else "not flagged"]
    lines.append("maximum -" if worst is None or np.isnan(maxima[c]) else
                 f"maximum {maxima[c]:.3f} on slice {worst + 1} of {len(viewer.series)}")
    why = thresholds.not_flagged().get(name)
    if why:
        lines.append(f"not flagged: {why}")
    elif not viewer.flags_shown:
        lines.append(f"threshold {threshold_text(thresholds.values[name])}; outside the intended use: not flagged")
    else:
        lines.append(f"threshold {threshold_text(thresholds.values[name])} ({thresholds.preset.replace('_', ' ')})")
        ranges = viewer.flagged_ranges(name)
        if ranges:
            runs = ", ".join(f"{a + 1}" if a == b else f"{a + 1}-{b + 1}" for a, b in ranges[:4])
            lines.append(f"flagged slices {runs}" + (" ..." if len(ranges) > 4 else ""))
    return lines


def draw_summary(painter: QPainter, page: QRectF, viewer: ViewerModel, lut: np.ndarray | None = None,
                 opacity: float = OVERLAY_OPACITY) -> list[str]:
    """The one-page summary inside ``page`` (device units of ``painter``); returns the strings drawn."""
    if viewer.series is None or viewer.prediction is None or viewer.model is None:
        raise IchViewerError("There is no summary to export yet: open a series and classify it first.")
    lut = default_lut() if lut is None else lut
    drawn: list[str] = []
    text, black, grey = _Text(painter, drawn), QColor(0, 0, 0), QColor(90, 90, 90)
    mm = page.width() / 186.0  # the layout is in millimetres of an A4 page's text width

    def font(size_pt: float, bold: bool = False, family: str = "DejaVu Sans") -> None:
        f = QFont(family)
        f.setPixelSize(max(1, round(size_pt * 0.3528 * mm)))  # 1 pt = 0.3528 mm
        f.setBold(bold)
        painter.setFont(f)

    x, y, width = page.left(), page.top(), page.width()
    font(15, True)
    y = text.line(x, y, "ICH Viewer: study summary", black)
    font(10, True)
    y = text.line(x, y + 1 * mm, NOTICE, NOTICE_RED) + 2 * mm
    font(8.5)
    for line in study_lines(viewer):
        y = text.line(x, y, line, black, width)
    card = viewer.model.card
    rule = viewer.thresholds.rule
    y = text.paragraph(x, y + 1.5 * mm, width, f"model {card.name} {card.version}; thresholds: "  # a rule is long:
                       f"{viewer.thresholds.preset.replace('_', ' ')} preset" + (f" ({rule})" if rule else ""), black)
    font(7, family="DejaVu Sans Mono")
    y = text.line(x, y, f"model SHA-256 {viewer.model.sha256}", grey, width)
    font(8.5)
    window = "model view (three windows)" if viewer.composite else str(viewer.window)
    y = text.line(x, y, f"thumbnails: each class's most probable slice, {window}, with that class's Grad-CAM where "
                        "it is shown in the viewer", grey, width) + 3 * mm

    maxima, flags = viewer.maxima(), viewer.study_flags()
    maxima = np.full(len(CLASSES), np.nan) if maxima is None else maxima
    columns, gap = 2, 6 * mm
    cell_w = (width - gap) / columns
    thumb = min(48 * mm, (page.bottom() - y - 16 * mm) / 3 - 4 * mm)
    for c in range(len(CLASSES)):
        cx, cy = x + (c % columns) * (cell_w + gap), y + (c // columns) * (thumb + 4 * mm)
        worst = viewer.worst_slice(CLASSES[c])
        target = QRectF(cx, cy, thumb, thumb)
        painter.fillRect(target, QColor(0, 0, 0))
        if worst is not None:
            try:
                hu = current_slice(viewer, worst)
            except IchViewerError:
                hu = None
            if hu is not None:
                cam = class_cam(viewer, worst, c, hu)
                image = square_millimetres(to_qimage(blend(windowed_rgb(viewer, hu), cam, lut, opacity)),
                                           viewer.series.pixel_aspect)
                scaled = image.size().scaled(round(thumb), round(thumb), Qt.AspectRatioMode.KeepAspectRatio)
                painter.drawImage(QRectF(cx + (thumb - scaled.width()) / 2, cy + (thumb - scaled.height()) / 2,
                                         scaled.width(), scaled.height()), image)
                font(6.5)
                caption = [f"slice {worst + 1}"] + ([] if cam is not None and not cam_blank(cam) else
                                                    [no_cam_reason(viewer, worst, c, cam)])
                for i, line in enumerate(caption):  # a line each: the thumbnail is narrow; on a dark box, as a
                    # MONOCHROME1 slice's air is white
                    text.line(cx + 1 * mm, cy + thumb - 4 * mm * (len(caption) - i), line, QColor(230, 230, 230),
                              thumb - 2 * mm, box=QColor(0, 0, 0, 170))
        tx, ty, tw = cx + thumb + 3 * mm, cy, cell_w - thumb - 3 * mm
        for i, line in enumerate(class_cell_lines(viewer, c, maxima, bool(flags[c]))):
            font(10 if i < 2 else 8, bold=i < 2)
            colour = NOTICE_RED if i == 1 and flags[c] else black if i < 3 else grey
            ty = text.paragraph(tx, ty, tw, line, colour) + (0.8 * mm if i == 1 else 0)
    font(7.5)
    bottom = page.bottom() - 12 * mm
    text.paragraph(x, bottom, width, f"ICH Viewer {ich_viewer.__version__}, {date.today().isoformat()}. Probabilities "
                   "are the model's on each slice; thresholds and their read-outs come from the model card's "
                   "validation patients" + (" and this site's calibration on its normal studies." if
                                             viewer.thresholds.preset in viewer.thresholds.extra else "."), grey)
    font(9, True)
    text.line(x, bottom + 7 * mm, NOTICE, NOTICE_RED, width)
    return drawn


def write_summary_pdf(viewer: ViewerModel, path: Path, lut: np.ndarray | None = None,
                      opacity: float = OVERLAY_OPACITY) -> list[str]:
    """The summary as a one-page A4 PDF made by Qt's QPdfWriter; returns the strings drawn."""
    if viewer.series is None or viewer.prediction is None:  # before the file is created
        raise IchViewerError("There is no summary to export yet: open a series and classify it first.")
    writer = QPdfWriter(str(path))
    writer.setPageSize(QPageSize(QPageSize.PageSizeId.A4))
    writer.setPageMargins(QMarginsF(12, 12, 12, 12), QPageLayout.Unit.Millimeter)
    writer.setResolution(300)
    writer.setTitle("ICH Viewer study summary")
    writer.setCreator(f"ICH Viewer {ich_viewer.__version__}")
    painter = QPainter()
    if not painter.begin(writer):
        raise IchViewerError(f"Could not write {path}: check the folder exists and can be written to.")
    try:
        page = writer.pageLayout().paintRectPixels(writer.resolution())
        return draw_summary(painter, QRectF(0, 0, page.width(), page.height()), viewer, lut, opacity)
    finally:
        painter.end()


def summary_image(viewer: ViewerModel, dpi: int = 100, lut: np.ndarray | None = None) -> tuple[QImage, list[str]]:
    """The same page drawn into an image (A4 at ``dpi``, 12 mm margins), to look at."""
    px = dpi / 25.4
    image = QImage(round(210 * px), round(297 * px), QImage.Format.Format_RGB888)
    image.fill(QColor(255, 255, 255))
    painter = QPainter(image)
    try:
        drawn = draw_summary(painter, QRectF(12 * px, 12 * px, 186 * px, 273 * px), viewer, lut)
    finally:
        painter.end()
    return image, drawn
