"""Small hand-made truth tables in the docs/outputs.md schema, shared by the statistics tests."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

NODE_COLS = ["case_id", "mr_node", "path_node", "side", "level", "container", "short_axis_mm", "long_axis_mm",
             "path_size_mm", "mr_call", "mr_score", "path_status", "outcome", "match_kind", "confidence", "decision"]


def truth_tables() -> dict[str, pd.DataFrame]:
    """Two cases. Matched node calls: P1 TP, FP, and a negative call awaiting review (undecided); P2 TP, FN, TN;
    level-only P1 FN; unmatched MR P2; unmatched pathology nodes P1 positive, P2 negative."""
    n = [
        ("P1", "1", "R-II-1", "R", "IIA", "R-II", 12, 15, 11, "true", 5, "positive", "TP", "matched", .9, "auto"),
        ("P1", "2", "R-II-2", "R", "IIA", "R-II", 6, 8, 6, "true", 4, "negative", "FP", "matched", .8, "auto"),
        ("P1", "3", "R-III-1", "R", "III", "R-III", 4, 5, 4, "false", 1, "negative", "", "undecided", .5, "review"),
        ("P1", "4", "", "R", "III", "R-III", 5, 6, "", "false", 2, "positive", "FN", "level-only", .3, "review"),
        ("P1", "", "R-III-9", "R", "III", "R-III", "", "", 3, "", "", "positive", "", "unmatched", .6, "auto"),
        ("P2", "1", "L-II-1", "L", "IIA", "L-II", 11, 13, 10, "true", 5, "positive", "TP", "matched", .9, "auto"),
        ("P2", "2", "L-II-2", "L", "IIA", "L-II", 7, 9, 6, "false", 2, "positive", "FN", "matched", .9, "auto"),
        ("P2", "3", "L-IV-1", "L", "IV", "L-IV", 3, 4, 3, "false", 1, "negative", "TN", "matched", .9, "auto"),
        ("P2", "5", "", "L", "VB", "", 4, 5, "", "false", 1, "", "", "unmatched", .9, "auto"),
        ("P2", "", "L-IV-7", "L", "IV", "L-IV", "", "", 2, "", "", "negative", "", "unmatched", .7, "auto"),
    ]  # fmt: skip
    nodes = pd.DataFrame(n, columns=NODE_COLS)
    nodes["decided_by"] = nodes["decision"]  # no person's decision here
    reads = []
    read_rows = [("P1", "1", 5, "positive", "matched"), ("P1", "2", 4, "negative", "matched"),
                 ("P1", "3", 1, "negative", "matched"), ("P2", "1", 5, "positive", "matched"),
                 ("P2", "2", 2, "positive", "matched"), ("P2", "3", 1, "negative", "matched")]
    for case, node, score, status, kind in read_rows:
        for reader, delta in (("A", 0), ("B", -1 if score > 3 else 0)):
            s = score + delta
            reads.append({"case_id": case, "mr_node": node, "reader": reader, "score": s,
                          "malignant": "true" if s >= 4 else "false", "path_status": status, "match_kind": kind,
                          "decision": "auto", "level": "IIA", "side": "R", "short_axis_mm": 5})
    levels = pd.DataFrame(
        [("P1", "R", "II", True, 2, 2, True, 2, 1, "positive", "TP"),
         ("P1", "R", "III", True, 2, 0, False, 2, 1, "positive", "FN"),
         ("P2", "L", "II", True, 2, 1, True, 2, 2, "positive", "TP"),
         ("P2", "L", "IV", True, 1, 0, False, 2, 0, "negative", "TN"),
         ("P2", "L", "V", False, 1, 0, False, 0, 0, "", "")],
        columns=["case_id", "side", "level", "dissected", "mr_nodes", "mr_positive_nodes", "mr_call", "path_nodes",
                 "path_positive_nodes", "path_status", "outcome"])
    sides = pd.DataFrame([("P1", "R", True, "positive", "TP", True), ("P1", "L", False, "", "", False),
                          ("P2", "L", True, "positive", "TP", True), ("P2", "R", False, "", "", False)],
                         columns=["case_id", "side", "mr_call", "path_status", "outcome", "dissected"])
    patient = pd.DataFrame([("P1", True, "positive", "TP"), ("P2", True, "positive", "TP")],
                           columns=["case_id", "mr_call", "path_status", "outcome"])
    return {"nodes": nodes, "reads": pd.DataFrame(reads), "levels": levels, "sides": sides, "patient": patient}


def write_cohort(root: Path, stacked: bool = False) -> Path:
    """Write the tables per case (``root/<case>/truth_*.csv``) or stacked at the top (``root/truth_*.csv``)."""
    for key, frame in truth_tables().items():
        if stacked:
            root.mkdir(parents=True, exist_ok=True)
            frame.to_csv(root / f"truth_{key}.csv", index=False)
            continue
        for case, part in frame.groupby("case_id"):
            (root / case).mkdir(parents=True, exist_ok=True)
            part.to_csv(root / case / f"truth_{key}.csv", index=False)
    return root
