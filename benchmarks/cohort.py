"""Wall time of a cohort run against the floor of reading every MR label map, peak memory per worker, speed-up.

Run: ``.venv/bin/python benchmarks/cohort.py [--cases 100] [--maps-cases 10] [--cohort DIR]``.

1. A synthetic cohort of ``--cases`` cases is generated once into a temporary folder (in parallel; not timed as
   part of the run), unless ``--cohort`` names an existing one.
2. The floor, in this process: read every case's MR label map and find its labels
   (``read_label_map`` + ``LabelMap.labels()``), one case after the other - the least work any run must do.
3. ``neckmatch run --no-maps`` as a fresh process (interpreter start, imports, worker spawn, every case, the
   stacked tables, statistics, figures and report.html), with 1 and with 2 workers: wall time, ratio to the floor,
   the speed-up, the summed per-case seconds (cases.csv) and the peak resident memory of a worker.
4. A rerun with nothing changed (every case skipped: fingerprinting plus the cohort report).
5. With maps, on the first ``--maps-cases`` cases, 2 workers: wall time and seconds per case.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import pandas as pd

# Run in a fresh interpreter: run_cohort, then the peak RSS of this process and of its (pool worker) children.
_CHILD = """
import json, resource, sys, time
t0 = time.perf_counter()
from neckmatch.cohort import run_cohort
t_import = time.perf_counter() - t0
res = run_cohort(sys.argv[1], sys.argv[2], workers=int(sys.argv[3]), maps=sys.argv[4] == "maps")
print(json.dumps({
    "import_s": t_import, "run_s": time.perf_counter() - t0 - t_import,
    "self_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "children_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    "status": [r.status for r in res.records],
}))
"""


def _generate(n: int, seed: int, out: Path, workers: int) -> float:
    """Write ``n`` synthetic cases (as ``generate_cohort`` would) with a process pool; returns seconds."""
    from neckmatch.synth.cohort import case_seed, generate_case

    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(generate_case, f"SYN{k + 1:03d}", case_seed(seed, k), out) for k in range(n)]
        for f in futures:
            f.result()
    return time.perf_counter() - t0


def _floor(cases: list[Path]) -> float:
    """Seconds to read every case's MR label map and find its labels, serially."""
    from neckmatch.io.case import read_case  # noqa: F401  (imports outside the timed loop)
    from neckmatch.io.labelmap import read_label_map

    t0 = time.perf_counter()
    n_labels = 0
    for case in cases:
        manifest = json.loads((case / "case.json").read_text(encoding="utf-8"))
        n_labels += len(read_label_map(case / manifest["mri"]["nodes"]).labels())
    seconds = time.perf_counter() - t0
    print(f"floor: {len(cases)} label maps read, {n_labels} labels, {seconds:.2f} s "
          f"({seconds / len(cases) * 1000:.0f} ms per case)")  # fmt: skip
    return seconds


def _run(cohort: Path, out: Path, workers: int, maps: bool) -> dict:
    """One cohort run in a fresh interpreter; wall time around the whole process."""
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(cohort), str(out), str(workers), "maps" if maps else "no-maps"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    stats = json.loads(proc.stdout.strip().splitlines()[-1])
    stats["wall_s"] = time.perf_counter() - t0
    stats["worker_mb"] = stats["children_mb"] if workers > 1 else stats["self_mb"]
    cases = pd.read_csv(out / "cases.csv")
    stats["case_s"] = float(cases["seconds"].sum())
    return stats


def _line(label: str, s: dict, floor: float | None, n: int) -> None:
    ratio = f", {s['wall_s'] / floor:.1f}x the floor" if floor else ""
    counts = pd.Series(s["status"]).value_counts().to_dict()
    print(f"{label}: wall {s['wall_s']:.1f} s{ratio}; per case {s['case_s'] / n:.2f} s (sum {s['case_s']:.1f} s); "
          f"interpreter+import {s['import_s']:.1f} s; peak RSS per worker {s['worker_mb']:.0f} MB "
          f"(main {s['self_mb']:.0f} MB); {counts}")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=100)
    ap.add_argument("--maps-cases", type=int, default=10)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--cohort", type=Path, default=None, help="an existing cohort folder (skip generation)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="neckmatch-bench-") as tmp:
        root = Path(tmp)
        cohort = args.cohort or root / "cohort"
        if args.cohort is None:
            print(f"generated {args.cases} cases in {_generate(args.cases, args.seed, cohort, 2):.1f} s (not timed)")
        print(f"load average before the timed runs: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        cases = sorted(p.parent for p in cohort.rglob("case.json"))
        n = len(cases)
        floor = _floor(cases)
        one = _run(cohort, root / "w1", 1, maps=False)
        _line(f"run --no-maps, 1 worker, {n} cases", one, floor, n)
        two = _run(cohort, root / "w2", 2, maps=False)
        _line(f"run --no-maps, 2 workers, {n} cases", two, floor, n)
        print(f"speed-up 1 -> 2 workers: {one['wall_s'] / two['wall_s']:.2f}x")
        again = _run(cohort, root / "w2", 2, maps=False)
        print(f"rerun with nothing changed ({n} cases skipped): wall {again['wall_s']:.1f} s")
        if args.maps_cases > 0:
            sub = root / "maps-cohort"
            for case in cases[: args.maps_cases]:
                shutil.copytree(case, sub / case.name)
            m = min(args.maps_cases, n)
            sub_floor = floor * m / n
            maps = _run(sub, root / "maps", 2, maps=True)
            _line(f"run with maps, 2 workers, {m} cases", maps, sub_floor, m)
        print(f"load average after: {os.getloadavg()[0]:.1f} (other processes share these CPUs)")


if __name__ == "__main__":
    main()
