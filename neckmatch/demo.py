"""``neckmatch demo``: make a small seeded synthetic cohort and run every pipeline step that exists on it.

Now: the synthetic cohort (OUT/cohort), then :func:`neckmatch.pipeline.process_case` on every case
(OUT/results/<case>/: levels, matches, truth tables, specimen, summary), and the share of node pairs that agree
with the synthetic ground truth. The cohort run will replace the per-case loop when it lands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["DEMO_CASES", "DEMO_SEED", "run_demo", "pair_agreement", "format_demo_summary"]

DEMO_CASES = 6
DEMO_SEED = 2024


def pair_agreement(matches: pd.DataFrame, truth: pd.DataFrame) -> tuple[int, int]:
    """(correct, total) node pairs of ``matches`` (columns ``mr_node``, ``path_node``) against a synthetic
    ``ground_truth.csv`` frame: a pair is correct where the pathology node is (a piece of) a true node that
    became that MR label.

    Examples
    --------
    >>> truth = pd.DataFrame({"mr_label": [3, 3, 5], "path_node": ["A", "B", ""], "path_fragments": ["", "B;C", ""]})
    >>> pair_agreement(pd.DataFrame({"mr_node": [3, 3, 5], "path_node": ["C", "A", "A"]}), truth)
    (2, 3)
    """
    ok: set[tuple[int, str]] = set()
    for lab, pn, frags in truth[["mr_label", "path_node", "path_fragments"]].itertuples(index=False):
        if pd.isna(lab) or str(lab) == "":
            continue
        for piece in [pn, *str(frags if not pd.isna(frags) else "").split(";")]:
            if isinstance(piece, str) and piece:
                ok.add((int(float(lab)), piece))
    pairs = matches.dropna(subset=["mr_node", "path_node"])
    pairs = pairs[pairs["path_node"].astype(str) != ""]
    hits = sum((int(float(m)), str(p)) in ok for m, p in pairs[["mr_node", "path_node"]].itertuples(index=False))
    return hits, len(pairs)


def run_demo(
    out_dir: str | Path = "neckmatch-demo", n_cases: int = DEMO_CASES, seed: int = DEMO_SEED
) -> dict[str, Any]:
    """Write the demo cohort to ``out_dir/cohort`` and run the per-case pipeline into ``out_dir/results/<case>``.

    Returns
    -------
    dict
        ``cohort`` and ``results`` folders, ``cases`` (number), ``mr_nodes`` and ``path_nodes`` (totals),
        ``pairs`` and ``pairs_correct`` (node pairs, and those agreeing with the ground truth).
    """
    from neckmatch.pipeline import process_case
    from neckmatch.synth import generate_cohort

    out = Path(out_dir)
    cohort, results = out / "cohort", out / "results"
    dirs = generate_cohort(n_cases, seed, cohort)
    mr = path = hits = pairs = 0
    for d in dirs:
        res = results / d.name
        process_case(d, res)
        levels = pd.read_csv(res / "levels.csv")
        matches = pd.read_csv(res / "matches.csv", dtype={"path_node": str})
        truth = pd.read_csv(d / "ground_truth.csv", dtype={"path_node": str, "path_fragments": str})
        h, n = pair_agreement(matches, truth)
        hits, pairs = hits + h, pairs + n
        mr += len(levels)
        path += int(matches["path_node"].notna().sum())
    return {"cohort": cohort, "results": results, "cases": len(dirs), "mr_nodes": mr, "path_nodes": path,
            "pairs": pairs, "pairs_correct": hits}  # fmt: skip


def format_demo_summary(summary: dict[str, Any]) -> str:
    """A few lines for the terminal: what was made and where it is.

    Examples
    --------
    >>> s = {"cohort": "d/cohort", "results": "d/results", "cases": 2, "mr_nodes": 9, "path_nodes": 7,
    ...      "pairs": 5, "pairs_correct": 4}
    >>> print(format_demo_summary(s).splitlines()[0])
    neckmatch demo: 2 synthetic cases, 9 MR nodes, 7 pathology nodes
    """
    share = summary["pairs_correct"] / summary["pairs"] if summary["pairs"] else 0.0
    return "\n".join([
        f"neckmatch demo: {summary['cases']} synthetic cases, {summary['mr_nodes']} MR nodes, "
        f"{summary['path_nodes']} pathology nodes",
        f"  node pairs agreeing with the ground truth: {summary['pairs_correct']}/{summary['pairs']} ({share:.0%})",
        f"  cohort (case format + ground_truth.csv): {summary['cohort']}",
        f"  results (levels, matches, truth tables): {summary['results']}",
    ])
