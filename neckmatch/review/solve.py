"""The engine, called for the review service: solve a case with the people's constraints (no science here).

:func:`solve` runs :func:`neckmatch.correlation.matching.match_case` on a case with the constraints the settled
items give, and returns a JSON-able :class:`Solution`: the decisions (``matches.csv`` rows), the items still to
review, each item's candidates from the engine's pair weights, and the evidence a reviewer sees (levels, sizes;
never the MR reading nor the pathology status). Read cases, levels and specimens are cached per process, so a
re-solve costs one matching.
"""

from __future__ import annotations

import json
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["MAX_CANDIDATES", "CaseInputs", "build_constraints", "case_inputs", "item_key", "matches_frame", "solve",
           "truth_with_provenance"]

MAX_CANDIDATES = 9
_CACHE_SIZE = 64
_cache: OrderedDict[tuple[str, float], CaseInputs] = OrderedDict()
_lock = threading.Lock()

# matches.csv columns a reviewer may see (evidence); reads and pathology status are not among them
_SHOWN = ["mr_node", "path_node", "confidence", "decision", "kind", "reason", "constrained", "merged", "mr_level",
          "mr_side", "container", "path_level", "mr_long_mm", "path_size_mm", "size_ratio", "position_mm"]


@dataclass(frozen=True)
class CaseInputs:
    """What a re-solve reuses: the case, its levels table and its reconstructed specimen."""

    case: Any
    levels: pd.DataFrame
    specimen: Any
    evidence: dict[str, Any] = field(default_factory=dict)


def case_inputs(case_dir: str, tolerance_mm: float) -> CaseInputs:
    """Read ``case_dir`` once per process (an LRU cache of :data:`_CACHE_SIZE` cases)."""
    from neckmatch.geometry.levels import levels_table
    from neckmatch.geometry.specimen import reconstruct_specimen
    from neckmatch.io.case import read_case
    from neckmatch.pipeline import with_case_id

    key = (str(Path(case_dir).resolve()), float(tolerance_mm))
    with _lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
            return hit
    case = read_case(case_dir)
    levels = with_case_id(levels_table(case, tolerance_mm=tolerance_mm), case.case_id)
    inputs = CaseInputs(case, levels, reconstruct_specimen(case, levels))
    inputs.evidence.update(_evidence(inputs))
    with _lock:
        _cache[key] = inputs
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return inputs


def build_constraints(settled: list[tuple[str, str, str, str | None]]) -> Any:
    """Engine constraints from settled items ``(kind, node, outcome, partner)``.

    ``kind`` is ``mr`` or ``path``; ``outcome`` ``link`` (with ``partner``), ``unmatched`` or ``cannot_tell``
    (no constraint).

    Examples
    --------
    >>> c = build_constraints([("mr", "3", "link", "R-II-1"), ("path", "L-III-2", "unmatched", None),
    ...                        ("mr", "5", "cannot_tell", None)])
    >>> sorted(c.must_link), sorted(c.forced_unmatched_path), sorted(c.forced_unmatched_mr)
    ([(3, 'R-II-1')], ['L-III-2'], [])
    """
    from neckmatch.correlation.matching import Constraints

    must, un_mr, un_path = set(), set(), set()
    for kind, node, outcome, partner in settled:
        if outcome == "link" and partner is not None:
            must.add((int(node), partner) if kind == "mr" else (int(partner), node))
        elif outcome == "unmatched":
            (un_mr.add(int(node)) if kind == "mr" else un_path.add(node))
    return Constraints(must_link=frozenset(must), forced_unmatched_mr=frozenset(un_mr),
                       forced_unmatched_path=frozenset(un_path), source="review decisions")


def matches_frame(case_dir: str, tolerance_mm: float, auto_threshold: float | None, constraints: Any) -> pd.DataFrame:
    """The engine's ``matches`` table of the case under ``constraints`` (InputError on contradictions)."""
    from neckmatch.correlation.matching import match_case

    inp = case_inputs(case_dir, tolerance_mm)
    result = match_case(inp.case, inp.levels, specimen=inp.specimen, constraints=constraints,
                        auto_threshold=auto_threshold)
    matches = result.matches
    matches.attrs["weights"] = result.weights
    matches.attrs["registration"] = result.registration.table if result.registration is not None else None
    return matches


def _num(v: Any) -> Any:
    if v is None or v is pd.NA:
        return None
    if hasattr(v, "item"):
        v = v.item()
    return None if isinstance(v, float) and not math.isfinite(v) else v


