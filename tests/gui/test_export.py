"""PNG and PDF exports, read back: drawn with Qt from the viewer's state at the image's own resolution, with
probabilities, thresholds, model and disclaimer; no patient name or ID anywhere when anonymised."""

from __future__ import annotations

import copy
import re
import unicodedata
import zlib

import numpy as np
import pytest
from PySide6.QtCore import QSettings
from PySide6.QtGui import QImage

from ich_viewer.core.contract import ABBREVIATIONS, CLASSES
from ich_viewer.core.phantom import make_phantom, write_phantom_study
from ich_viewer.core.results import NOTICE
from ich_viewer.gui.export import windowed_rgb
from ich_viewer.gui.main_window import MainWindow
from tests.gui.test_main_window import opened
from tests.gui.windows import opened as opened_anew

NAME, PATIENT_ID = "PHANTOM^ICH", "PAT-EXPORT"


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("export") / "study"
    # 200 x 200, not 512: the export's size must come from the image, not from a constant
    write_phantom_study(make_phantom(seed=4, subtypes=["subdural", "intraventricular"], n_slices=10, size=200), root,
                        patient_id=PATIENT_ID)
    return root


@pytest.fixture
def window(qtbot, tmp_path, monkeypatch):
    """The real window with the bundled model (real ONNX Runtime); no site presets from the real user's folder."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    w = MainWindow(settings=QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(w)
    w.show()
    return w


def pdf_text(data: bytes) -> str:
    """The text on a Qt-written PDF, white space dropped: each font's ToUnicode map applied to its glyph codes."""
    objects = {int(n): body for n, body in re.findall(rb"(\d+) 0 obj(.*?)endobj", data, re.S)}

    def stream(body: bytes) -> bytes:
        raw = re.search(rb"stream\r?\n(.*?)\r?\nendstream", body, re.S).group(1)
        return zlib.decompress(raw) if b"/FlateDecode" in body else raw

    fonts = {}
    for name, ref in re.findall(rb"/(F\d+) (\d+) 0 R", data):
        cmap = stream(objects[int(re.search(rb"/ToUnicode (\d+) 0 R", objects[int(ref)]).group(1))])
        table = {}
        for first, last, codes in re.findall(rb"<(\w+)> <(\w+)> \[([^\]]*)\]", cmap):
            for code, uni in zip(range(int(first, 16), int(last, 16) + 1), re.findall(rb"<(\w+)>", codes)):
                table[code] = chr(int(uni, 16))
        fonts[name.decode()] = table
    text = []
    for body in objects.values():
        if b"/Length" in body and b"stream" in body and b"/Subtype /Image" not in body:
            content = stream(body)
            font = None
            for token in re.finditer(rb"/(F\d+) [\d.]+ Tf|<([0-9A-Fa-f]+)> Tj", content):
                if token.group(1):
                    font = fonts.get(token.group(1).decode())
                elif font is not None:
                    text.append(font.get(int(token.group(2), 16), ""))
    return squeeze(unicodedata.normalize("NFKC", "".join(text)))  # Qt maps spaces to tabs; ligatures fi, fl


def squeeze(text: str) -> str:
    return re.sub(r"\s", "", text)


def flagged_slice(window) -> int:
    """The slice where 'any' is most probable (flagged there on this phantom)."""
    viewer = window.viewer
    index = viewer.worst_slice("any")
    assert viewer.slice_flags()[index, 0]
    return index


def test_png_scale_is_whole_and_bounded():
    from ich_viewer.gui.export import png_scale

    assert [png_scale(*shape) for shape in ((512, 512), (256, 256), (200, 200), (768, 512), (1, 512), (3000, 4000))] \
        == [1, 2, 3, 1, 8, 1]


