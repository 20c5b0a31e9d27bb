"""STARD 2015 flow counts (item 19: participant and node flow; item 16: missing data = unmatched nodes) and
cross-tabulations of index against reference (item 21), from the truth tables (docs/outputs.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from neckmatch.stats.accuracy import _as_bool_array, confusion_counts

__all__ = ["stard_counts", "cross_tabulations"]


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value) or str(value).strip() in ("", "nan")


def _count(series: pd.Series) -> dict[str, int]:
    return {str(k): int(v) for k, v in series.value_counts(dropna=True).sort_index().items()}


def _partners(rows: pd.DataFrame) -> int:
    """Pathology nodes named by MR rows (fragments, a merged label's partners share one row, joined with ';')."""
    return sum(len(str(v).split(";")) for v in rows["path_node"] if not _empty(v))


def _nodes_flow(nodes: pd.DataFrame, matches: pd.DataFrame | None) -> dict[str, Any]:
    is_mr = ~nodes["mr_node"].map(_empty)
    mr, path_only = nodes[is_mr], nodes[~is_mr]
    matched, undecided = mr[mr["match_kind"] == "matched"], mr[mr["match_kind"] == "undecided"]
    n_matched, n_awaiting = _partners(matched), _partners(undecided)
    out: dict[str, Any] = {
        "mr_nodes": {"total": int(len(mr)), **{k: 0 for k in ("matched", "undecided", "level-only", "unmatched")},
                     **_count(mr["match_kind"])},
        "path_nodes": {"total": int(n_matched + n_awaiting + len(path_only)), "matched": int(n_matched),
                       "awaiting_review": int(n_awaiting), "unseen_on_mr": int(len(path_only)),
                       "in_undissected_levels": 0},
    }
    out["mr_nodes"]["awaiting_review"] = out["mr_nodes"]["undecided"]
    by = matched["decided_by"] if "decided_by" in matched else matched.get("decision")
    if by is not None:
        out["mr_nodes"]["matched_auto"] = int((by == "auto").sum())
        out["mr_nodes"]["matched_person"] = int((by == "person").sum())
    if matches is not None and "reason" in matches:
        mr_unm = matches[matches["kind"] == "mr-unmatched"]
        path_unm = matches[matches["kind"] == "path-unmatched"]
        out["mr_nodes"]["unmatched_by_reason"] = _count(mr_unm["reason"])
        out["path_nodes"]["unseen_by_reason"] = _count(path_unm["reason"])
        out["path_nodes"]["in_undissected_levels"] = int((path_unm["reason"] == "undissected").sum())
    return out


def stard_counts(tables: Mapping[str, pd.DataFrame], matches: pd.DataFrame | None = None) -> dict[str, Any]:
    """Flow counts for a STARD diagram.

    Parameters
    ----------
    tables : mapping
        Truth tables by key (``nodes``, ``levels``, ``sides``, ``patient``; any may be missing), each with
        ``case_id``.
    matches : DataFrame, optional
        matches.csv rows (for the reasons of unmatched nodes).

    Returns
    -------
    dict
        JSON-able: ``patients``, ``sides`` (total, dissected), ``levels`` (total, dissected, with_reference),
        ``mr_nodes`` (total, matched (decided pairs), undecided = awaiting_review, level-only, unmatched,
        matched_auto, matched_person, unmatched_by_reason), ``path_nodes`` (total, matched, awaiting_review,
        unseen_on_mr, in_undissected_levels, unseen_by_reason) and ``patient_reference`` (pN, levels, unknown:
        patients without a patient-level reference, left out of the patient row).
    """
    ids: set[str] = set()
    for frame in tables.values():
        if frame is not None and "case_id" in frame:
            ids |= set(frame["case_id"].astype(str))
    out: dict[str, Any] = {"patients": len(ids)}
    for key in ("sides", "levels"):
        frame = tables.get(key)
        if frame is None:
            continue
        dissected = _as_bool_array(frame["dissected"].to_numpy(dtype=object)) == 1
        entry = {"total": int(len(frame)), "dissected": int(dissected.sum())}
        ref = _as_bool_array(frame["path_status"].to_numpy(dtype=object))
        entry["with_reference"] = int((dissected & (ref == ref)).sum())
        out[key] = entry
    if tables.get("nodes") is not None:
        out.update(_nodes_flow(tables["nodes"], matches))
    patient = tables.get("patient")
    if patient is not None:
        source = patient["reference"] if "reference" in patient else pd.Series([None] * len(patient))
        has_ref = ~patient["path_status"].map(_empty)
        src = source.where(has_ref, None).map(lambda v: "levels" if _empty(v) else str(v))
        out["patient_reference"] = {"pN": int(((src == "pN") & has_ref).sum()),
                                    "levels": int(((src != "pN") & has_ref).sum()),
                                    "unknown": int((~has_ref).sum())}
    return out


def cross_tabulations(tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """The 2x2 table (index ``mr_call`` x reference ``path_status``) per unit.

    Units: ``node`` (decided pairs: ``match_kind=matched``), ``level`` and ``side`` (dissected only), ``patient``.

    Returns
    -------
    DataFrame
        ``unit, tp, fp, fn, tn, n, missing`` (``missing`` = units without a call or a reference).
    """
    rows = []
    for unit, key in (("node", "nodes"), ("level", "levels"), ("side", "sides"), ("patient", "patient")):
        frame = tables.get(key)
        if frame is None:
            continue
        if unit == "node":
            frame = frame[frame["match_kind"] == "matched"]
        elif "dissected" in frame:
            frame = frame[_as_bool_array(frame["dissected"].to_numpy(dtype=object)) == 1]
        c = confusion_counts(frame["mr_call"].to_numpy(dtype=object), frame["path_status"].to_numpy(dtype=object))
        n = sum(c.values())
        rows.append({"unit": unit, **c, "n": n, "missing": int(len(frame) - n)})
    return pd.DataFrame(rows, columns=["unit", "tp", "fp", "fn", "tn", "n", "missing"])
