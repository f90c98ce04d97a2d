"""``ich-viewer``: the GUI with no sub-command, headless tools with one.

    ich-viewer [PATH ...] [--demo]        open the viewer (on files/folders, or on the demo phantom)
    ich-viewer --selftest                 check this installation offline and offscreen (exit 0: it works)
    ich-viewer phantom OUT [--seed N ...] write a synthetic head-CT study with chosen subtypes
    ich-viewer info PATH ...              list the studies and series found, and skipped files
    ich-viewer triage PATH ... [--out F]  run the model over every study, per-slice CSV + JSON summary
    ich-viewer calibrate FOLDER ...       set a site's thresholds from studies known to be normal
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shlex
import sys
from pathlib import Path

from ich_viewer.core import decoder_process
from ich_viewer.core.errors import IchViewerError, escaped_controls, terminal_safe

SUBCOMMANDS = ("phantom", "info", "triage", "calibrate")


def build_parser(preset_help: str = "threshold preset from the model card (default: the card's default)"
                 ) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ich-viewer",
        description="Head-CT viewer with a local hemorrhage model (teaching and demonstration; not for diagnosis).",
    )
    sub = parser.add_subparsers(dest="command")
    phantom = sub.add_parser("phantom", help="write a synthetic head-CT study (DICOM + RSNA-format labels.csv)")
    phantom.add_argument("out", type=Path, help="new or empty folder to write into")
    phantom.add_argument("--seed", type=int, default=0, help="random seed; the same seed writes the same study")
    phantom.add_argument("--subtypes", default="epidural,intraparenchymal,intraventricular,subarachnoid,subdural",
                         help="comma-separated hemorrhage subtypes to include ('' for none)")
    phantom.add_argument("--slices", type=int, default=36, help="number of axial slices, skull base to vertex")
    phantom.add_argument("--size", type=int, default=512, help="matrix size in pixels (square)")
    phantom.add_argument("--thickness", type=float, default=5.0, help="slice thickness and spacing, mm")
    phantom.add_argument("--storage", choices=("int16", "uint12"), default="int16",
                         help="pixel storage: signed 16-bit, or unsigned 12-bit with intercept -1024")
    info = sub.add_parser("info", help="list studies, series and skipped files under the paths")
    info.add_argument("paths", nargs="+", type=Path)
    info.add_argument("--anonymise", action="store_true",
                      help="number studies, series and skipped files instead of naming their UIDs, dates and paths")
    triage = sub.add_parser("triage", help="run the model over every study under the paths (no GUI, no network)",
                            description="Exit codes: 0 done, 2 nothing usable found or model refused, 1 other error.")
    triage.add_argument("paths", nargs="+", type=Path, help="files, folders, zip archives or DICOMDIRs")
    triage.add_argument("--model", type=Path, help="a contract ONNX model (default: the bundled model)")
    triage.add_argument("--preset", help=preset_help.replace("%", "%%"))
    triage.add_argument("--out", type=Path, help="per-slice CSV (default: standard output if --json is not given)")
    triage.add_argument("--json", type=Path, help="study summary JSON")
    triage.add_argument("--anonymise", action="store_true", help="leave patient name/ID and file paths out")
    triage.add_argument("--flag-outside-intended-use", action="store_true",
                        help="flag series outside the model's intended use too (contrast-enhanced, not a head, bone "
                             "reconstruction); by default their probabilities are written but nothing is flagged")
    calibrate = sub.add_parser(
        "calibrate", help="set per-class thresholds on studies known to be normal from this site's scanners",
        description="Runs the model over every slice of the normal studies under FOLDER (series outside the intended "
                    "use are left out) and saves, in your settings and for this model only, a preset whose thresholds "
                    "flag at most --max-flag-rate of those slices per class, never below the card's default preset. "
                    "The model file is never changed. Use it with 'ich-viewer triage --preset NAME' or in the viewer's "
                    "thresholds panel. Exit codes: 0 saved, 2 refused (fewer than 100 slices from 3 studies, or a bad "
                    "option), 1 other error.")
    calibrate.add_argument("paths", nargs="+", type=Path, metavar="FOLDER",
                           help="folders, files, zip archives or DICOMDIRs of normal studies")
    calibrate.add_argument("--max-flag-rate", type=float, default=0.05,
                           help="the largest fraction of these normal slices a class may flag (default 0.05)")
    calibrate.add_argument("--name", default="site", help="the preset's name (default: site)")
    calibrate.add_argument("--model", type=Path, help="a contract ONNX model (default: the bundled model)")
    return parser


def _seconds(text: str) -> float:
    """A time the window can wait: "nan", "inf" and negative numbers would keep it open for ever, or say so."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 <= value <= 86_400:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds from 0 to 86400 (a day)")
    return value


