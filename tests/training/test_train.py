"""Splits, loss, sampling, augmentation, the cache, resume, DDP and the whole pipeline on phantoms."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ich_viewer.core.contract import CLASSES
from training.__main__ import main as training_main
from training.config import AugmentConfig, load_config
from training.data.cache import Cache, prepare
from training.data.dataset import AIR_HU, EpochSampler, augment_hu, sample_weights, shared_sample_weights
from training.experiments import comparison_markdown
from training.export import read_card
from training.splits import patient_folds, train_val_indices
from training.train import WeightedBCE, one_cycle, split_rows, train

REPO = Path(__file__).resolve().parents[2]


def smoke_config(tmp_path: Path, *overrides: str):
    return load_config("phantom_smoke", [f'out="{tmp_path}"', "model.size=32", "train.batch_size=8",
                                         'data.sources=[{kind="phantom", n_studies=6, seed=3, slices=8, size=64}]',
                                         *overrides])


@pytest.fixture(scope="module")
def smoke_cache(tmp_path_factory):
    out = tmp_path_factory.mktemp("smoke")
    config = smoke_config(out)
    return config, prepare(config, progress=False)


# --------------------------------------------------------------------------- splits


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 11), min_size=30, max_size=120), st.integers(2, 4), st.integers(0, 99))
def test_no_patient_is_ever_on_both_sides_of_a_split(patient_numbers, folds, seed):
    patients = [f"p{n}" for n in patient_numbers]
    if len(set(patients)) < folds:
        with pytest.raises(ValueError, match="patient-level folds"):
            patient_folds(patients, np.zeros(len(patients)), folds, seed)
        return
    labels = np.array([n % 3 == 0 for n in patient_numbers], int)
    for fold in range(folds):
        train_rows, val_rows = train_val_indices(patients, labels, folds, fold, seed)
        assert not {patients[i] for i in train_rows} & {patients[i] for i in val_rows}
        assert sorted([*train_rows, *val_rows]) == list(range(len(patients)))


def test_the_cache_split_keeps_patients_apart(smoke_cache):
    config, cache = smoke_cache
    train_rows, val_rows = split_rows(cache, config)
    assert len(val_rows) and len(train_rows)
    assert not {cache.records[i].patient for i in train_rows} & {cache.records[i].patient for i in val_rows}


# --------------------------------------------------------------------------- loss and sampling


def test_weighted_bce_against_hand_computed_value():
    logits = torch.tensor([[0.0, 2.0, -1.0, 0.0, 0.0, 0.0]])
    targets = torch.tensor([[1.0, 0.0, 0.0, 1.0, 0.0, 0.0]])
    # BCE per class: ln2, ln(1+e^2), ln(1+e^-1), ln2, ln2, ln2; weights 2,1,1,1,1,1 (sum 7)
    per_class = [np.log(2), np.log(1 + np.e**2), np.log(1 + np.e**-1), np.log(2), np.log(2), np.log(2)]
    expected = (2 * per_class[0] + sum(per_class[1:])) / 7
    assert float(WeightedBCE([2, 1, 1, 1, 1, 1])(logits, targets)) == pytest.approx(expected, rel=1e-6)
    # A positive weight of 3 on class 0 triples its positive term.
    weighted = WeightedBCE([2, 1, 1, 1, 1, 1], [3, 1, 1, 1, 1, 1])(logits, targets)
    assert float(weighted) == pytest.approx(expected + 2 * 2 * np.log(2) / 7, rel=1e-6)


def test_balanced_sampling_draws_rare_classes_more_often():
    labels = np.zeros((1000, 6), int)
    labels[:10, [0, 4]] = 1  # 1% subarachnoid
    labels[10:200, [0, 1]] = 1  # 19% epidural
    plain = np.bincount(EpochSampler(1000, 0).indices(), minlength=1000)[:10].sum()
    balanced = np.bincount(EpochSampler(1000, 0, sample_weights(labels, 1.0)).indices(), minlength=1000)[:10].sum()
    assert plain == 10 and balanced > 150  # about a third of draws with power 1


def test_sampler_is_deterministic_per_epoch_and_ranks_partition_the_draw():
    whole = EpochSampler(50, seed=1)
    whole.set_epoch(2)
    ranks = [EpochSampler(50, seed=1, rank=r, world=2) for r in range(2)]
    for s in ranks:
        s.set_epoch(2)
    assert sorted(ranks[0].indices() + ranks[1].indices()) == sorted(whole.indices()) == list(range(50))
    whole.set_epoch(3)
    assert whole.indices() != EpochSampler(50, seed=1).indices()


def test_augmentation_is_reproducible_and_fills_borders_with_air():
    hu = torch.full((1, 64, 64), 40.0)
    cfg = AugmentConfig(degrees=30, translate=0.2, scale=[0.8, 0.8])
    a = augment_hu(hu, cfg, torch.Generator().manual_seed(5))
    b = augment_hu(hu, cfg, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    assert float(a.min()) == pytest.approx(AIR_HU) and float(a[0, 32, 32]) == pytest.approx(40.0)


# --------------------------------------------------------------------------- cache


def test_prepare_writes_int16_at_model_size_and_resumes(smoke_cache):
    config, cache = smoke_cache
    assert cache.images.dtype == np.int16 and cache.images.shape == (48, 32, 32)
    assert cache.images.min() >= -1024 and cache.images.max() > 500  # air and bone survive the resize
    expected = np.array(cache.images)
    # Simulate an interruption: rows not marked done are decoded again, the rest is left alone.
    images = np.load(cache.root / "images.npy", mmap_mode="r+")
    images[5:20] = 0
    images.flush()
    done = np.load(cache.root / "done.npy")
    done[5:20] = False
    np.save(cache.root / "done.npy", done)
    with pytest.raises(RuntimeError, match="incomplete"):
        Cache.open(cache.root)
    assert np.array_equal(prepare(config, progress=False).images, expected)


def test_prepare_says_when_it_remakes_a_cache_made_for_other_options(tmp_path, caplog):
    config = smoke_config(tmp_path)
    prepare(config, progress=False)
    with caplog.at_level("WARNING"):
        prepare(config, progress=False)  # the same recipe: resumed, nothing said
        assert not caplog.records
        cache = prepare(smoke_config(tmp_path, "model.size=24"), progress=False)
    assert cache.images.shape[1:] == (24, 24)
    assert "was made with another size; it is made again" in caplog.text


# --------------------------------------------------------------------------- training


def _weights(path: Path) -> dict:
    return torch.load(path, weights_only=False)["model"]


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(smoke_cache, tmp_path):
    config, _ = smoke_cache
    straight = smoke_config(tmp_path / "a", f'data.cache_dir="{config.cache_dir}"')
    resumed = smoke_config(tmp_path / "b", f'data.cache_dir="{config.cache_dir}"')
    a = _weights(train(straight, progress=False))
    train(resumed, progress=False, stop_after=1)
    assert torch.load(resumed.run_dir / "checkpoint.pt", weights_only=False)["epoch"] == 1
    b = _weights(train(resumed, progress=False))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    log = [json.loads(line) for line in (resumed.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in log] == [1, 2] and all("val_auc" in e for e in log)


def test_a_changed_config_does_not_resume_silently(smoke_cache, tmp_path):
    config, _ = smoke_cache
    first = smoke_config(tmp_path, f'data.cache_dir="{config.cache_dir}"', "train.max_steps=1")
    train(first, progress=False)
    with pytest.raises(ValueError, match="another config"):
        train(smoke_config(tmp_path, f'data.cache_dir="{config.cache_dir}"', "train.lr=0.5"), progress=False)


def test_evaluate_and_export_refuse_weights_their_config_or_card_do_not_describe(smoke_cache, tmp_path, caplog):
    """Found by an outside tester: a fold-0 model evaluated with split.fold=1 got a card saying "no patient is on
    both sides" (its AUC on training patients), and export put a card written before retraining on the new
    weights (a Grad-CAM scale off 575 times)."""
    config, _ = smoke_cache
    base = ["--config", "phantom_smoke", "--no-progress", "--bootstrap", "5"]
    for option in (f'out="{tmp_path}"', "model.size=32", "train.batch_size=8", "train.max_steps=2",
                   'data.sources=[{kind="phantom", n_studies=6, seed=3, slices=8, size=64}]',
                   f'data.cache_dir="{config.cache_dir}"'):
        base += ["--set", option]
    for step in ("train", "evaluate"):
        assert training_main([step, *base]) == 0
    assert training_main(["evaluate", *base, "--set", "split.fold=1"]) == 2
    assert "was trained with other options (split.fold)" in caplog.text
    assert "Traceback" not in caplog.text
    # Trained again (another seed, from scratch): the card in eval/ is the old weights'.
    assert training_main(["train", *base, "--set", "seed=1", "--no-resume"]) == 0
    epochs = [json.loads(line)["epoch"] for line in (tmp_path / "phantom_smoke" / "metrics.jsonl").read_text().splitlines()]
    assert epochs == sorted(set(epochs))  # this run's epochs only, not the first run's before them
    caplog.clear()
    assert training_main(["export", *base, "--set", "seed=1"]) == 2
    assert "was written for another checkpoint" in caplog.text
    assert not (tmp_path / "phantom_smoke" / "model.onnx").exists()
    assert training_main(["evaluate", *base, "--set", "seed=1"]) == 0  # as the message says
    caplog.clear()
    assert training_main(["export", *base, "--set", "seed=1", "--set", 'export.license=""']) == 2
    assert "export.license is not set" in caplog.text  # no default licence: the data's terms decide it
    assert training_main(["export", *base, "--set", "seed=1"]) == 0
    assert read_card(tmp_path / "phantom_smoke" / "model.onnx")["license"].startswith("MIT")  # not CT-ICH's


def test_the_training_cli_says_what_is_wrong_in_one_line(tmp_path, caplog, monkeypatch):
    """Found by an outside tester: a mistyped option or a step run too early ended in a Python traceback."""
    base = ["--config", "phantom_smoke", "--set", f'out="{tmp_path}"', "--no-progress"]
    cases = {("--set", "train.epochs=abc"): "train.epochs must be a whole number, not 'abc'",
             ("--set", 'model.size="64"'): "model.size must be a whole number, not '64'",
             ("--set", "train.epochs=2.5"): "train.epochs must be a whole number, not 2.5",
             # a second tester: these passed the kind check and failed deep in training
             ("--set", "train.epochs=0"): "train.epochs must be at least 1, not 0",
             ("--set", "model.size=-5"): "model.size must be at least 16, not -5",
             ("--set", "train.class_weights=[1,2]"): "train.class_weights must be six numbers",
             ("--set", "augment.scale=[2]"): "augment.scale must be two numbers, low then high, not [2]",
             ("--set", "model.clip=[100,-20]"): "model.clip must be two numbers, low then high"}
    for extra, expected in cases.items():
        caplog.clear()
        assert training_main(["train", *base, *extra]) == 2
        assert expected in caplog.text and "Traceback" not in caplog.text
    caplog.clear()
    import training.train

    def broken(*args, **kwargs):
        raise RuntimeError("size of tensor a (2) must match")

    monkeypatch.setattr(training.train, "train", broken)  # anything unforeseen: a sentence and exit 1
    assert training_main(["train", *base]) == 1
    assert "error: train: unexpected RuntimeError: size of tensor a (2) must match" in caplog.text
    assert "Traceback" not in caplog.text
    caplog.clear()
    assert training_main(["evaluate", *base]) == 2  # nothing trained yet
    assert "error: evaluate: no prepared cache at" in caplog.text and "Traceback" not in caplog.text


def test_distributed_data_parallel_with_two_cpu_processes(smoke_cache, tmp_path):
    config, _ = smoke_cache
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "training", "train", "--config", "phantom_smoke", "--no-progress",
               "--set", f'out="{tmp_path}"', "--set", "model.size=32", "--set", "train.batch_size=8",
               "--set", 'data.sources=[{kind="phantom", n_studies=6, seed=3, slices=8, size=64}]',
               "--set", f'data.cache_dir="{config.cache_dir}"', "--set", "train.epochs=1"]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    state = torch.load(tmp_path / "phantom_smoke" / "checkpoint.pt", weights_only=False)
    assert state["world_size"] == 2 and state["epoch"] == 1
    # Each process took half of the 40-ish training slices per epoch: steps = floor(half / batch).
    train_rows, _ = split_rows(Cache.open(config.cache_dir), config)
    assert state["step"] == (len(train_rows) // 2) // 8


def test_the_whole_pipeline_on_phantoms_exports_a_contract_model(tmp_path):
    overrides = ["--set", f'out="{tmp_path}"', "--set", "model.size=32", "--set", "train.batch_size=8",
                 "--set", 'data.sources=[{kind="phantom", n_studies=6, seed=3, slices=8, size=64}]',
                 "--set", "export.int8=true", "--no-progress", "--bootstrap", "50"]
    assert training_main(["all", "--config", "phantom_smoke", *overrides]) == 0
    run = tmp_path / "phantom_smoke"
    card = read_card(run / "model.onnx")
    assert card["classes"][0] == "any" and set(card["thresholds"]) >= {"balanced", "high_sensitivity",
                                                                        "precision_0.7", "default"}
    assert card["validation"]["split"].startswith("patient-level")
    assert len(card["operating_curves"]["subdural"]["thresholds"]) >= 2
    assert (run / "eval" / "report.md").is_file() and (run / "model.int8.onnx").is_file()
    from ich_viewer.core.model import IchModel as Loaded

    assert Loaded(run / "model.int8.onnx").quantised and not Loaded(run / "model.onnx").quantised  # the card dialog says so
    evaluation = json.loads((run / "eval" / "evaluation.json").read_text())
    table = comparison_markdown({"phantom_smoke": run, "missing": tmp_path / "none"}, "phantom_smoke")
    assert f"{evaluation['log_loss']:.4f}" in table and "| missing | not evaluated |" in table
    assert training_main(["train", "--config", "no_such_recipe"]) == 2
    # Bundling an INT8 recipe ships the INT8 file, hashed, with its AUC change in the report.
    from ich_viewer.core.model import IchModel, sha256
    from training.bundle import run_bundle

    # The same recipe on fold 1 (same cache) joins the report's out-of-fold table.
    fold1 = ["--set", 'name="phantom_smoke_f1"', "--set", "split.fold=1", "--set", f'data.cache_dir="{run / "cache"}"']
    for step in ("train", "evaluate"):
        assert training_main([step, "--config", "phantom_smoke", *overrides, *fold1]) == 0
    summary = run_bundle(load_config("phantom_smoke", overrides[1::2][:4] + ["export.int8=true"]), root=tmp_path,
                         cross_validation=[str(tmp_path / "phantom_smoke_f1")])
    models = tmp_path / "resources" / "models"
    entry = json.loads((models / "manifest.json").read_text())["models"][0]
    assert entry["file"] == "phantom_smoke.int8.onnx" and entry["precision"] == "int8"
    assert sha256(models / entry["file"]) == entry["sha256"] == summary["sha256"]
    # The same INT8 weights; the card is the FP32 run's plus the external checks the bundle measured on it.
    from ich_viewer.core.model import weights_sha256

    assert weights_sha256((models / entry["file"]).read_bytes()) == weights_sha256((run / "model.int8.onnx").read_bytes())
    bundled_card = dict(IchModel.bundled(models).card.raw)
    external = bundled_card.pop("external_validation")
    assert bundled_card == card and external == json.loads(
        (tmp_path / "training" / "reports" / "external_checks.json").read_text())
    report = (tmp_path / "training" / "reports" / "report.md").read_text()
    int8 = json.loads((run / "export.json").read_text())["int8"]
    assert "The bundled file is INT8" in report and f"| INT8 | {int8['int8_mean_auc']} |" in report
    held_out = {name: json.loads((tmp_path / name / "eval" / "evaluation.json").read_text())
                for name in ("phantom_smoke", "phantom_smoke_f1")}
    assert "## Cross-validation" in report and "| phantom_smoke_f1 | " in report
    pooled = next(line for line in report.splitlines() if line.startswith("| pooled out-of-fold"))
    assert f"| {sum(e['n_patients'] for e in held_out.values())} / {sum(e['n_slices'] for e in held_out.values())} |" \
        in pooled


def test_train_only_sources_never_reach_validation(tmp_path):
    config = smoke_config(tmp_path, 'data.sources=[{kind="phantom", n_studies=6, seed=3, slices=8, size=64}, '
                                    '{kind="phantom", n_studies=5, seed=4, slices=4, size=64, name="extra"}]',
                          'data.train_only=["extra"]')
    cache = prepare(config, progress=False)
    train_rows, val_rows = split_rows(cache, config)
    extra = {i for i, r in enumerate(cache.records) if r.source == "extra"}
    assert len(extra) == 20 and extra <= set(train_rows.tolist()) and not extra & set(val_rows.tolist())
    assert len(train_rows) + len(val_rows) == len(cache.records) and len(val_rows) > 0


def test_gradient_accumulation_and_bf16_autocast(smoke_cache, tmp_path):
    config, cache = smoke_cache
    run = smoke_config(tmp_path, f'data.cache_dir="{config.cache_dir}"', "train.epochs=1", "train.accumulate=2",
                       'train.amp="bf16"')
    state = torch.load(train(run, progress=False), weights_only=False)
    train_rows, _ = split_rows(cache, run)
    assert state["step"] == (len(train_rows) // 8) // 2  # one optimiser step per two batches
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_the_comparison_says_in_words_what_a_run_changed_on_the_same_patients(tmp_path):
    def evaluation(run, aucs, log_loss, n_slices=100):
        (tmp_path / run / "eval").mkdir(parents=True)
        slices = {c: {"auc": a, "n_pos": 5} for c, a in zip(CLASSES, aucs)}
        (tmp_path / run / "eval" / "evaluation.json").write_text(json.dumps(
            {"n_patients": 10, "n_slices": n_slices, "log_loss": log_loss, "slice": slices,
             "study": {"any": {"auc": 0.7}}}))
        return tmp_path / run

    runs = {"base": evaluation("base", [0.8, 0.8, 0.8, 0.8, 0.8, 0.8], 0.2),
            "trial": evaluation("trial", [0.9, 0.8, 0.805, 0.8, 0.6, None], 0.3),
            "other_fold": evaluation("other_fold", [0.5] * 6, 0.4, n_slices=90)}
    table = comparison_markdown(runs, "base")
    assert ("`trial` against `base` (same held-out set): slice AUC higher on any +0.100; lower on "
            "subarachnoid -0.200; log loss 0.3000 vs 0.2000.") in table
    assert "`other_fold` against" not in table  # a different held-out set is never compared


def test_a_recipe_extends_another_table_by_table(tmp_path):
    base, child = load_config("ctich_resnet18_phantom").to_dict(), load_config("ctich_resnet18_lesions").to_dict()
    assert child["split"] == {**base["split"], "fold": 3}  # one key changed, the rest of the table inherited
    assert child["model"] == base["model"] and child["augment"] == base["augment"] and child["train"] == base["train"]
    assert [s["kind"] for s in child["data"]["sources"]] == ["ctich_png", "phantom", "ctich_lesions"]  # arrays replaced
    assert child["export"]["int8"] is False and base["export"]["int8"] is True
    loop = tmp_path / "loop.toml"
    loop.write_text(f'extends = "{loop}"\nname = "loop"\n')
    with pytest.raises(ValueError, match="extends itself"):
        load_config(loop)


@pytest.mark.parametrize("total_steps", [1, 2, 3, 10, 15, 20, 40])
def test_the_learning_rate_schedule_survives_runs_too_short_for_a_warmup(total_steps):
    """10 steps at 10% warmup is a one-step warmup, which made PyTorch's OneCycleLR divide by zero."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    scheduler = one_cycle(optimizer, 1e-3, total_steps, warmup=0.1)
    rates = [scheduler.get_last_lr()[0]]
    for _ in range(total_steps - 1):  # the last step() would step past the schedule's end
        optimizer.step()
        scheduler.step()
        rates.append(scheduler.get_last_lr()[0])
    assert all(np.isfinite(rates)) and max(rates) <= 1e-3 + 1e-12
    if total_steps >= 2:  # the run trains near the chosen rate, not at OneCycle's tiny start or end
        assert max(rates) > 0.5e-3
    if total_steps >= 20:  # a real warmup: the rate rises before it anneals
        assert rates[0] < max(rates)


