"""Start-up time to a usable viewer window, beside a bare PySide6 window measured in the same run.

    .venv/bin/python bench/bench_startup.py [--repeats 7]

Each run is a fresh process on the offscreen platform, timed from interpreter start (imports
included) until the window is shown and the event loop has drained once, with the bundled model
loaded and verified. The baseline is an empty QMainWindow, i.e. the floor Qt itself sets.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

VIEWER = r"""
import time; t0 = time.perf_counter()
import sys
from ich_viewer.app import install_excepthook
from PySide6.QtWidgets import QApplication
from ich_viewer.gui.main_window import MainWindow
app = QApplication(sys.argv[:1])
window = MainWindow()
window.show()
app.processEvents()
assert window.model is not None, "bundled model missing"
print(time.perf_counter() - t0)
"""

BARE = r"""
import time; t0 = time.perf_counter()
import sys
from PySide6.QtWidgets import QApplication, QMainWindow
app = QApplication(sys.argv[:1])
window = QMainWindow()
window.show()
app.processEvents()
print(time.perf_counter() - t0)
"""


def measure(code: str) -> float:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO, env=env)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    viewer, bare = [], []
    for _ in range(args.repeats):  # interleaved, so both see the same machine load
        viewer.append(measure(VIEWER))
        bare.append(measure(BARE))
    v, b = statistics.median(viewer), statistics.median(bare)
    print(f"median of {args.repeats} fresh processes (offscreen)\n")
    print("| window | start-up to usable (s) |\n|---|---:|")
    print(f"| ICH Viewer main window, bundled model verified and loaded | {v:.2f} |")
    print(f"| bare PySide6 QMainWindow (baseline) | {b:.2f} |")
    print(f"\nviewer / bare: {v / b:.1f}x; goal: viewer under 2 s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
