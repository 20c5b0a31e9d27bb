"""``neckmatch review export``: the people's decisions per case as a constraints file the engine reads
(``neckmatch run --constraints DIR``), the reviewed truth table with provenance, and a summary."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from neckmatch.io.atomic import atomic_files, write_csv, write_text
from neckmatch.review.db import Item, ReviewCase
from neckmatch.review.service import settled_of
from neckmatch.review.solve import truth_with_provenance

__all__ = ["SUMMARY_COLUMNS", "constraints_doc", "export_review"]

SUMMARY_COLUMNS = ["case_id", "items", "decided", "agreed", "adjudicated", "pending", "withdrawn"]


def constraints_doc(case_id: str, settled: list[tuple[str, str, str, str | None, str]]) -> dict[str, Any]:
    """The ``constraints.json`` document of one case (read by :mod:`neckmatch.correlation.constraints`).

    Examples
    --------
    >>> doc = constraints_doc("P1", [("mr", "3", "link", "R-II-1", "agreed"), ("path", "X", "unmatched", None,
    ...                              "adjudicated"), ("mr", "4", "cannot_tell", None, "agreed")])
    >>> [(c["mr_node"], c["path_node"], c["action"], c["provenance"]) for c in doc["constraints"]]
    [(3, 'R-II-1', 'must_link', 'agreed'), (None, 'X', 'unmatched', 'adjudicated')]
    """
    rows = []
    for kind, node, outcome, partner, prov in settled:
        if outcome == "link":
            mr, pn = (node, partner) if kind == "mr" else (partner, node)
            rows.append({"mr_node": int(str(mr)), "path_node": pn, "action": "must_link", "provenance": prov})
        elif outcome == "unmatched":
            rows.append({"mr_node": int(node) if kind == "mr" else None, "path_node": node if kind == "path" else None,
                         "action": "unmatched", "provenance": prov})
    return {"format": "neckmatch-constraints/1", "case_id": case_id, "constraints": rows}


def _summary(case: ReviewCase, items: list[Item]) -> dict[str, Any]:
    live = [i for i in items if i.status != "withdrawn"]
    settled = [i for i in live if i.status == "settled"]
    return {"case_id": case.case_id, "items": len(live), "decided": len(settled),
            "agreed": sum(i.provenance == "agreed" for i in settled),
            "adjudicated": sum(i.provenance == "adjudicated" for i in settled),
            "pending": len(live) - len(settled), "withdrawn": len(items) - len(live)}


def export_review(db: Session, out_dir: str | Path) -> pd.DataFrame:
    """Write ``out_dir/<case>/constraints.json`` and ``truth_nodes.csv`` (with ``provenance``) for every case,
    and ``out_dir/review_summary.csv``; all files appear together or none. Returns the summary table."""
    summary = []
    with atomic_files(out_dir) as stage:
        for case in db.scalars(select(ReviewCase).order_by(ReviewCase.case_id)):
            items = list(db.scalars(select(Item).where(Item.case_pk == case.id)))
            settled = settled_of(db, case)
            folder = stage / case.case_id
            folder.mkdir()
            doc = constraints_doc(case.case_id, settled)
            write_text(json.dumps(doc, indent=2) + "\n", folder / "constraints.json")
            tables = truth_with_provenance(case.case_dir, case.tolerance_mm, case.auto_threshold, settled)
            write_csv(tables["nodes"], folder / "truth_nodes.csv")
            summary.append(_summary(case, items))
        frame = pd.DataFrame(summary, columns=SUMMARY_COLUMNS)
        write_csv(frame, stage / "review_summary.csv")
    return frame