def _rows(matches: pd.DataFrame) -> list[dict[str, Any]]:
    """The shown columns of ``matches`` as JSON-able records (missing values as None)."""
    rows: list[dict[str, Any]] = json.loads(matches[_SHOWN].to_json(orient="records", double_precision=15))
    return rows


def item_key(row: dict[str, Any]) -> str:
    """The review item a decision row belongs to: its MR node (``mr:<label>``), or its pathology node
    (``path:<id>``) where it has no MR node or is one partner of a merged label (each partner is its own item: a
    reviewer links one partner per item, and a label's partners are decided one by one).

    Examples
    --------
    >>> item_key({"mr_node": 4, "path_node": "R-II-1"}), item_key({"mr_node": None, "path_node": "R-II-1"})
    ('mr:4', 'path:R-II-1')
    >>> item_key({"mr_node": 4, "path_node": "R-II-1", "merged": True})
    'path:R-II-1'
    """
    if row.get("mr_node") is None or (row.get("merged") and row.get("path_node") is not None):
        return f"path:{row.get('path_node')}"
    return f"mr:{row['mr_node']}"


def _with_proposals(cands: dict[str, list[dict[str, Any]]], rows: list[dict[str, Any]], weights: pd.DataFrame,
                    unit_of: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    """``cands`` with the engine's proposed partner of every pair under review among its item's candidates (in
    the last place where the engine's weight does not rank it there; e.g. a second node of a merged label, which
    the assignment did not choose), so a reviewer can confirm what the engine proposes."""
    out = dict(cands)
    for r in rows:
        if r["decision"] != "review" or r["kind"] != "pair":
            continue
        key = item_key(r)
        partner = str(r["path_node"]) if key.startswith("mr:") else str(r["mr_node"])
        have = out.get(key, [])
        if any(c["partner"] == partner for c in have):
            continue
        unit = unit_of.get(str(r["path_node"]), str(r["path_node"]))
        w = float(weights.at[int(r["mr_node"]), unit]) if unit in weights.columns else float("nan")
        out[key] = [*have[: MAX_CANDIDATES - 1], {"partner": partner, "score": round(float(w), 3)
                                                  if math.isfinite(w) else None}]
    return out


def _candidates(weights: pd.DataFrame, members: dict[str, list[str]]) -> dict[str, list[dict[str, Any]]]:
    """Per item key, up to :data:`MAX_CANDIDATES` partners by the engine's pair weight (log-likelihood ratio);
    ``members`` maps a pathology unit to its nodes (a fragment's item gets its unit's candidates)."""
    out: dict[str, list[dict[str, Any]]] = {}
    w = weights.to_numpy(dtype=float)
    mrs = [str(int(m)) for m in weights.index]
    units = [str(u) for u in weights.columns]

    def tops(mat: np.ndarray, names: list[str]) -> list[list[dict[str, Any]]]:
        order = np.argsort(-mat, axis=1, kind="stable")[:, :MAX_CANDIDATES]
        vals = np.take_along_axis(mat, order, axis=1).round(3).tolist()
        return [[{"partner": names[k], "score": v} for k, v in zip(o, vs, strict=True) if math.isfinite(v)]
                for o, vs in zip(order.tolist(), vals, strict=True)]

    for mr, cands in zip(mrs, tops(w, units), strict=True):
        out[f"mr:{mr}"] = cands
    for unit, cands in zip(units, tops(w.T, mrs), strict=True):
        for node in members.get(unit, [unit]):
            out[f"path:{node}"] = cands
    return out


def _evidence(inp: CaseInputs) -> dict[str, Any]:
    """What a reviewer sees of every node (fixed per case): MR side, level, long axis, centre (RAS mm);
    pathology container, side, level, size, position in the container (cc, ap) and unit. Never the reads nor
    the pathology status."""
    lv = inp.levels
    xyz = lv[["x", "y", "z"]].to_numpy(dtype=float).round(2).tolist()
    mr = {str(int(n)): {"side": str(s), "level": "" if pd.isna(lvl) else str(lvl), "long_mm": _num(float(la)),
                        "xyz": c}
          for n, s, lvl, la, c in zip(lv["node"], lv["side"], lv["level"], lv["long_axis_mm"], xyz, strict=True)}
    path = {p.node: {"container": p.container, "side": getattr(p.side, "value", str(p.side)),
                     "level": str(getattr(p.level, "value", p.level)), "size_mm": _num(p.size_mm),
                     "cc": _num(p.cc), "ap": _num(p.ap), "unit": p.fragment_of or p.node}
            for p in inp.case.path_nodes}
    members: dict[str, list[str]] = {}
    for node, ev in path.items():
        members.setdefault(ev["unit"], []).append(node)
    return {"mr": mr, "path": path, "members": members}


def solve(case_dir: str, tolerance_mm: float, auto_threshold: float | None,
          settled: list[tuple[str, str, str, str | None]]) -> dict[str, Any]:
    """Solve the case with the settled items' constraints; the JSON-able solution the service stores.

    Returns
    -------
    dict
        ``rows`` (decisions, :data:`_SHOWN` columns), ``review`` (item keys whose decision is ``review``),
        ``candidates`` (item key -> [{partner, score}]), ``mr`` / ``path`` (node -> evidence a reviewer sees).
    """
    inp = case_inputs(case_dir, tolerance_mm)
    matches = matches_frame(case_dir, tolerance_mm, auto_threshold, build_constraints(settled))
    rows = _rows(matches)
    review: list[str] = []
    for r in rows:
        if r["decision"] != "review":
            continue
        key = item_key(r)
        if key not in review:
            review.append(key)
    ev = inp.evidence
    weights = matches.attrs["weights"]
    unit_of = {node: e["unit"] for node, e in ev["path"].items()}
    cands = _with_proposals(_candidates(weights, ev["members"]), rows, weights, unit_of)
    return {"rows": rows, "review": review, "candidates": cands,
            "mr": ev["mr"], "path": ev["path"],
            "specimen": _specimen_rows(inp.case, matches.attrs.get("registration"))}


def _specimen_rows(case: Any, table: pd.DataFrame | None) -> list[dict[str, Any]]:
    """The specimen nodes registered into patient space (``specimen_registration.csv`` rows: image, specimen
    node, the MR node it was registered to, its confidence, RAS mm centre, residual) with ``path_nodes``, the
    pathology nodes the pathologist linked to it. Empty without a ``specimen`` block. Never a status."""
    if table is None or case.specimen is None:
        return []
    linked: dict[tuple[str, int], list[str]] = {}
    for link in case.specimen.links:
        linked.setdefault((link.image, int(link.specimen_node)), []).append(link.path_node)
    return [{"image": str(r["image"]), "specimen_node": int(r["specimen_node"]),
             "mr_node": None if pd.isna(r["mr_node"]) else int(r["mr_node"]),
             "confidence": _num(None if pd.isna(r["confidence"]) else round(float(r["confidence"]), 3)),
             "xyz": [float(r["x"]), float(r["y"]), float(r["z"])],
             "residual_mm": None if pd.isna(r["residual_mm"]) else round(float(r["residual_mm"]), 1),
             "path_nodes": sorted(linked.get((str(r["image"]), int(r["specimen_node"])), []))}
            for r in table.to_dict("records")]


def truth_with_provenance(case_dir: str, tolerance_mm: float, auto_threshold: float | None,
                          settled: list[tuple[str, str, str, str | None, str]]) -> dict[str, pd.DataFrame]:
    """The case's truth tables under the settled constraints; ``truth_nodes`` gains ``provenance``.

    ``settled`` rows are ``(kind, node, outcome, partner, provenance)``. A node row's provenance is that of the
    settled item naming its MR node or one of its pathology nodes (``agreed`` / ``adjudicated``), else ``auto``
    for an automatic decision and ``review`` for one nobody settled.
    """
    from neckmatch.correlation.truth import truth_tables

    inp = case_inputs(case_dir, tolerance_mm)
    matches = matches_frame(case_dir, tolerance_mm, auto_threshold, build_constraints([s[:4] for s in settled]))
    matches.attrs.clear()
    tables = truth_tables(inp.case, inp.levels, matches)
    by_mr = {s[1]: s[4] for s in settled if s[0] == "mr" and s[2] != "cannot_tell"}
    by_path = {s[1]: s[4] for s in settled if s[0] == "path" and s[2] != "cannot_tell"}
    by_path |= {s[3]: s[4] for s in settled if s[0] == "mr" and s[2] == "link" and s[3]}
    by_mr |= {s[3]: s[4] for s in settled if s[0] == "path" and s[2] == "link" and s[3]}
    prov = []
    for mr, pn, dec in zip(tables["nodes"]["mr_node"], tables["nodes"]["path_node"], tables["nodes"]["decision"],
                           strict=True):
        found = by_mr.get(str(int(mr))) if pd.notna(mr) else None
        for p in (str(pn).split(";") if isinstance(pn, str) and pn else []):
            found = found or by_path.get(p)
        prov.append(found or ("auto" if dec == "auto" else "review"))
    tables["nodes"] = tables["nodes"].assign(provenance=prov)
    return tables
