"""The offline installer (issue 16): build the PyInstaller bundle and run it as a locked-down laptop would.

Marked ``packaging`` (a build takes minutes): skip it locally with ``pytest -m "not packaging"``; CI runs it.
Set ``ICH_VIEWER_BUNDLE=dist/ich-viewer`` to test a bundle already built instead of building one.

- the bundle holds the app, the model with its manifest, the decoders, the selftest files, icons, the
  ``.desktop`` entry and the third-party notices, and none of torch, torchvision or ``training``;
- ``ich-viewer --selftest`` passes frozen under ``env -i`` with an empty HOME, no virtual environment on
  PATH and, where ``unshare -n`` works, no network at all;
- the frozen app opens the demo on the xcb platform under Xvfb and saves a screenshot of its window.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.xvfb import xvfb_display

pytestmark = pytest.mark.packaging
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bundle() -> Path:
    given = os.environ.get("ICH_VIEWER_BUNDLE")
    if given:
        folder = Path(given).resolve()
        assert (folder / "ich-viewer").is_file(), f"ICH_VIEWER_BUNDLE={given} holds no ich-viewer executable"
        return folder
    build = subprocess.run(["bash", "packaging/build.sh"], cwd=REPO, capture_output=True, text=True, timeout=1800)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    return REPO / "dist" / "ich-viewer"


def clean_env(home: Path, **extra: str) -> list[str]:
    """``env -i`` with an empty HOME and a PATH holding no virtual environment."""
    home.mkdir(parents=True, exist_ok=True)
    return ["env", "-i", f"HOME={home}", "PATH=/usr/bin:/bin", f"TMPDIR={home}", "LANG=C.UTF-8",
            *(f"{k}={v}" for k, v in extra.items())]


def offline() -> list[str]:
    """``unshare -n`` (a network namespace with no interface) where this machine allows it."""
    if shutil.which("unshare") and subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0:
        return ["unshare", "-n"]
    return []


def test_the_bundle_holds_the_viewer_and_not_the_training_stack(bundle):
    internal = bundle / "_internal"
    files = [p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file()]
    assert (bundle / "ich-viewer").is_file() and os.access(bundle / "ich-viewer", os.X_OK)
    for needed in ("_internal/resources/models/manifest.json", "_internal/resources/icons/ich-viewer.png",
                   "ich-viewer.desktop", "install-desktop-entry.sh", "THIRD_PARTY_NOTICES.txt",
                   *(f"_internal/resources/selftest/{n}" for n in ("jpeg-lossless.dcm", "jpeg-2000.dcm", "jpeg-ls.dcm",
                                                                   "rle.dcm", "expected.json"))):
        assert needed in files, needed
    assert any(f.startswith("_internal/resources/models/") and f.endswith(".onnx") for f in files)
    assert any("libqxcb" in f for f in files) and any("onnxruntime" in f for f in files)
    for decoder in ("_gdcm", "openjpeg", "rle", "jpeg_ls", "imagecodecs", "PIL"):
        assert (internal / decoder).exists() or any(Path(f).name.startswith(decoder) for f in files), decoder
    tops = {Path(f).parts[1].split(".")[0] for f in files if f.startswith("_internal/")}
    assert not {"torch", "torchvision", "training", "sklearn", "matplotlib"} & tops
    from PyInstaller.archive.readers import CArchiveReader  # the executable's module archive, as frozen

    listed = list(CArchiveReader(str(bundle / "ich-viewer")).open_embedded_archive("PYZ.pyz").toc)
    assert "ich_viewer.selftest" in listed and "pydicom" in listed
    assert not [m for m in listed if m.split(".")[0] in ("torch", "torchvision", "training")]
    megabytes = sum(p.stat().st_size for p in bundle.rglob("*") if p.is_file() and not p.is_symlink()) / 2**20
    print(f"bundle: {len(files)} files, {megabytes:.0f} MB")
    archives = sorted(bundle.parent.glob("ich-viewer-*-linux-*.tar.gz"))
    if not os.environ.get("ICH_VIEWER_BUNDLE"):  # the build made its archive beside the bundle
        assert len(archives) == 1
        listing = subprocess.run(["tar", "-tzf", str(archives[0])], capture_output=True, text=True, check=True).stdout
        assert {"ich-viewer/ich-viewer", "ich-viewer/ich-viewer.desktop", "ich-viewer/THIRD_PARTY_NOTICES.txt"} <= \
            set(listing.split())


def test_the_notices_name_every_component_and_nothing_gpl(bundle):
    notices = (bundle / "THIRD_PARTY_NOTICES.txt").read_text()
    for name in ("PySide6", "pydicom", "onnxruntime", "imagecodecs", "python-gdcm", "pylibjpeg-openjpeg", "pyjpegls",
                 "numpy", "scikit-image", "CT-ICH"):
        assert name.lower() in notices.lower(), name
    # the licence each component is used under (PySide6 is offered as LGPL-3.0 or GPL: used under LGPL)
    # (a "License:" line inside a component's own licence text, such as numpy's for its GCC runtime, is not one)
    lines = notices.splitlines()
    licences = [lines[i + 1].split(":", 1)[1].split(" (offered as")[0] for i, line in enumerate(lines[:-1])
                if line.startswith("Version:") and lines[i + 1].startswith("License:")]
    assert len(licences) >= 15 and not [lic for lic in licences if "GPL" in lic.replace("LGPL", "")]
    # every component of the README's licence table is in the bundle's notices
    readme = (REPO / "README.md").read_text().split("## Licences of the bundled components", 1)[1].split("\n## ", 1)[0]
    table = [row.split("|")[1].strip() for row in readme.splitlines()
             if row.startswith("| ") and "---" not in row and "(inside " not in row]  # not libraries inside wheels
    names = {n.strip().lower() for row in table[1:] for n in row.split("(")[0].split(",")}
    listed = {line.split(":", 1)[1].strip().lower().replace("_", "-") for line in notices.splitlines()
              if line.startswith("Name:")}
    def installed(name: str) -> bool:
        try:
            importlib.metadata.distribution(name)
            return True
        except importlib.metadata.PackageNotFoundError:  # a library inside a wheel (libgfortran), not a distribution
            return False

    distributions = {name for name in names if installed(name)}
    assert len(distributions) >= 12 and distributions <= listed, distributions - listed


def test_the_frozen_selftest_passes_offline_in_a_clean_environment(bundle, tmp_path):
    run = subprocess.run([*offline(), *clean_env(tmp_path / "home"), str(bundle / "ich-viewer"), "--selftest"],
                         capture_output=True, text=True, timeout=600)
    lines = [line for line in run.stdout.splitlines() if line.startswith("selftest: ")]
    assert run.returncode == 0, run.stdout + run.stderr[-3000:]
    assert lines[-1] == "selftest: passed" and len(lines) == 13
    assert not list((tmp_path / "home").rglob("*.ini"))  # no settings written into the empty home


def test_the_frozen_app_opens_the_demo_on_xcb_under_xvfb(bundle, tmp_path):
    shot = tmp_path / "frozen-demo.png"
    with xvfb_display() as display:
        run = subprocess.run([*clean_env(tmp_path / "home", DISPLAY=display, QT_QPA_PLATFORM="xcb"),
                              str(bundle / "ich-viewer"), "--demo", "--quit-after", "10", "--screenshot", str(shot)],
                             capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr[-3000:]
    assert "on Qt's xcb platform, a series of 36 slices open" in run.stdout
    from PySide6.QtGui import QImage

    image = QImage(str(shot))
    assert not image.isNull() and image.width() >= 800 and image.height() >= 500
    if (REPO / "dist").is_dir():  # kept beside the bundle for a person to look at
        shutil.copy(shot, REPO / "dist" / "frozen-demo.png")
