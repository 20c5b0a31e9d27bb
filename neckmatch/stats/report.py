"""The study's statistics from truth tables: accuracy per unit with sensitivity analyses, ROC, agreement, STARD.

``run_stats(truth_dir, out_dir)`` reads the truth tables of one case or a cohort run (stacked ``truth_*.csv``
at the top of ``truth_dir``, else every ``truth_*.csv`` below it, concatenated) and writes ``accuracy.csv``,
``roc.csv``, ``roc_curve.csv``, ``agreement.csv``, ``crosstab.csv`` and ``stard.json`` (docs/statistics.md).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from neckmatch.errors import InputError
from neckmatch.io.atomic import atomic_files, write_csv, write_text
from neckmatch.stats.accuracy import _as_bool_array, accuracy_columns, accuracy_table
from neckmatch.stats.agreement import agreement_table
from neckmatch.stats.expected import expected_row
from neckmatch.stats.roc import roc_by_reader
from neckmatch.stats.stard import cross_tabulations, stard_counts

__all__ = ["TRUTH_KEYS", "SIZE_BANDS", "read_truth_tables", "trusted_kinds", "node_accuracy", "expected_inputs",
           "expected_accuracy", "truth_accuracy", "run_stats"]

TRUTH_KEYS: tuple[str, ...] = ("nodes", "reads", "levels", "sides", "patient")
# Size bands of the MR short axis, mm: [low, high).
SIZE_BANDS: tuple[tuple[str, float, float], ...] = (("<5mm", 0.0, 5.0), ("5-10mm", 5.0, 10.0),
                                                    (">=10mm", 10.0, np.inf))


def read_truth_tables(truth_dir: str | Path) -> dict[str, pd.DataFrame]:
    """Read ``truth_<key>.csv`` tables: stacked ones at the top of ``truth_dir``, else all below it.

    Also reads ``matches.csv`` (key ``matches``) the same way where present.

    Raises
    ------
    InputError
        If ``truth_dir`` holds no truth table, or a table lacks ``case_id``.
    """
    root = Path(truth_dir)
    if not root.is_dir():
        raise InputError(root, "", f"not a folder: '{root}'")
    out: dict[str, pd.DataFrame] = {}
    for key in (*TRUTH_KEYS, "matches"):
        name = "matches.csv" if key == "matches" else f"truth_{key}.csv"
        files = [root / name] if (root / name).is_file() else sorted(root.rglob(name))
        if not files:
            continue
        frames = []
        for f in files:
            frame = pd.read_csv(f, dtype={"case_id": str, "mr_node": object, "path_node": object})
            if "case_id" not in frame:
                raise InputError(f, "header", f"no 'case_id' column (columns: {', '.join(frame.columns)})")
            frames.append(frame)
        out[key] = pd.concat(frames, ignore_index=True)
    if not any(k in out for k in TRUTH_KEYS):
        raise InputError(root, "", "no truth_*.csv files found (truth_nodes.csv, truth_levels.csv, ...)")
    if "nodes" in out:
        out["nodes"] = trusted_kinds(out["nodes"])
    return out


def trusted_kinds(nodes: pd.DataFrame) -> pd.DataFrame:
    """Truth nodes written before ``decided_by`` existed counted ``review`` pairs as ``matched``: there a matched
    row whose ``decision`` is ``review`` becomes ``undecided`` (no outcome), and ``decided_by`` is the decision.

    Examples
    --------
    >>> old = pd.DataFrame({"match_kind": ["matched", "matched"], "decision": ["auto", "review"],
    ...                     "outcome": ["TP", "FP"]})
    >>> trusted_kinds(old)[["match_kind", "decided_by", "outcome"]].values.tolist()
    [['matched', 'auto', 'TP'], ['undecided', 'review', None]]
    """
    if "decided_by" in nodes or "decision" not in nodes or "match_kind" not in nodes:
        return nodes
    out = nodes.copy()
    out["decided_by"] = out["decision"]
    review = (out["match_kind"] == "matched") & (out["decision"] == "review")
    out.loc[review, "match_kind"] = "undecided"
    if "outcome" in out:
        out["outcome"] = out["outcome"].astype(object).where(~review, None)
    return out


def _stack(frames: list[pd.DataFrame], columns: list[str] | None = None) -> pd.DataFrame:
    """Row-wise concatenation that never depends on empty or all-NA frames for dtypes.

    The frames are joined as object columns and each column's dtype is then inferred from its values (as a frame
    built from the rows would be), column by column.

    Examples
    --------
    >>> out = _stack([pd.DataFrame(columns=["a"]), pd.DataFrame({"a": [1, 2]}), pd.DataFrame({"a": [None]})])
    >>> out["a"].tolist(), str(out["a"].dtype)
    ([1.0, 2.0, nan], 'float64')
    """
    cols = columns if columns is not None else list(dict.fromkeys(c for f in frames for c in f.columns))
    parts = [f.astype(object) for f in frames if len(f)]
    if not parts:
        return pd.DataFrame(columns=cols)
    joined = pd.concat(parts, ignore_index=True).reindex(columns=cols)
    return pd.DataFrame({c: joined[c].tolist() for c in cols}, columns=cols)


def _calls(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with float 1/0/NaN columns ``_index`` (mr_call) and ``_ref`` (path_status)."""
    out = frame.copy()
    out["_index"] = _as_bool_array(out["mr_call"].to_numpy(dtype=object))
    out["_ref"] = _as_bool_array(out["path_status"].to_numpy(dtype=object))
    return out


