"""The contract module: the card typed and checked in one place, and its names defined once."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ich_viewer.core.contract import (CLASSES, NOT_CALIBRATED, NOT_STATED, REQUIRED_CARD_KEYS, ModelCard,
                                      card_problem)
from ich_viewer.core.windows import Window
from tests.conftest import tiny_card

REPO = Path(__file__).resolve().parents[2]


def test_a_card_becomes_typed_fields():
    card = ModelCard.from_dict(tiny_card(windows=[{"name": "brain", "center": 40, "width": 80},
                                                  {"name": "subdural", "center": 80, "width": 200},
                                                  {"name": "bone", "center": 600, "width": 2800}],
                                         slice_thickness_mm=5.0))
    assert card.default_preset == "balanced" and list(card.presets) == ["balanced", "high_sensitivity", "precision_0.7"]
    assert card.presets["high_sensitivity"] == dict.fromkeys(CLASSES, 0.2)
    assert card.windows[1] == Window("subdural", 80.0, 200.0) and card.input_size == (64, 64)
    assert card.cam_scale == dict.fromkeys(CLASSES, 0.05) and card.slice_thickness_mm == 5.0
    assert card.calibration == dict.fromkeys(CLASSES, NOT_STATED)  # a card from before the field existed


def test_calibration_status_per_class_is_read_and_checked():
    card = ModelCard.from_dict(tiny_card(calibration={"subarachnoid": NOT_CALIBRATED, "any": "calibrated"}))
    assert card.calibration["subarachnoid"] == NOT_CALIBRATED and card.calibration["any"] == "calibrated"
    assert card.calibration["subdural"] == NOT_STATED
    assert "calibration" in card_problem(tiny_card(calibration={"subdural": "maybe"}))
    assert "slice_thickness_mm" in card_problem(tiny_card(slice_thickness_mm=-1))


@pytest.mark.parametrize("key", REQUIRED_CARD_KEYS)
def test_every_required_key_is_required(key):
    card = tiny_card()
    del card[key]
    with pytest.raises(ValueError, match=f"lacks {key}"):
        ModelCard.from_dict(card)


def test_the_contracts_names_are_defined_once_in_the_code():
    sources = [p for folder in ("ich_viewer", "training") for p in (REPO / folder).rglob("*.py")]
    for name in ("CLASSES", "CONTRACT_VERSION", "REQUIRED_CARD_KEYS", "AIR_HU"):
        defined = [str(p.relative_to(REPO)) for p in sources
                   if re.search(rf"^{name}\s*(:[^=]*)?=", p.read_text(), flags=re.M)]
        assert len(defined) == 1, (name, defined)
