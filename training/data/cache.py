"""The prepared cache: every slice once decoded, resized to the model's size, stored as int16 HU.

Layout of ``cache_dir``: ``images.npy`` (int16 [N, S, S], memory-mapped), ``index.csv`` (key, patient,
study, index, source, six labels: 1, 0 or -1 for unknown), ``done.npy`` (bool [N]: which rows are written, so an
interrupted ``prepare`` resumes where it stopped) and ``meta.json``. Decoding runs in worker
processes; a GPU then reads a memory map instead of waiting on DICOM decoders.
"""

from __future__ import annotations

import csv
import json
import logging
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ich_viewer.core.contract import CLASSES
from training.config import Config
from training.data.base import UNKNOWN, SliceRecord, Source, labels_array
from training.data.sources import build_source
from training.model import resize_hu

log = logging.getLogger(__name__)

CHUNK = 64


@dataclass
class Cache:
    """An opened cache: records, labels and the memory-mapped images."""

    root: Path
    records: list[SliceRecord]
    labels: np.ndarray  # int8 [N, 6], -1 = unknown (a class its source does not label, or an unlabelled row)
    images: np.ndarray  # int16 [N, S, S] memmap
    meta: dict

    @property
    def patients(self) -> list[str]:
        return [r.patient for r in self.records]

    @property
    def studies(self) -> list[str]:
        return [r.study for r in self.records]

    @classmethod
    def open(cls, root: str | Path) -> "Cache":
        root = Path(root)
        meta_path = root / "meta.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"no prepared cache at {root}: run `python -m training prepare --config ...` first")
        meta = json.loads(meta_path.read_text())
        done = np.load(root / "done.npy")
        if not done.all():
            raise RuntimeError(f"the cache at {root} is incomplete ({int(done.sum())}/{done.size}); run prepare again")
        records = _read_index(root / "index.csv")
        return cls(root, records, labels_array(records), np.load(root / "images.npy", mmap_mode="r"), meta)


def _source_specs(config: Config) -> list[dict]:
    if not config.data.sources:
        raise ValueError("the config lists no [[data.sources]]")
    return [dict(s) for s in config.data.sources]


def prepare(config: Config, progress: bool = True) -> Cache:
    """Decode every slice of every source into the cache (resumable, parallel)."""
    root = config.cache_dir
    root.mkdir(parents=True, exist_ok=True)
    specs, size = _source_specs(config), config.model.size
    sources = [build_source(s) for s in specs]
    records = [(i, r) for i, source in enumerate(sources) for r in source.records()]
    meta = {"size": size, "sources": specs, "n": len(records),
            "hu_range": [s.hu_range for s in sources], "classes": list(CLASSES)}
    images_path, done_path = root / "images.npy", root / "done.npy"
    previous = json.loads((root / "meta.json").read_text()) if (root / "meta.json").is_file() else None
    if previous is not None and previous != meta:  # rebuilt, not silently: runs trained on the old one differ
        changed = ", ".join(key for key in meta if previous.get(key) != meta[key])
        log.warning("prepare: the cache at %s was made with another %s; it is made again for this recipe "
                    "(runs trained on the old cache no longer match it: evaluate refuses them)", root, changed)
    if previous != meta or not images_path.is_file() or not done_path.is_file():
        _write_index(root / "index.csv", [r for _, r in records])
        np.lib.format.open_memmap(images_path, "w+", np.int16, (len(records), size, size)).flush()
        np.save(done_path, np.zeros(len(records), bool))
        (root / "meta.json").write_text(json.dumps(meta, indent=1))
    images = np.load(images_path, mmap_mode="r+")
    done = np.load(done_path)
    todo = np.flatnonzero(~done)
    chunks = [todo[i:i + CHUNK] for i in range(0, len(todo), CHUNK)]
    jobs = [(specs, size, [(records[k][0], records[k][1]) for k in chunk]) for chunk in chunks]
    bar = tqdm(total=len(records), initial=len(records) - len(todo), desc="prepare", unit="slice", disable=not progress)
    workers = max(1, config.data.workers)
    with ProcessPoolExecutor(workers) if workers > 1 else _Inline() as pool:
        for chunk, arrays in zip(chunks, pool.map(_decode_chunk, jobs)):
            images[chunk] = arrays
            images.flush()
            done[chunk] = True
            np.save(done_path, done)  # after the pixels are on disk: a crash never marks unwritten rows
            bar.update(len(chunk))
    bar.close()
    del images
    return Cache.open(root)


class _Inline:
    """A stand-in for a process pool when workers == 1 (tests, debugging)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def map(self, fn, items):
        return map(fn, items)


_READERS: dict[str, Source] = {}  # one reader per source spec in each worker process, reused across chunks


def _decode_chunk(job) -> np.ndarray:
    specs, size, items = job
    torch.set_num_threads(1)
    out = np.empty((len(items), size, size), np.int16)
    for row, (source_index, record) in enumerate(items):
        spec_key = json.dumps(specs[source_index], sort_keys=True)
        if spec_key not in _READERS:
            _READERS[spec_key] = build_source(specs[source_index])
        hu = _READERS[spec_key].read_hu(record)
        out[row] = to_cache_size(hu, size)
    return out


def to_cache_size(hu: np.ndarray, size: int) -> np.ndarray:
    """HU [H, W] -> int16 [size, size] with the model's own resize (so the graph's resize is a no-op)."""
    tensor = torch.from_numpy(np.ascontiguousarray(hu, np.float32))[None, None]
    if tensor.shape[-2:] != (size, size):
        tensor = resize_hu(tensor, size)
    return tensor[0, 0].round().clamp(-32768, 32767).numpy().astype(np.int16)


_FIELDS = ["key", "patient", "study", "index", "source", *CLASSES]


def _write_index(path: Path, records: list[SliceRecord]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(_FIELDS)
        for r in records:
            labels = r.labels if r.labels is not None else (UNKNOWN,) * len(CLASSES)
            writer.writerow([r.key, r.patient, r.study, r.index, r.source, *labels])


def _read_index(path: Path) -> list[SliceRecord]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    records = []
    for row in rows:
        labels = tuple(int(row[c]) for c in CLASSES)
        records.append(SliceRecord(row["key"], row["patient"], row["study"], int(row["index"]),
                                   None if max(labels) == UNKNOWN else labels, row["source"]))
    return records
