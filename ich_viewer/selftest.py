"""``ich-viewer --selftest``: does this installation work, with no network, no GPU and no display?

One line per step, exit 0 only if every step passed. Run from a checkout or from the frozen bundle (issue 16):

1. a socket guard (an audit hook that refuses every socket: the run must not need one);
2. a synthetic phantom study written to a temporary folder and loaded back;
3. the bundled model opened (its SHA-256 checked against the manifest) and run over the study, the
   outputs checked against the contract;
4. every pixel-data plugin the build's source install had still available (GDCM, pylibjpeg's, pyjpegls,
   Pillow, the viewer's imagecodecs plugin), and one small file per compressed transfer syntax the viewer must
   read (JPEG Lossless, JPEG 2000, JPEG-LS, RLE) decoded through the same decoder processes as a study, pixel
   for pixel against the slice they encode;
5. the real window, offscreen, on the study: one frame with its Grad-CAM overlay exported to a PNG.

The compressed files ship in ``resources/selftest`` (written by ``packaging/build.sh`` with
:func:`write_compressed_samples`); a checkout without them writes them into the temporary folder first.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ich_viewer.paths import models_dir, resources_dir

SAMPLES = {  # file name -> transfer syntax UID
    "jpeg-lossless.dcm": "1.2.840.10008.1.2.4.57",
    "jpeg-2000.dcm": "1.2.840.10008.1.2.4.90",
    "jpeg-ls.dcm": "1.2.840.10008.1.2.4.80",
    "rle.dcm": "1.2.840.10008.1.2.5",
}
EXPECTED = "expected.json"  # SHA-256 of the slice's int16 HU, which every sample must decode to; decoders
BASELINE_JPEG = "1.2.840.10008.1.2.4.50"  # no sample (lossy), but its decoders are checked like the others'


class StepFailed(Exception):
    pass


def _hu_digest(hu: np.ndarray) -> str:
    return hashlib.sha256(np.rint(hu).astype("<i2").tobytes()).hexdigest()


def write_compressed_samples(folder: Path) -> None:
    """One phantom slice (12-bit unsigned storage, as most scanners write) in each compressed syntax."""
    import imagecodecs
    import pydicom
    from pydicom.encaps import encapsulate
    from pydicom.uid import UID

    from ich_viewer.core.phantom import make_phantom, write_phantom_study

    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        source = write_phantom_study(make_phantom(seed=7, subtypes=["subdural"], n_slices=3, size=128),
                                     Path(scratch) / "study", storage="uint12")[1]
        original = pydicom.dcmread(source)
        pixels = original.pixel_array
        for name, uid in SAMPLES.items():
            ds = pydicom.dcmread(source)
            if name == "jpeg-lossless.dcm":  # pydicom has no JPEG Lossless encoder; imagecodecs' uses predictor 6
                ds.PixelData = encapsulate([imagecodecs.ljpeg_encode(pixels, bitspersample=int(ds.BitsStored))])
                ds["PixelData"].VR = "OB"
                ds.file_meta.TransferSyntaxUID = UID(uid)
            else:
                ds.compress(UID(uid))
            ds.save_as(folder / name, enforce_file_format=True)
        hu = pixels * float(original.RescaleSlope) + float(original.RescaleIntercept)
    (folder / EXPECTED).write_text(json.dumps({"hu_sha256": _hu_digest(hu), "shape": list(hu.shape),
                                               "decoders": available_decoders()}, indent=1) + "\n")


def available_decoders() -> dict[str, list[str]]:
    """pydicom's usable pixel-data plugins per transfer syntax here, with the viewer's imagecodecs plugin."""
    from pydicom.pixels.decoders.base import get_decoder

    from ich_viewer.core import imagecodecs_plugin

    imagecodecs_plugin.register()
    return {uid: sorted(get_decoder(uid).available_plugins) for uid in [*SAMPLES.values(), BASELINE_JPEG]}


def _socket_guard() -> list[str]:
    """Refuse and record every socket this process tries to open (PEP 578 audit hook; cannot be removed)."""
    attempts: list[str] = []

    def hook(event: str, args) -> None:
        if event.startswith("socket.") and event != "socket.sethostname":
            attempts.append(event)
            raise OSError("ich-viewer --selftest: network access refused")

    sys.addaudithook(hook)
    return attempts


def _check(condition: bool, why: str) -> None:
    if not condition:
        raise StepFailed(why)


def _study(work: Path) -> str:
    from ich_viewer.core.phantom import make_phantom, write_phantom_study

    write_phantom_study(make_phantom(seed=2019, n_slices=12, size=256), work / "phantom")
    return "12 slices of 256x256 with every subtype"


def _load(work: Path, state: dict) -> str:
    import ich_viewer

    result = ich_viewer.load([work / "phantom"])
    _check(len(result.studies) == 1 and len(result.studies[0].series) == 1, "expected one study with one series")
    _check(not result.skipped, f"{len(result.skipped)} file(s) skipped")
    state["study"], state["series"] = result.studies[0], result.studies[0].series[0]
    _check(len(state["series"]) == 12, f"{len(state['series'])} slices instead of 12")
    return f"{len(state['series'])} slices"


def _model(state: dict) -> str:
    from ich_viewer.core.model import IchModel

    state["model"] = model = IchModel.bundled(models_dir())  # raises when the SHA-256 does not match the manifest
    return f"{model.card.name} {model.card.version}, SHA-256 {model.sha256[:12]}... verified"


def _inference(state: dict) -> str:
    from ich_viewer.core.contract import CLASSES
    from ich_viewer.core.inference import predict_series
    from ich_viewer.core.volume import read_volume

    _check("model" in state and "series" in state, "no model or no study to classify")
    series, model = state["series"], state["model"]
    hu = read_volume(series)
    started = time.perf_counter()
    prediction = predict_series(model, hu)
    seconds = time.perf_counter() - started
    p = prediction.probabilities
    _check(p.shape == (len(series), len(CLASSES)), f"probabilities of shape {p.shape}")
    _check(bool(np.isfinite(p).all() and (p >= 0).all() and (p <= 1).all()), "probabilities outside [0, 1]")
    _check(prediction.complete and not prediction.failed, "not every slice was classified")
    cam = prediction.cam
    _check(cam.ndim == 4 and cam.shape[:2] == p.shape and bool(np.isfinite(cam).all()) and bool(cam.any()),
           f"Grad-CAM maps of shape {cam.shape}, or empty")
    return f"{len(series)} slices in {seconds:.2f} s, max P(any) {p[:, 0].max():.2f}"


def _decode(work: Path) -> list[tuple[str, str]]:
    import ich_viewer
    from ich_viewer.core.volume import read_volume

    shipped = resources_dir() / "selftest"
    folder = shipped if (shipped / EXPECTED).is_file() else work / "compressed"
    if folder != shipped:
        write_compressed_samples(folder)
    expected = json.loads((folder / EXPECTED).read_text())
    found = available_decoders()  # a frozen build must have every decoder the source install it came from had
    missing = {uid: sorted(set(names) - set(found.get(uid, []))) for uid, names in expected["decoders"].items()}
    _check(not any(missing.values()), "decoders missing: " + "; ".join(f"{uid}: {', '.join(names)}"
                                                                       for uid, names in missing.items() if names))
    from ich_viewer.core.dicom_pixels import decoder_plugin

    # the one each syntax is decoded with, then the others installed (gdcm among them, never chosen for pixels)
    lines = [("decoders", "; ".join(f"{uid}: {decoder_plugin(uid) or 'pydicom'} (installed: {', '.join(names)})"
                                    for uid, names in found.items()))]
    for name, uid in SAMPLES.items():
        result = ich_viewer.load([folder / name])
        _check(not result.skipped, f"{name}: {result.skipped[0].reason if result.skipped else ''}")
        hu = read_volume(result.studies[0].series[0])[0]
        _check(list(hu.shape) == expected["shape"] and _hu_digest(hu) == expected["hu_sha256"],
               f"{name} ({uid}) decoded to different pixels")
        lines.append((f"decode {name[:-4]}", f"{uid}, {hu.shape[0]}x{hu.shape[1]} pixel for pixel"))
    return lines


def _render(work: Path, state: dict) -> str:
    os.environ["QT_QPA_PLATFORM"] = "offscreen"
    from PySide6.QtCore import QSettings, qInstallMessageHandler
    from PySide6.QtGui import QImage
    from PySide6.QtWidgets import QApplication

    from ich_viewer.gui.export import export_png, png_scale
    from ich_viewer.gui.main_window import MainWindow

    # Qt's own notes ("Detected locale C", the offscreen plugin's size hints) would break one line per step
    qInstallMessageHandler(lambda _mode, _context, message: logging.getLogger("qt").debug("%s", message))
    app = QApplication.instance() or QApplication(sys.argv[:1])
    settings = QSettings(str(work / "settings.ini"), QSettings.Format.IniFormat)  # not the user's settings
    window = MainWindow(settings=settings, model=state["model"], load_bundled=False)
    window.resize(1280, 800)
    window.show()
    window.open_paths([work / "phantom"])
    viewer = window.viewer
    deadline = time.monotonic() + 120
    while not (viewer.prediction is not None and viewer.prediction.complete and window.classify is None):
        app.processEvents()
        time.sleep(0.01)
        _check(time.monotonic() < deadline, "the window did not classify the study within 120 s")
    worst = int(viewer.prediction.probabilities[:, 0].argmax())
    viewer.go_to(worst)
    viewer.set_cam(cls="any", enabled=True, below_threshold=True)
    app.processEvents()
    _check(viewer.overlay() is not None, "no Grad-CAM overlay on the most suspicious slice")
    png = work / "frame.png"
    export_png(viewer, png)
    image = QImage(str(png))
    window.close()
    settings.sync()  # now, inside the temporary folder: a later sync would create it again after its removal
    factor = png_scale(viewer.series.rows, viewer.series.columns)
    _check(not image.isNull() and (image.height(), image.width()) == (viewer.series.rows * factor,
                                                                      viewer.series.columns * factor),
           "the exported PNG could not be read back at the slice's size")
    return f"slice {worst + 1} with its Grad-CAM ('any') on Qt's {app.platformName()} platform, {png.stat().st_size} bytes"


def run(out=sys.stdout) -> int:
    """Every step in order; a failed step is reported and the rest still run where they can."""
    failures = 0

    def report(step: str, detail: str, ok: bool = True) -> None:
        nonlocal failures
        failures += not ok
        print(f"selftest: {step}: {'ok' if ok else 'FAILED'} ({detail})", file=out, flush=True)

    attempts = _socket_guard()
    report("socket guard", "every socket refused for this run")
    state: dict = {}
    with tempfile.TemporaryDirectory(prefix="ich-viewer-selftest-") as scratch:
        work = Path(scratch)
        steps = [("phantom study", lambda: _study(work)), ("load", lambda: _load(work, state)),
                 ("model", lambda: _model(state)), ("inference", lambda: _inference(state)),
                 ("decode", lambda: _decode(work))]
        for step, action in steps:
            try:
                said = action()  # its detail, or (decoding) a (line, detail) pair per plugin list and file
                for line, detail in ([(step, said)] if isinstance(said, str) else said):
                    report(line, detail)
            except Exception as exc:  # noqa: BLE001 - each step says what failed; nothing is raised past here
                report(step, f"{type(exc).__name__}: {exc}", ok=False)
        if "model" in state:
            try:
                report("render", _render(work, state))
            except Exception as exc:  # noqa: BLE001
                report("render", f"{type(exc).__name__}: {exc}", ok=False)
        else:
            report("render", "no model to classify with", ok=False)
    report("network", "no socket was opened" if not attempts else f"{len(attempts)} socket attempt(s) refused",
           ok=not attempts)
    print(f"selftest: {'passed' if not failures else f'{failures} step(s) failed'}", file=out, flush=True)
    return 0 if not failures else 1
