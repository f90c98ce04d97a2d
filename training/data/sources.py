"""The one registry of data sources: a recipe's ``kind`` -> the reader that lists and decodes its slices.

Readers are imported only when a recipe uses them (RSNA's pulls in pydicom, CT-ICH's NIfTI nibabel).
The config's help text and the cache's error messages list the kinds from here.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from training.data.base import Source

#: kind -> "module:class" of its reader; the order is the order the help text lists them in.
SOURCE_KINDS: dict[str, str] = {
    "ctich_png": "training.data.ctich:CtichPngSource",
    "ctich_nifti": "training.data.ctich:CtichNiftiSource",
    "ctich_lesions": "training.data.real_lesions:RealLesionSource",
    "phe_sich": "training.data.phe_sich:PheSichSource",
    "rsna": "training.data.rsna:RsnaSource",
    "phantom": "training.data.phantom_source:PhantomSource",
}


def build_source(spec: dict) -> Source:
    """A reader from one ``[[data.sources]]`` table (``kind`` plus the reader's own options)."""
    spec = dict(spec)
    kind = spec.pop("kind", None)
    if kind not in SOURCE_KINDS:
        *others, last = SOURCE_KINDS
        raise ValueError(f"unknown data source kind {kind!r}: use {', '.join(others)} or {last}")
    if isinstance(spec.get("root"), str):
        spec["root"] = str(data_root(spec["root"]))
    module, reader = SOURCE_KINDS[kind].split(":")
    try:
        return getattr(importlib.import_module(module), reader)(**spec)
    except TypeError as exc:  # an option the reader does not take (n_studiez): say so, not a traceback
        raise ValueError(f"data source {kind}: {exc}") from exc


#: The recipes name data from the repository's root, as the README's commands run there.
REPO = Path(__file__).resolve().parents[2]
SHARED_PREFIX = "../shared/data"


def data_root(root: str) -> Path:
    """A source's folder: ``../shared/data/...`` under ``ICH_SHARED_DATA`` when that is set (as the tests and
    benches read it); a relative path that is not there from the working folder, from the repository's root, so
    the recipes also run from elsewhere."""
    shared = os.environ.get("ICH_SHARED_DATA")
    if shared and (root == SHARED_PREFIX or root.startswith(SHARED_PREFIX + "/")):
        return Path(shared) / root[len(SHARED_PREFIX) + 1:]
    path = Path(root)
    if path.is_absolute() or path.exists():
        return path
    return REPO / path
