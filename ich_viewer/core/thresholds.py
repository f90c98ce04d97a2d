"""Active thresholds: the model card's presets, per-class overrides, and what a threshold trades.

The read-outs come from the card's operating curves (measured on the model's validation patients): at a
slider's threshold, the measured point at or just below it (:func:`read_curve`).

Two things keep a class from being flagged whatever its probability: the card marks it "not calibrated"
(too little validation evidence; the user may switch it on), or the active preset's rule cannot be met
for it on the validation data (until the user picks a threshold for it). :meth:`Thresholds.as_array`
then gives it an infinite threshold, so every flag, summary and export agrees.

Besides the card's presets there may be extra ones, chosen at a site (``ich-viewer calibrate``, see
:mod:`~ich_viewer.core.site_presets`): objects with ``name``, ``thresholds`` (per class) and ``rule``. They
sit after the card's; the read-outs at their thresholds still come from the card's validation curves.
"""

from __future__ import annotations

import math

import numpy as np

from ich_viewer.core.contract import CLASSES, NOT_CALIBRATED, ModelCard


class Thresholds:
    def __init__(self, card: ModelCard, preset: str | None = None, extra=()):
        """ValueError, naming the presets, for a ``preset`` neither the card nor ``extra`` (site presets) has."""
        self.card = card
        self.extra: dict[str, dict[str, float]] = {}  # site presets, after the card's
        self.extra_rules: dict[str, str] = {}
        for site_preset in extra:
            self.add_preset(site_preset)
        #: Classes flagged at all: every class but those the card marks not calibrated, until the user says.
        self.enabled = {c: card.calibration[c] != NOT_CALIBRATED for c in CLASSES}
        self.apply_preset(card.default_preset if preset is None else preset)  # "" is a name, and unknown

    @property
    def presets(self) -> dict[str, dict[str, float]]:
        """The card's presets, then the site's."""
        return {**self.card.presets, **self.extra}

    @property
    def preset_names(self) -> list[str]:
        return list(self.presets)

    def add_preset(self, site_preset) -> None:
        """Add (or replace) a site preset; ValueError for a name the card's presets or "custom" already use."""
        name = site_preset.name
        if name in self.card.presets or name == "custom":
            raise ValueError(f"the preset name {name!r} is taken by the model card; choose another")
        self.extra[name] = {c: float(site_preset.thresholds[c]) for c in CLASSES}
        self.extra_rules[name] = site_preset.rule

    def apply_preset(self, name: str) -> None:
        presets = self.presets
        if name not in presets:
            raise ValueError(f"unknown preset {name!r}; this model has {', '.join(presets)}")
        self.preset = self._applied = name
        self.values = dict(presets[name])
        self.unmet = dict(self.card.unmet.get(name, {}))  # a site preset's rule is met on the site's slices

    def set(self, name: str, value: float) -> None:
        """A user override for one class; the preset name then reads 'custom'."""
        self.values[name] = float(np.clip(value, 0.0, 1.0))
        self.unmet.pop(name, None)  # the user chose this class's threshold: it is met by definition
        # Back on a preset's every value (a slider moved and returned): that preset again, with its unmet rules
        same = [preset for preset, values in self.presets.items() if values == self.values]
        if same:
            self.apply_preset(self._applied if self._applied in same else same[0])
        else:
            self.preset = "custom"

    def set_enabled(self, name: str, enabled: bool) -> None:
        self.enabled[name] = bool(enabled)

    @property
    def rule(self) -> str | None:
        """The active preset's rule in words, when the card states it."""
        return self.card.preset_rules.get(self.preset) or self.extra_rules.get(self.preset)

    def not_flagged(self) -> dict[str, str]:
        """Classes never flagged at the moment, with why, in CLASSES order."""
        out = {}
        for c in CLASSES:
            if not self.enabled[c]:
                out[c] = ("not calibrated: too little validation evidence"
                          if self.card.calibration[c] == NOT_CALIBRATED else "switched off")
            elif c in self.unmet:
                out[c] = f"the {self.preset.replace('_', ' ')} rule cannot be met: {self.unmet[c]}"
        return out

    def as_array(self) -> np.ndarray:
        """Per class the threshold flags are computed at; infinite for a class not flagged."""
        off = self.not_flagged()
        return np.array([np.inf if c in off else self.values[c] for c in CLASSES], np.float32)

    def flags(self, probabilities: np.ndarray) -> np.ndarray:
        """bool [Z, 6]: probability >= threshold (NaN, i.e. not yet computed, is never flagged)."""
        return np.nan_to_num(probabilities, nan=-1.0) >= self.as_array()

    def readout(self, name: str, value: float | None = None) -> dict[str, float] | None:
        """Precision, recall and specificity at ``value`` (default: the active threshold), or None
        when the card has no curve for the class."""
        return read_curve(self.card.operating_curves.get(name), self.values[name] if value is None else value)


def read_curve(curve: dict | None, threshold: float) -> dict[str, float] | None:
    """The measured operating point at the highest curve threshold at or below ``threshold``, with that
    ``measured_at`` threshold; None without a curve.

    A step, not a line between points: interpolating made up operating points no data set has (recall 0.26
    from 24 positives) and ran towards the curve's end point, where nothing is flagged and precision is 1 by
    convention (precision 0.96 with recall 0). Every slice flagged at ``threshold`` is flagged at the point
    read, and a preset's threshold sits just under a positive's score, so its recall is read exactly.
    ``precision`` is None when the point finds no positive: with nothing true flagged it says nothing.
    """
    if not curve or len(curve.get("thresholds", ())) < 2:
        return None
    t = np.asarray(curve["thresholds"], float)
    order = np.argsort(t, kind="stable")
    i = order[max(int(np.searchsorted(t[order], threshold, side="right")) - 1, 0)]
    point = {k: float(curve[k][i]) for k in ("precision", "recall", "specificity")}
    if point["recall"] == 0.0:
        point["precision"] = None
    return {**point, "measured_at": float(t[i])}


def threshold_text(value: float) -> str:
    """Three decimals, or two significant digits of the distance from 0 or 1 near them: 0.0002 is not 0.000,
    and the slider's neighbouring positions there read differently."""
    for near in (value, 1 - value):
        if 0 < near < 0.01:
            return f"{value:.{1 - math.floor(math.log10(near))}f}"
    return f"{value:.3f}"