def build_gui_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ich-viewer", epilog=f"Sub-commands: {', '.join(SUBCOMMANDS)} (see 'ich-viewer phantom --help').")
    parser.add_argument("paths", nargs="*", type=Path, help="files, folders, zip archives or DICOMDIRs to open")
    parser.add_argument("--demo", action="store_true", help="open a synthetic phantom study with every subtype")
    parser.add_argument("--selftest", action="store_true",
                        help="check this installation (study, model, decoders, window) offscreen and offline; exit 0 "
                             "only if every step passed")
    parser.add_argument("--quit-after", type=_seconds, metavar="SECONDS",
                        help="close the window by itself after SECONDS (a smoke test of the installation)")
    parser.add_argument("--screenshot", type=Path, metavar="PNG",
                        help="with --quit-after: save the window as a PNG just before it closes")
    # Qt's own options for a style (a dark or high-contrast one): passed on to Qt, as any Qt program takes them
    parser.add_argument("-style", metavar="STYLE", help="Qt's widget style, e.g. fusion (as QT_STYLE_OVERRIDE)")
    parser.add_argument("-stylesheet", metavar="QSS", type=Path, help="a Qt style sheet file applied to the window")
    return parser


def run_phantom(args: argparse.Namespace) -> int:
    from ich_viewer.core.contract import CLASSES
    from ich_viewer.core.phantom import make_phantom, write_phantom_study

    subtypes = [s.strip() for s in args.subtypes.split(",") if s.strip()]
    series = make_phantom(seed=args.seed, subtypes=subtypes, n_slices=args.slices, size=args.size,
                          slice_thickness=args.thickness)
    paths = write_phantom_study(series, args.out, storage=args.storage)
    positives = {name: int(series.labels[:, i].sum()) for i, name in enumerate(CLASSES)}
    print(f"wrote {len(paths)} slices and labels.csv to {args.out}")
    print("positive slices: " + ", ".join(f"{k} {v}" for k, v in positives.items()))
    return 0


def run_info(args: argparse.Namespace) -> int:
    import ich_viewer

    result = ich_viewer.load(args.paths)
    anonymise = args.anonymise
    for s, study in enumerate(result.studies, 1):
        # every text from the files as one line: a UID holding a newline forged a line of output
        named = f"study {s}" if anonymise else f"study {escaped_controls(study.uid)}  date {escaped_controls(study.date) or '-'}"
        print(f"{named}  {escaped_controls(study.description) or '(no description)'}")
        for n, series in enumerate(study.series, 1):
            spacing = series.spacing
            between = f"{spacing[0]:.3g}" if len(series) > 1 else "-"  # one slice: no distance between slices
            print(f"  series {f'{s}.{n}' if anonymise else escaped_controls(series.uid)}: "
                  f"{len(series)} slice{'s' * (len(series) != 1)} "
                  f"{series.rows}x{series.columns}, "
                  f"spacing {between}/{spacing[1]:.3g}/{spacing[2]:.3g} mm, "
                  f"{escaped_controls(series.description) or '(no description)'}")
            for warning in series.geometry.warnings:
                print(f"    warning: {escaped_controls(warning)}")
    for skipped in result.skipped:  # named, for the user who asked; numbered with --anonymise
        print(f"skipped {escaped_controls(str(skipped.anonymous(result.files_found) if anonymise else skipped))}")
    if result.other_files:
        print(result.other_files_note)
    return 0


def run_triage(args: argparse.Namespace) -> int:
    from ich_viewer import triage

    return triage.run(args.paths, args.model, args.preset, args.out, args.json, args.anonymise,
                      flag_outside_use=args.flag_outside_intended_use)


