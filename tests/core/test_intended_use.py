"""The intended-use check: non-contrast head CT passes; contrast, other regions and bone reconstructions
are recognised from the header, reported plainly, and not flagged unless the user asks."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

import ich_viewer
from ich_viewer.core import intended_use
from ich_viewer.core.inference import predict_series
from ich_viewer.core.intended_use import BONE_ONLY, CONTRAST_ENHANCED, NOT_A_HEAD, NOT_AXIAL
from ich_viewer.core.model import IchModel
from ich_viewer.core.phantom import make_phantom, write_phantom_study
from ich_viewer.core.viewer_model import ViewerModel
from tests import dicom_factory as make


def _verdict(tmp_path, **tags) -> intended_use.UseCheck:
    """A real CT header (pydicom's CT_small.dcm) with these tags set."""
    path = make.ct_slice_from_hu(np.full((16, 16), 30.0), tmp_path / "s.dcm", z=0.0,
                                 series_uid="1.2.826.0.1.3680043.8.498.90", study_uid="1.2.826.0.1.3680043.8.498.9",
                                 instance=1)
    ds = pydicom.dcmread(path)
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    ds.save_as(path)
    study = ich_viewer.load(path).studies[0]
    return intended_use.check(study.series[0], study.description)


@pytest.mark.parametrize("tags, reasons", [
    ({}, ()),
    ({"ContrastBolusAgent": "OMNIPAQUE 350"}, (CONTRAST_ENHANCED,)),
    ({"ContrastBolusAgent": "NONE"}, ()),
    ({"SeriesDescription": "CTA HEAD"}, (CONTRAST_ENHANCED,)),
    ({"SeriesDescription": "HEAD C+ 5mm"}, (CONTRAST_ENHANCED,)),
    ({"SeriesDescription": "CT HEAD W/O CONTRAST"}, ()),
    ({"SeriesDescription": "Non-contrast head"}, ()),
    ({"SeriesDescription": "POST-OP HEAD"}, ()),
    ({"ProtocolName": "HEAD 60cc 3cc/s"}, (CONTRAST_ENHANCED,)),
    ({"BodyPartExamined": "CHEST"}, (NOT_A_HEAD,)),
    ({"BodyPartExamined": "HEAD"}, ()),
    ({"SeriesDescription": "Abdomen pelvis"}, (NOT_A_HEAD,)),
    ({"ConvolutionKernel": "H70h"}, (BONE_ONLY,)),
    ({"ConvolutionKernel": "H30s"}, ()),
    ({"SeriesDescription": "Head 1.25 bone"}, (BONE_ONLY,)),
])
def test_what_the_header_says(tmp_path, tags, reasons):
    verdict = _verdict(tmp_path, **tags)
    assert verdict.reasons == reasons
    assert verdict.outside == bool(reasons) and (verdict.sentence.startswith("outside the model's intended use")
                                                 or not reasons)


@pytest.mark.parametrize("orientation, plane", [
    ((1, 0, 0, 0, 1, 0), None),  # axial
    ((-1, 0, 0, 0, 1, 0), None),  # axial, rows mirrored
    ((1, 0, 0, 0, float(np.cos(np.radians(30))), -float(np.sin(np.radians(30)))), None),  # a 30 degree gantry tilt
    ((0, 1, 0, 0, 0, -1), "sagittal"),
    ((1, 0, 0, 0, 0, -1), "coronal"),
    ((1, 0, 0, 0, float(np.cos(np.radians(50))), -float(np.sin(np.radians(50)))), "coronal"),  # 50 degrees oblique
])
def test_sagittal_coronal_and_steep_oblique_slices_are_outside_the_intended_use(tmp_path, orientation, plane):
    """An outside tester: sagittal and coronal reformats were classified and flagged as within the intended use,
    though the model learned from axial slices (and their "z" was x or y)."""
    verdict = _verdict(tmp_path, ImageOrientationPatient=list(orientation))
    assert (NOT_AXIAL in verdict.reasons) == (plane is not None)
    if plane:
        assert verdict.evidence[-1].startswith(f"{plane} slices")


def test_a_real_header_that_records_its_contrast_agent():
    from pydicom.data import get_testdata_file

    study = ich_viewer.load(get_testdata_file("CT_small.dcm")).studies[0]
    verdict = intended_use.check(study.series[0], study.description)
    assert verdict.reasons == (CONTRAST_ENHANCED,) and "ISOVUE300/100" in verdict.evidence[0]


def test_cq500_ct0_is_recognised_as_contrast_enhanced(cq500_dir):
    study = ich_viewer.load(cq500_dir).studies[0]
    verdict = intended_use.check(study.series[0], study.description)
    assert verdict.reasons == (CONTRAST_ENHANCED,) and "150cc" in verdict.evidence[0]


def test_real_non_contrast_series_are_not_caught(shared_data, tmp_path):
    from pydicom.data import get_testdata_file

    folder = shared_data / "rsna-unlabelled"
    if not folder.is_dir():
        pytest.skip(f"no rsna-unlabelled slices at {folder}")
    write_phantom_study(make_phantom(seed=1, n_slices=4, size=64), tmp_path / "phantom")
    loaded = ich_viewer.load([folder, get_testdata_file("693_J2KR.dcm"), tmp_path / "phantom"])
    verdicts = [intended_use.check(s, study.description) for study in loaded.studies for s in study.series]
    assert len(verdicts) >= 150 and [v for v in verdicts if v.outside] == []


def test_outside_the_intended_use_nothing_is_flagged_unless_asked(tmp_path, tiny_model):
    write_phantom_study(make_phantom(seed=4, n_slices=6, size=64), tmp_path / "study")
    for path in (tmp_path / "study").glob("*.dcm"):  # the same phantom, as a CTA
        ds = pydicom.dcmread(path)
        ds.SeriesDescription = "CTA circle of Willis"
        ds.save_as(path)
    viewer = ViewerModel()
    viewer.set_model(IchModel(tiny_model), "high_sensitivity")  # 0.2: the random model flags plenty
    viewer.set_result(ich_viewer.load(tmp_path / "study"))
    study = viewer.result.studies[0]
    viewer.open_series(study, study.series[0])
    viewer.finish_prediction(predict_series(viewer.model, viewer.loader, 6))
    assert viewer.use_check.reasons == (CONTRAST_ENHANCED,)
    assert not viewer.slice_flags().any() and viewer.flagged_classes() == []
    assert "NOT FLAGGED" in viewer.corner_lines()[-1] and not np.isnan(viewer.prediction.probabilities).any()
    payload, rows = viewer.payload(), viewer.rows()
    series = payload["studies"][0]["series"][0]
    assert series["flagged_classes"] == [] and series["intended_use"]["flags_shown"] is False
    assert {r["flag_any"] for r in rows} == {0} and rows[0]["intended_use"].endswith("contrast-enhanced")
    viewer.set_flag_outside_use(True)  # the user asks: the probabilities flag as for any series
    assert viewer.slice_flags().any() and viewer.payload()["studies"][0]["series"][0]["flagged_classes"]
    viewer.close_series()
