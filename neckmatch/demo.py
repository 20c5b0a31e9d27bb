"""``neckmatch demo``: make a small seeded synthetic cohort and run the whole study on it.

The synthetic cohort (OUT/cohort), then the cohort run :func:`neckmatch.cohort.run_cohort` into OUT/results
(per case: levels, matches, truth tables, specimen, summary, 3-D maps; for the cohort: stacked tables,
statistics, figures and ``report.html``), and the share of node pairs that agree with the synthetic ground truth.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["DEMO_CASES", "DEMO_SEED", "run_demo", "pair_agreement", "format_demo_summary"]

DEMO_CASES = 6
DEMO_SEED = 2024
DEMO_SPECIMEN_FRACTION = 0.5  # 4 of the 6 demo cases (seed 2024) have ex vivo specimen scans


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
    out_dir: str | Path = "neckmatch-demo",
    n_cases: int = DEMO_CASES,
    seed: int = DEMO_SEED,
    *,
    workers: int | None = None,
    maps: bool = True,
) -> dict[str, Any]:
    """Write the demo cohort to ``out_dir/cohort`` and run the cohort into ``out_dir/results``.

    Parameters
    ----------
    out_dir : str or Path
        Demo folder; rerunning into it skips the cases that are already done.
    n_cases, seed : int
        Size and seed of the synthetic cohort.
    workers : int, optional
        Worker processes of the cohort run (default: the machine's cores).
    maps : bool
        Render the per-case 3-D maps.

    Returns
    -------
    dict
        ``cohort`` and ``results`` folders, ``report`` (report.html), ``cases`` and ``failed`` (numbers),
        ``mr_nodes`` and ``path_nodes`` (totals), ``pairs`` and ``pairs_correct`` (node pairs, and those agreeing
        with the ground truth).
    """
    from neckmatch.cohort import run_cohort
    from neckmatch.synth import SynthParams, generate_cohort

    out = Path(out_dir)
    cohort, results = out / "cohort", out / "results"
    # reader-study reads (docs/reader-study.md) and ex vivo specimen MRI for a few cases (docs/matching.md)
    generate_cohort(n_cases, seed, cohort, SynthParams(study_reads=True, specimen_fraction=DEMO_SPECIMEN_FRACTION))
    run = run_cohort(cohort, results, workers=workers, maps=maps)
    mr = path = hits = pairs = 0
    for rec in run.records:
        if rec.status == "failed":
            continue
        res = results / rec.case_id
        matches = pd.read_csv(res / "matches.csv", dtype={"path_node": str})
        truth = pd.read_csv(Path(rec.case_dir) / "ground_truth.csv", dtype={"path_node": str, "path_fragments": str})
        h, n = pair_agreement(matches, truth)
        hits, pairs = hits + h, pairs + n
        mr += len(pd.read_csv(res / "levels.csv"))
        path += int(matches["path_node"].notna().sum())
    return {"cohort": cohort, "results": results, "report": run.files.get("report.html"),
            "cases": len(run.records), "failed": run.n_failed, "mr_nodes": mr, "path_nodes": path,
            "pairs": pairs, "pairs_correct": hits}  # fmt: skip


def format_demo_summary(summary: dict[str, Any]) -> str:
    """A few lines for the terminal: what was made and where it is.

    Examples
    --------
    >>> s = {"cohort": "d/cohort", "results": "d/results", "report": "d/results/report.html", "cases": 2,
    ...      "failed": 0, "mr_nodes": 9, "path_nodes": 7, "pairs": 5, "pairs_correct": 4}
    >>> print(format_demo_summary(s))
    neckmatch demo: 2 synthetic cases (0 failed), 9 MR nodes, 7 pathology nodes
      node pairs agreeing with the ground truth: 4/5 (80%)
      cohort (case format + ground_truth.csv): d/cohort
      results (per case, tables, stats, figures): d/results
      report: d/results/report.html
    """
    share = summary["pairs_correct"] / summary["pairs"] if summary["pairs"] else 0.0
    return "\n".join([
        f"neckmatch demo: {summary['cases']} synthetic cases ({summary.get('failed', 0)} failed), "
        f"{summary['mr_nodes']} MR nodes, {summary['path_nodes']} pathology nodes",
        f"  node pairs agreeing with the ground truth: {summary['pairs_correct']}/{summary['pairs']} ({share:.0%})",
        f"  cohort (case format + ground_truth.csv): {summary['cohort']}",
        f"  results (per case, tables, stats, figures): {summary['results']}",
        f"  report: {summary.get('report')}",
    ])
