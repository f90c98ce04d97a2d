"""Shared test set-up: offscreen Qt, real test data locations, and fast failure for missing files."""

from __future__ import annotations

import os
from pathlib import Path

# Before anything imports Qt: widgets render offscreen, with no display needed.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# Before anything imports ONNX Runtime (importing ich_viewer sets it too; tests that import onnxruntime
# directly must not depend on import order): no telemetry, no device identifier under ~/.cache.
os.environ["ORT_DISABLE_TELEMETRY"] = "1"

import pytest  # noqa: E402
from pydicom.data import get_testdata_file  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def _qt_user_settings_in_a_temporary_folder(tmp_path_factory):
    """Qt's own user settings (QtProject.conf: the file dialogs' history) go to a temporary folder, not the
    tester's ~/.config."""
    from PySide6.QtCore import QSettings

    folder = str(tmp_path_factory.mktemp("qt-user-settings"))
    for kind in (QSettings.Format.NativeFormat, QSettings.Format.IniFormat):
        QSettings.setPath(kind, QSettings.Scope.UserScope, folder)

SHARED_DATA = Path(os.environ.get("ICH_SHARED_DATA", REPO.parent / "shared" / "data"))


def dicom_testfile(name: str) -> str:
    """Path of a pydicom / pydicom-data test file, failing at once (never downloading) if absent."""
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.fail(f"pydicom test file {name!r} is not installed: install the dev extra (pydicom-data)")
    return str(path)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real head-CT folder beside the checkout; CI has it, a user's fresh clone may not."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real head CT not found at {SHARED_DATA} (../shared/data beside the checkout, or set ICH_SHARED_DATA)")
    return SHARED_DATA


def _shared_folder(shared_data: Path, name: str) -> Path:
    path = shared_data / name
    if not path.is_dir():
        pytest.skip(f"{path} is missing from the shared data")
    return path


@pytest.fixture(scope="session")
def cq500_dir(shared_data: Path) -> Path:
    """The real 238-slice JPEG Lossless CQ500-CT-0 series."""
    return _shared_folder(shared_data, "cq500-ct0")


@pytest.fixture(scope="session")
def rsna_dir(shared_data: Path) -> Path:
    """155 real RSNA 2019 single slices, both storage formats."""
    return _shared_folder(shared_data, "rsna-unlabelled")


@pytest.fixture(scope="session")
def ctich_dir(shared_data: Path) -> Path:
    """CT-ICH (PhysioNet) brain-window PNG export: 2,814 labelled slices of 75 patients."""
    return _shared_folder(shared_data, "ctich")


@pytest.fixture(scope="session")
def phe_sich_dir(shared_data: Path) -> Path:
    """PHE-SICH-CT-IDS PNG export: 3,446 slices of 118 patients, only any and intraparenchymal labelled."""
    return _shared_folder(shared_data, "phe-sich")


def tiny_card(**changes) -> dict:
    """A complete model card with hand-made presets and operating curves (values tests can compute)."""
    classes = ["any", "epidural", "intraparenchymal", "intraventricular", "subarachnoid", "subdural"]
    curve = {"thresholds": [0.0, 0.5, 1.0], "precision": [0.1, 0.6, 1.0], "recall": [1.0, 0.5, 0.0],
             "specificity": [0.0, 0.8, 1.0]}
    card = {"name": "tiny-test-model", "version": "0.0.1", "created": "2026-11-23", "architecture": "resnet18",
            "license": "MIT", "classes": classes, "input": {"units": "HU", "size": [64, 64], "clip": None},
            "windows": [], "thresholds": {"balanced": dict.fromkeys(classes, 0.5),
                                          "high_sensitivity": dict.fromkeys(classes, 0.2),
                                          "precision_0.7": dict.fromkeys(classes, 0.8), "default": "balanced"},
            "operating_curves": dict.fromkeys(classes, curve), "cam_scale": dict.fromkeys(classes, 0.05),
            "validation": {}, "training": {}, "intended_use": "tests only", "limitations": "random weights"}
    card.update(changes)
    return card


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A small contract ONNX model (random ResNet-18 at 64 px) exported by the training package."""
    torch = pytest.importorskip("torch", reason="the train extra (torch) exports the test model")
    from training.config import from_dict
    from training.export import export_onnx
    from training.model import build_model

    torch.manual_seed(0)
    model = build_model(from_dict({"model": {"arch": "resnet18", "size": 64, "hidden": 32}}))
    return export_onnx(model, tmp_path_factory.mktemp("model") / "tiny.onnx", tiny_card(), sample_size=64)
