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
    assert "Contracts: 3 kept, 0 broken" in run.stdout


def test_core_loads_a_study_with_qt_made_unimportable(tmp_path):
    code = (
        "import sys; sys.modules['PySide6'] = None; sys.modules['pyqtgraph'] = None\n"
        "from ich_viewer.core.phantom import make_phantom, write_phantom_study\n"
        "import ich_viewer\n"
        f"write_phantom_study(make_phantom(n_slices=3, size=64), {str(tmp_path / 'p')!r})\n"
        f"print(ich_viewer.load({str(tmp_path / 'p')!r}).series[0].volume().shape)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "(3, 64, 64)"
