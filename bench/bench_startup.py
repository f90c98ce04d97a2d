"""Start-up time to a usable viewer window, beside a bare PySide6 window measured in the same run.

    .venv/bin/python bench/bench_startup.py [--repeats 7] [--frozen dist/ich-viewer/ich-viewer]

Each run is a fresh process on the offscreen platform, timed from interpreter start (imports
included) until the window is shown and the event loop has drained once, with the bundled model
loaded and verified. The baseline is an empty QMainWindow, i.e. the floor Qt itself sets.

With ``--frozen`` (issue 16) the PyInstaller bundle and the source install run the same command,
``ich-viewer --quit-after 0`` (window shown, bundled model verified, event loop running), each timed from
outside as wall time from process start to its one line on stdout, with an empty HOME.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
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


def measure_command(command: list[str], home: Path) -> float:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "QT_QPA_PLATFORM": "offscreen", "LANG": "C.UTF-8"}
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=REPO, env=env)
    line = process.stdout.readline()
    elapsed = time.perf_counter() - started
    process.wait(60)
    if "the window ran" not in line:
        raise RuntimeError(f"{command[0]} did not start its window: {line!r}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--frozen", type=Path, help="the bundle's executable: frozen beside source, same command")
    args = parser.parse_args()
    if args.frozen:
        return compare_frozen(args.frozen.resolve(), args.repeats)
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


def compare_frozen(executable: Path, repeats: int) -> int:
    frozen, source = [], []
    with tempfile.TemporaryDirectory() as home:
        for _ in range(repeats):  # interleaved, so both see the same machine load
            frozen.append(measure_command([str(executable), "--quit-after", "0"], Path(home)))
            source.append(measure_command([sys.executable, "-m", "ich_viewer", "--quit-after", "0"], Path(home)))
    f, s = statistics.median(frozen), statistics.median(source)
    print(f"median of {repeats} fresh processes (offscreen, empty HOME): process start to a shown window with the "
          "bundled model verified\n")
    print("| install | start-up (s) | min-max (s) |\n|---|---:|---:|")
    print(f"| frozen bundle ({executable.parent.name}/) | {f:.2f} | {min(frozen):.2f}-{max(frozen):.2f} |")
    print(f"| source install (.venv) | {s:.2f} | {min(source):.2f}-{max(source):.2f} |")
    print(f"\nfrozen / source: {f / s:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
