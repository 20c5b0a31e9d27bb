"""Render the 3-D neck-level map of one synthetic case (seeded), after matching it.

Run:  .venv/bin/python examples/maps/render_case_map.py [OUT_DIR]
Writes OUT_DIR/cohort/SYN001 (the case), OUT_DIR/results (match outputs) and the maps in OUT_DIR/results:
SYN001_map.png (anterior and lateral views), SYN001_scene.glb (open in any glTF viewer), SYN001_scene.vtm
(ParaView), SYN001_levels.seg.nrrd and SYN001_nodes.mrk.json (3D Slicer).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from neckmatch.io.case import read_case
from neckmatch.pipeline import process_case
from neckmatch.synth import generate_cohort
from neckmatch.viz.render import render_case


def main(out: Path) -> None:
    case_dir = generate_cohort(1, 7, out / "cohort")[0]
    results = out / "results"
    process_case(case_dir, results)
    t0 = time.perf_counter()
    paths = render_case(read_case(case_dir), results, results_dir=results)
    print(f"rendered in {time.perf_counter() - t0:.1f} s")
    for kind, path in paths.items():
        print(f"{kind:>12}: {path}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("neckmatch-maps-example"))
