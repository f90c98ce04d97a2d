"""What the card says about each class's evidence reaches every flag: not calibrated, a rule not met."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ich_viewer.core.contract import CLASSES, NOT_CALIBRATED, ModelCard
from ich_viewer.core.inference import summarize
from ich_viewer.core.thresholds import Thresholds
from tests.conftest import tiny_card

RULES = {"balanced": "best F1 among thresholds with specificity at least 0.80",
         "high_sensitivity": "the highest threshold with recall at least 0.95",
         "precision_0.7": "the lowest threshold with precision at least 0.70"}


def card(**changes) -> ModelCard:
    return ModelCard.from_dict(tiny_card(**changes))


def test_a_not_calibrated_class_is_not_flagged_until_switched_on():
    thresholds = Thresholds(card(calibration={**dict.fromkeys(CLASSES, "calibrated"), "subarachnoid": NOT_CALIBRATED}))
    probabilities = np.full((2, 6), 0.9, np.float32)
    flags = thresholds.flags(probabilities)
    assert flags[:, CLASSES.index("any")].all() and not flags[:, CLASSES.index("subarachnoid")].any()
    assert thresholds.not_flagged() == {"subarachnoid": "not calibrated: too little validation evidence"}
    summary = summarize(probabilities, thresholds.as_array())
    assert summary["subarachnoid"]["flagged"] is False and summary["subarachnoid"]["threshold"] is None
    json.dumps(summary, allow_nan=False)  # no Infinity in the JSON export
    thresholds.set_enabled("subarachnoid", True)
    assert thresholds.flags(probabilities)[:, CLASSES.index("subarachnoid")].all()
    assert thresholds.not_flagged() == {}


def test_older_cards_without_calibration_flag_every_class():
    thresholds = Thresholds(card())
    assert all(thresholds.enabled.values()) and thresholds.not_flagged() == {}


def test_a_preset_whose_rule_cannot_be_met_says_so_and_flags_nothing_for_that_class():
    presets = tiny_card()["thresholds"]
    presets["precision_0.7"]["epidural"] = 1.0
    thresholds = Thresholds(card(thresholds=presets, threshold_rules=RULES,
                                 thresholds_unmet={"precision_0.7": {"epidural": "never reaches precision 0.70"}}))
    probabilities = np.ones((1, 6), np.float32)  # a saturated sigmoid reaches 1.0 exactly
    assert thresholds.rule == RULES["balanced"] and thresholds.not_flagged() == {}
    thresholds.apply_preset("precision_0.7")
    assert thresholds.rule == RULES["precision_0.7"]
    assert thresholds.not_flagged() == {"epidural": "the precision 0.7 rule cannot be met: never reaches precision 0.70"}
    assert not thresholds.flags(probabilities)[0, CLASSES.index("epidural")]
    assert thresholds.flags(probabilities)[0, CLASSES.index("any")]
    thresholds.set("epidural", 0.6)  # the user picks a threshold: it holds, whatever the rule
    assert thresholds.preset == "custom" and thresholds.flags(probabilities)[0, CLASSES.index("epidural")]
    thresholds.apply_preset("precision_0.7")
    assert "epidural" in thresholds.not_flagged()


def test_moving_a_threshold_back_to_its_preset_value_gives_the_preset_again():
    presets = tiny_card()["thresholds"]
    presets["precision_0.7"]["epidural"] = 1.0
    thresholds = Thresholds(card(thresholds=presets, threshold_rules=RULES,
                                 thresholds_unmet={"precision_0.7": {"epidural": "never reaches precision 0.70"}}))
    thresholds.apply_preset("precision_0.7")
    thresholds.set("any", 0.31)
    thresholds.set("epidural", 0.4)
    assert thresholds.preset == "custom" and thresholds.not_flagged() == {}
    thresholds.set("any", presets["precision_0.7"]["any"])
    assert thresholds.preset == "custom"  # epidural is still the user's
    thresholds.set("epidural", 1.0)  # back on every value: the preset, and its rule that cannot be met, again
    assert thresholds.preset == "precision_0.7" and "epidural" in thresholds.not_flagged()


@pytest.mark.parametrize("changes, words", [
    ({"threshold_rules": {"balanced": 3}}, "threshold_rules"),
    ({"thresholds_unmet": {"balanced": {"nothing": "x"}}}, "thresholds_unmet"),
    ({"thresholds_unmet": ["any"]}, "thresholds_unmet"),
])
def test_malformed_rules_are_refused_naming_the_field(changes, words):
    with pytest.raises(ValueError, match=words):
        card(**changes)


def test_the_results_payload_says_which_classes_are_not_flagged(tiny_model, tmp_path):
    from ich_viewer.core.model import IchModel
    from ich_viewer.core.results import results_payload

    model = IchModel(tiny_model)
    thresholds = Thresholds(model.card)
    thresholds.set_enabled("subdural", False)
    payload = results_payload(model, thresholds, [])
    assert payload["not_flagged"] == {"subdural": "switched off"}
