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
from neckmatch.stats.roc import roc_by_reader
from neckmatch.stats.stard import cross_tabulations, stard_counts

__all__ = ["TRUTH_KEYS", "SIZE_BANDS", "read_truth_tables", "node_accuracy", "truth_accuracy", "run_stats"]

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
    """(analysis name, unit rows) for the node-level main and sensitivity analyses."""
    nodes = _calls(nodes)
    is_mr = nodes["mr_node"].notna() & (nodes["mr_node"].astype(str).str.strip() != "")
    matched = nodes[is_mr & (nodes["match_kind"] == "matched")]
    out = [("main", matched)]
    if "decision" in nodes:
        out.append(("auto-only", matched[matched["decision"] == "auto"]))
    level_only = nodes[is_mr & (nodes["match_kind"] == "level-only")].copy()
    if "container_status" in level_only:
        # A level-only node's own status is known only where its container holds no metastasis: then it is
        # negative. In a positive container it may be any of the nodes, so it has no node-level reference.
        container = _as_bool_array(level_only["container_status"].to_numpy(dtype=object))
        level_only["_ref"] = np.where(container == 0, 0.0, np.nan)
    out.append(("with-level-only", _stack([matched, level_only])))
    path_only = nodes[~is_mr & nodes["_ref"].notna()].copy()
    best, worst = path_only.copy(), path_only.copy()
    best["_index"] = best["_ref"]  # best case: every unseen pathology node counted as correctly called
    worst["_index"] = 0.0  # worst case: every unseen pathology node counted as called negative
    out += [("best-case", _stack([matched, best])), ("worst-case", _stack([matched, worst]))]
    size = pd.to_numeric(matched.get("short_axis_mm"), errors="coerce")
    for name, lo, hi in SIZE_BANDS:
        out.append((f"size {name}", matched[(size >= lo) & (size < hi)]))
    return out


def node_accuracy(nodes: pd.DataFrame, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Node-unit accuracy: main analysis (matched nodes) per level and side and pooled, then the sensitivity
    analyses (pooled rows only): auto-only, with-level-only, best-case, worst-case and the size bands."""
    frames = []
    for name, rows in _node_subsets(nodes):
        by = ("level", "side") if name == "main" else ()
        frames.append(accuracy_table(rows, "_index", "_ref", by=by, unit="node", analysis=name,
                                     n_boot=n_boot, seed=seed))
    return _stack(frames, accuracy_columns())


def _dissected(frame: pd.DataFrame) -> pd.DataFrame:
    if "dissected" not in frame:
        return frame
    return frame[_as_bool_array(frame["dissected"].to_numpy(dtype=object)) == 1]


def truth_accuracy(tables: dict[str, pd.DataFrame], n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """accuracy.csv rows from truth tables: node (with sensitivity analyses), level, side, patient units."""
    frames = []
    if "nodes" in tables:
        frames.append(node_accuracy(tables["nodes"], n_boot=n_boot, seed=seed))
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