def test_leave_one_source_out_and_train_on_everyone(tmp_path):
    config = smoke_config(tmp_path, 'data.sources=[{kind="phantom", n_studies=6, seed=3, slices=8, size=64}, '
                                    '{kind="phantom", n_studies=5, seed=4, slices=4, size=64, name="other"}]')
    cache = prepare(config, progress=False)
    other = {i for i, r in enumerate(cache.records) if r.source == "other"}
    held = config.__class__(**{**config.__dict__, "split": type(config.split)(held_out_source="other")})
    train_rows, val_rows = split_rows(cache, held)
    assert set(val_rows.tolist()) == other and not other & set(train_rows.tolist())
    assert len(train_rows) + len(val_rows) == len(cache.records)
    everyone = config.__class__(**{**config.__dict__, "split": type(config.split)(fold=-1)})
    train_rows, val_rows = split_rows(cache, everyone)
    assert len(val_rows) == 0 and len(train_rows) == len(cache.records)
    nowhere = config.__class__(**{**config.__dict__, "split": type(config.split)(held_out_source="nowhere")})
    with pytest.raises(ValueError, match="held_out_source 'nowhere'"):
        split_rows(cache, nowhere)


def test_slab_neighbours_stay_inside_a_study_and_stop_at_gaps():
    from training.data.base import SliceRecord
    from training.train import slice_neighbours

    records = [SliceRecord(f"k{i}", "p", study, index, None, "s") for i, (study, index) in
               enumerate([("a", 1), ("a", 2), ("a", 3), ("a", 5), ("b", 4), ("b", 2), ("b", 3)])]
    assert slice_neighbours(records).tolist() == [[-1, 1], [0, 2], [1, -1], [-1, -1], [6, -1], [-1, 6], [5, 4]]


