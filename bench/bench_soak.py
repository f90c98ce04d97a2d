"""Soak: one viewer window, 50 study opens and 5,000 slice changes; resident memory and GUI stalls.

    .venv/bin/python bench/bench_soak.py [--opens 50] [--changes 5000] [--study FOLDER] [--no-model]

Each open is followed by its share of arrow-key presses (every press moves one slice, sweeping the
series up and down), all driven from the event loop. Stall: a 10 ms heartbeat QTimer on the GUI
thread; the longest gap between two of its ticks is the longest time the GUI thread did not answer
(a key press's own work included). RSS is VmRSS from /proc/self/status, after the first open and at
the end (goal: under 50 MB growth, a stall under 200 ms).

Baseline, same run, same study, same steps, in a subprocess: a bare pyqtgraph ImageItem window whose
opens go through the same core loader (ich_viewer.load + a VolumeLoader, in a thread) and whose key
presses show the next slice. It has no jobs, docks or model: its RSS growth is the floor that glibc
(which keeps freed study-sized arrays in its heap once its mmap threshold has risen) and pyqtgraph
set, and the viewer's excess over it is what the GUI layer adds. The per-open RSS slope after the
first 5 opens separates that warm-up from a leak: a study kept per open shows as ~18 MB an open.
The viewer fixes glibc's mmap threshold as the app does (``ich_viewer.core.memory``; ``--heap-default``
leaves it dynamic); the baseline does not. The default study is the demo phantom (36 slices of 512 x 512, 18.9 MB as int16). The machine's
load average is printed: on a busy machine the wall-clock stall includes waiting for a core.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before Qt is imported

import numpy as np  # noqa: E402
from PySide6.QtCore import QSettings, Qt, QTimer  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from ich_viewer.core.volume import VolumeLoader  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status (Linux only)")


class Heartbeat:
    """Longest gap between ticks of a 10 ms timer on the GUI thread, per phase; and the most CPU the GUI
    thread itself used within one gap. On a busy machine the wall gap also counts time the thread
    waited for a core or the GIL; the CPU figure is its own work only."""

    def __init__(self):
        self.phase = self.previous = "start"
        self.worst: dict[str, float] = {}
        self.busiest: dict[str, float] = {}
        self.per_open: list[float] = []  # the longest gap in each open and its slice changes
        self._last = (time.perf_counter(), time.thread_time())
        self.timer = QTimer(interval=10, timerType=Qt.TimerType.PreciseTimer)
        self.timer.timeout.connect(self._tick)
        self.timer.start()

    def _tick(self) -> None:
        now = (time.perf_counter(), time.thread_time())
        self.worst[self.phase] = max(self.worst.get(self.phase, 0.0), now[0] - self._last[0])
        self.busiest[self.phase] = max(self.busiest.get(self.phase, 0.0), now[1] - self._last[1])
        if self.per_open:
            self.per_open[-1] = max(self.per_open[-1], now[0] - self._last[0])
        self._last = now

    def next_open(self) -> None:
        self.per_open.append(0.0)


def run(steps, heartbeat: Heartbeat) -> None:
    """Step the generator from the event loop (1 ms timer) until it ends; the heartbeat keeps ticking."""
    app = QApplication.instance()
    driver = QTimer(interval=1)
    error = []

    def step():
        try:
            heartbeat.phase = next(steps)
            if heartbeat.phase == "open" and heartbeat.previous != "open":
                heartbeat.next_open()
            heartbeat.previous = heartbeat.phase
        except Exception as exc:  # StopIteration or a failure: either ends the run (Qt would only print it)
            error.extend([] if isinstance(exc, StopIteration) else [exc])
            driver.stop()
            app.quit()

    driver.timeout.connect(step)
    driver.start()
    app.exec()
    if error:
        raise error[0]


class Sweep:
    """Arrow keys that each move one slice: on in one direction, turning at either end."""

    def __init__(self):
        self.down = True

    def key(self, index: int, n: int) -> Qt.Key:
        if not 0 <= index + (1 if self.down else -1) < n:
            self.down = not self.down
        return Qt.Key.Key_Down if self.down else Qt.Key.Key_Up


# ---------------------------------------------------------------------------------------- the viewer

def soak_viewer(study: Path, opens: int, changes: int, use_model: bool, heap_default: bool = False) -> dict:
    from ich_viewer.core.memory import limit_heap_retention
    from ich_viewer.core.model import IchModel
    from ich_viewer.gui.main_window import MainWindow
    from ich_viewer.paths import models_dir

    if not heap_default:
        limit_heap_retention()  # as ich_viewer.app.run_gui does
    settings_dir = tempfile.mkdtemp(prefix="soak-settings-")
    window = MainWindow(settings=QSettings(str(Path(settings_dir) / "s.ini"), QSettings.Format.IniFormat),
                        model=IchModel.bundled(models_dir()) if use_model else None, load_bundled=False)
    window.show()
    out = {"rss_after_open": [], "open_s": []}
    refs_before = (sys.getrefcount(True), sys.getrefcount(None))

    def settled(previous) -> bool:
        if window.viewer.loader is previous or not window.viewer.loader.finished:
            return False
        return not use_model or ((window.classify is None or window.classify.thread.isFinished())
                                 and window.viewer.prediction is not None and window.viewer.prediction.complete)

    def steps():
        sweep = Sweep()
        for i in range(opens):
            previous, start = window.viewer.loader, time.perf_counter()
            window.open_paths([study])
            while not settled(previous):
                yield "open"
            out["open_s"].append(time.perf_counter() - start)
            out["rss_after_open"].append(rss_mb())
            for _ in range(changes // opens + (i < changes % opens)):
                QTest.keyClick(window, sweep.key(window.viewer.index, len(window.viewer.series)))
                yield "slice changes"

    heartbeat = Heartbeat()
    run(steps(), heartbeat)
    out["rss_end"] = rss_mb()
    out["stall_s"], out["busy_s"], out["stall_per_open"] = heartbeat.worst, heartbeat.busiest, heartbeat.per_open
    out["refcount_drift"] = [sys.getrefcount(True) - refs_before[0], sys.getrefcount(None) - refs_before[1]]
    window.close()
    gc.collect()
    out["loaders_alive"] = sum(isinstance(o, VolumeLoader) for o in gc.get_objects())
    shutil.rmtree(settings_dir, ignore_errors=True)
    return out


# ---------------------------------------------------------------------------------------- the baseline

def soak_bare(study: Path, opens: int, changes: int) -> dict:
    """The same steps on a bare pyqtgraph window fed by the same core loader."""
    import threading

    import pyqtgraph as pg

    import ich_viewer

    widget = pg.GraphicsLayoutWidget()
    viewbox = widget.addViewBox(lockAspect=True, invertY=True)
    image = pg.ImageItem(axisOrder="row-major")
    viewbox.addItem(image)
    widget.show()
    state = {"loader": None, "index": 0}
    out = {"rss_after_open": [], "open_s": []}

    def show(index: int) -> None:
        state["index"] = index
        image.setImage(state["loader"].slice(index), levels=(0.0, 80.0), autoLevels=False)

    def load(box: dict) -> None:  # as the viewer does: scan, then its own loader (int16 storage)
        loader = VolumeLoader(ich_viewer.load([study]).series[0])
        loader.wait()
        box["loader"] = loader

    def steps():
        sweep = Sweep()
        for i in range(opens):
            start, box = time.perf_counter(), {}
            worker = threading.Thread(target=load, args=(box,))
            worker.start()
            while worker.is_alive():
                yield "open"
            state["loader"] = box["loader"]
            show(len(state["loader"].ready) // 2)
            out["open_s"].append(time.perf_counter() - start)
            out["rss_after_open"].append(rss_mb())
            for _ in range(changes // opens + (i < changes % opens)):
                key = sweep.key(state["index"], len(state["loader"].ready))
                show(state["index"] + (1 if key == Qt.Key.Key_Down else -1))
                yield "slice changes"

    heartbeat = Heartbeat()
    run(steps(), heartbeat)
    out["rss_end"] = rss_mb()
    out["stall_s"], out["busy_s"], out["stall_per_open"] = heartbeat.worst, heartbeat.busiest, heartbeat.per_open
    return out


# ---------------------------------------------------------------------------------------- report

def slope(values: list[float]) -> float:
    """MB per open, least squares, after the first 5 opens (warm-up)."""
    tail = values[5:]
    return float(np.polyfit(np.arange(len(tail)), tail, 1)[0]) if len(tail) >= 2 else float("nan")


def report(viewer: dict, bare: dict, args) -> None:
    def row(name, v, b, fmt):
        print(f"| {name} | {fmt(v)} | {fmt(b)} |")

    mb, ms = (lambda x: f"{x:.1f}"), (lambda x: f"{x * 1000:.0f}")
    model = "no model" if args.no_model else "bundled model, every open classified"
    print(f"\n{args.opens} opens, {args.changes} slice changes, one window ({model}); study {args.study_label}; "
          f"{os.cpu_count()} CPUs, load average {args.load[0]:.1f} at the start, {os.getloadavg()[0]:.1f} at the end\n")
    print("| measure | ICH Viewer | bare pyqtgraph window (baseline) |\n|---|---:|---:|")
    row("RSS after the first open (MB)", viewer["rss_after_open"][0], bare["rss_after_open"][0], mb)
    row("RSS at the end (MB)", viewer["rss_end"], bare["rss_end"], mb)
    row("RSS growth, first open to end (MB)", viewer["rss_end"] - viewer["rss_after_open"][0],
        bare["rss_end"] - bare["rss_after_open"][0], mb)
    row("RSS slope after 5 opens (MB per open)", slope(viewer["rss_after_open"]), slope(bare["rss_after_open"]),
        lambda x: f"{x:+.2f}")
    for phase, what in (("slice changes", "scrolling"), ("open", "opening")):
        row(f"longest GUI stall while {what} (ms)", viewer["stall_s"].get(phase, 0), bare["stall_s"].get(phase, 0), ms)
        row(f"... GUI thread's own CPU in one gap, {what} (ms)", viewer["busy_s"].get(phase, 0),
            bare["busy_s"].get(phase, 0), ms)
    row("longest GUI stall after the first open (ms)", max(viewer["stall_per_open"][1:], default=0),
        max(bare["stall_per_open"][1:], default=0), ms)
    row("median open to settled (s)", float(np.median(viewer["open_s"])), float(np.median(bare["open_s"])),
        lambda x: f"{x:.2f}")
    print(f"\nviewer: {viewer['loaders_alive']} VolumeLoader(s) alive after closing; "
          f"refcount drift over the run: True {viewer['refcount_drift'][0]:+d}, None {viewer['refcount_drift'][1]:+d}")
    for name, run_ in (("viewer", viewer), ("bare", bare)):
        print(f"{name} RSS after each open (MB): " + " ".join(f"{x:.0f}" for x in run_["rss_after_open"]))
        print(f"{name} longest stall in each open (ms): " + " ".join(f"{x * 1000:.0f}" for x in run_["stall_per_open"]))
    growth = viewer["rss_end"] - viewer["rss_after_open"][0]
    stall = max(viewer["stall_s"].values())
    print(f"goals: growth under 50 MB: {'met' if growth < 50 else 'MISSED'} ({growth:.1f}); "
          f"longest stall under 200 ms: {'met' if stall < 0.2 else 'MISSED'} ({stall * 1000:.0f})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--opens", type=int, default=50)
    parser.add_argument("--changes", type=int, default=5000)
    parser.add_argument("--study", type=Path, help="a DICOM folder (default: the demo phantom, written to a temp folder)")
    parser.add_argument("--no-model", action="store_true", help="do not load the bundled model (no classification)")
    parser.add_argument("--bare", action="store_true", help=argparse.SUPPRESS)  # the baseline's subprocess
    parser.add_argument("--heap-default", action="store_true",
                        help="leave glibc's mmap threshold dynamic in the viewer too (the app fixes it at 8 MB)")
    args = parser.parse_args()
    app = QApplication.instance() or QApplication(sys.argv[:1])  # noqa: F841 - kept alive for the run
    if args.bare:
        print(json.dumps(soak_bare(args.study, args.opens, args.changes)))
        return 0
    temp = None
    if args.study is None:
        from ich_viewer.core.phantom import make_phantom, write_phantom_study

        temp = Path(tempfile.mkdtemp(prefix="soak-study-"))
        write_phantom_study(make_phantom(seed=2019), temp / "study")  # the demo study
        args.study = temp / "study"
    args.study_label = "demo phantom (36 x 512 x 512)" if temp else str(args.study)
    args.load = os.getloadavg()  # stalls include waiting for a core: say how busy the machine was
    try:
        # The baseline first, in its own process, so neither run's memory shows in the other's RSS.
        command = [sys.executable, __file__, "--bare", "--study", str(args.study), "--opens", str(args.opens),
                   "--changes", str(args.changes)]
        done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
        if done.returncode != 0:  # e.g. PySide6 6.12.0 on CPython 3.11 aborts it (none_dealloc)
            print(f"the baseline died (exit {done.returncode}):\n" + "\n".join(done.stderr.splitlines()[-8:]))
            return 1
        bare = json.loads(done.stdout.strip().splitlines()[-1])
        viewer = soak_viewer(args.study, args.opens, args.changes, use_model=not args.no_model,
                             heap_default=args.heap_default)
        report(viewer, bare, args)
    finally:
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
