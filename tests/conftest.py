"""Shared test set-up: offscreen Qt, real test data locations, and fast failure for missing files."""

from __future__ import annotations

import os
from pathlib import Path

# Before anything imports Qt: widgets render offscreen, with no display needed.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest  # noqa: E402
from pydicom.data import get_testdata_file  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
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
