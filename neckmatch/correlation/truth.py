"""Truth tables: the MR reading against histopathology per node, level, side and patient.

The node table follows the match decisions (``matches.csv``); the level, side and patient tables need no
node-to-node matching at all (level-to-level correlation), so count-only pathology reports give them too.
Columns are documented in ``docs/outputs.md``.

Conventions
-----------
- MR call of a node: the readers' consensus, ``True`` if at least half of the readers that gave a
  ``malignant`` verdict call it malignant (ties count malignant); missing without reads.
- Node reference: the status of the matched pathology node (positive if any fragment is positive).
  ``level-only`` nodes (no node-to-node partner, but their imaging level lies in a dissected container) have no
  node-level reference: ``path_status`` and ``outcome`` stay empty and ``container_status`` holds the
  container's status.
- Level units are the pathology containers per side (merged containers stay merged, e.g. ``III+IV``), plus
  dissected surgical levels without any container (no nodes found, reference negative; the uncovered
  sublevels of a partly covered ``I``/``II``/``V``), plus imaged levels that were not dissected
  (``dissected=False``, no reference). A central-level node (``IA``, ``VI``, ``VII``) without a unit on its own
  side joins the other side's dissected unit (one container holds both sides' nodes, as in matching).
- Side and patient MR calls cover the dissected levels only where anything was dissected (the territory the
  reference verified); an undissected side's call covers all its levels and has no reference.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from neckmatch.model import (
    MIDLINE_LEVELS,
    Case,
    ContainerLevel,
    Level,
    MatchKind,
    Outcome,
    Side,
    Status,
    SurgicalLevel,
    pn_status,
)

__all__ = [
    "mr_calls",
    "outcome",
    "truth_tables",
    "truth_nodes",
    "truth_reads",
    "truth_levels",
    "truth_sides",
    "truth_patient",
    "NODE_COLUMNS",
    "READ_COLUMNS",
    "LEVEL_COLUMNS",
    "SIDE_COLUMNS",
    "PATIENT_COLUMNS",
]

NODE_COLUMNS = [
    "case_id", "mr_node", "path_node", "side", "level", "container", "container_status",
    "short_axis_mm", "long_axis_mm", "path_size_mm", "mr_call", "mr_score", "path_status", "outcome",
    "match_kind", "confidence", "decision", "decided_by",
]  # fmt: skip
READ_COLUMNS = [
    "case_id", "mr_node", "reader", "score", "malignant", "path_status", "match_kind", "decision", "level",
    "side", "short_axis_mm",
]  # fmt: skip
LEVEL_COLUMNS = [
    "case_id", "side", "level", "container", "dissected", "mr_nodes", "mr_positive_nodes", "mr_call",
    "path_nodes", "path_positive_nodes", "path_status", "outcome",
]  # fmt: skip
SIDE_COLUMNS = ["case_id", "side", "mr_call", "path_status", "outcome", "dissected"]
PATIENT_COLUMNS = ["case_id", "mr_call", "path_status", "outcome", "pN", "reference"]


def outcome(call: object, status: object) -> str | None:
    """The 2x2 cell of one unit: ``TP`` / ``FP`` / ``FN`` / ``TN``, or None where either side is missing.

    Parameters
    ----------
    call : bool or None
        MR call (True = malignant).
    status : str or None
        Reference status, ``positive`` / ``negative``.

    Examples
    --------
    >>> outcome(True, "positive"), outcome(True, "negative"), outcome(False, "positive"), outcome(False, "negative")
    ('TP', 'FP', 'FN', 'TN')
    >>> outcome(None, "positive") is None, outcome(True, None) is None
    (True, True)
    """
    if _missing(call) or _missing(status):
        return None
    pos = Status(str(status)) is Status.POSITIVE
    if bool(call):
        return (Outcome.TP if pos else Outcome.FP).value
    return (Outcome.FN if pos else Outcome.TN).value


def mr_calls(case: Case) -> pd.DataFrame:
    """Consensus MR call and median score per MR node that has reads.

    Returns
    -------
    DataFrame indexed by ``node`` (int) with ``mr_call`` (nullable boolean; True where >= half of the readers
    with a verdict say malignant) and ``mr_score`` (float, median reader score; NaN without scores).

    Examples
    --------
    >>> import numpy as np
    >>> from neckmatch.model import Case, LabelMap, Read
    >>> lm = LabelMap(np.zeros((2, 2, 2), dtype=np.int16), np.eye(4))
    >>> reads = (Read(1, "A", 4, True), Read(1, "B", 2, False), Read(2, "A", 1, False))
    >>> c = Case("P1", "R", {}, lm, None, (), (), reads)
    >>> mr_calls(c)["mr_call"].tolist()
    [True, False]
    """
    rows = [(r.node, r.score, r.malignant) for r in case.reads]
    frame = pd.DataFrame(rows, columns=["node", "score", "malignant"])
    if frame.empty:
        return pd.DataFrame({"mr_call": pd.Series([], dtype="boolean"), "mr_score": pd.Series([], dtype=float)})
    frame["node"] = frame["node"].astype(np.int64)
    frame["score"] = pd.to_numeric(frame["score"], errors="coerce")
    verdict = frame["malignant"].astype("boolean").astype("Float64")
    grouped = verdict.groupby(frame["node"])
    frac = grouped.mean()
    call = (frac >= 0.5).astype("boolean")
    call[frac.isna()] = pd.NA
    score = frame.groupby("node")["score"].median()
    return pd.DataFrame({"mr_call": call, "mr_score": score.astype(float)}).rename_axis("node")


@dataclass(frozen=True)
class _Unit:
    """One row of the level table: a side and a container level (or an undissected imaging level)."""

    side: str
    level: str
    imaging: frozenset[Level]
    containers: tuple[str, ...]
    dissected: bool
    path_nodes: int | None
    path_positive: int | None


def _dissected_units(case: Case) -> list[_Unit]:
    """Units of the dissected territory: containers grouped by side and level, then empty dissected levels."""
    groups: dict[tuple[str, str], list] = {}
    for c in case.containers:
        groups.setdefault((c.side.value, str(c.level)), []).append(c)
    units = [
        _Unit(side, level, ContainerLevel.parse(level).imaging_levels(), tuple(c.container for c in cs), True,
              sum(c.nodes_examined for c in cs), sum(c.nodes_positive for c in cs))
        for (side, level), cs in groups.items()
    ]  # fmt: skip
    for side, surgical in case.dissected.items():
        covered = frozenset().union(*[u.imaging for u in units if u.side == side.value])
        for s in sorted(surgical, key=lambda s: list(SurgicalLevel).index(s)):
            # a split level partly covered by containers (II dissected, only IIA sent): its empty sublevels
            for part in (s,) if not _covered(s, covered) else _SUBLEVELS.get(s, ()):
                if not _covered(part, covered):
                    imaging = ContainerLevel((part,)).imaging_levels()
                    units.append(_Unit(side.value, part.value, imaging, (), True, 0, 0))
                    covered = covered | imaging
    return units


_SUBLEVELS = {SurgicalLevel.I: (SurgicalLevel.IA, SurgicalLevel.IB),
              SurgicalLevel.II: (SurgicalLevel.IIA, SurgicalLevel.IIB),
              SurgicalLevel.V: (SurgicalLevel.VA, SurgicalLevel.VB)}  # fmt: skip


def _covered(level: SurgicalLevel, covered: frozenset[Level]) -> bool:
    """True where units already hold any imaging level of ``level`` (SC, shared by IV and V, does not count)."""
    return bool((ContainerLevel((level,)).imaging_levels() - {Level.SC}) & covered)


def _unit_of(units: list[_Unit], side: str, level: str, runner_up: str = "") -> int | None:
    """Index of the unit holding imaging ``level`` on ``side``; a runner-up inside a candidate breaks ties."""
    if not level:
        return None
    cands = [i for i, u in enumerate(units) if u.side == side and Level(level) in u.imaging]
    if not cands and Level(level) in MIDLINE_LEVELS:
        cands = [i for i, u in enumerate(units) if u.dissected and Level(level) in u.imaging]
    if len(cands) > 1 and runner_up:
        preferred = [i for i in cands if runner_up in {lv.value for lv in units[i].imaging}]
        cands = preferred or cands
    return cands[0] if cands else None


def _level_units(case: Case, levels: pd.DataFrame) -> tuple[list[_Unit], list[int | None]]:
    """All level units and, per row of ``levels``, the index of the unit that holds that MR node (or None)."""
    units = _dissected_units(case)
    side, level, runner = _col(levels, "side"), _col(levels, "level"), _col(levels, "runner_up")
    owner: list[int | None] = []
    for sd, lv, ru in zip(side, level, runner, strict=True):
        idx = _unit_of(units, sd, lv, ru)
        if idx is None and lv and lv in Level.__members__:
            units.append(_Unit(sd, lv, frozenset({Level(lv)}), (), False, None, None))
            idx = len(units) - 1
        owner.append(idx)
    return units, owner


def _col(frame: pd.DataFrame, name: str) -> list[str]:
    """A string column with missing values as ``""`` (levels.csv read back has NaN for empty levels)."""
    if name not in frame:
        return [""] * len(frame)
    return ["" if pd.isna(v) else str(v) for v in frame[name]]


def _container_status(case: Case) -> dict[str, str]:
    return {c.container: (Status.POSITIVE if c.positive else Status.NEGATIVE).value for c in case.containers}


def _normalise_matches(case: Case, levels: pd.DataFrame, matches: pd.DataFrame) -> pd.DataFrame:
    """``mr_node`` as nullable int and ``path_node`` as str/None; unknown ids raise ValueError."""
    m = matches.copy()
    m["mr_node"] = pd.to_numeric(m["mr_node"].replace("", np.nan), errors="coerce").astype("Int64")
    m["path_node"] = [None if pd.isna(v) or str(v) == "" else str(v) for v in m["path_node"]]
    known_path = {p.node for p in case.path_nodes}
    unknown = sorted({p for p in m["path_node"] if not pd.isna(p)} - known_path)
    if unknown:
        raise ValueError(f"matches name pathology node '{unknown[0]}', which the case does not have")
    known_mr = set(levels["node"].astype(np.int64))
    unknown_mr = sorted({int(v) for v in m["mr_node"].dropna()} - known_mr)
    if unknown_mr:
        raise ValueError(f"matches name MR node {unknown_mr[0]}, which the levels table does not have")
    return m


def truth_nodes(case: Case, levels: pd.DataFrame, matches: pd.DataFrame) -> pd.DataFrame:
    """Node-to-node truth table: one row per MR node (``levels`` order), then per unmatched pathology node.

    Parameters
    ----------
    case : Case
    levels : DataFrame
        ``levels.csv`` columns (``node, side, level, runner_up, short_axis_mm, long_axis_mm`` are used).
    matches : DataFrame
        ``matches.csv`` columns (``mr_node, path_node, confidence, decision, kind``).

    Returns
    -------
    DataFrame with :data:`NODE_COLUMNS`; ``match_kind`` is ``matched`` / ``level-only`` / ``unmatched``.
    """
    m = _normalise_matches(case, levels, matches)
    calls = mr_calls(case)
    paths = {p.node: p for p in case.path_nodes}
    cstatus = _container_status(case)
    units, owner = _level_units(case, levels)
    pairs = m[m["mr_node"].notna() & m["path_node"].notna()]
    mr_only = m[m["mr_node"].notna() & m["path_node"].isna()]
    partners_of: dict[int, list[str]] = {}
    decided_of: dict[int, dict[str, str]] = {}  # the partners an auto or person decision holds, and who decided
    for mr, pn, who in zip(pairs["mr_node"], pairs["path_node"], _provenance(pairs), strict=True):
        partners_of.setdefault(int(mr), []).append(str(pn))
        if who in (_AUTO, _PERSON):
            decided_of.setdefault(int(mr), {})[str(pn)] = who
    pair_decision = _decisions_by(pairs, "mr_node", int)
    mr_only_decision = _decisions_by(mr_only, "mr_node", int)
    path_decision = _decisions_by(m[m["mr_node"].isna()], "path_node", str)
    rows = []
    for i, r in enumerate(levels.to_dict("records")):
        node = int(r["node"])
        row = _mr_row(case.case_id, node, r, calls)
        if node in partners_of:
            pn = [paths[p] for p in partners_of[node]]
            cont = sorted({p.container for p in pn})
            row |= {
                "path_node": ";".join(p.node for p in pn),
                "container": ";".join(cont),
                "container_status": _any_positive(cstatus[c] for c in cont if c in cstatus),
                "path_size_mm": max((p.size_mm for p in pn if p.size_mm is not None), default=np.nan),
                "path_status": _any_positive(p.status.value for p in pn),
                "match_kind": MatchKind.MATCHED.value,
            }
            row |= pair_decision[node]
            if row["decided_by"] == _REVIEW:  # proposed, not decided: not a node-level fact until reviewed
                row["match_kind"] = MatchKind.UNDECIDED.value
                # a merged label with a decided positive partner is positive whatever its partner under review
                # turns out to be: a node-level fact, decided by whoever decided that positive partner
                deciders = {who for p, who in decided_of.get(node, {}).items()
                            if paths[p].status.value == Status.POSITIVE.value}
                if deciders:
                    row["match_kind"] = MatchKind.MATCHED.value
                    row["decided_by"] = _PERSON if _PERSON in deciders else _AUTO
        else:
            own = owner[i]
            unit = units[own] if own is not None else None
            if unit is not None and unit.dissected and unit.containers:
                row |= {
                    "container": ";".join(unit.containers),
                    "container_status": _any_positive(cstatus[c] for c in unit.containers),
                    "match_kind": MatchKind.LEVEL_ONLY.value,
                }
            row |= mr_only_decision.get(node, _NO_DECISION)
        trusted = row["match_kind"] == MatchKind.MATCHED.value
        row["outcome"] = outcome(row["mr_call"], row["path_status"]) if trusted else None
        rows.append(row)
    matched_paths = {p for p in pairs["path_node"]}
    for p in case.path_nodes:
        if p.node not in matched_paths:
            rows.append(_path_row(case.case_id, p, cstatus) | path_decision.get(p.node, _NO_DECISION))
    return _with_path_extras(_nodes_frame(rows), case)


def _with_path_extras(frame: pd.DataFrame, case: Case) -> pd.DataFrame:
    """Append every other column of the pathology report (``PathNode.extra``: ``deposit_mm``, ``ene``, ``slide``
    ...) as ``path_<column>`` after :data:`NODE_COLUMNS`, so the report's own fields reach the truth table
    (shared/spec/case-format.md: carried through). Fragments matched to one MR node are joined with ``;``."""
    names = list(dict.fromkeys(k for p in case.path_nodes for k in p.extra))
    if not names:
        return frame
    by_id = {p.node: p for p in case.path_nodes}
    ids = [[] if _missing(v) else str(v).split(";") for v in frame["path_node"]]
    for name in names:
        values = [[by_id[i].extra.get(name) for i in row if i in by_id] for row in ids]
        frame[f"path_{name}"] = [";".join(_str(v) for v in vals) if any(not _missing(v) for v in vals) else None
                                 for vals in values]  # fmt: skip
    return frame


def _mr_row(case_id: str, node: int, r: dict, calls: pd.DataFrame) -> dict:
    call = calls.at[node, "mr_call"] if node in calls.index else pd.NA
    score = calls.at[node, "mr_score"] if node in calls.index else np.nan
    return {
        "case_id": case_id, "mr_node": node, "path_node": None, "side": _str(r.get("side")),
        "level": _str(r.get("level")), "container": None, "container_status": None,
        "short_axis_mm": r.get("short_axis_mm", np.nan), "long_axis_mm": r.get("long_axis_mm", np.nan),
        "path_size_mm": np.nan, "mr_call": None if pd.isna(call) else bool(call), "mr_score": score,
        "path_status": None, "match_kind": MatchKind.UNMATCHED.value, "confidence": np.nan, "decision": None,
        "decided_by": None,
    }  # fmt: skip


def _path_row(case_id: str, p, cstatus: dict[str, str]) -> dict:
    return {
        "case_id": case_id, "mr_node": pd.NA, "path_node": p.node, "side": p.side.value, "level": str(p.level),
        "container": p.container, "container_status": cstatus.get(p.container), "short_axis_mm": np.nan,
        "long_axis_mm": np.nan, "path_size_mm": np.nan if p.size_mm is None else p.size_mm, "mr_call": None,
        "mr_score": np.nan, "path_status": p.status.value, "outcome": None,
        "match_kind": MatchKind.UNMATCHED.value, "confidence": np.nan, "decision": None, "decided_by": None,
    }  # fmt: skip


_NO_DECISION: dict = {"confidence": np.nan, "decision": None, "decided_by": None}
_REVIEW, _PERSON, _AUTO = "review", "person", "auto"


def _provenance(rows: pd.DataFrame) -> list[str | None]:
    """Who decided each match row: ``person`` (a constraint), ``auto`` or ``review`` (awaiting a person).

    ``person`` where ``constrained`` is true or ``decided_by`` says ``person`` (a constrained decision is a
    person's whatever its confidence); otherwise the row's ``decision`` (``auto`` / ``review``), so a
    ``decided_by`` column never outlives a re-decision; ``decided_by`` alone where there is no ``decision``.
    """
    n = len(rows)
    blank = pd.Series([None] * n, index=rows.index)
    decs = rows["decision"] if "decision" in rows else blank
    cons = rows["constrained"] if "constrained" in rows else blank
    given = rows["decided_by"] if "decided_by" in rows else blank
    out: list[str | None] = []
    for d, c, g in zip(decs, cons, given, strict=True):
        if str(c).strip().lower() == "true" or str(g) == _PERSON:
            out.append(_PERSON)
        elif not _missing(d) and str(d) != "":
            out.append(str(d))
        else:
            out.append(None if _missing(g) or str(g) == "" else str(g))
    return out


def _decisions_by(rows: pd.DataFrame, key: str, kind: type) -> dict:
    """Per value of ``key`` (converted with ``kind``), the confidence (lowest), decision (``review`` if any, else
    the first given) and provenance ``decided_by`` (``review`` if any row awaits review, else ``person`` if a
    person decided any, else ``auto``) of its match rows, in one pass over ``rows``."""
    n = len(rows)
    confs = pd.to_numeric(rows["confidence"], errors="coerce") if "confidence" in rows else pd.Series([np.nan] * n)
    decs = rows["decision"] if "decision" in rows else pd.Series([None] * n)
    rank = {None: 0, _AUTO: 1, _PERSON: 2, _REVIEW: 3}
    out: dict = {}
    for k, c, d, by in zip(rows[key], confs, decs, _provenance(rows), strict=True):
        got = out.setdefault(kind(k), {"confidence": np.nan, "decision": None, "decided_by": None})
        if not pd.isna(c) and not c >= got["confidence"]:  # NaN-aware minimum
            got["confidence"] = float(c)
        if not pd.isna(d) and (got["decision"] is None or str(d) == "review"):
            got["decision"] = str(d)
        if rank.get(by, 3) > rank.get(got["decided_by"], 0):
            got["decided_by"] = by
    return out


def _any_positive(statuses: Iterable[str]) -> str | None:
    vals = [s for s in statuses if not _missing(s)]
    if not vals:
        return None
    return Status.POSITIVE.value if Status.POSITIVE.value in vals else Status.NEGATIVE.value


def _missing(v: object) -> bool:
    """True for None, NaN and pd.NA (pandas turns None into NaN in object columns)."""
    return v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v))


def _str(v: object) -> str:
    return "" if v is None or (not isinstance(v, str) and pd.isna(v)) else str(v)


def _nodes_frame(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=NODE_COLUMNS)
    frame["mr_node"] = frame["mr_node"].astype("Int64")
    frame["mr_call"] = frame["mr_call"].astype("boolean")
    for col in ("short_axis_mm", "long_axis_mm", "path_size_mm", "mr_score", "confidence"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype(float)
    return frame


def truth_reads(case: Case, nodes: pd.DataFrame) -> pd.DataFrame:
    """One row per MR node and reader, with the node's reference and match (for per-reader ROC and agreement).

    Parameters
    ----------
    case : Case
    nodes : DataFrame
        The node truth table from :func:`truth_nodes`.

    Returns
    -------
    DataFrame with :data:`READ_COLUMNS`, sorted by node then reader.
    """
    rows = [(r.node, r.reader, r.score, r.malignant) for r in case.reads]
    reads = pd.DataFrame(rows, columns=["mr_node", "reader", "score", "malignant"])
    reads["mr_node"] = reads["mr_node"].astype("Int64")
    reads["score"] = pd.to_numeric(reads["score"], errors="coerce").astype(float)
    reads["malignant"] = reads["malignant"].astype("boolean")
    info = nodes.loc[nodes["mr_node"].notna(), ["mr_node", "path_status", "match_kind", "decision", "level", "side",
                                                "short_axis_mm"]]  # fmt: skip
    out = reads.merge(info, on="mr_node", how="left")
    out.insert(0, "case_id", case.case_id)
    return out[READ_COLUMNS].sort_values(["mr_node", "reader"], kind="stable").reset_index(drop=True)


def _any_call(calls: Iterable[object], has_reads: bool) -> bool | None:
    """True if any call is True; None where the case has no reads at all (nodes without reads count False)."""
    if not has_reads:
        return None
    return any(not _missing(c) and bool(c) for c in calls)


def truth_levels(case: Case, levels: pd.DataFrame) -> pd.DataFrame:
    """Level-to-level truth table: one row per side and container level, then imaged-but-undissected levels.

    Returns
    -------
    DataFrame with :data:`LEVEL_COLUMNS`. ``mr_call`` is True if any MR node in the unit is called malignant
    (empty without reads); ``path_status`` is positive if the unit holds >= 1 positive node (empty where not
    dissected).
    """
    units, owner = _level_units(case, levels)
    calls = mr_calls(case)
    has_reads = len(calls) > 0
    node_call = [calls["mr_call"].get(int(n), pd.NA) if has_reads else pd.NA for n in levels["node"]]
    rows = []
    for k, u in enumerate(units):
        inside = [c for c, o in zip(node_call, owner, strict=True) if o == k]
        call = _any_call(inside, has_reads)
        status = None
        if u.dissected:
            status = (Status.POSITIVE if (u.path_positive or 0) > 0 else Status.NEGATIVE).value
        rows.append({
            "case_id": case.case_id, "side": u.side, "level": u.level, "container": ";".join(u.containers) or None,
            "dissected": u.dissected, "mr_nodes": len(inside),
            "mr_positive_nodes": sum(bool(c) for c in inside if c is not pd.NA) if has_reads else pd.NA,
            "mr_call": call, "path_nodes": pd.NA if u.path_nodes is None else u.path_nodes,
            "path_positive_nodes": pd.NA if u.path_positive is None else u.path_positive,
            "path_status": status, "outcome": outcome(call, status),
        })  # fmt: skip
    frame = pd.DataFrame(rows, columns=LEVEL_COLUMNS)
    order = [(u.side != "R", not u.dissected, min(list(Level).index(lv) for lv in u.imaging)) for u in units]
    frame = frame.iloc[sorted(range(len(units)), key=order.__getitem__)].reset_index(drop=True)
    for col in ("mr_positive_nodes", "path_nodes", "path_positive_nodes", "mr_nodes"):
        frame[col] = frame[col].astype("Int64")
    frame["mr_call"] = frame["mr_call"].astype("boolean")
    frame["dissected"] = frame["dissected"].astype(bool)
    return frame


def _roll_up(case_id: str, units: pd.DataFrame, has_reads: bool) -> dict:
    """MR call and reference of a group of level rows: over the dissected rows where there are any."""
    dissected = units[units["dissected"]]
    scope = dissected if len(dissected) else units
    call = _any_call(scope["mr_call"].tolist(), has_reads)
    status = _any_positive(dissected["path_status"].tolist()) if len(dissected) else None
    return {"case_id": case_id, "mr_call": call, "path_status": status, "outcome": outcome(call, status),
            "dissected": bool(len(dissected))}  # fmt: skip


def truth_sides(case: Case, level_table: pd.DataFrame) -> pd.DataFrame:
    """Per-side truth table (rows ``R``, ``L``) rolled up from the level table.

    A side is dissected if the case says so or it has containers; its MR call covers the dissected levels only.
    """
    has_reads = len(case.reads) > 0
    rows = []
    for side in (Side.R, Side.L):
        units = level_table[level_table["side"] == side.value]
        row = _roll_up(case.case_id, units, has_reads)
        row["dissected"] = row["dissected"] or side in case.dissected
        if row["dissected"] and row["path_status"] is None:  # dissected but nothing recorded: no node found
            row["path_status"] = Status.NEGATIVE.value
            row["outcome"] = outcome(row["mr_call"], row["path_status"])
        rows.append({"side": side.value} | row)
    frame = pd.DataFrame(rows)[SIDE_COLUMNS]
    frame["mr_call"] = frame["mr_call"].astype("boolean")
    return frame


def truth_patient(case: Case, level_table: pd.DataFrame) -> pd.DataFrame:
    """One-row patient truth table with one patient-level reference.

    The reference (``path_status``; ``reference`` says where it came from) is the case's pathological N category
    (case.json ``pN``: ``pN0`` negative, ``pN1``-``pN3`` positive; ``reference=pN``) where given; otherwise from the
    dissected levels (``reference=levels``): positive if any is positive, negative only when levels were dissected
    and every one of them has a reference and is negative; otherwise empty (``reference`` empty: unknown, left out
    of the patient-level statistics and counted in the STARD flow). The MR call covers the dissected levels.
    """
    row = _roll_up(case.case_id, level_table, len(case.reads) > 0)
    pn = case.extra.get("pN")
    by_pn = pn_status(pn)
    row["pN"] = None if _missing(pn) else str(pn)
    if by_pn is not None:
        row["path_status"], row["reference"] = by_pn.value, "pN"
    else:
        row["path_status"] = _levels_reference(level_table)
        row["reference"] = "levels" if row["path_status"] is not None else None
    row["outcome"] = outcome(row["mr_call"], row["path_status"])
    frame = pd.DataFrame([row])[PATIENT_COLUMNS]
    frame["mr_call"] = frame["mr_call"].astype("boolean")
    return frame


def _levels_reference(level_table: pd.DataFrame) -> str | None:
    """Positive if any dissected level is positive; negative if levels were dissected and all are known negative."""
    dissected = level_table[level_table["dissected"].astype(bool)] if len(level_table) else level_table
    statuses = [None if _missing(v) else str(v) for v in dissected["path_status"]] if len(dissected) else []
    if Status.POSITIVE.value in statuses:
        return Status.POSITIVE.value
    if statuses and all(v == Status.NEGATIVE.value for v in statuses):
        return Status.NEGATIVE.value
    return None


def truth_tables(case: Case, levels: pd.DataFrame, matches: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """All truth tables of one case.

    Parameters
    ----------
    case : Case
    levels : DataFrame
        One row per MR node, ``levels.csv`` columns.
    matches : DataFrame
        One row per match decision, ``matches.csv`` columns.

    Returns
    -------
    dict with keys ``nodes``, ``reads``, ``levels``, ``sides``, ``patient`` (columns in ``docs/outputs.md``).
    """
    nodes = truth_nodes(case, levels, matches)
    lv = truth_levels(case, levels)
    return {
        "nodes": nodes,
        "reads": truth_reads(case, nodes),
        "levels": lv,
        "sides": truth_sides(case, lv),
        "patient": truth_patient(case, lv),
    }
