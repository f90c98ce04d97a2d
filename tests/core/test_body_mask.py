"""The head's mask from HU, on a phantom and on real slices (the Grad-CAM is multiplied by it)."""

from __future__ import annotations

import numpy as np

import ich_viewer
from ich_viewer.core.body_mask import body_mask
from ich_viewer.core.phantom import make_phantom


def test_phantom_head_is_one_filled_region_without_the_air_around_it():
    hu = make_phantom(seed=1, subtypes=["intraventricular"], n_slices=3, size=128).hu[1]
    mask = body_mask(hu)
    assert mask.shape == hu.shape and mask.dtype == bool
    assert not mask[0, :].any() and not mask[:, 0].any()  # the corners are air
    assert not mask[hu < -500].all()  # air is out...
    # ...but the ventricles (CSF, ~0 HU) and everything else inside the skull are in: filled.
    inside = hu > -300
    assert mask[inside].mean() > 0.99 and 0.2 < mask.mean() < 0.9


def test_the_largest_region_wins_and_holes_are_filled():
    hu = np.full((100, 100), -1000.0)
    hu[20:80, 20:80] = 40.0  # a head
    hu[40:60, 40:60] = -1000.0  # air inside it (a sinus)
    hu[2:6, 2:6] = 40.0  # a small bit of something in the corner (a tube)
    mask = body_mask(hu)
    assert mask[20:80, 20:80].all() and not mask[2:6, 2:6].any() and mask.sum() == 60 * 60


def test_nothing_above_air_gives_an_empty_mask():
    assert not body_mask(np.full((32, 32), -1024.0)).any()
    assert not body_mask(np.full((32, 32), np.nan)).any()


def test_real_cq500_slice_keeps_the_head_and_drops_the_table(cq500_dir):
    series = ich_viewer.load(cq500_dir).studies[0].series[0]
    from ich_viewer.core.dicom_pixels import decode_slice

    hu = decode_slice(series.slices[len(series) // 2], (series.rows, series.columns))
    mask = body_mask(hu)
    brain = (hu > 20) & (hu < 60)
    assert mask[brain].mean() > 0.98  # the brain is inside
    assert mask.mean() < 0.6 and not mask[:, :10].any() and not mask[:10, :].any()
    rows = np.flatnonzero(mask.any(1))
    assert rows[-1] < series.rows - 5  # the table under the head is not attached


def test_real_rsna_slice_never_reaches_outside_the_field_of_view(rsna_dir):
    from ich_viewer.core.dicom_pixels import decode_slice
    import pydicom

    path = rsna_dir / "ID_000012eaf.dcm"  # stores -3024 outside its round field of view
    ds = pydicom.dcmread(path)
    out_of_field = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept) < -2000
    assert out_of_field.mean() > 0.2
    series = ich_viewer.load(path).studies[0].series[0]
    mask = body_mask(decode_slice(series.slices[0], (series.rows, series.columns)))
    assert mask.any() and not (mask & out_of_field).any()
