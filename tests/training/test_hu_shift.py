"""bench/hu_shift.py's brain level: the per-patient offset it standardises rests on it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

_spec = importlib.util.spec_from_file_location("hu_shift", Path(__file__).resolve().parents[2] / "bench" / "hu_shift.py")
hu_shift = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(hu_shift)


def test_the_brain_level_follows_a_shift_of_brain_and_ignores_csf_blood_bone_and_air():
    rng = np.random.default_rng(0)
    brain = rng.normal(32, 3, (4, 40, 40))
    head = np.concatenate([brain, np.full((4, 10, 40), 5.0), np.full((4, 10, 40), 70.0),
                           np.full((4, 10, 40), 1000.0), np.full((4, 10, 40), -1000.0)], axis=1)
    assert abs(hu_shift.brain_level(head) - 32) < 0.2  # CSF, a large bleed, bone and air do not pull it
    assert abs(hu_shift.brain_level(head + 5) - 37) < 0.3  # a calibration offset moves it one for one
    assert np.isnan(hu_shift.brain_level(np.full((2, 8, 8), -1000.0)))  # no brain: no level, not a guess
