"""The one registry of data sources: a recipe's ``kind`` -> the reader that lists and decodes its slices.

Readers are imported only when a recipe uses them (RSNA's pulls in pydicom, CT-ICH's NIfTI nibabel).
The config's help text and the cache's error messages list the kinds from here.
"""

from __future__ import annotations

import importlib

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
    module, reader = SOURCE_KINDS[kind].split(":")
    return getattr(importlib.import_module(module), reader)(**spec)
