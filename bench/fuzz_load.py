"""Fuzz the loader with mutated real DICOM files: one case per subprocess, with time and memory limits.

Each case is one mutated real file (pydicom / pydicom-data test files; CQ500 and RSNA slices from
../shared/data when present) written into its own folder beside three good slices made from the same
real pixel stream (in its series 75% of the time, else another series). A forked child of a
pre-imported worker runs ``ich_viewer.load(folder)``, decodes every series with a ``VolumeLoader``
and classifies the outcome (``tests.mutations.examine_forked``): the worker enforces a wall-time
limit, caps the child's address space (RLIMIT_AS), and reads its peak RSS from ``wait4``.

    python bench/fuzz_load.py --cases 1000 --seed 0            # counts by outcome and by mutator
    python bench/fuzz_load.py --only 17,123 --keep             # rerun cases: full record, traceback, folder kept

Outcomes (worst first): crash (signal / exit without a result), hang (killed at --time, or decoding
stalled), memory (MemoryError, or peak RSS over --max-rss-mb), untyped (an exception that is not an
IchViewerError), lost (a good slice was not loaded or failed to decode), unreported (the mutated
file vanished without a reason), nonfinite (NaN/inf HU, z or spacing), slow (load + decode over
--slow s), typed (load raised an IchViewerError although good slices were there), ok_* (fine).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import shutil
import sys
import tempfile
import time
import warnings
from collections import Counter, defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests import mutations as M  # noqa: E402

SHORT = {"crash": "crash", "hang": "hang", "memory": "mem", "untyped": "untyp", "lost": "lost", "unreported": "unrep",
         "nonfinite": "nonfin", "slow": "slow", "typed": "typed", "ok_decode_error": "ok_dec", "ok_skipped": "ok_skip",
         "ok_loaded": "ok_load"}
_STATE: dict = {}  # set in the parent before the pool forks: specs, workdir, limits


def _sibling_files(spec: M.SeedSpec, same_series: bool) -> list[Path]:
    """The three good neighbours, written once per run and hard-linked into each case's folder."""
    folder = Path(_STATE["workdir"]) / "good" / f"{_STATE['specs'].index(spec)}-{int(same_series)}"
    if not folder.is_dir():
        scratch = Path(tempfile.mkdtemp(dir=folder.parent.parent))
        for i, data in enumerate(M.siblings(M.seed_bytes(spec), 3, same_series)):
            (scratch / f"{i}.dcm").write_bytes(data)
        folder.parent.mkdir(exist_ok=True)
        try:
            scratch.rename(folder)
        except OSError:  # another worker was first
            shutil.rmtree(scratch, ignore_errors=True)
    return sorted(folder.glob("*.dcm"))


def run_case(seed: int) -> dict:
    """Build case ``seed``, run it in a forked child under the limits, and return its record."""
    args = _STATE["args"]
    case = M.plan(seed, _STATE["specs"])
    folder = Path(_STATE["workdir"]) / f"case{seed}"
    base = {"seed": seed, "source": Path(case.spec.label).name, "same_series": case.same_series}
    try:
        mutated, used, detail = M.mutate(case, M.seed_bytes(case.spec))
        good = [f"s{i}.dcm" for i in range(4)]
        case_name = good.pop(case.position)
        folder.mkdir(parents=True)
        (folder / case_name).write_bytes(mutated)
        for name, path in zip(good, _sibling_files(case.spec, case.same_series)):
            os.link(path, folder / name)
    except Exception as exc:  # noqa: BLE001 - a harness problem, reported as such
        return {**base, "mutator": case.mutator, "outcome": "harness_error", "message": f"{type(exc).__name__}: {exc}"}
    base.update(mutator=used, detail=detail, folder=str(folder))
    record = {**base, **M.examine_forked(folder, case_name, good, time_limit=args.time,
                                         address_space=int(args.address_space_gb * 2**30),
                                         stall=min(5.0, args.time / 2), slow=args.slow)}
    peak = max(record["peak_rss_mb"], record.get("decoder_hwm_mb", 0))  # the case's process or a decoder process
    if peak > args.max_rss_mb and M.OUTCOMES.index(record["outcome"]) > M.OUTCOMES.index("memory"):
        record.update(outcome="memory", message=f"peak RSS {peak:.0f} MB; was: {record['message']}")
    if not args.keep or record["outcome"] not in M.FAILURES:
        shutil.rmtree(folder, ignore_errors=True)
    return record


def _baseline_rss_mb() -> float:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    return round(os.wait4(pid, 0)[2].ru_maxrss / 1024, 1)


def signature(record: dict) -> str:
    """A failure's message with numbers, paths and quoted values blurred, to group cases by cause."""
    text = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", record.get("message", ""))
    text = re.sub(r"/\S+", "PATH", text)
    return f"{record['outcome']}: " + re.sub(r"\d+(\.\d+)?", "#", text)[:110]


