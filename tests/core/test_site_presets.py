"""Site presets: thresholds from a flag rate, the settings file keyed by model hash, and Thresholds with them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ich_viewer.core import site_presets
from ich_viewer.core.contract import CLASSES, ModelCard
from ich_viewer.core.errors import CalibrationError
from ich_viewer.core.thresholds import Thresholds
from tests.conftest import tiny_card

FLOOR = dict.fromkeys(CLASSES, 0.3)


@pytest.fixture
def config_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    return tmp_path / "config" / "ich-viewer"


def preset(name="site", value=0.9) -> site_presets.SitePreset:
    return site_presets.SitePreset(name, dict.fromkeys(CLASSES, value), 0.05, 120, 4, floor_preset="balanced")


def test_at_most_the_fraction_flags_even_with_ties_and_never_below_the_floor():
    rng = np.random.default_rng(0)
    p = rng.uniform(0.0, 1.0, (200, 6)).astype(np.float32)
    p[:30, 1] = 0.95  # 30 tied values at the top: none of them may flag (10 allowed)
    p[:, 2] *= 0.1  # a class the site's normals never reach: the card's threshold stays
    thresholds, at_floor = site_presets.thresholds_for_flag_rate(p, 0.05, FLOOR)
    for c, name in enumerate(CLASSES):
        assert (p[:, c] >= np.float32(thresholds[name])).sum() <= 10
    assert thresholds["epidural"] > 0.95
    assert thresholds["intraparenchymal"] == 0.3 and at_floor["intraparenchymal"] and not at_floor["any"]
    assert (p[:, 0] >= np.float32(thresholds["any"])).sum() >= 8  # the lowest such threshold, not just any


def test_too_little_data_is_refused():
    with pytest.raises(CalibrationError, match="99 slice"):
        site_presets.make_preset(np.zeros((99, 6)), 5, 0.05, "site", "balanced", FLOOR)
    with pytest.raises(CalibrationError, match="from 2 studies"):
        site_presets.make_preset(np.zeros((500, 6)), 2, 0.05, "site", "balanced", FLOOR)


def test_the_file_is_keyed_by_model_hash(config_home):
    path = site_presets.save(preset(), "a" * 64, "model A 1.0")
    site_presets.save(preset("night", 0.8), "b" * 64, "model B 2.0")
    assert path == config_home / "site_presets.json"
    assert set(json.loads(path.read_text())["models"]) == {"a" * 64, "b" * 64}
    assert list(site_presets.load("a" * 64)) == ["site"] and list(site_presets.load("b" * 64)) == ["night"]
    assert site_presets.load("c" * 64) == {}  # another model gets none
    assert site_presets.load("a" * 64)["site"].thresholds == dict.fromkeys(CLASSES, 0.9)


def test_a_damaged_file_says_what_to_do(config_home):
    config_home.mkdir(parents=True)
    (config_home / "site_presets.json").write_text("{not json")
    with pytest.raises(CalibrationError, match="move it away"):
        site_presets.load("a" * 64)


def test_thresholds_show_a_site_preset_after_the_cards():
    thresholds = Thresholds(ModelCard.from_dict(tiny_card()), "site", [preset()])
    assert thresholds.preset_names == ["balanced", "high_sensitivity", "precision_0.7", "site"]
    assert thresholds.preset == "site" and thresholds.as_array().tolist() == pytest.approx([0.9] * 6)
    assert "at most 5% of 120 normal slices from 4 studies" in thresholds.rule
    assert thresholds.readout("any") is not None  # the card's validation read-outs still answer
    thresholds.set("any", 0.5)
    assert thresholds.preset == "custom"
    thresholds.apply_preset("balanced")
    assert thresholds.values["any"] == 0.5
    with pytest.raises(ValueError, match="taken by the model card"):
        thresholds.add_preset(preset("balanced"))