def test_png_is_the_slice_scaled_to_512_px_with_text_and_overlay_burned_in(qtbot, window, study, tmp_path):
    """A 200 px slice is written 3x (600 px): at its own size the burned-in text covered much of it."""
    opened(qtbot, window, study)
    viewer = window.viewer
    viewer.go_to(flagged_slice(window))
    drawn = window.export_png(tmp_path / "slice.png")
    image = QImage(str(tmp_path / "slice.png")).convertToFormat(QImage.Format.Format_RGB888)
    assert (viewer.series.rows, viewer.series.columns) == (200, 200) and (image.height(), image.width()) == (600, 600)
    pixels = np.frombuffer(image.constBits(), np.uint8).reshape(600, image.bytesPerLine())[:, :1800]
    pixels = pixels.reshape(600, 600, 3)[1::3, 1::3]  # each source pixel's centre: the smooth scaling keeps it
    plain = windowed_rgb(viewer, viewer.loader.slice(viewer.index))
    differs = (np.abs(pixels.astype(int) - plain) > 12).any(2)
    assert differs[-6:, :60].mean() > 0.1  # the disclaimer's line, bottom left, over air
    assert differs[:20, -60:].mean() > 0.05  # the model's name, top right (under the corner text)
    overlay = viewer.overlay()  # a flagged slice: its flagged class's Grad-CAM is shown, and is in the pixels
    assert overlay is not None and (overlay > 0.2).sum() > 100
    assert differs[overlay == 0].mean() < 0.2  # outside the Grad-CAM, the text leaves most of the slice to be seen
    assert differs[overlay > 0.2].mean() > 0.9
    assert NOTICE in drawn and any(viewer.model.card.name in line and viewer.model.card.version in line for line in drawn)
    assert any(line.startswith("thresholds: balanced") for line in drawn)
    flags = viewer.slice_flags()[viewer.index]
    for c, name in enumerate(CLASSES):
        line = next(line for line in drawn if line.startswith((f"{name} ", f"{ABBREVIATIONS[name]} ")))
        assert "\u2026" not in line, line  # nothing elided: "FLAGGED" is never cut off
        assert f"{viewer.prediction.probabilities[viewer.index, c]:.3f}" in line
        assert line.endswith("FLAGGED") == bool(flags[c])
    assert any(NAME in line and PATIENT_ID in line for line in drawn)  # shown: the display is not anonymised

    window.actions["anonymise"].trigger()
    drawn = window.export_png(tmp_path / "anonymous.png")
    assert NOTICE in drawn
    assert not any(NAME in line or PATIENT_ID in line or "20260101" in line for line in drawn)


def test_png_of_non_square_or_mirrored_pixels_is_true_to_millimetres_and_says_its_orientation(qtbot, window, tmp_path):
    """An outside tester: a slice whose rows are 1.32 mm apart and columns 0.66 mm was exported squashed 2:1, and an
    export carried no orientation letters, so a series with mirrored rows showed the patient's left on the left
    unsaid. The export is stretched to square millimetres and has the view's letters (top, bottom, left, right)."""
    import pydicom

    from tests.conftest import dicom_testfile

    source = pydicom.dcmread(dicom_testfile("CT_small.dcm"))
    half_rows, mirrored = copy.deepcopy(source), copy.deepcopy(source)  # a shallow copy shares its elements
    pixels = source.pixel_array[::2]
    half_rows.Rows, half_rows.PixelData = pixels.shape[0], pixels.tobytes()
    half_rows.PixelSpacing = [2 * float(source.PixelSpacing[0]), float(source.PixelSpacing[1])]
    mirrored.PixelData = np.ascontiguousarray(source.pixel_array[:, ::-1]).tobytes()
    mirrored.ImageOrientationPatient = [-1, 0, 0, 0, 1, 0]
    for copy_, name in ((half_rows, "half-rows.dcm"), (mirrored, "mirrored.dcm")):  # two series, not one
        copy_.SeriesInstanceUID = copy_.SOPInstanceUID = pydicom.uid.generate_uid()
        copy_.save_as(tmp_path / name)

    def export(name: str) -> tuple[QImage, list[str]]:
        opened_anew(qtbot, window, [tmp_path / name])  # waits for this series, not for the one already open
        drawn = window.export_png(tmp_path / f"{name}.png")
        return QImage(str(tmp_path / f"{name}.png")), drawn

    image, drawn = export("half-rows.dcm")
    series = window.viewer.series
    assert (series.rows, series.columns) == (64, 128)
    mm_across, mm_down = series.columns * series.pixel_spacing[1], series.rows * series.pixel_spacing[0]
    assert image.width() / image.height() == pytest.approx(mm_across / mm_down, rel=0.01)
    assert image.width() >= 512 and image.height() >= 512

    def letters(drawn: list[str]) -> list[str]:
        return [line for line in drawn if line in ("A", "P", "R", "L")]

    assert letters(drawn) == ["A", "P", "R", "L"]  # the standard view: the patient's right on the left
    _, drawn = export("mirrored.dcm")
    assert letters(drawn) == ["A", "P", "L", "R"]


