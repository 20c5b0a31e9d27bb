"""Neck levels of one synthetic case: the levels table and axial slices of the level label map with the nodes.

Run:  .venv/bin/python examples/levels/level_map.py [OUT_DIR]
Writes into OUT_DIR (default: a new temporary folder):

- ``cohort/SYN001/``: the synthetic case (case format, seed 11);
- ``levels.csv``: one row per MR node (side, level, distance to the nearest level boundary, runner-up level ...);
- ``level_slices.png``: three axial slices of the ``som1999`` level label map (just above the hyoid,
  just above the cricoid, and half-way between cricoid and clavicles: level IV height) with the MR node centroids
  lying within +-6 mm of each slice, labelled with their level; borderline nodes (boundary < 3 mm) ringed in red.

Slices are shown in the radiological convention: patient right on the left of the image, anterior up.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

from neckmatch.geometry.levels import levels_table
from neckmatch.geometry.regions import level_label_map
from neckmatch.io.atomic import atomic_path, write_csv
from neckmatch.io.case import read_case
from neckmatch.model import LabelMap, Landmarks, Level
from neckmatch.synth.cohort import generate_case

SEED = 11
SPACING_MM = 0.5  # in-plane pixel size of the slices
SLAB_MM = 6.0  # nodes within this distance of a slice are drawn on it
# One colour per imaging level, the same on both sides (ColorBrewer "Set3"); index 0 = outside the neck (white).
LEVEL_COLOURS = ListedColormap(["#ffffff", "#8dd3c7", "#ffffb3", "#bebada", "#fb8072", "#80b1d3", "#fdb462",
                                "#b3de69", "#fccde5", "#d9d9d9", "#bc80bd", "#ccebc5", "#ffed6f"])  # fmt: skip


def slice_heights(landmarks: Landmarks) -> dict[str, float]:
    """Three axial heights (z, mm RAS) through the levels I/II, III and IV."""
    z_hy = float(landmarks.point("hyoid_body_inferior")[2])
    z_cr = float(landmarks.point("cricoid_arch_inferior")[2])
    z_cl = max(float(landmarks.point(f"clavicle_superior_{s}")[2]) for s in "LR")
    return {"hyoid + 5 mm": z_hy + 5.0, "cricoid + 5 mm": z_cr + 5.0, "level IV (cricoid-clavicle)": (z_cr + z_cl) / 2}


def axial_level_slice(landmarks: Landmarks, z: float) -> tuple[np.ndarray, list[float]]:
    """Level label values on one axial plane: array of shape (ny, nx) (rows = y), and its [x0, x1, y0, y1] extent.

    The plane is a one-voxel-thick reference grid for :func:`level_label_map`, covering every landmark in x and y
    plus a 15 mm margin.
    """
    pts = np.vstack([np.atleast_2d(p) for p in landmarks.points.values()]
                    + [c.points for c in landmarks.curves.values()])  # fmt: skip
    lo, hi = pts[:, :2].min(axis=0) - 15.0, pts[:, :2].max(axis=0) + 15.0
    nx, ny = (np.ceil((hi - lo) / SPACING_MM).astype(int) + 1).tolist()
    affine = np.diag([SPACING_MM, SPACING_MM, 1.0, 1.0])
    affine[:3, 3] = [lo[0], lo[1], z]
    reference = LabelMap(np.zeros((nx, ny, 1), dtype=np.uint8), affine)
    level_map, _ = level_label_map(landmarks, reference)
    extent = [lo[0], lo[0] + (nx - 1) * SPACING_MM, lo[1], lo[1] + (ny - 1) * SPACING_MM]
    return level_map.data[:, :, 0].T, extent


def level_of_value(value: int) -> str:
    """Imaging level name of a level-map label value (1-12 right, 13-24 left, see geometry.regions)."""
    return list(Level)[(int(value) - 1) % 12].value


def draw_slice(ax, landmarks: Landmarks, levels: pd.DataFrame, title: str, z: float) -> None:  # noqa: ANN001
    """One panel: level regions with their names, nearby node centroids with node number and level."""
    image, extent = axial_level_slice(landmarks, z)
    colour_index = np.where(image > 0, (image.astype(int) - 1) % 12 + 1, 0)  # same colour for R and L
    ax.imshow(colour_index, origin="lower", extent=extent, cmap=LEVEL_COLOURS, vmin=0, vmax=12,
              interpolation="nearest")  # fmt: skip
    ys, xs = np.mgrid[0:image.shape[0], 0:image.shape[1]]
    for value in np.unique(image[image > 0]):
        mask = image == value
        if mask.sum() < 150:  # too small to label legibly
            continue
        cx, cy = extent[0] + np.median(xs[mask]) * SPACING_MM, extent[2] + np.median(ys[mask]) * SPACING_MM
        ax.text(cx, cy, level_of_value(value), ha="center", va="center", fontsize=8, color="#444444")
    near = levels[(levels["z"] - z).abs() <= SLAB_MM]
    ax.scatter(near["x"], near["y"], s=18, c="black", zorder=3)
    border = near[near["borderline"]]
    ax.scatter(border["x"], border["y"], s=110, facecolors="none", edgecolors="red", linewidths=1.5, zorder=4)
    for row in near.itertuples():
        ax.annotate(f"{row.node}:{row.level or 'out'}", (row.x, row.y), xytext=(4, 4), textcoords="offset points",
                    fontsize=7, fontweight="bold")  # fmt: skip
    ax.set(title=f"{title}\nz = {z:.0f} mm, nodes within {SLAB_MM:.0f} mm", xlabel="x (mm, RAS)",
           ylabel="y (mm, anterior up)")  # fmt: skip
    rows, cols = np.nonzero(image)
    ax.set_xlim(extent[0] + (cols.max() + 10) * SPACING_MM, extent[0] + (cols.min() - 10) * SPACING_MM)  # R left
    ax.set_ylim(extent[2] + (rows.min() - 10) * SPACING_MM, extent[2] + (rows.max() + 10) * SPACING_MM)
    ax.text(0.02, 0.02, "R", transform=ax.transAxes, fontsize=12, fontweight="bold")
    ax.text(0.95, 0.02, "L", transform=ax.transAxes, fontsize=12, fontweight="bold")


def main(out: Path) -> None:
    # 1. A synthetic case written in the case format, read back like any real case.
    case_dir = generate_case("SYN001", SEED, out / "cohort")[0].parent
    case = read_case(case_dir)
    # 2. The levels table: side, level, boundary distance and runner-up per MR node.
    levels = levels_table(case)
    write_csv(levels, out / "levels.csv")
    print(f"{case.case_id}: {len(levels)} MR nodes, {int(levels['borderline'].sum())} borderline")
    print(levels[["node", "side", "level", "boundary_mm", "runner_up", "borderline"]].head(8).to_string(index=False))
    # 3. Three axial slices of the level label map with the nodes near each slice.
    fig = Figure(figsize=(16, 5.0), facecolor="white", layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3)
    for ax, (title, z) in zip(axes, slice_heights(case.landmarks).items(), strict=True):
        draw_slice(ax, case.landmarks, levels, title, z)
    fig.suptitle(f"{case.case_id}: som1999 levels on axial slices (red ring: borderline node, < 3 mm from a "
                 "level boundary)")  # fmt: skip
    with atomic_path(out / "level_slices.png") as tmp:  # written whole or not at all
        fig.savefig(tmp, format="png", dpi=150)
    for path in [out / "levels.csv", out / "level_slices.png"]:
        print(f"wrote {path}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="neckmatch-levels-")))
