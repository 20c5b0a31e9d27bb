"""Match one synthetic case node to node and compare the matches with the synthetic ground truth.

Run:  .venv/bin/python examples/matching/match_one_case.py [OUT_DIR]
Writes into OUT_DIR (default: a new temporary folder):

- ``cohort/SYN001/``: a synthetic case (seed 7) whose pathology report gives every node's relative position in
  its container (``cc``: 0 cranial .. 1 caudal, ``ap``: 0 anterior .. 1 posterior), plus ``ground_truth.csv``;
- ``results/``: every per-case output of :func:`neckmatch.pipeline.process_case` (``matches.csv``,
  ``levels.csv``, truth tables, ``specimen.json``, ``summary.json``);
- ``matches_by_container.png``: one panel per pathology container in its (cc, ap) frame: pathology
  nodes at their reported position, MR nodes of the container's levels at their position in the reconstructed
  specimen (through the container warp the matcher fitted), and a line per matched pair (green: agrees with the
  ground truth, red: does not; solid: ``auto`` decision, dashed: ``review``).

It prints the head of the matches table, the ``auto`` / ``review`` counts and the share of pairs that agree with
the ground truth (which the engine never reads).
"""

from __future__ import annotations

import json
import math
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from neckmatch.demo import pair_agreement
from neckmatch.geometry.specimen import Warp, reconstruct_specimen
from neckmatch.io.atomic import atomic_path
from neckmatch.io.case import read_case
from neckmatch.pipeline import process_case
from neckmatch.synth.cohort import generate_case
from neckmatch.synth.params import SynthParams

SEED = 7


