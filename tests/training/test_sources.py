"""Every reader on small real or generated data: CT-ICH (PNG and NIfTI), RSNA layout, phantom."""

from __future__ import annotations

import csv
import shutil

import nibabel
import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from ich_viewer.core.phantom import make_phantom, write_phantom_study
from training.data.base import CLASSES
from training.data.ctich import CtichNiftiSource, CtichPngSource, to_display
from training.data.phantom_source import PhantomSource
from training.data.rsna import RsnaSource, read_labels


# --------------------------------------------------------------------------- CT-ICH


def test_ctich_png_counts_match_the_dataset_description(ctich_dir):
    records = CtichPngSource(ctich_dir).records()
    labels = np.array([r.labels for r in records])
    assert len(records) == 2814 and len({r.patient for r in records}) == 75
    assert labels.sum(0).tolist() == [318, 173, 73, 24, 18, 56]
    assert len({r.key for r in records}) == 2814


def _head_is_taller_than_wide(hu: np.ndarray) -> bool:
    labelled, n = ndimage.label(hu > -10)
    head = labelled == (np.argmax(np.bincount(labelled.ravel())[1:]) + 1)
    rows, cols = np.flatnonzero(head.any(1)), np.flatnonzero(head.any(0))
    return rows[-1] - rows[0] > cols[-1] - cols[0]


def test_ctich_png_is_in_hu_and_in_dicom_display_orientation(ctich_dir):
    """A head is longer front-to-back than side-to-side: in display orientation (face up) the
    mid-level slices are taller than wide. The raw CT-ICH arrays (face right) fail this."""
    source = CtichPngSource(ctich_dir)
    by_patient: dict[str, list] = {}
    for record in source.records():
        by_patient.setdefault(record.patient, []).append(record)
    upright = raw_upright = 0
    for records in by_patient.values():
        middle = records[len(records) // 2]
        hu = source.read_hu(middle)
        assert hu.dtype == np.float32 and hu.shape == (256, 256) and -20 <= hu.min() and hu.max() <= 100
        upright += _head_is_taller_than_wide(hu)
        raw_upright += _head_is_taller_than_wide(np.rot90(hu, -1))
    assert upright >= 0.85 * len(by_patient) and raw_upright <= 0.15 * len(by_patient)


def _write_nifti_and_png_layouts(tmp_path):
    """Two patients x 3 slices of 512x512 HU, as the PhysioNet NIfTI release and as the PNG export."""
    rng = np.random.default_rng(0)
    nifti, png = tmp_path / "nifti", tmp_path / "png"
    for folder in ("ct_scans", "masks"):
        (nifti / folder).mkdir(parents=True)
    (png / "image").mkdir(parents=True)
    (png / "label").mkdir()
    table = [["PatientNumber", "SliceNumber", "Intraventricular", "Intraparenchymal", "Subarachnoid", "Epidural",
              "Subdural", "No_Hemorrhage", "Fracture_Yes_No"]]
    png_rows = [["image", "patient_id", *CLASSES, "slice_number", "fracture", "mask", "mask_pixels"]]
    k = 0
    for number in (49, 50):
        volume = rng.normal(40, 40, (512, 512, 3)).astype(np.int16)
        volume[:20] = -1000  # air along the first array axis: orientation shows in the output
        mask = np.zeros_like(volume, np.uint8)
        mask[100:140, 300:330, 1] = 1
        nibabel.save(nibabel.Nifti1Image(volume, np.eye(4)), nifti / "ct_scans" / f"{number:03d}.nii")
        nibabel.save(nibabel.Nifti1Image(mask, np.eye(4)), nifti / "masks" / f"{number:03d}.nii")
        for s in range(3):
            bleed = int(s == 1)
            table.append([number, s + 1, 0, 0, 0, 0, bleed, 1 - bleed, 0])
            windowed = np.clip((volume[:, :, s].astype(float) + 20) / 120 * 255, 0, 255)
            small = windowed.reshape(256, 2, 256, 2).mean((1, 3))  # the export's 2x2 area average
            Image.fromarray(small.round().astype(np.uint8)).save(png / "image" / f"{k}.png")
            Image.fromarray((mask[::2, ::2, s] * 255).astype(np.uint8)).save(png / "label" / f"{k}.png")
            png_rows.append([f"image/{k}.png", f"CTICH_{number:03d}", bleed, 0, 0, 0, 0, bleed, s + 1, 0,
                             f"label/{k}.png", int(mask[:, :, s].sum())])
            k += 1
    for path, rows in ((nifti / "hemorrhage_diagnosis_raw_ct.csv", table), (png / "labels.csv", png_rows)):
        with open(path, "w", newline="") as f:
            csv.writer(f).writerows(rows)
    return nifti, png


def test_ctich_nifti_and_png_layouts_agree(tmp_path):
    nifti_dir, png_dir = _write_nifti_and_png_layouts(tmp_path)
    nifti, png = CtichNiftiSource(nifti_dir), CtichPngSource(png_dir)
    n_records, p_records = nifti.records(), png.records()
    assert [r.key for r in n_records] == [r.key for r in p_records] == [f"ctich/{n}/{s}" for n in (49, 50)
                                                                         for s in (1, 2, 3)]
    assert [r.labels for r in n_records] == [r.labels for r in p_records]
    assert n_records[1].labels == (1, 0, 0, 0, 0, 1) and n_records[0].labels == (0,) * 6
    full = nifti.read_hu(n_records[1])
    assert full.shape == (512, 512) and (full[:, :20] == -1000).all()  # array rows 0..19 -> left columns
    small = png.read_hu(p_records[1])
    expected = np.clip(full, -20, 100).reshape(256, 2, 256, 2).mean((1, 3))
    assert np.abs(small - expected).max() < 1.0  # 8-bit quantisation: 120/255 HU per step
    assert np.array_equal(png.read_mask(p_records[1]), nifti.read_mask(n_records[1])[::2, ::2])
    assert to_display(np.arange(4).reshape(2, 2)).tolist() == [[1, 3], [0, 2]]


def test_ctich_layout_errors_say_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="labels.csv"):
        CtichPngSource(tmp_path)
    with pytest.raises(FileNotFoundError, match="ct_scans"):
        CtichNiftiSource(tmp_path)


