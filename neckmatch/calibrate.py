"""``neckmatch calibrate``: learn the auto threshold from the decisions people made, with a finite-sample guarantee.

Inputs are result folders (``matches.csv`` of ``neckmatch match`` / ``run``, made *without* the reviewers'
constraints, so every decision still carries the engine's own confidence) and the reviewers' decisions in the
constraints format (``mr_node,path_node,action``; a ``case_id`` column routes rows of one file to several cases;
a ``constraints.csv`` or ``decisions.csv`` beside a ``matches.csv`` belongs to that case). Each engine decision a
reviewer settled becomes a labelled example: a pair is right if people linked it, wrong if they separated it, or
linked either node elsewhere, or declared either node unmatched; an unmatched node is right if people declared it
unmatched and wrong if they linked it. Decisions people did not settle, constrained rows and decisions fixed by
construction (outside the neck, undissected level) are left out.

The threshold is :func:`neckmatch.correlation.calibration.guaranteed_threshold`: the lowest confidence such that,
with probability at least ``1 - delta``, decisions at or above it are wrong at most ``1 - target_precision`` of
the time (docs/matching.md, "Learning the auto threshold from reviewed decisions").
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from neckmatch.correlation.calibration import Certified, guaranteed_threshold, min_decisions
from neckmatch.correlation.constraints import ConstraintRows, _parse_row, parse_constraints
from neckmatch.errors import InputError
from neckmatch.io.atomic import write_text
from neckmatch.io.calibration import FORMAT, load_calibration

__all__ = ["FORMAT", "label_decisions", "collect", "calibrate_results", "load_calibration"]
_BESIDE = ("constraints.csv", "decisions.csv")
_FIXED = ("undissected", "no-counterpart")


def label_decisions(matches: pd.DataFrame, rows: ConstraintRows) -> NDArray[np.float64]:
    """Per row of ``matches`` (one case): 1.0 where people's decisions say the engine was right, 0.0 wrong, nan
    where they did not settle it (or the row was constrained or fixed by construction).

    Examples
    --------
    >>> m = pd.DataFrame({"mr_node": [1, 2, None], "path_node": ["a", None, "b"],
    ...                   "kind": ["pair", "mr-unmatched", "path-unmatched"], "reason": ["", "", ""],
    ...                   "constrained": [False] * 3, "confidence": [0.9, 0.8, 0.7]})
    >>> label_decisions(m, ConstraintRows(must_link={(2, "b"): 1})).tolist()
    [nan, 0.0, 0.0]
    """
    link_mr: dict[int, set[str]] = {}
    link_path: dict[str, int] = {}
    for mr, pn in rows.must_link:
        link_mr.setdefault(mr, set()).add(pn)
        link_path[pn] = mr
    out = np.full(len(matches), np.nan)
    for k, r in enumerate(matches.itertuples(index=False)):
        if bool(r.constrained) or (r.reason in _FIXED and float(r.confidence) >= 1.0):
            continue
        mr_id = None if pd.isna(r.mr_node) else int(r.mr_node)
        path_id = None if pd.isna(r.path_node) or r.path_node == "" else str(r.path_node)
        out[k] = _label(str(r.kind), mr_id, path_id, rows, link_mr, link_path)
    return out


def _label(kind: str, mr: int | None, pn: str | None, rows: ConstraintRows, link_mr: dict[int, set[str]],
           link_path: dict[str, int]) -> float:
    if kind == "pair" and mr is not None and pn is not None:
        if (mr, pn) in rows.must_link:
            return 1.0
        if ((mr, pn) in rows.cannot_link or mr in rows.unmatched_mr or pn in rows.unmatched_path
                or link_path.get(pn, mr) != mr):
            return 0.0
        return np.nan
    if kind == "mr-unmatched" and mr is not None:
        return 1.0 if mr in rows.unmatched_mr else (0.0 if mr in link_mr else np.nan)
    if kind == "path-unmatched" and pn is not None:
        return 1.0 if pn in rows.unmatched_path else (0.0 if pn in link_path else np.nan)
    return np.nan


def _parse_by_case(path: Path) -> dict[str | None, ConstraintRows]:
    """A decisions file: one ConstraintRows per ``case_id`` (None when the file has no such column)."""
    if not path.is_file():
        raise InputError(path, "", "decisions file not found")
    with open(path, newline="", encoding="utf-8-sig") as fh:
        header = [h.strip() for h in (csv.DictReader(fh).fieldnames or [])]
    if "case_id" not in header:
        return {None: parse_constraints(path)}
    parse_constraints(path)  # header and every row checked once
    out: dict[str | None, ConstraintRows] = {}
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        reader.fieldnames = header
        for row, rec in enumerate(reader, start=1):
            if any((v or "").strip() for v in rec.values() if isinstance(v, str)):
                _parse_row(path, row, rec, out.setdefault((rec.get("case_id") or "").strip(), ConstraintRows()))
    return out


def _merge(a: ConstraintRows, b: ConstraintRows) -> ConstraintRows:
    return ConstraintRows(a.must_link | b.must_link, a.cannot_link | b.cannot_link, a.unmatched_mr | b.unmatched_mr,
                          a.unmatched_path | b.unmatched_path)


def collect(results: list[Path], decisions: list[Path]) -> pd.DataFrame:
    """Every labelled decision of the ``matches.csv`` files under ``results``: columns ``case_id, kind,
    confidence, right`` (bool)."""
    files = sorted({f for r in results for f in ([r] if r.is_file() else sorted(Path(r).rglob("matches.csv")))})
    if not files:
        raise InputError(results[0] if results else "results", "matches.csv", "no matches.csv found")
    cases: dict[str, tuple[Path, pd.DataFrame]] = {}
    for f in files:
        m = pd.read_csv(f, dtype={"path_node": str, "case_id": str}, keep_default_na=True)
        for col in ("case_id", "kind", "confidence", "constrained", "mr_node", "path_node"):
            if col not in m:
                raise InputError(f, col, "missing column (not a neckmatch matches.csv)")
        m["reason"] = m.get("reason", pd.Series("", index=m.index)).fillna("")
        m["constrained"] = m["constrained"].astype(str).str.lower().isin(["true", "1"])
        for cid, g in m.groupby("case_id"):
            # a matches.csv with a decisions file beside it wins over another copy (a run's tables/matches.csv)
            if str(cid) not in cases or any((f.parent / name).is_file() for name in _BESIDE):
                cases[str(cid)] = (f, g)
    people: dict[str, ConstraintRows] = {}
    for cid, (f, _) in cases.items():
        for name in _BESIDE:
            if (f.parent / name).is_file():
                people[cid] = _merge(people.get(cid, ConstraintRows()), parse_constraints(f.parent / name))
    for d in decisions:
        for cid, rows in _parse_by_case(Path(d)).items():
            if cid is None:
                if len(cases) != 1:
                    raise InputError(d, "case_id", f"needed: the results hold {len(cases)} cases")
                cid = next(iter(cases))
            if cid not in cases:
                raise InputError(d, "case_id", f"'{cid}' is not among the results")
            people[cid] = _merge(people.get(cid, ConstraintRows()), rows)
    frames = []
    for cid, rows in people.items():
        m = cases[cid][1]
        lab = label_decisions(m, rows)
        keep = np.isfinite(lab)
        frames.append(pd.DataFrame({"case_id": cid, "kind": m["kind"].to_numpy()[keep],
                                    "confidence": pd.to_numeric(m["confidence"]).to_numpy(float)[keep],
                                    "right": lab[keep] > 0.5}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["case_id", "kind", "confidence",
                                                                                      "right"])


def calibrate_results(results: list[Path], decisions: list[Path], out: Path, target_precision: float = 0.97,
                      delta: float = 0.05) -> Certified:
    """Certify the auto threshold from reviewed decisions and write it to ``out`` (JSON, atomically).

    Raises
    ------
    InputError
        Bad inputs, or too few labelled decisions to certify ``target_precision`` (nothing is written).
    """
    for name, v in (("target-precision", target_precision), ("delta", delta)):
        if not (isinstance(v, (int, float)) and math.isfinite(v) and 0.0 < v < 1.0):
            raise InputError("options", name, f"must lie strictly between 0 and 1, got {v!r}")
    df = collect([Path(r) for r in results], [Path(d) for d in decisions])
    need = min_decisions(target_precision, delta)
    cert = guaranteed_threshold(df["confidence"].to_numpy(float), df["right"].to_numpy(bool), target_precision, delta)
    if cert.threshold is None:
        raise InputError("decisions", "count",
                         f"cannot certify precision {target_precision} at {1 - delta:.0%}: {len(df)} reviewed "
                         f"decisions ({int((~df['right']).sum())} wrong); at least {need} error-free decisions above "
                         "a threshold are needed (more if some are wrong) - review more cases or lower the target")
    doc = {"format": FORMAT, "auto_threshold": cert.threshold, "target_precision": target_precision,
           "delta": delta, "method": "Clopper-Pearson upper bound, fixed-sequence testing (Learn-then-Test)",
           "n_decisions": cert.n_decisions, "n_above": cert.n_above, "errors_above": cert.errors_above,
           "upper_error_bound": round(cert.upper_error, 6), "cases": int(df["case_id"].nunique()),
           "by_kind": {str(k): int(v) for k, v in df["kind"].value_counts().sort_index().items()}}
    write_text(json.dumps(doc, indent=2) + "\n", Path(out))
    return cert
