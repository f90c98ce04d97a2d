"""Load the real CQ500 series: our loader vs a plain sequential pydicom loop, in the same run.

    .venv/bin/python bench/bench_load.py [--repeats 5] [--data ../shared/data/cq500-ct0]

"Full volume" is every slice decoded into the series' one contiguous array (int16 for this series);
"as float32" adds the conversion ``series.volume()`` makes. Each measurement runs in a fresh subprocess (cold imports excluded, OS file cache warm after the
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
t0 = time.perf_counter()
series = ich_viewer.load(sys.argv[1]).series[0]
loader = series.loader()
loader.slice(len(series) // 2)
t_first = time.perf_counter() - t0
loader.wait()  # every slice decoded into the one contiguous array (int16 for this series)
t_full = time.perf_counter() - t0
volume = series.volume()  # as float32 HU, like the plain loop's
t_float = time.perf_counter() - t0
print(json.dumps({"first": t_first, "full": t_full, "float": t_float, "shape": list(volume.shape),
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
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
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def measure(code: str, data: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", code, str(data)], capture_output=True, text=True, check=True, cwd=REPO)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "cq500-ct0")
    args = parser.parse_args()
    if not args.data.is_dir():
        print(f"no data at {args.data}", file=sys.stderr)
        return 2
    runs = {"ich_viewer.load": [], "plain pydicom loop": []}
    for _ in range(args.repeats):  # interleaved, so drift on a shared machine hits both alike
        runs["ich_viewer.load"].append(measure(OURS, args.data))
        runs["plain pydicom loop"].append(measure(PLAIN, args.data))
    med = {name: {k: statistics.median(r[k] for r in rs) for k in ("first", "full", "float", "rss_mb")}
           for name, rs in runs.items()}
    shape = runs["ich_viewer.load"][0]["shape"]
    print(f"CQ500-CT-0, {shape[0]} slices {shape[1]}x{shape[2]} JPEG Lossless, median of {args.repeats} runs each\n")
    print("| method | first slice (s) | full volume (s) | as float32 (s) | peak RSS (MB) |")
    print("|---|---:|---:|---:|---:|")
    for name, m in med.items():
        print(f"| {name} | {m['first']:.3f} | {m['full']:.3f} | {m['float']:.3f} | {m['rss_mb']:.0f} |")
    ours, plain = med["ich_viewer.load"], med["plain pydicom loop"]
    print(f"\nfull volume speed-up: {plain['full'] / ours['full']:.2f}x decoded, {plain['float'] / ours['float']:.2f}x "
          f"as float32 (goal >= 2x); first slice {ours['first']:.3f} s (goal < 0.3 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
