"""Training configuration: one TOML file per recipe (``training/configs/``), read into dataclasses.

Every option has a default and a one-line meaning (``python -m training --help`` prints them),
and any option can be overridden on the command line with ``--set section.key=value``.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.data.sources import SOURCE_KINDS

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


def _opt(default, help: str, **kw):
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: json.loads(json.dumps(d)), metadata={"help": help}, **kw)
    return field(default=default, metadata={"help": help}, **kw)


@dataclass
class WindowConfig:
    name: str
    center: float
    width: float
    function: str = "linear"  # "linear" or "sigmoid" (Lee et al. 2018)
    learned: bool = False


@dataclass
class DataConfig:
    sources: list = _opt([], f"data sources: tables with kind = {' | '.join(SOURCE_KINDS)} and its options")
    cache_dir: str = _opt("", "where `prepare` writes the int16 HU cache (default <out>/<name>/cache)")
    workers: int = _opt(2, "processes that decode DICOMs / PNGs while preparing the cache")
    train_only: list = _opt([], "source names (e.g. phantom) used only for training, never validation or thresholds")
    train_only_share: float = _opt(-1.0, "fraction of training draws from the train_only sources, each side balanced on "
                                         "its own (-1: no fixed share, their slices count like any other)")


@dataclass
class SplitConfig:
    folds: int = _opt(5, "grouped k-fold over patients (never over slices)")
    fold: int = _opt(0, "which fold is the validation split; -1 = none: train on every labelled patient (a "
                     "bundled model, whose card then takes its thresholds from the fold runs' out-of-fold predictions)")
    seed: int = _opt(0, "seed of the patient shuffle")
    held_out_source: str = _opt("", "leave one hospital out: a source name whose patients are the whole validation "
                                    "split and are never trained on (folds are then unused)")


@dataclass
class ModelConfig:
    arch: str = _opt("resnet18", "torchvision ResNet: resnet18 | resnet34 | resnet50 | resnet101 | resnet152")
    size: int = _opt(224, "working size in pixels: the graph resizes any input to size x size")
    clip: list | None = _opt(None, "[lo, hi] HU range of the training data, clipped inside the graph (CT-ICH: -20..100)")
    windows: list = _opt(
        [{"name": "brain", "center": 40, "width": 80}, {"name": "subdural", "center": 80, "width": 200},
         {"name": "bone", "center": 600, "width": 2800}],
        "windows computed in the graph, one input channel each: {name, center, width, function, learned}")
    head: str = _opt("mlp", "linear | mlp (Linear-hidden-ReLU-Linear, the seed paper's head)")
    hidden: int = _opt(256, "width of the mlp head")
    dropout: float = _opt(0.0, "dropout before the last linear layer")
    pretrained: str = _opt("none", "none | imagenet (torchvision's cached weights, never downloaded) | a .pth path")


@dataclass
class AugmentConfig:
    flip: bool = _opt(True, "random left-right flip")
    degrees: float = _opt(10.0, "random rotation range (degrees)")
    translate: float = _opt(0.05, "random translation (fraction of the size)")
    scale: list = _opt([0.9, 1.1], "random zoom range")
    hu_noise: float = _opt(0.0, "std of Gaussian noise added in HU")
    hu_shift: float = _opt(0.0, "random global HU offset range +-, a scanner calibration jitter")
    hu_scale: float = _opt(0.0, "random HU contrast scale range +- around 1, about the water level 0")
    export_window: bool = _opt(False, "rescale HU about each source's export window level over the widths it may "
                                      "have had (a PNG source whose window is not recorded, e.g. PHE-SICH: 80-120)")
    blur: float = _opt(0.0, "max Gaussian blur sigma in pixels (smooth reconstruction kernels), on a third of slices")
    sharpen: float = _opt(0.0, "max unsharp-mask amount (sharp kernels), on another third of slices")
    resolution: list = _opt([1.0, 1.0], "random down-then-up sampling factor range (lower-resolution scanners)")
    slab: float = _opt(0.0, "max weight given to the two neighbouring slices (thicker slabs than the source's)")


@dataclass
class TrainConfig:
    epochs: int = _opt(10, "passes over the (sampled) training split")
    batch_size: int = _opt(32, "images per optimiser step per process (before accumulation)")
    accumulate: int = _opt(1, "gradient accumulation steps")
    lr: float = _opt(1e-3, "peak learning rate (AdamW, one-cycle schedule)")
    weight_decay: float = _opt(1e-4, "AdamW weight decay")
    warmup: float = _opt(0.1, "fraction of steps spent warming up")
    class_weights: list = _opt([2, 1, 1, 1, 1, 1], "BCE weight per class (any first); RSNA's metric weights any x2")
    pos_weight: list | None = _opt(None, "BCE positive weight per class, or null")
    balanced_sampling: float = _opt(0.0, "0 = plain shuffle; a > 0 draws slices with weight (1/class frequency)^a")
    position_match: float = _opt(0.0, "0 = off; m in (0, 1]: per source, the negatives' draws over five bands of "
                                      "slice level move toward the positives' (m = 1: the same), so that the level "
                                      "of a slice in its study no longer predicts blood")
    epoch_size: int | None = _opt(None, "slices drawn per epoch (default: the training split size)")
    amp: str = _opt("none", "autocast dtype: none | bf16 | fp16 (fp16 only on CUDA)")
    channels_last: bool = _opt(True, "channels_last memory format (faster convolutions)")
    loader_workers: int = _opt(0, "DataLoader worker processes")
    threads: int = _opt(0, "torch intra-op threads on CPU (0 = all cores)")
    validate_each_epoch: bool = _opt(True, "score the validation split after every epoch (metrics.jsonl); off, "
                                           "only `evaluate` scores it (it costs a pass over the split per epoch)")
    checkpoint_every: int = _opt(1, "save a resumable checkpoint every N epochs")
    max_steps: int | None = _opt(None, "stop after this many optimiser steps in total (tests, smoke runs)")


@dataclass
class PretrainConfig:
    steps: int = _opt(240, "`pretrain`: optimiser steps of self-supervised (SimCLR) pretraining")
    batch_size: int = _opt(64, "`pretrain`: slices per step, each seen as two augmented views")
    size: int = _opt(112, "`pretrain`: working size in pixels (smaller than model.size: the trunk is convolutional)")
    lr: float = _opt(1e-3, "`pretrain`: peak learning rate (AdamW, one-cycle)")
    temperature: float = _opt(0.2, "`pretrain`: NT-Xent temperature")
    dicom_folders: list = _opt([], "`pretrain`: folders of unlabelled DICOM added to the cache's slices "
                                   "(e.g. ../shared/data/rsna-unlabelled)")


@dataclass
class ExportConfig:
    opset: int = _opt(18, "ONNX opset")
    int8: bool = _opt(False, "also write an INT8 statically quantised copy (ONNX Runtime)")
    version: str = _opt("0.1.0", "model version written into the card")
    license: str = _opt("", "licence of the weights, into the card; required by export, as the training data's "
                            "terms decide it (a default once said CT-ICH for weights that never saw it)")


@dataclass
class CardConfig:
    intended_use: str = _opt(
        "Teaching and demonstration of intracranial hemorrhage subtypes on head CT. Not a medical device; "
        "not for diagnosis, triage or any clinical decision.", "shown in the viewer's model dialog")
    limitations: str = _opt("Not clinically validated.", "plain sentences shown in the viewer's model dialog")
    dataset: str = _opt("", "what the validation data is, for the card")
    citation: str = _opt("", "data citation(s) for the card")
    slice_thickness_mm: float | None = _opt(None, "slice thickness of the training data (mm), into the card: the "
                                                  "viewer feeds thinner series as slabs of it")


@dataclass
class Config:
    name: str = _opt("model", "run name; outputs go to <out>/<name>/")
    seed: int = _opt(0, "seed for weights, sampling and augmentation")
    out: str = _opt("runs", "output root")
    data: DataConfig = field(default_factory=DataConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    card: CardConfig = field(default_factory=CardConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.out) / self.name

    @property
    def cache_dir(self) -> Path:
        return Path(self.data.cache_dir) if self.data.cache_dir else self.run_dir / "cache"

    @property
    def windows(self) -> list[WindowConfig]:
        return [WindowConfig(**w) for w in self.model.windows]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


_SECTION_TYPES = {"data": DataConfig, "split": SplitConfig, "model": ModelConfig, "augment": AugmentConfig,
                  "train": TrainConfig, "pretrain": PretrainConfig, "export": ExportConfig, "card": CardConfig}


def from_dict(raw: dict) -> Config:
    raw = dict(raw)
    kwargs: dict[str, Any] = {}
    for name, cls in _SECTION_TYPES.items():
        section = raw.pop(name, {}) or {}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(section) - known
        if unknown:
            raise ValueError(f"unknown option(s) in [{name}]: {', '.join(sorted(unknown))}")
        problem = _type_problem(name, cls, section)
        if problem:
            raise ValueError(problem)
        kwargs[name] = cls(**section)
    known = {f.name for f in dataclasses.fields(Config)}
    unknown = set(raw) - known
    if unknown:
        raise ValueError(f"unknown top-level option(s): {', '.join(sorted(unknown))}")
    config = Config(**raw, **kwargs)
    problem = _value_problem(config)
    if problem:
        raise ValueError(problem)
    for window in config.windows:
        if window.function not in ("linear", "sigmoid"):
            raise ValueError(f"window {window.name}: function must be linear or sigmoid")
    return config


_KINDS = {bool: "true or false", int: "a whole number", float: "a number", str: "a quoted string"}


def _type_problem(section_name: str, cls, section: dict) -> str | None:
    """An option given as another kind of value than its default (``train.epochs=abc``, ``"3"``, ``2.5``) is
    refused here, not as a TypeError deep in training; options whose default is None or a table are not checked."""
    for f in dataclasses.fields(cls):
        default = f.default
        if f.name not in section or type(default) not in _KINDS:
            continue
        value, kind = section[f.name], type(default)
        fits = (isinstance(value, bool) if kind is bool else isinstance(value, str) if kind is str else
                not isinstance(value, bool) and isinstance(value, int if kind is int else (int, float)))
        if not fits:
            return f"{section_name}.{f.name} must be {_KINDS[kind]}, not {value!r}"
    return None


#: Options that count something, and the least each may be.
_AT_LEAST = {("model", "size"): 16, ("model", "hidden"): 1, ("split", "folds"): 2, ("data", "workers"): 1,
             ("train", "epochs"): 1, ("train", "batch_size"): 1, ("train", "accumulate"): 1,
             ("train", "checkpoint_every"): 1, ("pretrain", "steps"): 1, ("pretrain", "batch_size"): 2,
             ("pretrain", "size"): 16}
_RANGES = (("augment", "scale"), ("augment", "resolution"), ("model", "clip"))


def _value_problem(config: "Config") -> str | None:
    """A value of the right kind that training cannot use (``train.epochs=0`` divided by zero deep in the
    schedule; ``augment.scale=[2]`` and six class weights given as two failed mid-epoch), in one sentence."""
    for (section, key), least in _AT_LEAST.items():
        value = getattr(getattr(config, section), key)
        if value < least:
            return f"{section}.{key} must be at least {least}, not {value}"
    if not (0 < config.train.lr < float("inf")):
        return f"train.lr must be a positive number, not {config.train.lr}"
    for section, key in _RANGES:
        value = getattr(getattr(config, section), key)
        if value is None:
            continue
        if not (isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, (int, float)) for v in value)
                and value[0] <= value[1]):
            return f"{section}.{key} must be two numbers, low then high, not {value!r}"
    weights = config.train.class_weights
    if not (isinstance(weights, list) and len(weights) == 6 and all(isinstance(w, (int, float)) and w >= 0 for w in weights)):
        return f"train.class_weights must be six numbers of at least 0 (any and the five subtypes), not {weights!r}"
    return None


def resolve_path(name_or_path: str | Path) -> Path:
    """A config file path, or the name of a checked-in recipe (``ctich_resnet18``)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    recipe = CONFIG_DIR / f"{name_or_path}.toml"
    if recipe.is_file():
        return recipe
    names = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.toml")))
    raise FileNotFoundError(f"no config file {name_or_path!r}; checked-in recipes: {names}")


