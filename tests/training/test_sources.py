"""Every reader on small real or generated data: CT-ICH (PNG and NIfTI), RSNA layout, phantom."""

from __future__ import annotations

import csv
import importlib
import shutil
from pathlib import Path

import nibabel
import numpy as np
import pydicom
import pytest
from PIL import Image
from scipy import ndimage

from ich_viewer.core.contract import CLASSES
from ich_viewer.core.phantom import RSNA_ORDER, make_phantom, rsna_ids, write_phantom_study
from training.config import describe_options
from training.data.base import labels_array
from training.data.ctich import CtichNiftiSource, CtichPngSource, from_display, to_display
from training.data.phantom_source import PhantomSource
from training.data.rsna import RsnaSource, read_labels
from training.data.sources import SOURCE_KINDS, build_source

# --------------------------------------------------------------------------- the registry


@pytest.mark.parametrize("kind", list(SOURCE_KINDS))
def test_every_registered_kind_names_a_reader_and_the_help_lists_it(kind):
    module, reader = SOURCE_KINDS[kind].split(":")
    cls = getattr(importlib.import_module(module), reader)
    assert callable(getattr(cls, "records")) and callable(getattr(cls, "read_hu"))
    assert kind in describe_options()
    assert cls.classes and [c for c in CLASSES if c in cls.classes] == list(cls.classes)  # the classes it labels


def test_an_unknown_kind_names_every_registered_one():
    with pytest.raises(ValueError, match="use ctich_png, ctich_nifti, ctich_lesions, phe_sich, rsna or phantom"):
        build_source({"kind": "dicom_folder", "root": "."})
    assert type(build_source({"kind": "phantom", "n_studies": 1})) is PhantomSource


# --------------------------------------------------------------------------- CT-ICH, real PNG export


@pytest.fixture(scope="module")
def ctich(ctich_dir):
    source = CtichPngSource(ctich_dir)
    return source, source.records()


def test_ctich_png_counts_match_the_dataset_description(ctich):
    _, records = ctich
    labels = labels_array(records)
    assert len(records) == 2814 and len({r.key for r in records}) == 2814
    assert len({r.patient for r in records}) == 75 and {r.patient for r in records} == {r.study for r in records}
    assert labels.sum(0).tolist() == [318, 173, 73, 24, 18, 56]  # any, EDH, IPH, IVH, SAH, SDH
    assert len({r.patient for r in records if r.labels[0]}) == 36
    first = records[0]
    assert first.key == "ctich/49/1" and first.patient == "CTICH_049" and first.index == 1
    assert Path(first.extra["image"]).is_absolute() and Path(first.extra["mask"]).is_file()