def test_pdf_summary_is_one_page_with_model_disclaimer_and_each_class(qtbot, window, study, tmp_path):
    opened(qtbot, window, study)
    viewer = window.viewer
    viewer.set_class_enabled("epidural", False)  # a class the thresholds do not flag says so
    path = tmp_path / "summary.pdf"
    drawn = window.export_summary_pdf(path)
    data = path.read_bytes()
    assert data.startswith(b"%PDF") and len(re.findall(rb"/Type\s*/Page(?![s\w])", data)) == 1
    assert b"/MediaBox [0 0 595" in data  # A4
    text = pdf_text(data)
    card = viewer.model.card
    for expected in (NOTICE, f"{card.name} {card.version}", viewer.model.sha256, NAME, PATIENT_ID,
                     "not flagged: switched off", *CLASSES):
        assert squeeze(expected) in text, expected
        assert squeeze(expected) in squeeze("".join(drawn)), expected
    worst = viewer.worst_slice("subdural")
    assert f"maximum {viewer.maxima()[CLASSES.index('subdural')]:.3f} on slice {worst + 1} of 10" in drawn
    assert f"threshold {viewer.thresholds.values['any']:.3f} (balanced)" in drawn
    rule = viewer.thresholds.rule  # the preset's whole rule, wrapped, not cut off at the page's width
    assert rule and squeeze(rule) in text

    window.actions["anonymise"].trigger()
    drawn = window.export_summary_pdf(path)
    text = pdf_text(path.read_bytes())
    assert squeeze(NOTICE) in text and squeeze(card.name) in text
    for private in (NAME, PATIENT_ID, "20260101", viewer.study.uid):
        assert squeeze(private) not in text and not any(private in line for line in drawn)


def test_pdf_thumbnails_say_why_a_class_shows_no_grad_cam_in_full(qtbot, window, study, tmp_path):
    """Found by an outside tester: on CQ500-CT-0 (outside the intended use) every thumbnail read "no Grad-CAM:
    under thresh...", cut off, even for classes far above their thresholds."""
    from tests.conftest import dicom_testfile
    from tests.gui.windows import opened as opened_anew  # waits for the new series, not the one already open

    opened(qtbot, window, study)
    window.viewer.set_threshold("subdural", 1.0)
    drawn = window.export_summary_pdf(tmp_path / "under.pdf")
    assert "no Grad-CAM: under threshold" in drawn  # whole, on its own line under "slice N"
    window.viewer.set_class_enabled("epidural", False)  # a second tester: a class not flagged at all says so
    assert "no Grad-CAM: switched off" in window.export_summary_pdf(tmp_path / "off.pdf")
    opened_anew(qtbot, window, [dicom_testfile("CT_small.dcm")])  # its header names an iodinated contrast agent
    assert window.viewer.use_check.outside and not window.viewer.flags_shown
    drawn = window.export_summary_pdf(tmp_path / "outside.pdf")
    assert drawn.count("no Grad-CAM: outside intended use") == len(CLASSES)
    assert not any("under thresh" in line for line in drawn)


def test_the_menus_offer_both_exports(window):
    assert window.actions["Export slice as PNG..."].shortcut().toString() == "Ctrl+E"
    assert window.actions["Export study summary (PDF)..."].isEnabled()