def test_a_thick_slab_blends_the_neighbours_and_the_export_window_keeps_saturated_pixels():
    from training.data.dataset import CachedSlices

    images = np.stack([np.full((16, 16), v, np.int16) for v in (0, 40, 20)])
    images[1, 0, 0], images[1, 0, 1] = -20, 100  # saturated at the PNG export's floor and ceiling
    labels = np.zeros((3, 6), np.int8)
    slab = AugmentConfig(flip=False, degrees=0, translate=0, scale=[1, 1], slab=1.0)
    data = CachedSlices(images, labels, [1], slab, neighbours=np.array([[-1, 1], [0, 2], [1, -1]]))
    values = {float(data[0][0][0, 5, 5]) for data.epoch in range(20)}
    assert all(10.0 - 1e-4 <= v <= 40.0 + 1e-4 for v in values) and len(values) > 5  # (1 - w) 40 + w (0 + 20) / 2
    window = AugmentConfig(flip=False, degrees=0, translate=0, scale=[1, 1], export_window=True)
    data = CachedSlices(images, labels, [1], window, window_scale=np.array([[40, 120, 2 / 3, 1.0]] * 3, np.float32))
    images[1, 5, 5] = 70
    for data.epoch in range(10):
        hu = data[0][0][0]
        assert float(hu[0, 0]) == -20 and float(hu[0, 1]) == 100  # "at or below -20" stays so
        assert 60.0 - 1e-4 <= float(hu[5, 5]) <= 70.0 + 1e-4  # 40 + 30 x (2/3 .. 1)


