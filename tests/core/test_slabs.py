"""Thin series fed as slabs of the model's slice thickness: the weights, and the engine feeding them.

The weights are checked on positions written out by hand; the engine on the real 0.618 mm CQ500-CT-0 series
with the bundled model in ONNX Runtime, against the same model run on slabs averaged here.
"""

from __future__ import annotations

import csv
import json
import shutil
from types import SimpleNamespace

import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate, generate_frames

import ich_viewer
from ich_viewer.__main__ import main
from ich_viewer.core.contract import CLASSES
from ich_viewer.core.inference import predict_series
from ich_viewer.core.model import IchModel
from ich_viewer.core.slabs import plan_for_series, plan_slabs
from ich_viewer.core.viewer_model import ViewerModel
from ich_viewer.core.volume import VolumeLoader, read_volume
from ich_viewer.paths import models_dir
from tests.model_cards import bundled_with_card

# --------------------------------------------------------------------------- the weights


def test_an_exact_multiple_is_seven_whole_slices_and_two_halves():
    plan = plan_slabs(np.arange(30) * 0.625, 0.625, 5.0)
    assert list(plan.neighbours[15]) == list(range(11, 20))
    np.testing.assert_allclose(plan.weights[15] * 8, [0.5, 1, 1, 1, 1, 1, 1, 1, 0.5])
    assert plan.describe() == "fed as 5 mm slabs (8 slices of 0.625 mm)"


@pytest.mark.parametrize("spacing, expected", [
    (2.0, [1.5, 2.0, 1.5]),  # [-2.5, 2.5] over 2 mm slices: one whole, 1.5 mm of each neighbour
    (1.5, [0.25, 1.5, 1.5, 1.5, 0.25]),
    (3.0, [1.0, 3.0, 1.0]),
])
def test_a_fraction_weighs_each_slice_by_the_length_of_it_inside_the_slab(spacing, expected):
    plan = plan_slabs(np.arange(9) * spacing + 100.0, spacing, 5.0)
    half = len(expected) // 2
    assert list(plan.neighbours[4]) == list(range(4 - half, 5 + half))
    np.testing.assert_allclose(plan.weights[4], np.array(expected) / sum(expected))
    assert all(np.isclose(w.sum(), 1.0) for w in plan.weights)


def test_at_the_ends_the_slab_is_cut_short_and_renormalised():
    plan = plan_slabs(np.arange(30) * 0.625, 0.625, 5.0)
    assert list(plan.neighbours[0]) == [0, 1, 2, 3, 4]  # 4.5 slices' worth: itself, three whole, a half
    np.testing.assert_allclose(plan.weights[0], np.array([1, 1, 1, 1, 0.5]) / 4.5)
    assert list(plan.neighbours[29]) == [25, 26, 27, 28, 29]
    np.testing.assert_allclose(plan.weights[29], plan.weights[0][::-1])


def test_a_gap_is_not_filled_in_and_slices_at_one_position_share_it():
    z = np.concatenate([np.arange(10) * 0.625, 9 * 0.625 + 6.0 + np.arange(10) * 0.625])
    plan, alone = plan_slabs(z, 0.625, 5.0), plan_slabs(z[:10], 0.625, 5.0)
    for i in range(10):  # nothing past the 6 mm gap is within 2.5 mm: as if the series ended there
        assert list(plan.neighbours[i]) == list(alone.neighbours[i])
        np.testing.assert_allclose(plan.weights[i], alone.weights[i])
    twice = plan_slabs([0.0, 0.625, 1.25, 1.25, 1.875, 2.5], 0.625, 5.0)
    w = dict(zip(twice.neighbours[0].tolist(), twice.weights[0]))
    assert np.isclose(w[2], w[3]) and np.isclose(w[2] + w[3], w[1])  # two copies count as one slice


