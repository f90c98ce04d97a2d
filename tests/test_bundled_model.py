"""The bundled model: its hash and contract, what its card says, and how it behaves on the demo study
and on a real subdural slice from a hospital it never saw."""

from __future__ import annotations

import json

import numpy as np
import pytest
from skimage.transform import resize
from sklearn.metrics import roc_auc_score

from ich_viewer.core.errors import ModelError
from ich_viewer.core.inference import predict_series
from ich_viewer.core.model import FILE_HASH_KEY, WEIGHTS_HASH_KEY, IchModel, file_digests, sha256, weights_sha256
from ich_viewer.core.phantom import CLASSES, make_phantom
from ich_viewer.core.thresholds import Thresholds
from ich_viewer.core.volume import read_volume
from ich_viewer.paths import models_dir

REPO = models_dir().parents[1]


@pytest.fixture(scope="module")
def bundled():
    manifest = json.loads((models_dir() / "manifest.json").read_text())
    entry = manifest["models"][0]
    path = models_dir() / entry["file"]
    assert path.is_file() and sha256(path) == entry["sha256"]
    assert path.stat().st_size < 50 * 2**20
    return IchModel.bundled(models_dir())


def test_the_bundled_model_meets_the_contract_and_says_what_it_is(bundled):
    card = bundled.card
    assert card.raw["architecture"] in ("resnet18", "resnet34")
    assert card.raw["input"]["clip"] == [-20, 100]
    assert "not for diagnosis" in card.intended_use.lower() or "not a medical device" in card.intended_use.lower()
    assert "193 patients" in card.limitations and "two hospitals" in card.limitations
    assert set(card.presets) == {"balanced", "high_sensitivity", "precision_0.7"}
    assert card.raw["validation"]["split"].startswith("pooled out-of-fold")
    assert card.raw["slice_thickness_mm"] == 5.0
    assert {"leave_one_hospital_out", "rsna_unlabelled", "cq500_ct0", "693_J2KR"} <= set(card.raw["external_validation"])
    held_out = card.raw["external_validation"]["leave_one_hospital_out"]
    assert {"phe_sich", "ctich"} <= set(held_out), held_out
    assert all(len(card.operating_curves[c]["thresholds"]) >= 2 for c in CLASSES)


def test_the_bundled_model_carries_checksums_that_hold(bundled):
    """Sealed at export like any model (contract, Integrity), so the manifest is not its only check."""
    data = bundled.path.read_bytes()
    meta = bundled.session.get_modelmeta().custom_metadata_map
    whole, stored, recomputed = file_digests(data)
    assert whole == bundled.sha256 and stored == recomputed == meta[FILE_HASH_KEY]
    assert weights_sha256(data) == meta[WEIGHTS_HASH_KEY]


def test_a_changed_bundled_file_is_refused_even_with_a_manifest_to_match(tmp_path):
    """Someone (or a faulty update) changes a weight and rewrites the manifest: the seal inside still refuses it."""
    entry = json.loads((models_dir() / "manifest.json").read_text())["models"][0]
    data = bytearray((models_dir() / entry["file"]).read_bytes())
    data[len(data) // 2] ^= 0x10  # the middle of the file: INT8 weights
    (tmp_path / entry["file"]).write_bytes(data)
    (tmp_path / "manifest.json").write_text(json.dumps({"models": [{**entry, "sha256": sha256(tmp_path / entry["file"])}]}))
    with pytest.raises(ModelError, match="changed or damaged since it was exported"):
        IchModel.bundled(tmp_path)


@pytest.fixture(scope="module")
def demo(bundled):
    """The demo study educators open (--demo): every subtype, 36 slices, 13 of them without blood."""
    study = make_phantom(seed=2019, n_slices=36)
    return study, predict_series(bundled, study.hu)


def test_on_the_demo_study_any_separates_the_bleeding_slices_and_flags_no_clean_one(bundled, demo):
    """What the demo shows at the default preset: "any" on slices with blood and on none without."""
    study, result = demo
    lesioned = study.labels[:, 0].astype(bool)
    assert 0 < lesioned.sum() < len(lesioned)
    any_probability = result.probabilities[:, 0]
    assert roc_auc_score(lesioned, any_probability) >= 0.95
    flagged = any_probability >= Thresholds(bundled.card, "balanced").as_array()[0]
    assert not flagged[~lesioned].any(), any_probability[~lesioned]
    assert flagged[lesioned].mean() >= 1 / 3, any_probability[lesioned]


@pytest.fixture(scope="module")
def real_subdural():
    """pydicom-data's 693_J2KR.dcm (CQ500-CT-310, a large subdural with midline shift) in HU."""
    from ich_viewer import load
    from tests.conftest import dicom_testfile

    return read_volume(load(dicom_testfile("693_J2KR.dcm")).series[0])


def test_the_grad_cam_of_any_looks_inside_the_head_on_a_real_subdural_slice(bundled, real_subdural):
    """The previous bundled model's "any" map peaked in the air outside the head (issue 14)."""
    hu = real_subdural
    result = predict_series(bundled, hu)
    cam = resize(result.cam[0, 0], hu.shape[1:], order=1)
    peak = np.unravel_index(np.argmax(cam), cam.shape)
    assert cam.max() > 0 and hu[0][peak] > -200, (peak, hu[0][peak])


def test_the_bundled_file_is_the_int8_model_the_report_describes(bundled, real_subdural):
    """The shipped file is the quantised one, and gives the report's numbers for a real slice from
    another hospital (so the report describes what users run, not the FP32 weights)."""
    import onnx

    manifest = json.loads((models_dir() / "manifest.json").read_text())["models"][0]
    assert manifest["precision"] == "int8"
    ops = {node.op_type for node in onnx.load(str(bundled.path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    reported = json.loads((REPO / "training" / "reports" / "external_checks.json").read_text())["693_J2KR"]
    probabilities = bundled.run(real_subdural).probabilities
    np.testing.assert_allclose(probabilities[0], [reported["probabilities"][c] for c in CLASSES], atol=1e-4)
