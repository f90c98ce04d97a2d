"""Every transfer syntax a head CT arrives in decodes to the same HU as its uncompressed twin.

Real pixel streams throughout: the real head-CT slice 693 (CQ500-CT-310) in pydicom-data,
re-encoded by pydicom's own encoders for RLE / JPEG-LS / deflate / implicit VR, plus pydicom's
real test files in the syntaxes pydicom cannot write (big endian, JPEG lossless/extended),
relabelled as CT where they come from another modality.
"""

from __future__ import annotations

import copy
import io

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom import uid
from pydicom.encaps import encapsulate

import ich_viewer
from ich_viewer.core import dicom_pixels
from ich_viewer.core.volume import read_volume
from tests import dicom_factory as make
from tests.conftest import dicom_testfile


def hu_of(path) -> np.ndarray:
    return read_volume(ich_viewer.load(path).series[0])[0]


@pytest.fixture(scope="module")
def head_ct():
    """The real head-CT slice, uncompressed, and its HU as pydicom computes them."""
    ds = pydicom.dcmread(dicom_testfile("693_UNCR.dcm"))
    return ds, np.maximum(pydicom.pixels.apply_rescale(ds.pixel_array, ds), -1024)


@pytest.mark.parametrize(
    "syntax",
    [uid.ExplicitVRLittleEndian, uid.ImplicitVRLittleEndian, uid.DeflatedExplicitVRLittleEndian,
     uid.RLELossless, uid.JPEGLSLossless, uid.JPEG2000Lossless],
    ids=lambda s: uid.UID(s).name,
)
def test_real_head_ct_reencoded_decodes_identically(tmp_path, head_ct, syntax):
    ds, expected = head_ct
    path = make.save_with_syntax(ds, tmp_path / "slice.dcm", syntax)
    assert pydicom.dcmread(path).file_meta.TransferSyntaxUID == syntax
    np.testing.assert_array_equal(hu_of(path), expected)


def test_real_jpeg2000_lossless_head_ct_matches_its_uncompressed_twin(head_ct):
    np.testing.assert_array_equal(hu_of(dicom_testfile("693_J2KR.dcm")), head_ct[1])


def test_real_jpeg2000_lossy_head_ct_is_close_to_its_twin():
    lossy = hu_of(dicom_testfile("693_J2KI.dcm"))
    twin = hu_of(dicom_testfile("693_UNCI.dcm"))
    assert np.median(np.abs(lossy - twin)) < 20


@pytest.mark.parametrize(
    "name, twin",
    [("MR_small_bigendian.dcm", "MR_small.dcm"), ("MR_small_jpeg_ls_lossless.dcm", "MR_small.dcm"),
     ("MR_small_RLE.dcm", "MR_small.dcm"), ("JPEG-LL.dcm", None), ("JPGLosslessP14SV1_1s_1f_8b.dcm", None),
     ("image_dfl.dcm", None)],
)
def test_pydicom_real_files_in_other_syntaxes(tmp_path, name, twin):
    path = make.relabel_as_ct(name, tmp_path / name)
    hu = hu_of(path)
    reference = pydicom.dcmread(dicom_testfile(twin or name)).pixel_array
    reference = (reference[0] if reference.ndim == 3 else reference).astype(np.float32)
    np.testing.assert_array_equal(hu, np.maximum(reference, -1024))


def test_12bit_jpeg_extended_decodes(tmp_path):
    """Neither GDCM nor Pillow decodes 12-bit JPEG Extended; our imagecodecs plugin does."""
    extended = hu_of(make.relabel_as_ct("JPGExtended.dcm", tmp_path / "a.dcm"))
    lossy = hu_of(make.relabel_as_ct("JPEG-lossy.dcm", tmp_path / "b.dcm"))
    assert extended.shape == (1024, 256) and 0 <= extended.min() and extended.max() < 4096
    assert extended.std() > 10
    np.testing.assert_array_equal(extended, lossy)  # the same image in two files


def test_jpeg_lossless_through_imagecodecs_equals_gdcm(cq500_dir):
    """Our fast plugin must give exactly what GDCM (pydicom's reference decoder) gives."""
    path = sorted(cq500_dir.glob("*.dcm"))[100]
    ours = hu_of(path)
    ds = pydicom.dcmread(path)
    gdcm = pydicom.pixels.pixel_array(str(path), decoding_plugin="gdcm")
    np.testing.assert_array_equal(ours, np.maximum(pydicom.pixels.apply_rescale(gdcm, ds), -1024))
    assert ds.file_meta.TransferSyntaxUID == uid.JPEGLosslessSV1


def test_jpeg_baseline_monochrome(tmp_path, head_ct):
    """JPEG baseline (8-bit, lossy) encoded by Pillow from the real slice's brain window."""
    ds, expected = head_ct
    window = np.clip((expected + 20) / 120 * 255, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(window).save(buffer, format="JPEG", quality=95)
    out = copy.deepcopy(ds)
    if "PixelPaddingValue" in out:
        del out.PixelPaddingValue
    out.BitsAllocated, out.BitsStored, out.HighBit, out.PixelRepresentation = 8, 8, 7, 0
    out.RescaleIntercept, out.RescaleSlope = 0, 1
    out.PixelData = encapsulate([buffer.getvalue()])
    out["PixelData"].VR = "OB"
    out.file_meta.TransferSyntaxUID = uid.JPEGBaseline8Bit
    out.save_as(tmp_path / "baseline.dcm")
    assert np.abs(hu_of(tmp_path / "baseline.dcm") - window).mean() < 2


def test_truncated_compressed_slice_names_syntax_and_decoder(tmp_path):
    path = make.truncated_copy(dicom_testfile("693_J2KR.dcm"), tmp_path / "cut.dcm", keep_fraction=0.5)
    series = ich_viewer.load(path).series[0]
    with pytest.raises(ich_viewer.core.errors.DecodeError, match=r"JPEG 2000 .*1\.2\.840\.10008\.1\.2\.4\.90.*openjpeg"):
        dicom_pixels.decode_slice(series.slices[0])