# --------------------------------------------------------------------------- RSNA


def test_rsna_layout_with_its_known_defects(tmp_path):
    root = tmp_path / "stage_2_train"
    studies = [make_phantom(seed=s, subtypes=sub, n_slices=6, size=64) for s, sub in ((1, ["subdural"]), (2, []))]
    for i, series in enumerate(studies):
        write_phantom_study(series, tmp_path / f"s{i}", patient_id=f"PAT{i}")
    root.mkdir()
    label_rows = []
    for i in range(2):
        for path in (tmp_path / f"s{i}").iterdir():
            if path.suffix == ".dcm":
                shutil.copy(path, root / path.name)
        with open(tmp_path / f"s{i}" / "labels.csv") as f:
            label_rows += list(csv.reader(f))[1:]
    label_rows.append(label_rows[0])  # a duplicated row, as in stage_2_train.csv
    labels_csv = tmp_path / "stage_2_train.csv"
    with open(labels_csv, "w", newline="") as f:
        csv.writer(f).writerows([["ID", "Label"], *label_rows])
    (root / "ID_corrupt.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\xff" * 20)
    unlabelled = root / "ID_nolabel.dcm"
    shutil.copy(next(root.glob("ID_*.dcm")), unlabelled)

    source = RsnaSource(root, labels_csv, workers=1)
    records = source.records()
    assert len(records) == 12 and {r.patient for r in records} == {"PAT0", "PAT1"}
    assert len({r.study for r in records}) == 2
    reasons = dict(source.skipped)
    assert set(reasons) == {str(root / "ID_corrupt.dcm"), str(unlabelled)}
    assert "no label rows" in reasons[str(unlabelled)]
    for i, series in enumerate(studies):
        mine = sorted((r for r in records if r.patient == f"PAT{i}"), key=lambda r: r.index)
        assert [r.index for r in mine] == list(range(6))
        assert np.array([r.labels for r in mine]).tolist() == series.labels.tolist()
        for r in mine[::2]:
            assert np.abs(source.read_hu(r) - np.maximum(series.hu[r.index], -1024)).max() <= 0.5
    labels, disagreements = read_labels(labels_csv)
    assert disagreements == 0 and len(labels) == 12


def test_rsna_index_cache_is_written_once_and_reused(tmp_path, rsna_dir):
    cache = tmp_path / "index.csv"
    first = RsnaSource(rsna_dir, index_cache=cache, workers=2).records()
    assert cache.is_file() and len(first) == 155 and all(r.labels is None for r in first)
    again = RsnaSource(rsna_dir, index_cache=cache).records()
    assert [r.key for r in again] == [r.key for r in first]
    hu = RsnaSource(rsna_dir, index_cache=cache).read_hu(again[0])
    assert hu.shape == (512, 512) and -1024 <= hu.min() and hu.max() <= 4000


# --------------------------------------------------------------------------- phantom


def test_phantom_source_is_deterministic_and_covers_every_subtype():
    a, b = PhantomSource(6, seed=2, slices=8, size=64), PhantomSource(6, seed=2, slices=8, size=64)
    records = a.records()
    assert records == b.records() and len(records) == 48
    assert np.array_equal(a.read_hu(records[10]), b.read_hu(records[10]))
    labels = np.array([r.labels for r in records])
    assert (labels.sum(0) > 0).all() and (labels[:, 0] == 0).any()
    positive = next(r for r in records if r.labels[5])
    assert a.read_mask(positive)["subdural"].any()
