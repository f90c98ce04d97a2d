"""Self-supervised pretraining (training/pretrain.py): its loss, its slices, and the trunk a recipe starts from."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pydicom
import pytest
import torch
import torchvision

from tests.conftest import dicom_testfile
from training.config import load_config
from training.data.cache import prepare
from training.model import build_model
from training.pretrain import TwoViews, nt_xent, pretrain, unlabelled_slices, view_augmentation


def test_nt_xent_against_hand_computed_value():
    z = torch.eye(3, 4)  # three orthonormal embeddings, each view identical to its partner
    # Each of the 6 views: its partner at cosine 1, the 4 other views at 0, itself excluded.
    expected = -math.log(math.exp(1 / 0.5) / (math.exp(1 / 0.5) + 4))
    assert nt_xent(z, z.clone(), 0.5).item() == pytest.approx(expected, rel=1e-6)
    assert nt_xent(z, z.roll(1, 0), 0.5).item() > expected + 1  # partners that disagree cost more


def test_a_slice_drawn_twice_gets_new_views_and_the_same_draw_the_same_views():
    images = np.random.default_rng(0).normal(30, 20, (3, 32, 32)).astype(np.int16)
    dataset = TwoViews(images, view_augmentation(load_config("phantom_smoke").augment), seed=1)
    a1, a2 = dataset[(0, 2)]
    assert not torch.equal(a1, a2)  # two views of one draw differ
    b1, _ = dataset[(5, 2)]
    assert not torch.equal(a1, b1)  # the same slice in another draw
    assert torch.equal(dataset[(0, 2)][0], a1)  # reproducible


def test_pretraining_leaves_the_held_out_hospital_out_and_its_trunk_is_what_a_recipe_starts_from(tmp_path):
    dicom = tmp_path / "unlabelled"
    dicom.mkdir()
    shutil.copy(dicom_testfile("CT_small.dcm"), dicom / "ct.dcm")  # a real CT slice, 128 x 128
    overrides = [f'out="{tmp_path}"', "model.size=32", 'name="ssl"',
                 'data.sources=[{kind="phantom", n_studies=4, seed=3, slices=6, size=64}, '
                 '{kind="phantom", n_studies=3, seed=4, slices=4, size=64, name="other"}]',
                 'split.held_out_source="other"', "pretrain.steps=2", "pretrain.batch_size=4", "pretrain.size=32",
                 f'pretrain.dicom_folders=["{dicom}"]']
    config = load_config("phantom_smoke", overrides)
    cache = prepare(config, progress=False)

    images, counts = unlabelled_slices(config)
    assert counts == {"phantom": 24, "unlabelled": 1}  # not one slice of "other", the held-out source
    assert images.shape == (25, 32, 32) and images.dtype == np.int16
    phantom_rows = [i for i, r in enumerate(cache.records) if r.source == "phantom"]
    assert np.array_equal(images[:24], cache.images[phantom_rows])
    ds = pydicom.dcmread(dicom / "ct.dcm")  # the DICOM slice arrives in HU, resized
    hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    assert abs(float(images[24].mean()) - hu.mean()) < 0.02 * np.ptp(hu)

    torch.manual_seed(config.seed)
    initial = torchvision.models.resnet18(weights=None).conv1.weight.detach().clone()  # the encoder's start
    path = pretrain(config, progress=False)
    state = torch.load(path, weights_only=True)
    assert not torch.equal(state["conv1.weight"], initial)  # two steps moved it
    log = [json.loads(line) for line in (config.run_dir / "pretrain.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 2 and math.isfinite(log[-1]["loss"])

    fine_tuned = build_model(load_config("phantom_smoke", [*overrides, f'model.pretrained="{path}"']))
    assert torch.equal(fine_tuned.trunk[0].weight, state["conv1.weight"])
    assert torch.equal(fine_tuned.trunk[-1][1].conv2.weight, state["layer4.1.conv2.weight"])
    # the windows are normalised as in pretraining
    assert fine_tuned.preprocess.mean == pytest.approx(0.449)


def test_a_recipe_whose_windows_do_not_fit_a_torchvision_trunk_is_refused(tmp_path):
    from training.pretrain import Encoder

    config = load_config("phantom_smoke", ['model.windows=[{name="brain", center=40, width=80}]'])
    with pytest.raises(ValueError, match="three windows"):
        Encoder(config)


def test_dicom_folders_given_as_one_string_are_refused_rather_than_read_letter_by_letter(tmp_path):
    config = load_config("phantom_smoke", [f'out="{tmp_path}"', "model.size=32",
                                           'data.sources=[{kind="phantom", n_studies=2, seed=3, slices=4, size=64}]',
                                           'pretrain.dicom_folders="../shared/data/rsna-unlabelled"'])
    prepare(config, progress=False)
    with pytest.raises(ValueError, match="must be a list"):
        unlabelled_slices(config)
