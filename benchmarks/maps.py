"""Speed of the 3-D maps on real-size cases against the floor of reading each case's label map, in one run.

Run: ``.venv/bin/python benchmarks/maps.py [--cases 3] [--cohort-cases 8] [--voxel-mm 0.42] [--no-cohort]``.

1. ``--cohort-cases`` synthetic cases at ``--voxel-mm`` isotropic voxels (0.42 mm gives ~35-50 Mvoxel label maps
   with ~65-105 nodes, the size of a real USPIO neck MRI) are generated into a temporary folder (not timed).
2. The floor, in this process: read every cohort case's label map and find its labels (``read_label_map`` +
   ``LabelMap.labels()``), serially: the least any run must do per case. Also printed, for comparison with
   earlier numbers: the floor as measured before ``read_label_map`` decompressed into the array (slower).
3. In memory, for the first ``--cases`` cases, as the pipeline hands them over: the engine (``compute_case``) and
   then ``render_maps`` per case
   (PNG, GLB, viewer page, VTK multiblock, both Slicer segmentations, landmarks, scene); a first render on a
   small case warms up the imports and the OpenGL context. Printed: seconds per case, the ratio to the floor and
   the seconds of each stage of the maps (scene, PNG and its off-screen views, GLB, viewer, VTM, segmentations).
4. Unless ``--no-cohort``: ``neckmatch run`` of all cohort cases with and without maps (2 workers, fresh
   interpreters): wall time as a multiple of the floor, and the peak resident memory of a worker; when the first
   and the last case were done, the report's share and the CPU seconds of the workers and the parent. With 8 cases
   each worker does 4, so the start of the workers (interpreter, imports, OpenGL context: ~2-3 s) no longer
   dominates as it did with 2 cases.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_CHILD = """
import json, resource, sys, time
t0 = time.perf_counter()
from neckmatch.cohort import run_cohort
done = []
res = run_cohort(sys.argv[1], sys.argv[2], workers=2, maps=sys.argv[3] == "maps",
                 on_progress=lambda rec, i, n: done.append(time.perf_counter() - t0))
end = time.perf_counter() - t0
own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"run_s": end, "status": [r.status for r in res.records], "first_s": done[0],
                  "last_case_s": done[-1], "cpu_parent_s": own.ru_utime + own.ru_stime,
                  "cpu_workers_s": kids.ru_utime + kids.ru_stime, "children_mb": kids.ru_maxrss / 1024}))
"""


def _generate(n: int, voxel_mm: float, out: Path) -> list[Path]:
    from neckmatch.synth.cohort import case_seed, generate_case
    from neckmatch.synth.params import SynthParams

    params = SynthParams(voxel_min_mm=voxel_mm, voxel_max_mm=voxel_mm, anisotropic_fraction=0.0)
    for k in range(n):
        generate_case(f"BIG{k + 1:03d}", case_seed(11, k), out, params)
    return sorted(p.parent for p in out.rglob("case.json"))


def _floor(cases: list[Path]) -> float:
    from neckmatch.io.labelmap import read_label_map

    t0 = time.perf_counter()
    for case in cases:
        manifest = json.loads((case / "case.json").read_text(encoding="utf-8"))
        read_label_map(case / manifest["mri"]["nodes"]).labels()
    return time.perf_counter() - t0


def _floor_nibabel(cases: list[Path]) -> float:
    """The floor as earlier versions measured it: nibabel's own read of the voxels and a whole-map mask for the
    labels (read_label_map now decompresses into the array and sorts each chunk's non-zero labels: 0.08 -> 0.05 s
    per 45 Mvoxel case, so a lower floor)."""
    import nibabel as nib
    import numpy as np

    t0 = time.perf_counter()
    for case in cases:
        manifest = json.loads((case / "case.json").read_text(encoding="utf-8"))
        flat = np.asanyarray(nib.load(case / manifest["mri"]["nodes"]).dataobj).ravel(order="K")
        np.unique(flat[flat != 0])
    return time.perf_counter() - t0


# Stages of render_maps timed one by one (module, function): wrapped for the run, the code itself is unchanged.
_STAGES = (("neckmatch.viz.maps", "case_scene"), ("neckmatch.viz.png", "render_views"),
           ("neckmatch.viz.png", "render_scene"), ("neckmatch.viz.export", "glb_bytes"),
           ("neckmatch.viz.viewer", "write_viewer"), ("neckmatch.viz.export", "write_vtm"),
           ("neckmatch.viz.export", "write_level_segmentation"), ("neckmatch.viz.slicer", "write_node_segmentation"))


def _time_stages() -> dict[str, float]:
    """Wrap each stage of :data:`_STAGES` to add its seconds to the returned dict (name -> seconds)."""
    import functools
    import importlib

    spent: dict[str, float] = {}
    for module, name in _STAGES:
        mod = importlib.import_module(module)
        func = getattr(mod, name)

        @functools.wraps(func)
        def timed(*args, __f=func, __n=name, **kwargs):
            t0 = time.perf_counter()
            try:
                return __f(*args, **kwargs)
            finally:
                spent[__n] = spent.get(__n, 0.0) + time.perf_counter() - t0

        setattr(mod, name, timed)
    return spent


def _in_memory(cases: list[Path], warm: Path, out: Path) -> tuple[float, float, float]:
    """Seconds of the engine, of the scene alone and of all maps, summed over the cases (after a warm-up); prints
    each case's times and the per-stage breakdown of the maps."""
    from neckmatch.io.case import read_case
    from neckmatch.pipeline import compute_case
    from neckmatch.viz.maps import case_scene, render_maps

    outputs = compute_case(warm)
    render_maps(read_case(warm), out / "warm", outputs.tables, outputs.specimen)
    stages = _time_stages()
    engine = scene = maps = cpu = 0.0
    for case_dir in cases:
        case = read_case(case_dir)
        t0 = time.perf_counter()
        outputs = compute_case(case_dir)
        t1 = time.perf_counter()
        case_scene(case, outputs.tables, outputs.specimen)
        t2, c2 = time.perf_counter(), time.process_time()
        render_maps(case, out / case.case_id, outputs.tables, outputs.specimen)
        t3, c3 = time.perf_counter(), time.process_time()
        engine, scene, maps, cpu = engine + t1 - t0, scene + t2 - t1, maps + t3 - t2, cpu + c3 - c2
        print(f"  {case.case_id}: {case.label_map.data.size / 1e6:.0f} Mvoxel, {len(case.label_map.labels())} nodes:"
              f" engine {t1 - t0:.2f} s, scene {t2 - t1:.2f} s, all maps {t3 - t2:.2f} s (CPU {c3 - c2:.2f} s)",
              flush=True)
    parts = {k: v / len(cases) for k, v in stages.items()}  # the scene timed alone above is not counted here
    print("  maps per case by stage: " + ", ".join(f"{k} {v:.2f} s" for k, v in parts.items())
          + " (render_views is part of render_scene, the PNG; glb_bytes to write_node_segmentation run in a thread "
          f"beside it); CPU {cpu / len(cases):.2f} s per case in all threads (VTK and Mesa's renderer use more "
          "than one)")
    return engine, scene, maps