def _read_recipe(name_or_path: str | Path, seen: tuple[Path, ...] = ()) -> dict:
    """A recipe's TOML, with ``extends = "other_recipe"`` resolved: the other recipe's tables, each
    key replaced by this file's (tables merge key by key; arrays and values are replaced whole)."""
    path = resolve_path(name_or_path).resolve()
    if path in seen:
        raise ValueError(f"recipe {path.name} extends itself (through {' -> '.join(p.name for p in seen)})")
    with open(path, "rb") as f:
        raw = tomllib.load(f)
    base = raw.pop("extends", None)
    return _merge(_read_recipe(base, (*seen, path)), raw) if base else raw


def _merge(base: dict, changes: dict) -> dict:
    merged = dict(base)
    for key, value in changes.items():
        merged[key] = _merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
    return merged


def load_config(name_or_path: str | Path, overrides: list[str] = ()) -> Config:
    """Read a TOML recipe (see :func:`_read_recipe` for ``extends``) and apply ``section.key=value``
    overrides (values parsed as TOML)."""
    raw = _read_recipe(name_or_path)
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"override {item!r} must look like section.key=value")
        try:
            parsed = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            parsed = value  # a bare string
        target = raw
        *parents, leaf = key.strip().split(".")
        for parent in parents:
            target = target.setdefault(parent, {})
        target[leaf] = parsed
    return from_dict(raw)


def describe_options() -> str:
    """Every option with its default and meaning, for --help."""
    lines = []
    for prefix, cls in [("", Config), *[(f"{n}.", c) for n, c in _SECTION_TYPES.items()]]:
        for f in dataclasses.fields(cls):
            if "help" not in f.metadata:
                continue
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            lines.append(f"  {prefix}{f.name} = {json.dumps(default)}\n      {f.metadata['help']}")
    return "\n".join(lines)
