"""Slice level as a shortcut: the sampler that takes it away (``train.position_match``) and the bench that
measures it (``bench/slice_level.py``), against hand-computed values."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from training.data.dataset import EpochSampler, position_matched, slice_levels
from training.metrics import roc_auc

_spec = importlib.util.spec_from_file_location("slice_level",
                                               Path(__file__).resolve().parents[2] / "bench" / "slice_level.py")
slice_level = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(slice_level)


def test_slice_levels_are_five_bands_from_each_studys_own_lowest_to_highest_slice():
    studies = ["s1"] * 10 + ["s2"] * 3
    indices = list(range(1, 11)) + [40, 41, 42]
    # s1: (i - 1) / 9 * 5 -> 0, 0.56, 1.1, ... ; s2: 0, 2.5, 5 -> bands 0, 2, 4
    assert slice_levels(studies, indices).tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 0, 2, 4]
    assert slice_levels(["one"], [7]).tolist() == [0]  # a single slice: no division by zero


def test_position_matching_moves_the_negatives_to_the_positives_levels_and_keeps_their_total():
    # one source: two positives in the middle band, one negative in each of the five bands, all weights 1
    levels = np.array([2, 2, 0, 1, 2, 3, 4])
    any_labels = np.array([1, 1, 0, 0, 0, 0, 0])
    groups = np.array(["a"] * 7)
    weights = np.ones(7)
    full = position_matched(weights, any_labels, levels, groups, 1.0)
    # negatives keep their mass (5 of 7) and all of it moves to the middle band
    assert full * 7 == pytest.approx([1, 1, 0, 0, 5, 0, 0])
    # halfway: wanted shares 0.5 * 1 + 0.5 * 0.2 = 0.6 for the middle band, 0.5 * 0.2 = 0.1 for each other
    half = position_matched(weights, any_labels, levels, groups, 0.5)
    assert half * 7 == pytest.approx([1, 1, 0.5, 0.5, 3.0, 0.5, 0.5])
    assert position_matched(weights, any_labels, levels, groups, 0.0) == pytest.approx(weights / 7)


def test_position_matching_works_per_source_and_keeps_proportions_inside_a_cell():
    levels = np.array([0, 0, 0, 4, 4, 4, 4])
    any_labels = np.array([1, 0, 0, 1, 0, 0, 0])
    groups = np.array(["a", "a", "a", "b", "b", "b", "b"])
    weights = np.array([1.0, 1.0, 3.0, 2.0, 1.0, 1.0, 1.0])
    out = position_matched(weights, any_labels, levels, groups, 1.0)
    # each source's negatives already sit at its positives' level: nothing moves, and 1:3 stays 1:3
    assert out == pytest.approx(weights / weights.sum())
    # a source with no positive (say an unlabelled one) is left alone
    lonely = position_matched(weights, np.zeros(7, int), levels, groups, 1.0)
    assert lonely == pytest.approx(weights / weights.sum())


def test_after_matching_the_level_no_longer_predicts_the_label_in_the_draws():
    rng = np.random.default_rng(0)
    levels = rng.integers(0, 5, 2000)
    any_labels = (rng.random(2000) < np.where(levels == 2, 0.7, 0.05)).astype(int)  # blood at mid level
    weights = position_matched(np.ones(2000), any_labels, levels, np.zeros(2000, int), 1.0)
    draws = np.asarray(EpochSampler(2000, 0, weights, epoch_size=50_000).indices())
    drawn_levels, drawn_labels = levels[draws], any_labels[draws]
    assert roc_auc(any_labels, (levels == 2).astype(float)) > 0.8  # before: the level alone ranks blood well
    assert abs(roc_auc(drawn_labels, (drawn_levels == 2).astype(float)) - 0.5) < 0.02  # after: it says nothing


def test_the_bench_credits_a_model_that_reads_the_level_with_its_slice_auc_but_not_its_stratified_auc():
    rng = np.random.default_rng(1)
    band = np.repeat(np.arange(5), 200)
    y = (rng.random(1000) < np.where(band == 2, 0.6, 0.05)).astype(int)
    by_level = np.where(band == 2, 0.8, 0.1) + rng.normal(0, 0.01, 1000)  # sees anatomy, not blood
    clean = rng.random(1000) < 0.5
    clean &= y == 0
    rows, stratified = slice_level.band_scores(y, by_level, band, clean)
    assert roc_auc(y, by_level) > 0.8
    assert stratified == pytest.approx(0.5, abs=0.1)
    assert rows[2][0] == 1.0 and rows[0][0] == 0.0  # every clean middle slice is a false alarm, no top one
    assert [n for _, _, n in rows] == [int(y[band == b].sum()) for b in range(5)]
    by_blood = y * 0.5 + rng.normal(0, 0.1, 1000)
    assert slice_level.band_scores(y, by_blood, band, clean)[1] > 0.95


def test_ctich_misses_reads_each_slices_bleed_area_under_the_training_readers_keys(ctich_dir):
    spec = importlib.util.spec_from_file_location("ctich_misses",
                                                  Path(__file__).resolve().parents[2] / "bench" / "ctich_misses.py")
    ctich_misses = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ctich_misses)
    from training.data.ctich import CtichPngSource

    areas = ctich_misses.mask_areas(ctich_dir / "labels.csv")
    records = CtichPngSource(ctich_dir).records()
    assert set(areas) == {r.key for r in records}  # every slice the cache holds has its area, no other
    assert all(areas[r.key] > 0 for r in records if r.labels[0] == 1)  # every bleed has a mask
    assert sum(areas[r.key] > 0 for r in records) == sum(r.labels[0] == 1 for r in records)


def test_the_threshold_at_a_recall_is_the_highest_that_still_finds_that_share():
    spec = importlib.util.spec_from_file_location("normal_flags",
                                                  Path(__file__).resolve().parents[2] / "bench" / "normal_flags.py")
    normal_flags = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(normal_flags)
    labels = np.array([1, 1, 1, 1, 1, 0, 0, 0, 0, 0])
    probabilities = np.array([0.9, 0.8, 0.7, 0.6, 0.2, 0.85, 0.5, 0.3, 0.1, 0.0])
    assert normal_flags.threshold_at_recall(labels, probabilities, 0.8) == 0.6  # 4 of 5 at >= 0.6
    assert normal_flags.threshold_at_recall(labels, probabilities, 0.81) == 0.2  # 0.81 needs all 5
    assert normal_flags.threshold_at_recall(labels, probabilities, 0.2) == 0.9
    with pytest.raises(ValueError, match="no positive"):
        normal_flags.threshold_at_recall(np.zeros(3, int), probabilities[:3], 0.8)


def test_the_paired_stratified_difference_is_zero_for_one_run_and_positive_for_a_better_one():
    rng = np.random.default_rng(2)
    patients = np.repeat(np.arange(50), 20).astype(str)
    band = np.tile(np.repeat(np.arange(5), 4), 50)
    y = (rng.random(1000) < np.where(band == 2, 0.6, 0.1)).astype(int)
    by_level = np.where(band == 2, 0.8, 0.1) + rng.normal(0, 0.3, 1000) * 0.1
    by_blood = by_level + y * 0.5
    assert slice_level.paired_stratified(patients, y, band, by_level, by_level.copy(), n_boot=50) == (0.0, 0.0, 0.0)
    difference, low, high = slice_level.paired_stratified(patients, y, band, by_level, by_blood, n_boot=100)
    assert 0.3 < difference and 0 < low <= difference <= high
