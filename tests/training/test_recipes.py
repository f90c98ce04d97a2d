"""The checked-in recipes: a variant is its base plus exactly the options it states, nothing silently different."""

from __future__ import annotations

import pytest

from training.config import CONFIG_DIR, load_config


def _flat(options: dict, prefix: str = "") -> dict:
    """``{"train": {"lr": 1e-3}}`` -> ``{"train.lr": 1e-3}``; arrays stay whole, as recipes replace them whole."""
    flat = {}
    for key, value in options.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _differences(base: str, variant: str) -> dict:
    """The resolved options in which ``variant`` differs from ``base``, with the variant's values."""
    base_options, variant_options = _flat(load_config(base).to_dict()), _flat(load_config(variant).to_dict())
    assert base_options.keys() == variant_options.keys()
    return {key: value for key, value in variant_options.items() if base_options[key] != value}


def test_rsna_resnet152_is_rsna_resnet50_at_depth_152_with_batch_32():
    assert _differences("rsna_resnet50", "rsna_resnet152") == {
        "name": "rsna_resnet152", "model.arch": "resnet152", "train.batch_size": 32}


def test_the_previous_bundled_recipe_is_the_ctich_baseline_plus_training_only_phantoms():
    differences = _differences("ctich_resnet18", "ctich_resnet18_phantom")
    limitations = differences.pop("card.limitations")
    assert "960 synthetic phantom slices" in limitations and "INT8" in limitations
    assert differences == {
        "name": "ctich_resnet18_phantom",
        "data.sources": [{"kind": "ctich_png", "root": "../shared/data/ctich"},
                         {"kind": "phantom", "n_studies": 40, "seed": 101, "slices": 24, "size": 256}],
        "data.train_only": ["phantom"],
        "train.epoch_size": 2300,
        "export.version": "1.1.0",
        "export.int8": True,
    }


def test_the_lesions_experiment_is_the_previous_bundled_recipe_plus_painted_lesions_on_fold_3():
    differences = _differences("ctich_resnet18_phantom", "ctich_resnet18_lesions")
    assert "An experiment, not the bundled model" in differences.pop("card.limitations")
    sources = differences.pop("data.sources")
    assert sources[:2] == load_config("ctich_resnet18_phantom").data.sources
    assert [s["kind"] for s in sources] == ["ctich_png", "phantom", "ctich_lesions"]
    assert differences == {"name": "ctich_resnet18_lesions", "data.train_only": ["phantom", "ctich_lesions"],
                           "split.fold": 3, "export.version": "1.0.0", "export.int8": False}


@pytest.mark.parametrize("recipe", sorted(p.stem for p in CONFIG_DIR.glob("*.toml")))
def test_every_recipe_resolves_and_is_named_after_its_file(recipe):
    assert load_config(recipe).name == recipe  # outputs go to <out>/<name>: a variant must not reuse its base's folder


def test_the_two_hospital_recipe_is_the_ctich_baseline_plus_phe_sich_at_the_same_epoch_length():
    differences = _differences("ctich_resnet18", "ctich_phesich_resnet18")
    assert "PHE-SICH-CT-IDS" in differences.pop("card.dataset")
    assert "assumed to be 40/120" in differences.pop("card.limitations")
    assert "PHE-SICH-CT-IDS (figshare 23957937, non-commercial use)" in differences.pop("export.license")
    assert differences == {
        "name": "ctich_phesich_resnet18",
        "data.sources": [{"kind": "ctich_png", "root": "../shared/data/ctich"},
                         {"kind": "phe_sich", "root": "../shared/data/phe-sich"}],
        "train.epoch_size": 2300,  # the baseline draws ~2,250 training slices an epoch: the same 2-core CPU time
    }


def test_the_two_hospital_candidate_adds_the_augmentation_every_source_needs():
    differences = _differences("ctich_phesich_resnet18", "two_hospitals_resnet18")
    for key in ("card.dataset", "card.limitations", "card.citation"):
        assert "PHE-SICH" in differences.pop(key), key
    assert differences == {
        "name": "two_hospitals_resnet18",
        "data.cache_dir": "runs/cache_two_hospitals_160",  # one prepared cache for the folds, everyone and LOHO runs
        "split.folds": 3,
        "augment.export_window": True, "augment.blur": 1.2, "augment.sharpen": 1.0,
        "augment.resolution": [0.5, 1.0], "augment.slab": 0.5,
        "train.epochs": 8, "train.epoch_size": 1280, "train.validate_each_epoch": False,
        "export.version": "2.0.0", "export.int8": True,
        "card.slice_thickness_mm": 5.0,
    }


def test_the_bundled_recipe_is_the_two_hospital_candidate_plus_phantoms_at_one_draw_in_ten():
    """The manifest names the recipe that made the bundled file; it differs from its base only by the
    training-only phantom (capped at a tenth of the draws) and the card that says so."""
    import json

    from ich_viewer.paths import models_dir

    manifest = json.loads((models_dir() / "manifest.json").read_text())["models"][0]
    assert manifest["config"] == "training/configs/two_hospitals_phantom_resnet18.toml"
    differences = _differences("two_hospitals_resnet18", "two_hospitals_phantom_resnet18")
    limitations = differences.pop("card.limitations")
    assert "193 patients" in limitations and "960 synthetic phantom slices" in limitations and "INT8" in limitations
    assert differences == {
        "name": "two_hospitals_phantom_resnet18",
        "data.sources": [{"kind": "ctich_png", "root": "../shared/data/ctich"},
                         {"kind": "phe_sich", "root": "../shared/data/phe-sich"},
                         {"kind": "phantom", "n_studies": 40, "seed": 101, "slices": 24, "size": 256}],
        "data.train_only": ["phantom"],
        "data.train_only_share": 0.1,
        "data.cache_dir": "runs/cache_two_hospitals_phantom_160",
    }


def test_the_painted_trauma_experiment_is_the_bundled_recipe_plus_phe_sich_hosts_for_every_subtype():
    differences = _differences("two_hospitals_phantom_resnet18", "two_hospitals_phantom_lesions_resnet18")
    assert "An experiment, not the bundled model" in differences.pop("card.limitations")
    sources = differences.pop("data.sources")
    assert sources[:3] == load_config("two_hospitals_phantom_resnet18").data.sources
    assert sources[3] == {"kind": "ctich_lesions", "root": "../shared/data/phe-sich", "host": "phe_sich",
                          "name": "phe_sich_lesions", "seed": 7,
                          "subtypes": ["epidural", "intraparenchymal", "intraventricular", "subarachnoid", "subdural"]}
    assert differences == {"name": "two_hospitals_phantom_lesions_resnet18",
                           "data.train_only": ["phantom", "phe_sich_lesions"], "data.train_only_share": 0.2,
                           "data.cache_dir": "runs/cache_two_hospitals_phantom_lesions_160", "export.int8": False}
