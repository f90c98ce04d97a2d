"""Load the real CQ500 series: our loader vs a plain sequential pydicom loop, in the same run.

    .venv/bin/python bench/bench_load.py [--repeats 5] [--data ../shared/data/cq500-ct0]

Our loader is measured three ways: with its decoder processes started beforehand (as the viewer and
triage start them with the application), started by the first slice, and with every decoder in the
process as before decoder processes existed (the baseline for their cost). "Full volume" is every slice decoded into the series' one contiguous array (int16 for this series);
"as float32" adds the conversion ``VolumeLoader.result()`` makes. Each measurement runs in a fresh subprocess (cold imports excluded, OS file cache warm after the
first run) so peak resident memory is per method. Prints medians and the ratio; the machine is
shared and noisy, so compare ratios, not absolute seconds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

OURS = r"""
import json, resource, sys, time
import ich_viewer
from ich_viewer.core import decoder_process, dicom_pixels
from ich_viewer.core.volume import VolumeLoader
mode = sys.argv[2]
if mode == "warm":  # as the viewer and triage do: decoder processes started with the application
    decoder_process.prestart().join()
elif mode == "in-process":  # the loader before decoder processes: every decoder in this process
    dicom_pixels.decoder_process.run = lambda function, *args, **kwargs: function(*args)
t0 = time.perf_counter()
series = ich_viewer.load(sys.argv[1]).series[0]
loader = VolumeLoader(series)
loader.slice(len(series) // 2)
t_first = time.perf_counter() - t0
loader.wait()  # every slice decoded into the one contiguous array (int16 for this series)
t_full = time.perf_counter() - t0
volume = loader.result()  # as float32 HU, like the plain loop's
t_float = time.perf_counter() - t0
children_mb = 0.0
for pid in decoder_process.child_pids() if mode != "in-process" else []:
    with open(f"/proc/{pid}/status") as status:  # peak RSS of each decoder process (Linux)
        children_mb += next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) / 1024
print(json.dumps({"first": t_first, "full": t_full, "float": t_float, "shape": list(volume.shape),
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "children_mb": children_mb}))
"""

PLAIN = r"""
import json, resource, sys, time, glob
import numpy as np, pydicom
t0 = time.perf_counter()
slices, t_first = [], None
for path in sorted(glob.glob(sys.argv[1] + "/*.dcm")):
    ds = pydicom.dcmread(path)
    hu = ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    t_first = t_first or time.perf_counter() - t0
    slices.append((float(ds.ImagePositionPatient[2]), hu))
slices.sort(key=lambda item: item[0])
volume = np.stack([hu for _, hu in slices])
t_full = time.perf_counter() - t0
print(json.dumps({"first": t_first, "full": t_full, "float": t_full, "shape": list(volume.shape),
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "children_mb": 0.0}))
"""


def measure(code: str, data: Path, mode: str = "") -> dict:
    out = subprocess.run([sys.executable, "-c", code, str(data), mode], capture_output=True, text=True, check=True,
                         cwd=REPO)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "cq500-ct0")
    args = parser.parse_args()
    if not args.data.is_dir():
        print(f"no data at {args.data}", file=sys.stderr)
        return 2
    methods = {
        "ich_viewer.load (decoder processes started with the app)": (OURS, "warm"),
        "ich_viewer.load (decoder processes started by the first slices)": (OURS, "cold"),
        "ich_viewer.load (decoding in this process, as before)": (OURS, "in-process"),
        "plain pydicom loop": (PLAIN, ""),
    }
    runs = {name: [] for name in methods}
    for _ in range(args.repeats):  # interleaved, so drift on a shared machine hits all alike
        for name, (code, mode) in methods.items():
            runs[name].append(measure(code, args.data, mode))
    keys = ("first", "full", "float", "rss_mb", "children_mb")
    med = {name: {k: statistics.median(r[k] for r in rs) for k in keys} for name, rs in runs.items()}
    shape = runs["plain pydicom loop"][0]["shape"]
    print(f"CQ500-CT-0, {shape[0]} slices {shape[1]}x{shape[2]} JPEG Lossless, median of {args.repeats} runs each\n")
    print("| method | first slice (s) | full volume (s) | as float32 (s) | peak RSS (MB) | decoder processes' peak RSS (MB) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, m in med.items():
        print(f"| {name} | {m['first']:.3f} | {m['full']:.3f} | {m['float']:.3f} | {m['rss_mb']:.0f} | {m['children_mb']:.0f} |")
    ours, before = med["ich_viewer.load (decoder processes started with the app)"], \
        med["ich_viewer.load (decoding in this process, as before)"]
    plain = med["plain pydicom loop"]
    print(f"\nfull volume speed-up: {plain['full'] / ours['full']:.2f}x decoded, {plain['float'] / ours['float']:.2f}x "
          f"as float32 (goal >= 2x); first slice {ours['first']:.3f} s (goal < 0.3 s); "
          f"decoder processes cost {ours['full'] / before['full']:.2f}x the in-process time")
    return 0


if __name__ == "__main__":
    sys.exit(main())