def run_calibrate(args: argparse.Namespace) -> int:
    from ich_viewer.core import site_presets
    from ich_viewer.core.calibration import calibrate
    from ich_viewer.core.results import NOTICE
    from ich_viewer.triage import load_model

    model = load_model(args.model)
    preset, outside = calibrate(args.paths, model, args.max_flag_rate, args.name,
                                on_slices=lambda done, total: sys.stderr.write(f"\rcalibrate: {done}/{total} slices"))
    sys.stderr.write("\n")
    path = site_presets.save(preset, model.sha256, f"{model.card.name} {model.card.version}")
    if outside:
        print(f"{outside} series outside the model's intended use left out", file=sys.stderr)
    print(f"preset {preset.name!r} for {model.card.name} {model.card.version} ({preset.rule}), saved in {path}")
    print(f"{'class':18} {'threshold':>9} {'flags':>7}  ")
    for name, value in preset.thresholds.items():
        floor = f"  (the card's {preset.floor_preset} threshold)" if preset.at_floor[name] else ""
        print(f"{name:18} {value:9.4f} {preset.flag_rates[name]:7.1%}{floor}")
    print(f"use it: ich-viewer triage --preset {shlex.quote(preset.name)} ...")  # "my site" pastes as one word
    print(NOTICE)
    return 0


def _run_command(args: argparse.Namespace) -> int:
    try:
        return {"phantom": run_phantom, "info": run_info, "triage": run_triage,
                "calibrate": run_calibrate}[args.command](args)
    except (IchViewerError, ValueError) as exc:
        print(f"ich-viewer: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - a headless run ends with a message and exit 1, not a traceback
        logging.getLogger("ich_viewer").debug("unexpected error", exc_info=True)
        print(f"ich-viewer: unexpected error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C: one line and the shell's code for it, not a traceback
        print(f"\nich-viewer {args.command}: interrupted", file=sys.stderr)
        return 130


class _TerminalSafe:
    """A text stream that writes control characters from files (an ESC sequence in a description) as escapes."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        return self._stream.write(terminal_safe(text))

    def __getattr__(self, name):  # flush, isatty, encoding...: the stream's own
        return getattr(self._stream, name)


@contextlib.contextmanager
def _terminal_safe_output():
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _TerminalSafe(sys.stdout), _TerminalSafe(sys.stderr)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == [decoder_process.SERVE_FLAG]:  # a frozen build's decoder processes start through here
        return decoder_process.serve()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    while argv[:1] in (["-style"], ["-stylesheet"]) and len(argv) > 2 and argv[2] in SUBCOMMANDS:
        argv = argv[2:]  # Qt's look means nothing to a sub-command: "-style fusion info X" runs info, not the window
    if argv and argv[0] in SUBCOMMANDS:
        if argv[0] == "triage" and {"-h", "--help"} & set(argv):  # only then is the bundled model read for its presets
            from ich_viewer.triage import preset_help

            build_parser(preset_help()).parse_args(argv)
        args = build_parser().parse_args(argv)
        paths = getattr(args, "paths", None) or []  # info, triage and calibrate read paths; phantom writes one
        missing = [p for p in paths if not os.path.lexists(p)]
        if paths and len(missing) == len(paths):  # nothing to read at all: say that, not "no CT images found"
            shown = "" if getattr(args, "anonymise", False) else f": {missing[0]}"
            print(f"ich-viewer: no such file or folder{shown}", file=sys.stderr)
            return 2
        with _terminal_safe_output():
            return _run_command(args)
    args = build_gui_parser().parse_args(argv)
    if args.selftest:
        from ich_viewer import selftest

        return selftest.run()
    from ich_viewer.app import run_gui

    qt_options = [item for flag in ("style", "stylesheet") if getattr(args, flag) is not None
                  for item in (f"-{flag}", str(getattr(args, flag)))]
    return run_gui(args.paths, demo=args.demo, quit_after=args.quit_after, screenshot=args.screenshot,
                   qt_options=qt_options)


if __name__ == "__main__":
    sys.exit(main())