@pytest.mark.parametrize("z, spacing, thickness", [
    (np.arange(10) * 4.0, 4.0, 5.0),  # not clearly thinner (4 >= 0.75 x 5)
    (np.arange(10) * 5.0, 5.0, 5.0),
    (np.arange(10) * 0.625, 0.625, None),  # the card states no thickness (the bundled model's)
    ([12.0], 0.625, 5.0),  # a single slice
    (np.arange(10) * 0.625, None, 5.0),  # spacing unknown
    (np.arange(10) * 0.625, 0.0, 5.0),
    (np.arange(10)[::-1] * 0.625, 0.625, 5.0),  # positions not in order along the normal
])
def test_no_slabs_when_thick_enough_or_thickness_or_spacing_unknown(z, spacing, thickness):
    assert plan_slabs(z, spacing, thickness) is None
    assert plan_slabs(np.arange(10) * 3.7, 3.7, 5.0) is not None  # just below 0.75 x 5


def test_a_series_not_ordered_by_position_gets_no_slabs():
    geometry = SimpleNamespace(ordering="instance", slice_spacing=0.625)
    assert plan_for_series(SimpleNamespace(geometry=geometry, z=np.arange(10) * 0.625), 5.0) is None


def test_a_neighbour_that_failed_to_decode_is_left_out_and_the_others_renormalised():
    plan = plan_slabs(np.arange(20) * 0.625, 0.625, 5.0)
    hu = np.arange(20, dtype=np.float32)[:, None, None] * np.ones((1, 2, 3), np.float32)  # slice i is all i
    available = np.array([i for i in range(20) if i != 9])
    slabs = plan.average([10, 15], available, hu[available])
    # slice 10's slab: halves of 6 and 14, wholes of 7..13; without 9 (1/8 of it) the other 7/8 make it up
    assert np.allclose(slabs[0], (0.5 * 6 + 7 + 8 + 10 + 11 + 12 + 13 + 0.5 * 14) / 7)
    assert np.allclose(slabs[1], 15.0)  # 9 is not in slice 15's slab: its symmetric mean is itself


# --------------------------------------------------------------------------- the engine, on real data


@pytest.fixture(scope="module")
def bundled():
    return IchModel.bundled(models_dir())


@pytest.fixture(scope="module")
def cq500_study(cq500_dir):
    return ich_viewer.load(cq500_dir).studies[0]


@pytest.fixture(scope="module")
def cq500(cq500_study):
    return cq500_study.series[0]