def _node_subsets(nodes: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """(analysis name, unit rows) for the node-level main and sensitivity analyses.

    The main analysis counts decided pairs only (``match_kind=matched``: ``auto`` or a person's decision); pairs
    awaiting review (``undecided``) enter only the expected analysis and the best / worst cases.
    """
    nodes = _calls(nodes)
    is_mr = nodes["mr_node"].notna() & (nodes["mr_node"].astype(str).str.strip() != "")
    matched = nodes[is_mr & (nodes["match_kind"] == "matched")]
    out = [("main", matched)]
    if "decided_by" in nodes:
        out.append(("auto-only", matched[matched["decided_by"] == "auto"]))
    elif "decision" in nodes:
        out.append(("auto-only", matched[matched["decision"] == "auto"]))
    level_only = nodes[is_mr & (nodes["match_kind"] == "level-only")].copy()
    if "container_status" in level_only:
        # A level-only node's own status is known only where its container holds no metastasis: then it is
        # negative. In a positive container it may be any of the nodes, so it has no node-level reference.
        container = _as_bool_array(level_only["container_status"].to_numpy(dtype=object))
        level_only["_ref"] = np.where(container == 0, 0.0, np.nan)
    out.append(("with-level-only", _stack([matched, level_only])))
    out += _bounds(nodes, is_mr, matched, level_only)
    size = pd.to_numeric(matched.get("short_axis_mm"), errors="coerce")
    for name, lo, hi in SIZE_BANDS:
        out.append((f"size {name}", matched[(size >= lo) & (size < hi)]))
    return out


def _bounds(nodes: pd.DataFrame, is_mr: pd.Series, matched: pd.DataFrame, level_only: pd.DataFrame
            ) -> list[tuple[str, pd.DataFrame]]:
    """Best and worst case over every node without a decided node-level reference, in both directions.

    Undecided pairs and level-only MR nodes in a positive container (reference unknown) take the reference that
    makes their call right (best) or wrong (worst); level-only nodes in a negative container keep their known
    negative reference; pathology nodes without an MR partner take the call that is right (best) or wrong
    (worst: a positive one missed, a negative one called positive). Both bound sensitivity and specificity alike.
    """
    undecided = nodes[is_mr & (nodes["match_kind"] == "undecided")].copy()
    unknown = _stack([undecided, level_only[level_only["_ref"].isna()]])
    known_neg = level_only[level_only["_ref"].notna()]
    unknown = unknown[pd.to_numeric(unknown["_index"], errors="coerce").notna()] if len(unknown) else unknown
    path_only = nodes[~is_mr & nodes["_ref"].notna()]
    out = []
    for name, right in (("best-case", True), ("worst-case", False)):
        mr_side, path_side = unknown.copy(), path_only.copy()
        if len(mr_side):
            call = pd.to_numeric(mr_side["_index"]).to_numpy(dtype=float)
            mr_side["_ref"] = call if right else 1.0 - call
        if len(path_side):
            ref = path_side["_ref"].to_numpy(dtype=float)
            path_side["_index"] = ref if right else 1.0 - ref
        out.append((name, _stack([matched, known_neg, mr_side, path_side])))
    return out


def _container_fractions(levels: pd.DataFrame | None) -> dict[tuple[str, str], tuple[float, float]]:
    """(case_id, container id) -> (pathology nodes, positive nodes) of its level unit, from truth_levels rows."""
    out: dict[tuple[str, str], tuple[float, float]] = {}
    if levels is None or "container" not in levels:
        return out
    for case, cont, n, pos in zip(levels["case_id"].astype(str), levels["container"], levels.get("path_nodes"),
                                  levels.get("path_positive_nodes"), strict=True):
        if isinstance(cont, str) and cont and pd.notna(n) and pd.notna(pos):
            for c in cont.split(";"):
                out[(case, c)] = (float(n), float(pos))
    return out


def expected_inputs(nodes: pd.DataFrame, levels: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per MR node that may have a pathology partner: ``case_id, call, p_pos, p_has`` (stats.expected).

    Proposed pairs (matched or undecided) have ``p_has = 1`` and ``p_pos = c s + (1 - c) q`` with ``c`` the
    pair's confidence (1 for a person's decision), ``s`` the proposed partner's status and ``q`` the positive
    fraction of the container's other nodes (truth_levels counts; 0 in a negative container; the cohort's
    positive fraction of pathology nodes where the counts are missing). Level-only nodes have
    ``p_has = 1 - confidence`` (the confidence that they have no partner) and ``p_pos = q`` of their container.
    """
    frac = _container_fractions(levels)
    path_ref = _as_bool_array(nodes["path_status"].to_numpy(dtype=object))
    fallback = float(np.nanmean(path_ref)) if np.isfinite(path_ref).any() else 0.5
    rows = []
    for r in nodes.to_dict("records"):
        kind = r.get("match_kind")
        if _blank(r.get("mr_node")) or kind not in ("matched", "undecided", "level-only"):
            continue
        conts = [(str(r["case_id"]), c) for c in str(r.get("container") or "").split(";") if c and c != "nan"]
        cstat = _as_bool_array([r.get("container_status")])[0]
        n = sum(frac[c][0] for c in dict.fromkeys(conts) if c in frac)
        pos = sum(frac[c][1] for c in dict.fromkeys(conts) if c in frac)
        conf = float(r.get("confidence")) if not _blank(r.get("confidence")) else 1.0
        if kind == "level-only":
            q = 0.0 if cstat == 0 else (pos / n if n > 0 else fallback)
            rows.append((r["case_id"], r.get("mr_call"), q, 1.0 - conf))
            continue
        s = _as_bool_array([r.get("path_status")])[0]
        c = 1.0 if r.get("decided_by") == "person" else conf
        q = 0.0 if cstat == 0 else ((pos - s) / (n - 1) if n > 1 and np.isfinite(s) else fallback)
        rows.append((r["case_id"], r.get("mr_call"), c * s + (1 - c) * min(max(q, 0.0), 1.0), 1.0))
    return pd.DataFrame(rows, columns=["case_id", "call", "p_pos", "p_has"])


def _blank(v: Any) -> bool:
    return v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA or str(v).strip() in ("", "nan")


def node_accuracy(nodes: pd.DataFrame, n_boot: int = 2000, seed: int = 0, levels: pd.DataFrame | None = None,
                  n_imp: int = 50) -> pd.DataFrame:
    """Node-unit accuracy: main analysis (decided pairs) per level and side and pooled, then the pooled
    sensitivity analyses: auto-only, with-level-only, best-case, worst-case, expected and the size bands."""
    frames = []
    for name, rows in _node_subsets(nodes):
        by = ("level", "side") if name == "main" else ()
        frames.append(accuracy_table(rows, "_index", "_ref", by=by, unit="node", analysis=name,
                                     n_boot=n_boot, seed=seed))
        if name == "worst-case":
            frames.append(expected_accuracy(nodes, levels, n_imp=n_imp, seed=seed))
    return _stack(frames, accuracy_columns())


def expected_accuracy(nodes: pd.DataFrame, levels: pd.DataFrame | None = None, n_imp: int = 50, seed: int = 0
                      ) -> pd.DataFrame:
    """The ``analysis=expected`` row (pooled node level): every MR node with its matching posterior."""
    inp = expected_inputs(nodes, levels)
    row = expected_row(inp["call"].to_numpy(dtype=object), inp["p_pos"], inp["p_has"], inp["case_id"],
                       n_imp=n_imp, seed=seed)
    row |= {"analysis": "expected", "unit": "node", "level": "all", "side": "both"}
    return pd.DataFrame([row]).reindex(columns=accuracy_columns())


def _dissected(frame: pd.DataFrame) -> pd.DataFrame:
    if "dissected" not in frame:
        return frame
    return frame[_as_bool_array(frame["dissected"].to_numpy(dtype=object)) == 1]


def truth_accuracy(tables: dict[str, pd.DataFrame], n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """accuracy.csv rows from truth tables: node (with sensitivity analyses), level, side, patient units."""
    frames = []
    if "nodes" in tables:
        frames.append(node_accuracy(tables["nodes"], n_boot=n_boot, seed=seed, levels=tables.get("levels")))
    if "levels" in tables:
        lv = _calls(_dissected(tables["levels"]))
        frames.append(accuracy_table(lv, "_index", "_ref", by=("level", "side"), unit="level",
                                     n_boot=n_boot, seed=seed))
    if "sides" in tables:
        sd = _calls(_dissected(tables["sides"]))
        frames.append(accuracy_table(sd, "_index", "_ref", by=("side",), unit="side", n_boot=n_boot, seed=seed))
    if "patient" in tables:
        pt = _calls(tables["patient"])
        frames.append(accuracy_table(pt, "_index", "_ref", by=(), unit="patient", n_boot=n_boot, seed=seed)
                      .assign(level="any", side="both"))
    return _stack(frames, accuracy_columns())


def _roc_tables(tables: dict[str, pd.DataFrame], n_boot: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    parts = []
    if "reads" in tables:
        reads = tables["reads"]
        parts.append(reads[reads["match_kind"] == "matched"] if "match_kind" in reads else reads)
    if "nodes" in tables and "mr_score" in tables["nodes"]:
        nodes = tables["nodes"]
        cons = nodes[nodes["match_kind"] == "matched"].assign(reader="consensus", score=lambda d: d["mr_score"])
        parts.append(cons)
    if not parts:
        return roc_by_reader(pd.DataFrame(columns=["reader", "score", "path_status", "case_id"]))
    data = pd.concat([p[["case_id", "reader", "score", "path_status"]] for p in parts], ignore_index=True)
    return roc_by_reader(data, n_boot=n_boot, seed=seed)


def run_stats(truth_dir: str | Path, out_dir: str | Path, n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Compute every statistics table from the truth tables under ``truth_dir`` and write them to ``out_dir``.

    Returns
    -------
    dict
        ``{"files": [written paths], "stard": stard counts}``.
    """
    tables = read_truth_tables(truth_dir)
    out = Path(out_dir)
    with atomic_files(out) as stage:  # a failure half-way writes nothing
        written = [write_csv(truth_accuracy(tables, n_boot=n_boot, seed=seed), stage / "accuracy.csv")]
        summary, curves = _roc_tables(tables, n_boot, seed)
        written += [write_csv(summary, stage / "roc.csv"), write_csv(curves, stage / "roc_curve.csv")]
        reads = tables.get("reads")
        agreement = agreement_table(reads) if reads is not None else agreement_table(
            pd.DataFrame(columns=["case_id", "mr_node", "reader"]))
        written.append(write_csv(agreement, stage / "agreement.csv"))
        written.append(write_csv(cross_tabulations(tables), stage / "crosstab.csv"))
        stard = stard_counts(tables, tables.get("matches"))
        written.append(write_text(json.dumps(stard, indent=2) + "\n", stage / "stard.json"))
    return {"files": [str(out / p.name) for p in written], "stard": stard}
