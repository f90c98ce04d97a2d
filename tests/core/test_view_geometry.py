"""Orientation markers from ImageOrientationPatient and the scale bar's round length, without Qt."""

from __future__ import annotations

import math

import pytest

from ich_viewer.core.view_geometry import direction_letters, orientation_markers, scale_bar, scale_label

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def test_the_standard_axial_orientation_puts_the_patients_right_on_the_left():
    assert orientation_markers(AXIAL) == {"left": "R", "right": "L", "top": "A", "bottom": "P"}


def test_a_flipped_or_rotated_orientation_moves_the_markers():
    # Left-right flipped (rows run towards the patient's right): R and L swap, A/P stay.
    assert orientation_markers((-1, 0, 0, 0, 1, 0)) == {"left": "L", "right": "R", "top": "A", "bottom": "P"}
    # Rotated 90 degrees: rows run posterior, columns towards the patient's right.
    assert orientation_markers((0, 1, 0, -1, 0, 0)) == {"left": "A", "right": "P", "top": "L", "bottom": "R"}
    # Coronal: rows to the left, columns towards the feet.
    assert orientation_markers((1, 0, 0, 0, 0, -1)) == {"left": "R", "right": "L", "top": "H", "bottom": "F"}


def test_a_tilted_gantry_names_both_directions_strongest_first():
    tilt = math.radians(20)
    markers = orientation_markers((1, 0, 0, 0, math.cos(tilt), -math.sin(tilt)))
    assert markers == {"left": "R", "right": "L", "top": "AH", "bottom": "PF"}
    # A few degrees off is still plain P (as CQ500-CT-0's header is).
    assert direction_letters((0, math.cos(math.radians(5)), -math.sin(math.radians(5)))) == "P"


@pytest.mark.parametrize("orientation", [None, (), (1, 0, 0), (0, 0, 0, 0, 1, 0)])
def test_no_usable_orientation_gives_no_markers(orientation):
    assert orientation_markers(orientation) is None


@pytest.mark.parametrize("mm_per_px, width, expected_mm", [
    (0.5, 500, 50.0),     # a 512 px CT at 0.5 mm fitted in 500 px: 1/5 is 50 mm
    (0.45, 640, 50.0),    # 57.6 mm fits: 50
    (0.25, 640, 20.0),    # zoomed in: 32 mm fits: 20
    (0.05, 640, 5.0),     # 6.4 mm: 5
    (1.2, 1280, 200.0),   # 307 mm: 200
    (0.001, 640, 0.1),    # 0.128 mm: 0.1
])
def test_the_scale_bar_is_a_round_length_within_a_fifth_of_the_view(mm_per_px, width, expected_mm):
    length_mm, length_px = scale_bar(mm_per_px, width)
    assert length_mm == pytest.approx(expected_mm)
    assert length_px == pytest.approx(expected_mm / mm_per_px) and length_px <= width / 5 + 1e-6
    assert length_px > width / 5 * 0.4  # never much shorter than it could be (5 -> 2 is the biggest drop)


def test_exact_round_lengths_fit_and_nothing_to_measure_gives_no_bar():
    assert scale_bar(0.5, 1000) == (100.0, 200.0)
    assert scale_bar(0.0, 500) is None and scale_bar(0.5, 0) is None and scale_bar(float("nan"), 500) is None
    assert scale_label(50.0) == "50 mm" and scale_label(0.5) == "0.5 mm"
