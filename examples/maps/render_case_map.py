"""Render the 3-D neck-level maps of one synthetic case (seeded), from the engine's outputs in memory.

Run:  .venv/bin/python examples/maps/render_case_map.py [OUT_DIR]
Writes OUT_DIR/cohort/SYN001 (the case) and the maps in OUT_DIR/results: SYN001_map.png (anterior and lateral
views), SYN001_viewer.html (double-click: the 3-D scene in a browser), SYN001_scene.glb (any glTF viewer),
SYN001_scene.vtm (ParaView), SYN001_scene.mrml (3D Slicer: node and level segmentations, landmarks, models).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from neckmatch.io.case import read_case
from neckmatch.pipeline import compute_case
from neckmatch.synth import generate_cohort
from neckmatch.viz.maps import render_maps


def main(out: Path) -> None:
    case_dir = generate_cohort(1, 7, out / "cohort")[0]
    outputs = compute_case(case_dir)
    t0 = time.perf_counter()
    paths = render_maps(read_case(case_dir), out / "results", outputs.tables, outputs.specimen)
    print(f"rendered in {time.perf_counter() - t0:.1f} s")
    for kind, path in paths.items():
        print(f"{kind:>17}: {path}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("neckmatch-maps-example"))