def test_kernel_and_resolution_augmentation_change_texture_not_level():
    rng = np.random.default_rng(0)
    hu = torch.from_numpy(rng.normal(40, 10, (1, 64, 64)).astype(np.float32))
    plain = AugmentConfig(flip=False, degrees=0, translate=0, scale=[1, 1])
    assert torch.equal(augment_hu(hu, plain, torch.Generator().manual_seed(1)), hu)
    for field, value, smoother in [("blur", 2.0, True), ("resolution", [0.3, 0.3], True), ("sharpen", 1.0, False)]:
        cfg = AugmentConfig(flip=False, degrees=0, translate=0, scale=[1, 1], **{field: value})
        changed = [augment_hu(hu, cfg, torch.Generator().manual_seed(s)) for s in range(12)]
        changed = [c for c in changed if not torch.equal(c, hu)]
        assert changed, field
        for c in changed:
            assert float(c.mean()) == pytest.approx(float(hu.mean()), abs=1.0)
            assert (float(c.std()) < float(hu.std())) == smoother, field


def test_a_run_on_every_patient_takes_its_card_from_the_folds_pooled_out_of_fold_predictions(tmp_path):
    import csv

    from training.evaluate import run_evaluation
    from training.thresholds import calibrate

    sets = [f'out="{tmp_path}"', "model.size=32", "train.batch_size=8", "split.folds=2",
            'data.sources=[{kind="phantom", n_studies=4, seed=3, slices=8, size=64}, '
            '{kind="phantom", n_studies=2, seed=4, slices=8, size=64, name="other"}]',
            f'data.cache_dir="{tmp_path / "cache"}"']
    cli = ["--config", "phantom_smoke", *[a for s in sets for a in ("--set", s)], "--no-progress", "--bootstrap", "20"]
    assert training_main(["prepare", *cli]) == 0
    folds = []
    for fold in (0, 1):
        run = ["--set", f'name="smoke_f{fold}"', "--set", f"split.fold={fold}"]
        assert training_main(["train", *cli, *run]) == 0 and training_main(["evaluate", *cli, *run]) == 0
        folds.append(str(tmp_path / f"smoke_f{fold}"))
    everyone = ['name="smoke_all"', "split.fold=-1", "export.int8=true"]
    assert training_main(["train", *cli, *[a for s in everyone for a in ("--set", s)]]) == 0
    config = load_config("phantom_smoke", sets + everyone)
    with pytest.raises(ValueError, match="none is held out"):
        run_evaluation(config, n_boot=10)
    with pytest.raises(ValueError, match="hold out 3 patients, but this run's labelled patients are 6"):
        run_evaluation(config, n_boot=10, out_of_fold=folds[:1])
    run_evaluation(config, n_boot=10, out_of_fold=folds)
    assert training_main(["export", *cli, *[a for s in everyone for a in ("--set", s)]]) == 0
    card = read_card(tmp_path / "smoke_all" / "model.onnx")
    assert card["validation"]["split"].startswith("pooled out-of-fold: 2 patient-level fold runs")
    rows = [r for f in folds for r in csv.DictReader(open(Path(f) / "eval" / "predictions.csv", newline=""))]
    labels = np.array([[int(r[f"label_{c}"]) for c in CLASSES] for r in rows])
    probs = np.array([[float(r[f"prob_{c}"]) for c in CLASSES] for r in rows])
    assert card["validation"]["slices"] == len(rows) == 48 and len({r["patient"] for r in rows}) == 6
    expected = calibrate(labels, probs, [r["patient"] for r in rows])
    for preset in ("balanced", "high_sensitivity", "precision_0.7"):
        assert card["thresholds"][preset] == expected[preset]
    assert card["calibration"] == expected["calibration"] and card["threshold_rules"] == expected["rules"]
    assert card["thresholds_unmet"] == expected["unmet"] and card["slice_thickness_mm"] is None
    assert json.loads((tmp_path / "smoke_all" / "export.json").read_text())["int8"]["slices"] == "training"
    # Leave the second "hospital" out, then bundle: the report and the bundled card lead with it.
    loho = ['name="smoke_without_other"', 'split.held_out_source="other"']
    for step in ("train", "evaluate"):
        assert training_main([step, *cli, *[a for s in loho for a in ("--set", s)]]) == 0
    from ich_viewer.core.model import IchModel
    from training.bundle import run_bundle

    run_bundle(config, root=tmp_path, cross_validation=folds, leave_one_out=[str(tmp_path / "smoke_without_other")])
    bundled = IchModel.bundled(tmp_path / "resources" / "models")  # sealed again after the card grew
    loho_numbers = bundled.card.raw["external_validation"]["leave_one_hospital_out"]
    assert loho_numbers["other"]["patients"] == 2 and loho_numbers["other"]["slices"] == 16
    report = (tmp_path / "training" / "reports" / "report.md").read_text()
    assert "## Leave one hospital out" in report and "| other (`smoke_without_other`) | 2 / 16 |" in report
    assert "| pooled out-of-fold [95% CI] | 6 / 48 |" in report.replace("  ", " ")
    # The same report for a candidate that is not bundled: its own folder, the bundled files untouched.
    from training.bundle import run_report

    before = (tmp_path / "resources" / "models" / "manifest.json").read_text()
    assert run_report(config, root=tmp_path, leave_one_out=[str(tmp_path / "smoke_without_other")]) == {
        "report": "training/reports/smoke_all/report.md"}
    candidate = (tmp_path / "training" / "reports" / "smoke_all" / "report.md").read_text()
    assert "## Leave one hospital out" in candidate and "pooled out-of-fold predictions" in candidate
    assert (tmp_path / "resources" / "models" / "manifest.json").read_text() == before