def _cohort(cohort: Path, out: Path, maps: bool) -> dict:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(cohort), str(out), "maps" if maps else "no-maps"],
                          check=True, capture_output=True, text=True)
    stats = json.loads(proc.stdout.strip().splitlines()[-1])
    stats["wall_s"] = time.perf_counter() - t0
    return stats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=3, help="cases timed in memory (the first of the cohort)")
    ap.add_argument("--cohort-cases", type=int, default=8, help="cases of the cohort run (and of the floor)")
    ap.add_argument("--voxel-mm", type=float, default=0.42)
    ap.add_argument("--no-cohort", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="neckmatch-maps-") as tmp:
        root = Path(tmp)
        cases = _generate(max(args.cohort_cases, args.cases), args.voxel_mm, root / "cohort")
        from neckmatch.synth.cohort import case_seed, generate_case

        generate_case("WARM", case_seed(3, 0), root / "warm")
        print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        floor = _floor(cases)
        old_floor = _floor_nibabel(cases)
        n, n_all = min(args.cases, len(cases)), len(cases)
        print(f"floor (read each label map + find its labels, serially in one process): {n_all} cases "
              f"{floor:.1f} s, {floor / n_all:.3f} s per case; the floor as measured before read_label_map "
              f"decompressed into the array (nibabel's read + a whole-map mask): {old_floor / n_all:.3f} s per case")
        engine, scene, maps = _in_memory(cases[:n], root / "warm" / "WARM", root / "maps")
        floor_n = floor * n / n_all
        print(f"maps in memory: {maps / n:.2f} s per case (target <= 1 s; {maps / floor_n:.1f}x the floor; "
              f"scene {scene / n:.2f} s); "
              f"engine {engine / n:.2f} s per case ({engine / floor_n:.1f}x)")
        if not args.no_cohort:
            bare = _cohort(root / "cohort", root / "run-bare", maps=False)
            full = _cohort(root / "cohort", root / "run-maps", maps=True)
            for label, s in (("run --no-maps", bare), ("run with maps", full)):
                print(f"{label}, 2 workers, {n_all} cases: wall {s['wall_s']:.1f} s = {s['wall_s'] / floor:.1f}x the "
                      f"floor ({s['wall_s'] / old_floor:.1f}x the floor as measured before); peak RSS per worker "
                      f"{s['children_mb']:.0f} MB; {sorted(set(s['status']))}\n  first case done {s['first_s']:.1f} s "
                      f"after the run started (worker start, imports, its first case), last case "
                      f"{s['last_case_s']:.1f} s, report and exit {s['run_s'] - s['last_case_s']:.1f} s; CPU: workers "
                      f"{s['cpu_workers_s']:.1f} s, parent {s['cpu_parent_s']:.1f} s")
            print(f"cohort with maps: {full['wall_s'] / floor:.1f}x the read+label floor (target <= 5; "
                  f"{full['wall_s'] / old_floor:.1f}x the floor as measured before), "
                  f"{full['wall_s'] / bare['wall_s']:.2f}x the run without maps; peak RSS per worker with maps "
                  f"{full['children_mb']:.0f} MB (target <= 600), without {bare['children_mb']:.0f} MB")
        print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
