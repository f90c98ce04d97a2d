"""Architecture rules that a tool can check: the core has no Qt, and runs without it installed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_import_linter_contracts_hold():
    lint = Path(sys.executable).with_name("lint-imports")
    run = subprocess.run([str(lint)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Contracts: 5 kept, 0 broken" in run.stdout


def test_no_import_circle_anywhere_in_the_application():
    """Function-level imports count too (grimp sees them): each was a hidden circle before."""
    import grimp

    graph = grimp.build_graph("ich_viewer")
    circles = sorted((a, b) for a in graph.modules for b in graph.find_modules_directly_imported_by(a)
                     if b.startswith("ich_viewer") and graph.chain_exists(importer=b, imported=a))
    assert circles == []


def test_importing_the_package_changes_nothing_global_and_loads_no_decoder():
    code = (
        "import sys\n"
        "import ich_viewer, ich_viewer.core.windows, ich_viewer.core.contract, ich_viewer.core.series\n"
        "print(sorted(m for m in ('pydicom', 'gdcm', 'imagecodecs', 'onnxruntime', 'PySide6') if m in sys.modules))\n"
        "import ich_viewer.core.dicom_io, ich_viewer.core.dicom_pixels\n"
        "from pydicom import config\n"
        "from pydicom.pixels.decoders import JPEGLosslessDecoder\n"
        "print('imagecodecs' in JPEGLosslessDecoder.available_plugins, config.settings.reading_validation_mode)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert run.returncode == 0, run.stderr
    from pydicom import config

    assert run.stdout.split("\n")[:2] == ["[]", f"False {config.WARN}"]


def test_core_loads_a_study_with_qt_made_unimportable(tmp_path):
    code = (
        "import sys; sys.modules['PySide6'] = None; sys.modules['pyqtgraph'] = None\n"
        "from ich_viewer.core.phantom import make_phantom, write_phantom_study\n"
        "import ich_viewer\n"
        "from ich_viewer.core.volume import read_volume\n"
        f"write_phantom_study(make_phantom(n_slices=3, size=64), {str(tmp_path / 'p')!r})\n"
        f"print(read_volume(ich_viewer.load({str(tmp_path / 'p')!r}).series[0]).shape)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "(3, 64, 64)"
