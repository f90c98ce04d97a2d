"""python -m training {prepare,pretrain,train,evaluate,export,all,bundle,report} --config RECIPE [--set section.key=value ...]"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time

from training.config import CONFIG_DIR, describe_options, load_config

log = logging.getLogger("training")

STEPS = {
    "prepare": "decode every source into the int16 HU cache at the model's size (parallel, resumable)",
    "pretrain": "self-supervised (SimCLR) pretraining of the trunk on unlabelled slices (an experiment; see pretrain.py)",
    "train": "train on the training patients (resumes from <out>/<name>/checkpoint.pt; torchrun for DDP)",
    "evaluate": "predict the validation patients; write metrics, thresholds, curves, model card and report",
    "export": "write <out>/<name>/model.onnx per the model contract (and an INT8 copy if export.int8)",
    "all": "prepare, train, evaluate and export in one go",
    "bundle": "copy the exported model into resources/models/ (manifest.json) and its report into training/reports/",
    "report": "the bundle's report without bundling: training/reports/<name>/ (a candidate or an experiment)",
}


def _parser() -> argparse.ArgumentParser:
    recipes = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.toml")))
    parser = argparse.ArgumentParser(
        prog="python -m training", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Reproduce the ICH ResNet and export the viewer's ONNX model.\n\nSteps:\n"
        + "\n".join(f"  {k:9s} {v}" for k, v in STEPS.items()),
        epilog=f"Checked-in recipes ({CONFIG_DIR}): {recipes}\n\nConfig options (TOML sections; override with "
               f"--set section.key=value):\n{describe_options()}")
    parser.add_argument("step", choices=list(STEPS))
    parser.add_argument("--config", required=True, help="a recipe name (e.g. ctich_resnet18) or a TOML file")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override one config option (value in TOML syntax); repeatable")
    parser.add_argument("--no-resume", action="store_true", help="train: start again even if a checkpoint exists")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars and train's per-epoch summary line")
    parser.add_argument("--bootstrap", type=int, default=1000, help="evaluate: bootstrap resamples over patients")
    parser.add_argument("--oof", nargs="*", default=[], metavar="RUN",
                        help="evaluate: the recipe's evaluated fold runs; the card's thresholds, curves and figures "
                             "come from their pooled out-of-fold predictions (for a run trained on every patient)")
    parser.add_argument("--compare", nargs="*", default=[], metavar="RECIPE",
                        help="bundle: other evaluated recipes (or run folders) to compare with in the report")
    parser.add_argument("--cross-validation", nargs="*", default=[], metavar="RUN",
                        help="bundle: this recipe's evaluated runs on the other folds (run folders or recipes); the report "
                             "adds per-fold and pooled out-of-fold AUCs")
    parser.add_argument("--leave-one-out", nargs="*", default=[], metavar="RUN",
                        help="bundle: this recipe's evaluated runs without one hospital each (split.held_out_source); "
                             "the report and the card lead with them")
    return parser


def _configure_logging() -> None:
    """The CLI's one logging setup: plain messages on stderr, training's from INFO and other libraries'
    from WARNING (what Python shows unconfigured). Left alone where a caller configured logging already."""
    if logging.getLogger().handlers:
        return
    logging.basicConfig(format="%(message)s", stream=sys.stderr)
    log.setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _configure_logging()
    try:
        config = load_config(args.config, args.overrides)
    except (FileNotFoundError, ValueError) as exc:
        log.error("error: %s", exc)
        return 2
    steps = ["prepare", "train", "evaluate", "export"] if args.step == "all" else [args.step]
    for step in steps:
        try:
            _run_step(step, config, args)
        except (FileNotFoundError, ValueError) as exc:  # a missing step or a wrong option: one sentence, not a traceback
            log.debug("%s failed", step, exc_info=True)
            log.error("error: %s: %s", step, exc)
            return 2
        except KeyboardInterrupt:
            log.error("%s: interrupted; `train` resumes from the run's last saved epoch", step)
            return 130
        except Exception as exc:  # noqa: BLE001 - the last resort: a sentence, exit 1; the traceback at --debug level
            log.debug("%s failed", step, exc_info=True)
            log.error("error: %s: unexpected %s: %s", step, type(exc).__name__, exc)
            return 1
    return 0


def _run_step(step: str, config, args) -> None:
    t0 = time.perf_counter()
    if step == "prepare":
        from training.data.cache import prepare
        cache = prepare(config, progress=not args.no_progress)
        result = f"{len(cache.records)} slices in {cache.root}"
    elif step == "pretrain":
        from training.pretrain import pretrain
        result = pretrain(config, progress=not args.no_progress)
    elif step == "train":
        from training.train import train
        result = train(config, resume=not args.no_resume, progress=not args.no_progress)
    elif step == "evaluate":
        from training.evaluate import run_evaluation
        result = run_evaluation(config, n_boot=args.bootstrap, out_of_fold=args.oof)
    elif step == "export":
        from training.export_run import run_export
        result = json.dumps(run_export(config), indent=1)
    else:
        from training.bundle import run_bundle, run_report
        run = run_bundle if step == "bundle" else run_report
        result = json.dumps(run(config, compare=args.compare, cross_validation=args.cross_validation,
                                leave_one_out=args.leave_one_out), indent=1)
    log.info("%s: %s (%.1f s)", step, result, time.perf_counter() - t0)


if __name__ == "__main__":
    sys.exit(main())