def _head_and_table(hu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The head (largest bright component, holes filled) and the bright pixels away from it (the table)."""
    labelled, _ = ndimage.label(hu > -20)
    head = ndimage.binary_fill_holes(labelled == np.argmax(np.bincount(labelled.ravel())[1:]) + 1)
    table = (hu > 40) & ~ndimage.binary_dilation(head, iterations=3)
    return head, table


def _orientation_votes(hu: np.ndarray) -> tuple[bool, bool | None]:
    """(taller than wide, table below the head's centre or None when no table is in view)."""
    head, table = _head_and_table(hu)
    rows, cols = np.nonzero(head)
    taller = np.ptp(rows) > np.ptp(cols)
    below = None if table.sum() < 20 else np.nonzero(table)[0].mean() > rows.mean()
    return bool(taller), below


def test_ctich_png_is_in_hu_and_in_dicom_display_orientation(ctich):
    """Face up, table (posterior) down: on a mid-level slice a head is longer front-to-back than wide, and
    the scanner table lies below it. The raw arrays (face on the right) fail the first check, the
    180-degree rotation (face down) fails the second."""
    source, records = ctich
    by_patient: dict[str, list] = {}
    for record in records:
        by_patient.setdefault(record.patient, []).append(record)
    votes = {"display": [], "raw": [], "upside down": []}
    for patient_records in by_patient.values():
        hu = source.read_hu(patient_records[len(patient_records) // 2])
        assert hu.dtype == np.float32 and hu.shape == (256, 256)
        assert -20 <= hu.min() and hu.max() <= 100 and hu.max() - hu.min() > 100
        for name, image in (("display", hu), ("raw", from_display(hu)), ("upside down", np.rot90(hu, 2))):
            votes[name].append(_orientation_votes(image))
    n = len(by_patient)

    def tall(name):
        return sum(t for t, _ in votes[name])

    def table_below(name):
        seen = [b for _, b in votes[name] if b is not None]
        return sum(seen), len(seen)

    assert tall("display") >= 0.9 * n and tall("raw") <= 0.1 * n
    below, seen = table_below("display")
    assert seen >= 0.8 * n and below >= 0.9 * seen
    below, seen = table_below("upside down")
    assert below <= 0.1 * seen


def test_ctich_png_masks_share_the_image_orientation(ctich):
    """Masks lie inside their head and on blood-range pixels (50..95 HU) far more often than the same
    mask mirrored would. (Not every mask is bright: patient 70's epidural collection is hypodense.)"""
    source, records = ctich
    positives = [r for r in records if r.labels[0]][::4]
    blood, mirrored = [], []
    for record in positives:
        hu, mask = source.read_hu(record), source.read_mask(record)
        assert mask.dtype == bool and mask.shape == hu.shape == (256, 256)
        if mask.sum() < 10:
            continue
        head, _ = _head_and_table(hu)
        assert (mask & head).sum() >= 0.95 * mask.sum()
        blood.append(((hu[mask] >= 50) & (hu[mask] <= 95)).mean())
        flipped = hu[np.flipud(mask)]
        mirrored.append(((flipped >= 50) & (flipped <= 95)).mean())
    assert len(blood) >= 50 and np.mean(blood) > 0.45 and np.mean(blood) > 2 * np.mean(mirrored)
    negatives = [r for r in records if not r.labels[0]][::100]
    assert not any(source.read_mask(r).any() for r in negatives)


# --------------------------------------------------------------------------- CT-ICH, generated NIfTI + PNG


def _write_ctich_layouts(tmp_path: Path):
    """2 patients x 3 slices as the PhysioNet NIfTI release and as the PNG export of the same arrays.

    The volumes are phantom heads in display orientation turned into CT-ICH raw array order with
    ``from_display``, so a reader that returns them in display orientation reproduces the phantom.
    """
    nifti, png = tmp_path / "nifti", tmp_path / "png"
    for folder in (nifti / "ct_scans", nifti / "masks", png / "image", png / "label"):
        folder.mkdir(parents=True)
    table = [["PatientNumber", "SliceNumber", "Intraventricular", "Intraparenchymal", "Subarachnoid", "Epidural",
              "Subdural", "No_Hemorrhage", "Fracture_Yes_No"]]
    png_rows = [["image", "patient_id", *CLASSES, "slice_number", "fracture", "mask", "mask_pixels"]]
    truth, k = {}, 0
    for number, seed in ((49, 3), (101, 4)):
        series = make_phantom(seed=seed, subtypes=["epidural"], n_slices=3, size=512)
        display_hu = np.round(series.hu).astype(np.int16)
        display_mask = series.masks["epidural"] if "epidural" in series.masks else np.zeros(series.hu.shape, bool)
        truth[number] = (display_hu, display_mask, series.labels)
        volume = np.stack([from_display(s) for s in display_hu], axis=-1)  # [512, 512, 3], raw order
        mask = np.stack([from_display(m) for m in display_mask], axis=-1).astype(np.uint8)
        affine = np.diag([-0.47, 0.47, 5.0, 1.0])  # LAS storage, as dcm2niix writes it
        nibabel.save(nibabel.Nifti1Image(volume, affine), nifti / "ct_scans" / f"{number:03d}.nii")
        nibabel.save(nibabel.Nifti1Image(mask, affine), nifti / "masks" / f"{number:03d}.nii")
        for s in range(3):
            edh = int(series.labels[s, CLASSES.index("epidural")])
            table.append([number, s + 1, 0, 0, 0, edh, 0, 1 - edh, 0])
            windowed = np.clip((volume[:, :, s].astype(np.float64) + 20) / 120 * 255, 0, 255)
            small = windowed.reshape(256, 2, 256, 2).mean((1, 3))  # the export's 2x2 area average
            Image.fromarray(small.round().astype(np.uint8)).save(png / "image" / f"{k}.png")
            small_mask = mask[:, :, s].reshape(256, 2, 256, 2).max((1, 3))  # any of the 2x2 pixels
            Image.fromarray((small_mask * 255).astype(np.uint8)).save(png / "label" / f"{k}.png")
            png_rows.append([f"image/{k}.png", f"CTICH_{number:03d}", edh, edh, 0, 0, 0, 0, s + 1, 0,
                             f"label/{k}.png", int(mask[:, :, s].sum())])
            k += 1
    for path, rows in ((nifti / "hemorrhage_diagnosis_raw_ct.csv", table), (png / "labels.csv", png_rows)):
        with open(path, "w", newline="") as f:
            csv.writer(f).writerows(rows)
    return nifti, png, truth


def test_ctich_nifti_and_png_layouts_agree_in_keys_labels_and_orientation(tmp_path):
    nifti_dir, png_dir, truth = _write_ctich_layouts(tmp_path)
    nifti, png = CtichNiftiSource(nifti_dir), CtichPngSource(png_dir)
    n_records, p_records = nifti.records(), png.records()
    assert [r.key for r in n_records] == [r.key for r in p_records] == [
        f"ctich/{n}/{s}" for n in (49, 101) for s in (1, 2, 3)]
    assert [r.labels for r in n_records] == [r.labels for r in p_records]
    assert [r.patient for r in n_records] == [r.patient for r in p_records] == ["CTICH_049"] * 3 + ["CTICH_101"] * 3
    assert [r.index for r in n_records] == [1, 2, 3, 1, 2, 3] and nifti.skipped == []
    assert sum(r.labels[1] for r in n_records) >= 1
    for n_record, p_record in zip(n_records, p_records):
        number, s = int(n_record.key.split("/")[1]), n_record.index - 1
        display_hu, display_mask, labels = truth[number]
        assert n_record.labels == tuple(int(v) for v in labels[s])
        full = nifti.read_hu(n_record)
        assert full.dtype == np.float32 and np.array_equal(full, display_hu[s])  # display orientation, exact
        assert np.array_equal(nifti.read_mask(n_record), display_mask[s])
        small = png.read_hu(p_record)
        expected = np.clip(full.astype(np.float64), -20, 100).reshape(256, 2, 256, 2).mean((1, 3))
        assert small.dtype == np.float32 and np.abs(small - expected).max() <= 120 / 255 / 2 + 1e-4
        assert np.array_equal(png.read_mask(p_record), nifti.read_mask(n_record).reshape(256, 2, 256, 2).max((1, 3)))
    assert to_display(np.arange(4).reshape(2, 2)).tolist() == [[1, 3], [0, 2]]
    assert np.array_equal(from_display(to_display(np.arange(6).reshape(2, 3))), np.arange(6).reshape(2, 3))


def test_ctich_nifti_reports_missing_volumes_and_bad_slices(tmp_path):
    nifti_dir, _, _ = _write_ctich_layouts(tmp_path)
    (nifti_dir / "ct_scans" / "101.nii").unlink()
    with open(nifti_dir / "hemorrhage_diagnosis_raw_ct.csv", "a", newline="") as f:
        csv.writer(f).writerow([49, 9, 0, 0, 0, 0, 0, 1, 0])  # a slice the volume does not have
    source = CtichNiftiSource(nifti_dir)
    records = source.records()
    assert [r.patient for r in records] == ["CTICH_049"] * 4
    assert len(source.skipped) == 1 and "101" in source.skipped[0][0] and "missing" in source.skipped[0][1]
    with pytest.raises(IndexError, match="outside"):
        source.read_hu(records[-1])


def test_ctich_layout_errors_say_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="labels.csv"):
        CtichPngSource(tmp_path)
    with pytest.raises(FileNotFoundError, match="ct_scans"):
        CtichNiftiSource(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        CtichPngSource(tmp_path / "nowhere")
    (tmp_path / "labels.csv").write_text("image,patient_id\nimage/0.png,CTICH_049\n")
    with pytest.raises(ValueError, match="lacks the column"):
        CtichPngSource(tmp_path).records()


# --------------------------------------------------------------------------- RSNA, generated layout


@pytest.fixture(scope="module")
def rsna_layout(tmp_path_factory):
    """Two phantom studies written in one folder tree, a stage_2_train.csv with a duplicated row and
    a disagreeing duplicate, a corrupt .dcm and a .dcm without label rows."""
    tmp = tmp_path_factory.mktemp("rsna")
    root = tmp / "stage_2_train"
    studies = [make_phantom(seed=11, subtypes=["subdural", "intraventricular"], n_slices=6, size=64),
               make_phantom(seed=12, subtypes=[], n_slices=5, size=64)]
    label_rows = []
    for i, series in enumerate(studies):
        write_phantom_study(series, root / f"batch{i}" / "study", patient_id=f"PAT{i}")
        with open(root / f"batch{i}" / "study" / "labels.csv") as f:
            label_rows += list(csv.reader(f))[1:]
    label_rows.append(label_rows[0])  # an exact duplicate, as stage_2_train.csv has
    negative_id = rsna_ids(studies[1])[2]
    label_rows.append([f"{negative_id}_epidural", "1"])  # a duplicate that disagrees (was 0)
    labels_csv = tmp / "stage_2_train.csv"
    with open(labels_csv, "w", newline="") as f:
        csv.writer(f).writerows([["ID", "Label"], *label_rows])
    corrupt = root / "ID_0000c0rpt.dcm"
    corrupt.write_bytes(b"\0" * 128 + b"DICM" + b"\xff" * 40)
    unlabelled = root / "batch0" / "ID_00000nolab.dcm"
    shutil.copy(next((root / "batch1" / "study").glob("ID_*.dcm")), unlabelled)
    return {"root": root, "labels_csv": labels_csv, "studies": studies, "corrupt": corrupt,
            "unlabelled": unlabelled, "negative_id": negative_id}


def test_rsna_layout_with_its_known_defects(rsna_layout):
    root, studies = rsna_layout["root"], rsna_layout["studies"]
    source = RsnaSource(root, rsna_layout["labels_csv"], workers=1, progress=False)
    records = source.records()
    assert len(records) == 11 and len({r.key for r in records}) == 11
    reasons = dict(source.skipped)
    assert set(reasons) == {str(rsna_layout["corrupt"]), str(rsna_layout["unlabelled"])}
    assert "no label rows" in reasons[str(rsna_layout["unlabelled"])]
    assert source.label_duplicates == 2 and source.label_disagreements == 1 and source.labels_without_image == 0
    assert {r.patient for r in records} == {"PAT0", "PAT1"}
    for i, series in enumerate(studies):
        ids = rsna_ids(series)
        mine = [r for r in records if r.patient == f"PAT{i}"]
        header = pydicom.dcmread(next((root / f"batch{i}" / "study").glob("ID_*.dcm")), stop_before_pixels=True)
        assert {r.study for r in mine} == {str(header.StudyInstanceUID)}
        # index = rank by z, whatever the (hash) file names sort as
        assert sorted((r.key, r.index) for r in mine) == sorted((f"rsna/{i}", k) for k, i in enumerate(ids))
        expected = series.labels.astype(int).copy()
        if i == 1:
            expected[2, CLASSES.index("epidural")] = 1  # the disagreeing duplicate: the maximum wins
        by_index = sorted(mine, key=lambda r: r.index)
        assert [list(r.labels) for r in by_index] == expected.tolist()
        for r in by_index[::2]:
            hu = source.read_hu(r)
            assert hu.dtype == np.float32 and hu.shape == (64, 64)
            assert np.abs(hu - np.maximum(series.hu[r.index], -1024)).max() <= 0.5 + 1e-3
    assert rsna_layout["negative_id"] in {r.key.split("/")[1] for r in records}


def test_rsna_label_file_parsing(rsna_layout, tmp_path):
    table = read_labels(rsna_layout["labels_csv"])
    assert len(table) == 11 and table.duplicates == 2 and table.disagreements == 1 and not table.incomplete
    assert list(RSNA_ORDER) != list(CLASSES)  # the file's row order is not CLASSES order: mapped by name
    bad = tmp_path / "bad.csv"
    bad.write_text("ID,Label\nID_abc_epidural,1\nID_abc_anything,0\n")
    with pytest.raises(ValueError, match="subtype"):
        read_labels(bad)
    partial = tmp_path / "partial.csv"
    partial.write_text("ID,Label\nID_abc_epidural,1\nID_abc_any,1\n")
    assert read_labels(partial).incomplete == {"ID_abc": ["intraparenchymal", "intraventricular", "subarachnoid",
                                                          "subdural"]}
    with pytest.raises(ValueError, match="ID,Label"):
        bad.write_text("image,label\n")
        read_labels(bad)


def test_rsna_index_cache_is_written_once_and_reused(rsna_layout, tmp_path, monkeypatch):
    cache = tmp_path / "cache" / "index.csv"
    first_source = RsnaSource(rsna_layout["root"], rsna_layout["labels_csv"], workers=2, chunksize=2,
                              index_cache=cache, progress=False)
    first = first_source.records()
    assert cache.is_file()

    def no_scan(self):
        raise AssertionError("the index cache should have been used")

    monkeypatch.setattr(RsnaSource, "_scan", no_scan)
    again = RsnaSource(rsna_layout["root"], rsna_layout["labels_csv"], index_cache=cache, progress=False)
    assert again.records() == first and again.skipped == first_source.skipped
    assert [r.extra for r in again.records()] == [r.extra for r in first]
    assert np.array_equal(again.read_hu(first[3]), first_source.read_hu(first[3]))
    unlabelled = RsnaSource(rsna_layout["root"], index_cache=cache).records()
    assert len(unlabelled) == 12 and all(r.labels is None for r in unlabelled)  # the label-less copy is kept


def test_rsna_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        RsnaSource(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="label file"):
        RsnaSource(tmp_path, tmp_path / "missing.csv")
    with pytest.raises(FileNotFoundError, match=r"no \*\.dcm"):
        RsnaSource(tmp_path, progress=False).records()


# --------------------------------------------------------------------------- RSNA, real unlabelled slices


def test_real_rsna_slices_unlabelled(rsna_dir):
    source = RsnaSource(rsna_dir, workers=2, progress=False)
    records = source.records()
    assert len(records) == 155 and source.skipped == [] and all(r.labels is None for r in records)
    assert all(r.key.startswith("rsna/ID_") for r in records)
    # 155 slices but 154 patients: ID_00042bee4 and ID_000853bc1 are two slices of one study (z 168.8, 131.1)
    assert len({r.patient for r in records}) == 154 and len({r.study for r in records}) == 154
    pair = sorted((r for r in records if r.patient == "ID_407b437c"), key=lambda r: r.index)
    assert [r.key for r in pair] == ["rsna/ID_000853bc1", "rsna/ID_00042bee4"] and [r.index for r in pair] == [0, 1]
    assert all(r.index == 0 for r in records if r.patient != "ID_407b437c")
    above = {}
    for record in records:
        hu = source.read_hu(record)
        assert hu.dtype == np.float32 and hu.shape == (512, 512)
        assert hu.min() >= -1024 and np.percentile(hu, 1) < -500  # air in HU, not stored values
        if hu.max() > 4000:
            above[record.key] = int((hu > 4000).sum())
    # One slice is from an extended-CT-scale scanner with a small metal object (up to 24,322 HU): all
    # others stay inside [-1024, 4000] (3071 is the usual 12-bit ceiling).
    assert above.keys() <= {"rsna/ID_000457398"} and sum(above.values()) < 500


# --------------------------------------------------------------------------- phantom


def test_phantom_source_is_deterministic_and_covers_every_subtype():
    a, b = PhantomSource(6, seed=2, slices=8, size=64), PhantomSource(6, seed=2, slices=8, size=64)
    records = a.records()
    assert records == b.records() and len(records) == 48 and len({r.key for r in records}) == 48
    assert records[10].key == "phantom/2/1/2" and records[10].patient == records[10].study == "phantom/2/1"
    for record in records[::5]:
        assert np.array_equal(a.read_hu(record), b.read_hu(record))
    assert a.read_hu(records[10]).dtype == np.float32 and a.read_hu(records[10]).shape == (64, 64)
    assert np.array_equal(a.read_hu(records[10]), make_phantom(seed=2001, subtypes=a.subtypes_of(1), n_slices=8,
                                                              size=64).hu[2])
    labels = labels_array(records)
    assert (labels.sum(0) > 0).all()  # every subtype appears across 6 studies
    assert a.subtypes_of(3) == () and not labels[24:32].any()  # a lesion-free study
    positive = next(r for r in records if r.labels[CLASSES.index("subdural")])
    masks = a.read_mask(positive)
    assert masks["subdural"].dtype == bool and masks["subdural"].any()
    for record in records:
        masks = a.read_mask(record)
        assert all(bool(masks[name].any()) == bool(record.labels[CLASSES.index(name)]) for name in masks)
    other = PhantomSource(6, seed=3, slices=8, size=64, name="extra")
    assert not np.array_equal(other.read_hu(other.records()[10]), a.read_hu(records[10]))
    assert {r.source for r in records} == {"phantom"} and {r.source for r in other.records()} == {"extra"}


def test_recipe_data_paths_do_not_depend_on_the_working_folder(tmp_path, monkeypatch):
    """Found by an outside tester: `prepare --config ctich_resnet18` from another folder looked for
    /tmp/shared/data/ctich, and ICH_SHARED_DATA, which the tests and benches read, was ignored."""
    from training.data.sources import REPO, build_source, data_root

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ICH_SHARED_DATA", raising=False)
    assert data_root("../shared/data/ctich") == REPO / "../shared/data/ctich"
    (tmp_path / "here").mkdir()
    assert data_root("here") == Path("here")  # what exists from the working folder is still taken from there
    assert data_root("/abs/olute") == Path("/abs/olute")
    monkeypatch.setenv("ICH_SHARED_DATA", str(tmp_path / "elsewhere"))
    assert data_root("../shared/data/phe-sich") == tmp_path / "elsewhere" / "phe-sich"
    with pytest.raises(ValueError, match="data source phantom: .*n_studiez"):
        build_source({"kind": "phantom", "n_studiez": 3})