def test_a_train_only_share_caps_the_phantoms_draws_and_balances_each_side_apart():
    rng = np.random.default_rng(0)
    real = (rng.random((200, 6)) < 0.05).astype(np.int64)
    real[:, 0] = real[:, 1:].max(1)
    phantom = np.zeros((100, 6), np.int64)
    phantom[:60, [0, 5]] = 1  # a phantom rich in subdural, as the real one is
    labels = np.concatenate([real, phantom])
    is_phantom = np.arange(300) >= 200
    uncapped = sample_weights(labels, 0.5)
    assert uncapped[is_phantom].sum() > 0.25  # a third of the slices, near a third of the draws: what the share is for
    weights = shared_sample_weights(labels, 0.5, is_phantom, 0.1)
    assert weights.sum() == pytest.approx(1.0) and weights[is_phantom].sum() == pytest.approx(0.1)
    # the real rows keep their own balance: the phantom's subdural no longer dilutes the real subdural
    assert np.allclose(weights[~is_phantom], 0.9 * sample_weights(real, 0.5))
    draws = EpochSampler(300, 0, weights, epoch_size=20_000).indices()
    assert np.mean(np.asarray(draws) >= 200) == pytest.approx(0.1, abs=0.01)
    with pytest.raises(ValueError, match="train_only_share"):
        shared_sample_weights(labels, 0.5, is_phantom, 1.0)


