"""``ich-viewer triage``: the viewer's loader and engine, headless, for folders of studies.

Exit codes: 0 success, 2 nothing usable found (or a model that is refused), 1 any other error.
Never opens a network connection; writes only the files named by --out / --json.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import ich_viewer
from ich_viewer.core import decoder_process, site_presets
from ich_viewer.core.errors import CalibrationError, ModelError, NoImagesFoundError
from ich_viewer.core.inference import predict_series
from ich_viewer.core.model import Cancellation, IchModel
from ich_viewer.core.results import NOTICE, write_csv, write_json
from ich_viewer.core.viewer_model import ViewerModel
from ich_viewer.paths import models_dir


def load_model(path: Path | None) -> IchModel:
    return IchModel(path) if path is not None else IchModel.bundled(models_dir())


def preset_help() -> str:
    """--preset's help: the presets the bundled model's card has (read only when --help is asked for)."""
    try:
        model = load_model(None)
    except ModelError as exc:
        return f"threshold preset from the model's card (the bundled model could not be read: {exc})"
    card = model.card
    try:
        site = list(site_presets.load(model.sha256))
    except CalibrationError:
        site = []
    return (f"threshold preset from the model's card; the bundled model has {', '.join(card.presets)} "
            f"(default: {card.default_preset})"
            + (f", and this site's {', '.join(site)} (ich-viewer calibrate)" if site else ""))


def output_problem(flag: str, path: Path | None, anonymise: bool, inputs: list[Path] = ()) -> str | None:
    """Why ``path`` cannot be written to, in one sentence, or None: checked before any work is done. Triage
    writes only its own files: it never replaces an input or an image (a mistyped ``--out scan.dcm``)."""
    if path is None:
        return None
    if str(path) == "-":
        return f"{flag} - would write a file named '-': leave out --out and --json for the table on standard output."
    shown = "" if anonymise else f" ({path.parent if not path.is_dir() else path})"
    if path.is_dir():
        return f"{flag} names a folder{shown}, not a file: add a file name."
    if not path.parent.is_dir():
        return f"the folder for {flag} does not exist{shown}: create it first or choose another path."
    kind = _users_file_kind(path, inputs)
    if kind:
        named = "" if anonymise else f" ({path})"
        return f"{flag} would overwrite {kind}{named}: choose another file name."
    return _unwritable(flag, path)


def _unwritable(flag: str, path: Path) -> str | None:
    """Whether the file can be opened for writing, found now rather than after the whole run; a file this
    check creates is removed again. A symbolic link is followed to the file it names, as the write will be: the
    link itself stays (removing it left the link's new, empty target behind and the results beside the link)."""
    try:
        target = path.resolve()
    except (RuntimeError, OSError):  # Python 3.11 raises RuntimeError for a loop of links
        return f"{flag} cannot be written (a loop of symbolic links): choose another place."
    existed = target.exists()
    try:
        with open(target, "a"):
            pass
    except OSError as exc:
        return f"{flag} cannot be written ({exc.strerror or type(exc).__name__}): choose another place."
    if not existed:
        target.unlink(missing_ok=True)
    return None


def _users_file_kind(path: Path, inputs: list[Path]) -> str | None:
    """What an existing file at ``path`` is when triage must not replace it: an input, any file in a folder being
    read, a DICOM file, a zip or a DICOMDIR; None for a new file or a previous run's output elsewhere."""
    if not path.is_file():
        return None
    if any(path.resolve() == Path(given).resolve() for given in inputs):
        return "one of the inputs"
    if any(Path(given).is_dir() and path.resolve().is_relative_to(Path(given).resolve()) for given in inputs):
        return "a file in the folder being read"  # the user's own: labels, notes, a report
    if any(Path(given).is_file() and path.resolve().parent == Path(given).resolve().parent for given in inputs):
        return "a file beside an input"  # a slice given alone: its study's labels sit next to it
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return None  # opening it for writing will say why
    if head[128:132] == b"DICM" or path.name.upper() == "DICOMDIR":
        return "a DICOM file"
    if head[:4] == b"PK\x03\x04":
        return "a zip archive"
    return None


def _interruptible(run):
    """``run(cancel)`` on a worker thread, so that Ctrl-C is heard while ONNX Runtime holds this one: Python
    runs its signal handlers only in the main thread, between instructions, and a batch that never ended
    made triage deaf to Ctrl-C. The interrupt cancels the run (mid-batch) and goes on as KeyboardInterrupt.
    It waits on an Event, not on ``Thread.join``: a join interrupted by Ctrl-C can report a running thread as
    ended (CPython's bpo-21822), and leaving it inside ONNX Runtime at exit aborted the process."""
    cancel, outcome, done = Cancellation(), {}, threading.Event()

    def work():
        try:
            outcome["value"] = run(cancel)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread as it is
            outcome["error"] = exc
        finally:
            done.set()

    threading.Thread(target=work, name="triage-inference", daemon=True).start()
    try:
        while not done.wait(0.2):
            pass
    except KeyboardInterrupt:
        cancel.set()
        done.wait(30)  # a cancelled batch ends within moments
        raise
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _one_of_the_files_read(path: Path, loaded) -> bool:
    """Whether ``path`` is, by hard or symbolic link, one of the files the scan found (images, skipped files, a
    study's CSV and TXT): the folder check before the scan sees only names."""
    try:
        target = path.stat()
    except OSError:
        return False
    found = [str(ref.file) for series in loaded.series for ref in series.slices]
    found += [skipped.path for skipped in loaded.skipped] + list(loaded.other_files)
    for name in found:
        try:
            stat = os.stat(name)
        except (OSError, ValueError):  # a zip member, or a file gone since
            continue
        if (stat.st_dev, stat.st_ino) == (target.st_dev, target.st_ino):
            return True
    return False


class _Progress:
    """One updating line on stderr."""

    def __init__(self, total: int, stream):
        self.total, self.done, self.stream, self.t0 = total, 0, stream, time.perf_counter()

    def advance(self, n: int) -> None:
        self.done += n
        rate = self.done / max(time.perf_counter() - self.t0, 1e-9)
        self.stream.write(f"\rtriage: {self.done}/{self.total} slices ({rate:.0f}/s)")
        self.stream.flush()

    def close(self) -> None:
        self.stream.write("\n")


def run(paths: list[Path], model_path: Path | None = None, preset: str | None = None, out: Path | None = None,
        json_path: Path | None = None, anonymise: bool = False, stream=None, flag_outside_use: bool = False) -> int:
    stream = stream or sys.stderr  # looked up per call: tests and callers may swap sys.stderr
    for flag, path in (("--out", out), ("--json", json_path)):  # before the minutes of inference, not after
        problem = output_problem(flag, path, anonymise, paths)
        if problem:
            stream.write(f"ich-viewer triage: {problem}\n")
            return 2
    if out is not None and json_path is not None and out.resolve() == json_path.resolve():
        stream.write("ich-viewer triage: --out and --json name the same file: the summary would replace the "
                     "table. Give each its own file.\n")
        return 2
    decoder_process.prestart()  # while the model loads
    viewer = ViewerModel()  # the window's own state and rules, driven headlessly
    viewer.flag_outside_use = flag_outside_use
    try:
        model = load_model(model_path)
        try:  # the site's presets for this very model (ich-viewer calibrate), after the card's
            site = site_presets.load(model.sha256).values()
        except CalibrationError as exc:  # a damaged settings file costs its presets, not the card's
            stream.write(f"ich-viewer triage: {exc}\n")
            site = ()
        viewer.set_model(model, preset, site)
    except (ModelError, ValueError) as exc:
        stream.write(f"ich-viewer triage: {exc}\n")
        return 2
    try:
        viewer.set_result(ich_viewer.load(paths))
    except NoImagesFoundError as exc:
        stream.write(f"ich-viewer triage: {exc}\n")
        return 2
    loaded = viewer.result
    for flag, path in (("--out", out), ("--json", json_path)):  # the same file by another name: a link
        if path is not None and _one_of_the_files_read(path, loaded):
            named = "" if anonymise else f" ({path})"
            stream.write(f"ich-viewer triage: {flag} would overwrite one of the files being read{named}, through a "
                         "link: choose another file name.\n")
            return 2
    progress = _Progress(sum(len(s) for s in loaded.series), stream)
    results = []
    for study in loaded.studies:
        for series in study.series:
            viewer.open_series(study, series)
            # No screen to stream to: the run's own result goes to the viewer model once, when it ends.
            viewer.finish_prediction(_interruptible(
                lambda cancel: predict_series(viewer.model, viewer.loader, len(series), slabs=viewer.slab_plan(),
                                              on_batch=lambda batch: progress.advance(len(batch.indices)),
                                              cancel=cancel)))
            results.append(viewer.series_result())
    viewer.close_series()
    progress.close()
    viewer.set_anonymised(anonymise)
    rows, payload = viewer.rows(results), viewer.payload(results)
    summaries = payload["studies"]
    try:
        if out is not None:
            write_csv(out, rows)
        if json_path is not None:
            write_json(json_path, payload)
    except OSError as exc:  # checked before the run, but a disk can fill up or go away meanwhile
        stream.write(f"ich-viewer triage: the results could not be written ({exc.strerror or type(exc).__name__})\n")
        return 1
    for number, summary in enumerate(summaries, 1):  # numbered, not named: stderr may end up in a log
        flagged = ", ".join(summary["flagged_classes"]) or "nothing flagged"
        outside = sorted({r for s in summary["series"] for r in s["intended_use"]["reasons"]})
        if outside:  # said plainly, not as a finding
            flagged += f"; {len([s for s in summary['series'] if not s['intended_use']['within']])} series outside " \
                       f"the model's intended use ({', '.join(outside)})" + ("" if flag_outside_use else ", not flagged")
        slices = sum(s["slices"] for s in summary["series"])
        stream.write(f"study {number} of {len(summaries)}: {slices} slice{'s' * (slices != 1)}, {flagged}\n")
    unreadable = sum(len(r.prediction.failed) for r in results)
    if unreadable:
        stream.write(f"{unreadable} slice(s) could not be decoded or classified: marked in the results, never "
                     "flagged\n")
    if loaded.skipped:
        reasons: dict[str, int] = {}
        for s in loaded.skipped:
            reasons[s.reason] = reasons.get(s.reason, 0) + 1
        stream.write(f"skipped {len(loaded.skipped)} file(s): "
                     + "; ".join(f"{n} x {r}" for r, n in sorted(reasons.items(), key=lambda kv: -kv[1])) + "\n")
    if loaded.other_files:
        stream.write(f"{loaded.other_files_note}\n")
    not_flagged = viewer.thresholds.not_flagged()
    if not_flagged:  # "nothing flagged" must not read as "nothing found" for a class that is never flagged
        stream.write("never flagged with this preset, whatever the probability: "
                     + "; ".join(f"{name} ({why})" for name, why in not_flagged.items()) + "\n")
    stream.write(f"{NOTICE}\n")
    if out is None and json_path is None:
        write_csv(sys.stdout, rows)  # nothing named: the per-slice table goes to standard output
    return 0
