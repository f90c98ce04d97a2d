"""The bundled model: its hash and contract, and behaviour on phantoms it never saw as a whole."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ich_viewer.core.errors import ModelError
from ich_viewer.core.inference import predict_series
from ich_viewer.core.model import FILE_HASH_KEY, WEIGHTS_HASH_KEY, IchModel, file_digests, sha256, weights_sha256
from ich_viewer.core.phantom import CLASSES, make_phantom
from ich_viewer.paths import models_dir
from ich_viewer.core.volume import read_volume
from skimage.transform import resize

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
    assert "75 patients" in card.limitations and "one hospital" in card.limitations
    assert set(card.presets) == {"balanced", "high_sensitivity", "precision_0.7"}
    assert card.raw["validation"]["split"].startswith("patient-level")
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
def phantoms(bundled):
    lesioned = make_phantom(seed=11, subtypes=["subdural", "intraventricular"], n_slices=24, size=512)
    clean = make_phantom(seed=11, subtypes=[], n_slices=24, size=512)
    return (lesioned, predict_series(bundled, lesioned.hu)), (clean, predict_series(bundled, clean.hu))


@pytest.mark.parametrize("name", ["subdural", "intraventricular"])
def test_lesioned_slices_score_higher_than_the_same_slices_without_blood(phantoms, name):
    (lesioned, with_blood), (_, without) = phantoms
    c = CLASSES.index(name)
    rows = np.flatnonzero(lesioned.labels[:, c])
    assert len(rows) >= 3
    higher = with_blood.probabilities[rows, c] > without.probabilities[rows, c]
    assert higher.mean() > 0.5, (with_blood.probabilities[rows, c], without.probabilities[rows, c])
    assert with_blood.probabilities[rows, 0].mean() > without.probabilities[rows, 0].mean()  # "any" too


@pytest.mark.parametrize("name", ["subdural", "intraventricular"])
def test_the_cam_peak_falls_inside_the_lesion_on_most_lesioned_slices(phantoms, name):
    (lesioned, with_blood), _ = phantoms
    c = CLASSES.index(name)
    rows = np.flatnonzero(lesioned.labels[:, c])
    hits = 0
    for z in rows:
        cam = resize(with_blood.cam[z, c], lesioned.hu.shape[1:], order=1)
        peak = np.unravel_index(np.argmax(cam), cam.shape)
        # Inside the lesion, allowing one CAM cell of slack (a 5x5 grid over 512 px is ~100 px per cell).
        mask = lesioned.masks[name][z]
        cell = lesioned.hu.shape[1] // with_blood.cam.shape[-1]
        r0, c0 = max(peak[0] - cell // 2, 0), max(peak[1] - cell // 2, 0)
        hits += bool(mask[r0:peak[0] + cell // 2, c0:peak[1] + cell // 2].any())
    assert hits > len(rows) / 2, f"{hits} of {len(rows)}"


def test_the_bundled_file_is_the_int8_model_the_report_describes(bundled):
    """The shipped file is the quantised one, and gives the report's numbers for a real slice from
    another hospital (so the report describes what users run, not the FP32 weights)."""
    import onnx

    from ich_viewer import load
    from tests.conftest import dicom_testfile

    manifest = json.loads((models_dir() / "manifest.json").read_text())["models"][0]
    assert manifest["precision"] == "int8"
    ops = {node.op_type for node in onnx.load(str(bundled.path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    reported = json.loads((REPO / "training" / "reports" / "external_checks.json").read_text())["693_J2KR"]
    probabilities = bundled.run(read_volume(load(dicom_testfile("693_J2KR.dcm")).series[0])).probabilities
    np.testing.assert_allclose(probabilities[0], [reported[c] for c in CLASSES], atol=1e-4)