def test_a_smoke_or_test_run_is_not_bundled_into_the_viewer(tmp_path, monkeypatch, caplog):
    """Left alone at stop 27: ``python -m training bundle --config phantom_smoke`` would have replaced the viewer's
    model with seconds of training on phantoms (and spent the issue's one replacement). It is refused before
    anything is written; the same step into a scratch folder (the tests' use) still runs. So is a run whose card's
    curves come from one fold (left alone at stop 26): the contract asks for pooled out-of-fold curves."""
    from training import bundle

    monkeypatch.setattr(bundle, "REPO", tmp_path)  # the repository, as the step sees it: nothing real at stake
    smoke = load_config("phantom_smoke")
    assert bundle.bundling_refusal(smoke) == "it learned from synthetic phantoms only"
    real = load_config("two_hospitals_resnet18")
    assert bundle.bundling_refusal(real) is None
    assert bundle.bundling_refusal(load_config("two_hospitals_resnet18", ["train.max_steps=3"])) == \
        "its training stopped after 3 optimiser steps (a test or smoke run)"
    with pytest.raises(ValueError, match="phantom_smoke is not bundled into the viewer: it learned from synthetic"):
        bundle.run_bundle(smoke)
    assert training_main(["bundle", "--config", "phantom_smoke"]) == 2
    assert "synthetic phantoms only" in caplog.text
    assert not (tmp_path / "resources").exists()
    one_fold = load_config("two_hospitals_resnet18", [f"out={tmp_path / 'runs'}"])
    (one_fold.run_dir / "eval").mkdir(parents=True)
    split = {"validation": {"split": "patient-level: fold 0 of 3 stratified grouped folds (seed 0)"}}
    (one_fold.run_dir / "eval" / "card.json").write_text(json.dumps(split))
    assert "come from one fold's patients" in bundle.bundling_refusal(one_fold)  # the contract asks for pooled curves
    split["validation"]["split"] = "pooled out-of-fold: 3 patient-level fold runs (f0, f1, f2), ..."
    (one_fold.run_dir / "eval" / "card.json").write_text(json.dumps(split))
    assert bundle.bundling_refusal(one_fold) is None