@pytest.fixture(scope="module")
def cq500_block(cq500, tmp_path_factory):
    """Twelve consecutive real 0.618 mm slices from the middle of CQ500-CT-0, and the same with its sixth
    slice's JPEG data cut short (it cannot be decoded)."""
    root = tmp_path_factory.mktemp("cq500-block")
    (root / "good").mkdir(), (root / "broken").mkdir()
    files = cq500.files[110:122]
    for f in files:
        shutil.copy(f, root / "good")
        shutil.copy(f, root / "broken")
    ds = pydicom.dcmread(files[5])
    frame = bytearray(next(generate_frames(ds.PixelData, number_of_frames=1)))
    frame[len(frame) // 4:] = bytes(len(frame) - len(frame) // 4)
    ds.PixelData = encapsulate([bytes(frame)])
    ds.save_as(root / "broken" / ds.filename.rsplit("/", 1)[-1])
    return ich_viewer.load(root / "good").series[0], ich_viewer.load(root / "broken").series[0]


def _slab_by_hand(volume, plan, i, leave_out=()):
    idx, w = plan.neighbours[i], plan.weights[i]
    keep = ~np.isin(idx, list(leave_out))
    return np.average(volume[idx[keep]].astype(np.float64), axis=0, weights=w[keep]).astype(np.float32)


def test_each_slice_gets_the_model_output_of_the_slab_centred_on_it(bundled, cq500_block):
    series, _ = cq500_block
    volume, plan = read_volume(series), plan_for_series(series, 5.0)
    assert plan is not None and round(plan.spacing_mm, 3) == 0.618
    streamed = []
    prediction = predict_series(bundled, volume, slabs=plan, batch_size=5, on_batch=streamed.append)
    by_hand = bundled.run(np.stack([_slab_by_hand(volume, plan, i) for i in range(len(series))]))
    assert prediction.done.all() and prediction.slabs is plan and len(streamed) == 3  # still streamed per batch
    np.testing.assert_allclose(prediction.probabilities, by_hand.probabilities, atol=1e-5)
    np.testing.assert_allclose(prediction.cam, by_hand.cam, atol=1e-5)
    thin = predict_series(bundled, volume).probabilities
    assert np.abs(thin - prediction.probabilities).max() > 1e-3  # the slabs are what the model saw


def test_a_slice_that_cannot_be_decoded_is_left_out_of_its_neighbours_slabs(bundled, cq500_block):
    good, broken = cq500_block
    loader = VolumeLoader(broken)
    plan = plan_for_series(broken, 5.0)
    prediction = predict_series(bundled, loader, len(broken), slabs=plan, batch_size=4)
    assert list(prediction.failed) == [5] and "JPEG" in prediction.failed[5]
    assert np.isnan(prediction.probabilities[5]).all() and prediction.complete
    volume = read_volume(good)  # the intact data, so the slabs by hand can leave slice 5 out themselves
    rows = [i for i in range(len(broken)) if i != 5]
    by_hand = bundled.run(np.stack([_slab_by_hand(volume, plan, i, leave_out=[5]) for i in rows]))
    np.testing.assert_allclose(prediction.probabilities[rows], by_hand.probabilities, atol=1e-5)
    assert 5 in plan.neighbours[4] and 5 in plan.neighbours[8]  # they did have it in their slabs


def test_the_viewer_feeds_slabs_only_when_the_card_states_a_thicker_slice(bundled, cq500_study, tmp_path):
    viewer = ViewerModel()
    viewer.set_model(bundled)
    viewer.open_series(cq500_study, cq500_study.series[0])
    assert bundled.card.raw["slice_thickness_mm"] == 5.0  # CT-ICH and PHE-SICH
    plan = viewer.slab_plan()
    assert len(plan) == 238 and plan.describe() == "fed as 5 mm slabs (8.09 slices of 0.618 mm)"
    assert "model fed 5 mm slabs (8.09 x 0.618 mm)" in viewer.corner_lines()
    viewer.start_prediction()
    assert viewer.prediction.slabs is plan  # an export after a cancelled run still says how it was fed
    viewer.set_model(IchModel(bundled_with_card(tmp_path / "m1.onnx", slice_thickness_mm=0.625)))
    assert viewer.slab_plan() is None
    viewer.set_model(IchModel(bundled_with_card(tmp_path / "m2.onnx", drop=("slice_thickness_mm",))))
    assert viewer.slab_plan() is None  # a card that predates the field: slice by slice, as before
    assert not any("slabs" in line for line in viewer.corner_lines())
    viewer.close_series()


def test_triage_of_cq500_feeds_5_mm_slabs_when_the_card_states_5_mm(cq500_dir, cq500, bundled, tmp_path):
    model = bundled_with_card(tmp_path / "five.onnx", slice_thickness_mm=5.0)
    out, summary = tmp_path / "s.csv", tmp_path / "s.json"
    assert main(["triage", str(cq500_dir), "--model", str(model), "--out", str(out), "--json", str(summary)]) == 0
    entry = json.loads(summary.read_text())["studies"][0]["series"][0]
    assert entry["slabs"]["thickness_mm"] == 5.0 and entry["slabs"]["slices_per_slab"] == 8.09
    assert entry["slabs"]["description"] == "fed as 5 mm slabs (8.09 slices of 0.618 mm)"
    rows = list(csv.DictReader(open(out)))
    volume, plan = read_volume(cq500), plan_for_series(cq500, 5.0)
    picked = [0, 1, 119, 235, 236, 237]  # both ends and both sides of the series' one gap (after slice 235)
    by_hand = bundled.run(np.stack([_slab_by_hand(volume, plan, i) for i in picked])).probabilities
    got = np.array([[float(rows[i][f"p_{c}"]) for c in CLASSES] for i in picked])
    np.testing.assert_allclose(got, by_hand, atol=1e-5)
