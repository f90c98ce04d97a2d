"""``ich-viewer calibrate`` on real normal slices: a site preset that flags at most the asked fraction, saved in
the user's settings under the model's hash, and used by ``triage --preset``; too little data is refused."""

from __future__ import annotations

import csv
import json
import shutil

import pytest

from ich_viewer.__main__ import main
from ich_viewer.core import site_presets
from ich_viewer.core.contract import CLASSES
from ich_viewer.core.model import IchModel
from ich_viewer.paths import models_dir


@pytest.fixture
def config_home(tmp_path, monkeypatch):
    """A private HOME and XDG_CONFIG_HOME: nothing reaches the real user's settings."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    return tmp_path / "config" / "ich-viewer"


def test_calibrate_on_real_normal_slices_then_triage_uses_the_site_preset(rsna_dir, config_home, tmp_path, capsys):
    assert main(["calibrate", str(rsna_dir), "--max-flag-rate", "0.05", "--name", "site"]) == 0
    out = capsys.readouterr().out
    assert "saved in" in out and "triage --preset site" in out
    assert out.rstrip().endswith("Teaching and demonstration model; not for diagnosis.")
    bundled = IchModel.bundled(models_dir())
    saved = json.loads((config_home / "site_presets.json").read_text())
    assert list(saved["models"]) == [bundled.sha256]  # keyed by the model's hash
    preset = site_presets.load(bundled.sha256)["site"]
    assert preset.slices == 155 and preset.studies >= 100 and preset.max_flag_rate == 0.05
    balanced = bundled.card.presets[bundled.card.default_preset]
    assert all(preset.thresholds[c] >= balanced[c] for c in CLASSES)  # never below the card's default
    assert max(preset.flag_rates.values()) <= 0.05
    # a third tester: the suggested command for a name with a space could not be pasted
    assert main(["calibrate", str(rsna_dir), "--max-flag-rate", "0.05", "--name", "my site"]) == 0
    assert "use it: ich-viewer triage --preset 'my site' ..." in capsys.readouterr().out

    slices, summary = tmp_path / "slices.csv", tmp_path / "summary.json"
    assert main(["triage", str(rsna_dir), "--preset", "site", "--out", str(slices), "--json", str(summary)]) == 0
    report = json.loads(summary.read_text())
    assert report["preset"] == "site" and report["thresholds"] == preset.thresholds
    rows = list(csv.DictReader(open(slices)))
    assert len(rows) == 155
    for name in CLASSES:  # at most 5% of these normal slices flag, as triage flags them
        assert sum(int(r[f"flag_{name}"]) for r in rows) <= 0.05 * len(rows), name


def test_too_few_slices_are_refused_with_one_sentence_and_nothing_saved(rsna_dir, config_home, tmp_path, capsys):
    few = tmp_path / "few"
    few.mkdir()
    for path in sorted(rsna_dir.glob("*.dcm"))[:20]:  # 20 slices of 20 studies: a copy, the data stay untouched
        shutil.copy(path, few / path.name)
    assert main(["calibrate", str(few)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    assert "Too few normal slices to calibrate on: 20 slice(s) from 20 studies" in err
    assert "at least 100 slices from 3 studies" in err
    assert not (config_home / "site_presets.json").exists()


def test_a_card_preset_name_and_a_bad_rate_are_refused(rsna_dir, config_home, capsys):
    assert main(["calibrate", str(rsna_dir), "--name", "balanced"]) == 2
    assert "cannot be used" in capsys.readouterr().err
    for rate in ("5", "0", "1"):  # the ends themselves are refused, and the message says so
        assert main(["calibrate", str(rsna_dir), "--max-flag-rate", rate]) == 2
        assert f"must be above 0 and below 1 (0.05 is 5%), not {rate}." in capsys.readouterr().err
    assert not (config_home / "site_presets.json").exists()