def mr_positions(case_dir: Path, results: Path, pairs: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Per container: its MR nodes (those of its levels on its side, and those paired with one of its nodes) at
    their relative (cc, ap) in the container region, mapped through the warp the matcher fitted
    (``specimen.json``) so that they are comparable with the report's cc / ap.
    """
    case = read_case(case_dir)
    levels = pd.read_csv(results / "levels.csv", dtype={"level": str, "side": str}, keep_default_na=False)
    regions = reconstruct_specimen(case, levels).regions
    warps = {c["container"]: Warp(**c["warp"]) for c in json.loads((results / "specimen.json").read_text())[
        "containers"]}  # fmt: skip
    levels_of = {c.container: (c.side.value, {lv.value for lv in c.level.imaging_levels()}) for c in case.containers}
    levels_of.update({p.container: (p.side.value, {lv.value for lv in p.level.imaging_levels()})
                      for p in case.path_nodes if p.container not in levels_of})  # fmt: skip
    out = {}
    for name, (side, names) in levels_of.items():
        paired = pairs.loc[pairs["container"] == name, "mr_node"]
        rows = levels[((levels["side"] == side) & levels["level"].isin(names)) | levels["node"].isin(paired)]
        if name not in regions or rows.empty:
            continue
        rel = regions[name].relative(rows[["x", "y", "z"]].to_numpy(float))
        cc, ap = warps.get(name, Warp()).apply(rel[:, 0], rel[:, 1])
        out[name] = pd.DataFrame({"mr_node": rows["node"].to_numpy(int), "cc": cc, "ap": ap})
    return out


def draw_container(ax, name: str, path: pd.DataFrame, mr: pd.DataFrame, pairs: pd.DataFrame) -> None:  # noqa: ANN001
    """One container panel in its (cc, ap) frame: ap to the right (posterior), cc downward (caudal).

    ``pairs`` are the matches.csv pair rows of this container with a boolean column ``correct``.
    """
    ax.scatter(path["ap"], path["cc"], marker="s", s=40, facecolors="none", edgecolors="#b5651d", label="pathology")
    ax.scatter(mr["ap"], mr["cc"], marker="o", s=22, c="#1f3d7a", label="MR")
    pos_mr = mr.set_index("mr_node")
    pos_path = path.set_index("node")
    for row in pairs.itertuples():
        if row.mr_node not in pos_mr.index or row.path_node not in pos_path.index:
            continue
        a, b = pos_mr.loc[row.mr_node], pos_path.loc[row.path_node]
        ax.plot([a["ap"], b["ap"]], [a["cc"], b["cc"]], color="#2a9d3a" if row.correct else "#d62728",
                linestyle="-" if row.decision == "auto" else "--", linewidth=1.2)  # fmt: skip
    for node, r in pos_mr.iterrows():
        ax.annotate(str(node), (r["ap"], r["cc"]), xytext=(3, -8), textcoords="offset points", fontsize=6,
                    color="#1f3d7a")  # fmt: skip
    ax.set(xlim=(-0.15, 1.15), ylim=(1.15, -0.15), title=name, xlabel="ap (0 anterior, 1 posterior)",
           ylabel="cc (0 cranial, 1 caudal)")  # fmt: skip
    ax.add_patch(Rectangle((0, 0), 1, 1, fill=False, edgecolor="#bbbbbb", linestyle=":"))  # the container


def draw_matches(case_dir: Path, results: Path, matches: pd.DataFrame, truth: pd.DataFrame, out: Path) -> Path:
    """The per-container figure (see the module docstring); returns the PNG's path."""
    report = pd.read_csv(case_dir / "pathology" / "nodes.csv", dtype={"node": str, "container": str})
    pairs = matches[matches["kind"] == "pair"].astype({"mr_node": int, "path_node": str})
    mr = mr_positions(case_dir, results, pairs)
    # a pair is correct where demo.pair_agreement counts it as a hit on its own
    pairs = pairs.assign(correct=[pair_agreement(pairs.iloc[[i]], truth)[0] == 1 for i in range(len(pairs))])
    names = sorted(report["container"].unique())
    ncols = 4
    nrows = math.ceil(len(names) / ncols)
    fig = Figure(figsize=(4.0 * ncols, 3.8 * nrows), facecolor="white", layout="constrained")
    FigureCanvasAgg(fig)
    axes = np.atleast_1d(fig.subplots(nrows, ncols)).ravel()
    empty = pd.DataFrame({"mr_node": pd.Series(dtype=int), "cc": [], "ap": []})
    for ax, name in zip(axes, names, strict=False):
        draw_container(ax, name, report[report["container"] == name], mr.get(name, empty),
                       pairs[pairs["container"] == name])  # fmt: skip
    for ax in axes[len(names):]:
        ax.set_axis_off()
    handles = [Line2D([], [], marker="s", color="#b5651d", markerfacecolor="none", linestyle="", label="pathology"),
               Line2D([], [], marker="o", color="#1f3d7a", linestyle="", label="MR (warped into the container)"),
               Line2D([], [], color="#2a9d3a", label="pair agrees with ground truth"),
               Line2D([], [], color="#d62728", label="pair disagrees"),
               Line2D([], [], color="grey", label="auto decision"),
               Line2D([], [], color="grey", linestyle="--", label="review decision")]  # fmt: skip
    fig.legend(handles=handles, loc="outside lower center", ncols=6, fontsize=8)
    fig.suptitle(f"{case_dir.name}: node-to-node matches per pathology container")
    with atomic_path(out / "matches_by_container.png") as tmp:  # written whole or not at all
        fig.savefig(tmp, format="png", dpi=150)
    return out / "matches_by_container.png"


def main(out: Path) -> None:
    # 1. A synthetic case whose pathology report has cc / ap for every node.
    case_dir = generate_case("SYN001", SEED, out / "cohort", SynthParams(positions_fraction=1.0))[0].parent
    # 2. The whole per-case pipeline: levels, specimen, matching, truth tables.
    results = out / "results"
    summary = process_case(case_dir, results)
    matches = pd.read_csv(results / "matches.csv", dtype={"path_node": str, "container": str})
    cols = ["mr_node", "path_node", "kind", "decision", "confidence", "mr_level", "container", "position_mm"]
    print(matches[cols].head(10).to_string(index=False))
    print(f"decisions: {summary['decisions']}")
    # 3. Agreement with the synthetic ground truth (never read by the engine).
    truth = pd.read_csv(case_dir / "ground_truth.csv", dtype={"path_node": str, "path_fragments": str})
    hits, n = pair_agreement(matches, truth)
    print(f"pairs agreeing with the ground truth: {hits}/{n} ({hits / max(n, 1):.0%})")
    auto = matches[(matches["kind"] == "pair") & (matches["decision"] == "auto")]
    hits_auto, n_auto = pair_agreement(auto, truth)
    print(f"  of the auto pairs: {hits_auto}/{n_auto} ({hits_auto / max(n_auto, 1):.0%})")
    # 4. The figure.
    for path in [results / "matches.csv", draw_matches(case_dir, results, matches, truth, out)]:
        print(f"wrote {path}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="neckmatch-matching-")))