def report(records: list[dict], args, elapsed: float, baseline: float) -> None:
    total = len(records)
    by_outcome = Counter(r["outcome"] for r in records)
    print(f"\nfuzz_load: {total} cases (seeds {args.seed * 10**6}..{args.seed * 10**6 + args.cases - 1}), "
          f"{len(_STATE['specs'])} seed files, {args.workers} workers, {elapsed:.0f} s ({elapsed / max(total, 1):.2f} s/case)")
    print(f"limits: {args.time:.0f} s wall, address space +{args.address_space_gb:g} GB, slow > {args.slow:g} s, "
          f"memory > {args.max_rss_mb} MB peak RSS (a forked child starts at {baseline:.0f} MB)")
    slowest = max(records, key=lambda r: r.get("total_s", 0), default={})
    contained = sum("the decoder crashed" in r.get("message", "") or "the decoder was stopped" in r.get("message", "")
                    for r in records)
    print(f"peak RSS max {max((r.get('peak_rss_mb', 0) for r in records), default=0):.0f} MB (decoder processes: "
          f"{max((r.get('decoder_hwm_mb', 0) for r in records), default=0):.0f} MB); "
          f"slowest load+decode {slowest.get('total_s', 0):.2f} s (seed {slowest.get('seed')}); "
          f"decoder crashes or stops contained in their process: {contained}\n")
    print(f"{'outcome':16s} {'count':>6s}")
    for outcome in [*M.OUTCOMES, "harness_error"]:
        if by_outcome[outcome]:
            flag = "  <- failure" if outcome in M.FAILURES else ""
            print(f"{outcome:16s} {by_outcome[outcome]:6d}{flag}")
    columns = [o for o in [*M.OUTCOMES, "harness_error"] if by_outcome[o]]
    table: dict[str, Counter] = defaultdict(Counter)
    for r in records:
        table[r["mutator"]][r["outcome"]] += 1
    print(f"\n{'mutator':30s}" + "".join(f"{SHORT.get(c, c):>8s}" for c in columns))
    for mutator in sorted(table):
        print(f"{mutator:30s}" + "".join(f"{table[mutator][c] or '.':>8}" for c in columns))
    failures = [r for r in records if r["outcome"] in M.FAILURES or r["outcome"] == "harness_error"]
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in sorted(failures, key=lambda r: r["seed"]):
        groups[signature(r)].append(r)
    if groups:
        print(f"\n{len(failures)} failing cases in {len(groups)} groups (by message); first case of each:")
        for sig, members in sorted(groups.items(), key=lambda kv: (M.OUTCOMES.index(kv[1][0]["outcome"])
                                                                  if kv[1][0]["outcome"] in M.OUTCOMES else 0, -len(kv[1]))):
            r = members[0]
            print(f"  [{len(members):4d}] {sig}\n         seed {r['seed']}: {r['mutator']} on {r['source']}: "
                  f"{r.get('detail', '')[:90]}\n         {r.get('message', '')[:220]}")
        print("\nreproduce: python bench/fuzz_load.py --only SEED[,SEED...] --keep")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0, help="case seeds are SEED*1e6 + 0..CASES-1")
    parser.add_argument("--only", help="comma-separated case seeds to rerun (printed in full)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--time", type=float, default=10.0, help="wall-time limit per case, s")
    parser.add_argument("--slow", type=float, default=2.0, help="load + decode slower than this is 'slow', s")
    parser.add_argument("--max-rss-mb", type=int, default=1024)
    parser.add_argument("--address-space-gb", type=float, default=3.0, help="RLIMIT_AS headroom over the child's start")
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("ICH_SHARED_DATA", REPO.parent / "shared" / "data")))
    parser.add_argument("--no-shared", action="store_true", help="only pydicom's files as seeds")
    parser.add_argument("--jsonl", type=Path, help="write every record here")
    parser.add_argument("--keep", action="store_true", help="keep failing cases' folders")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    import ich_viewer  # noqa: F401 - imported once here, inherited by every forked child

    shared = None if args.no_shared or not args.data.is_dir() else args.data
    _STATE.update(args=args, specs=M.PYDICOM_SEEDS + M.shared_seeds(shared, 10, 8),
                  workdir=tempfile.mkdtemp(prefix="fuzz_load_"))
    for spec in _STATE["specs"]:
        M.seed_bytes(spec)  # read and re-encode once, before the workers fork
    baseline = _baseline_rss_mb()
    seeds = [int(s) for s in args.only.split(",")] if args.only else [args.seed * 10**6 + i for i in range(args.cases)]
    if args.only:
        args.cases = len(seeds)
    started = time.monotonic()
    records = []
    with multiprocessing.get_context("fork").Pool(args.workers) as pool:
        for i, record in enumerate(pool.imap_unordered(run_case, seeds, chunksize=4), 1):
            records.append(record)
            if args.only:
                print(json.dumps(record, indent=1))
            elif i % 100 == 0 or i == len(seeds):
                counts = Counter(r["outcome"] for r in records)
                print(f"{i}/{len(seeds)} {time.monotonic() - started:.0f} s  "
                      + " ".join(f"{SHORT.get(k, k)}={v}" for k, v in sorted(counts.items())), file=sys.stderr, flush=True)
    if args.jsonl:
        args.jsonl.write_text("".join(json.dumps(r) + "\n" for r in sorted(records, key=lambda r: r["seed"])))
    if not args.keep:
        shutil.rmtree(_STATE["workdir"], ignore_errors=True)
    if not args.only:
        report(records, args, time.monotonic() - started, baseline)
    return 1 if any(r["outcome"] in M.FAILURES for r in records) else 0


if __name__ == "__main__":
    sys.exit(main())
