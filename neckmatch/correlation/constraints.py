"""People's matching decisions from a CSV file, checked against the case, as solver constraints.

The file has the columns ``mr_node,path_node,action`` (more columns, e.g. ``reviewer`` or ``note``, are allowed
and ignored). ``action`` is one of

- ``must_link``: the MR node and the pathology node are the same node (both ids given);
- ``cannot_link``: they are not the same node (both ids given);
- ``unmatched``: the one node given (the other id empty) has no counterpart.

Rows are numbered from 1, the header not counted; every error names the file, the row and the value.

A ``.json`` file holds the same rows as ``{"constraints": [{"mr_node": 3, "path_node": "R-II-1",
"action": "must_link"}, ...]}`` (other keys, e.g. ``provenance``, are ignored); ``neckmatch review export``
writes this form.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neckmatch.errors import InputError
from neckmatch.model import Case

__all__ = ["ACTIONS", "ConstraintRows", "parse_constraints", "read_constraints"]

ACTIONS = ("must_link", "cannot_link", "unmatched")
MAX_ROWS = 10000
MAX_PARTNERS = 2  # an MR label holds at most two touching nodes (the matcher's second slot of a merged label)
MIDLINE_MM = 5.0  # an MR node this close to the midline may lie on either side
_COLUMNS = ("mr_node", "path_node", "action")


@dataclass
class ConstraintRows:
    """Parsed constraints with the row each came from (for error messages), before checking against a case."""

    must_link: dict[tuple[int, str], int] = field(default_factory=dict)
    cannot_link: dict[tuple[int, str], int] = field(default_factory=dict)
    unmatched_mr: dict[int, int] = field(default_factory=dict)
    unmatched_path: dict[str, int] = field(default_factory=dict)


def _mr_id(path: Path, row: int, text: str) -> int:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value.is_integer() or value <= 0:
        raise InputError(path, f"row {row}: mr_node", f"must be a positive integer label, got '{text}'")
    return int(value)


def _parse_row(path: Path, row: int, rec: dict[str, str], out: ConstraintRows) -> None:
    mr, pn = (rec.get("mr_node") or "").strip(), (rec.get("path_node") or "").strip()
    raw = (rec.get("action") or "").strip()
    action = raw.lower().replace("-", "_").replace(" ", "_")
    if action not in ACTIONS:
        raise InputError(path, f"row {row}: action", f"must be one of {', '.join(ACTIONS)}, got '{raw}'")
    if action == "unmatched":
        if bool(mr) == bool(pn):
            raise InputError(path, f"row {row}", f"'unmatched' needs exactly one of mr_node / path_node, got "
                             f"mr_node='{mr}', path_node='{pn}'")  # fmt: skip
        if mr:
            out.unmatched_mr.setdefault(_mr_id(path, row, mr), row)
        else:
            out.unmatched_path.setdefault(pn, row)
        return
    if not mr or not pn:
        raise InputError(path, f"row {row}", f"'{action}' needs both mr_node and path_node, got "
                         f"mr_node='{mr}', path_node='{pn}'")  # fmt: skip
    target = out.must_link if action == "must_link" else out.cannot_link
    target.setdefault((_mr_id(path, row, mr), pn), row)


def _parse_json(path: Path) -> ConstraintRows:
    """The rows of a ``.json`` constraints file (``{"constraints": [{mr_node, path_node, action}, ...]}``)."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(path, "", f"not valid JSON: {exc}") from None
    rows = doc.get("constraints") if isinstance(doc, dict) else None
    if not isinstance(rows, list):
        raise InputError(path, "constraints", "must be a list of {mr_node, path_node, action} objects")
    out = ConstraintRows()
    for row, rec in enumerate(rows, start=1):
        if not isinstance(rec, dict):
            raise InputError(path, f"row {row}", f"must be an object, got {rec!r}")
        text = {k: "" if rec.get(k) is None else str(rec.get(k)) for k in _COLUMNS}
        _parse_row(path, row, text, out)
    return out


def parse_constraints(path: str | Path) -> ConstraintRows:
    """Read and parse a constraints CSV or JSON file (syntax only; see :func:`read_constraints` for the case
    checks)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "", "constraints file not found")
    if path.suffix.lower() == ".json":
        return _parse_json(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            return _parse_rows(path, csv.DictReader(fh))
    except UnicodeDecodeError as exc:
        raise InputError(path, "", f"not a UTF-8 text file: {exc}") from None
    except csv.Error as exc:
        raise InputError(path, "", f"not a readable CSV table: {exc}") from None


def _parse_rows(path: Path, reader: csv.DictReader[str]) -> ConstraintRows:
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [c for c in _COLUMNS if c not in header]
    if missing:
        got = ",".join(header) or "(empty)"
        raise InputError(path, "header", f"missing column(s) {', '.join(missing)}; got {got}")
    reader.fieldnames = header
    out = ConstraintRows()
    for row, rec in enumerate(reader, start=1):
        if row > MAX_ROWS:
            raise InputError(path, f"row {row}", f"at most {MAX_ROWS} constraint rows are accepted")
        if not any((v or "").strip() for v in rec.values() if isinstance(v, str)):
            continue  # blank line
        _parse_row(path, row, rec, out)
    return out


def _check_case(path: Path, rows: ConstraintRows, case: Case) -> None:
    """Every id must exist in the case (MR label values, pathology node ids)."""
    labels = {int(v) for v in case.label_map.labels()}
    paths = {p.node for p in case.path_nodes}
    mr_refs = [(mr, r) for (mr, _), r in (rows.must_link | rows.cannot_link).items()] + list(rows.unmatched_mr.items())
    path_refs = [(pn, r) for (_, pn), r in (rows.must_link | rows.cannot_link).items()]
    path_refs += list(rows.unmatched_path.items())
    for mr, r in sorted(mr_refs, key=lambda t: t[1]):
        if mr not in labels:
            raise InputError(path, f"row {r}: mr_node", f"case '{case.case_id}' has no MR node {mr}")
    for pn, r in sorted(path_refs, key=lambda t: t[1]):
        if pn not in paths:
            raise InputError(path, f"row {r}: path_node", f"case '{case.case_id}' has no pathology node '{pn}'")
    _check_partners(path, rows, case)
    _check_sides(path, rows, case)


def _check_partners(path: Path, rows: ConstraintRows, case: Case) -> None:
    """An MR node may be linked to pieces of at most :data:`MAX_PARTNERS` whole pathology nodes."""
    whole = {p.node: p.fragment_of or p.node for p in case.path_nodes}
    partners: dict[int, set[str]] = {}
    for (mr, pn), r in sorted(rows.must_link.items(), key=lambda t: t[1]):
        partners.setdefault(mr, set()).add(whole.get(pn, pn))
        if len(partners[mr]) > MAX_PARTNERS:
            raise InputError(path, f"row {r}", f"MR node {mr} is linked to {len(partners[mr])} different pathology "
                             f"nodes ({', '.join(sorted(partners[mr]))}); an MR node holds at most {MAX_PARTNERS}")


def _check_sides(path: Path, rows: ConstraintRows, case: Case) -> None:
    """No must_link across sides: the MR node's centroid side (from the midline landmarks) against the
    pathology node's side; midline levels (IA, VI, VII) and nodes within :data:`MIDLINE_MM` of the midline pass."""
    lms = case.landmarks
    needed = ("hyoid_body_inferior", "cricoid_arch_inferior", "manubrium_superior")
    if not rows.must_link or lms is None or any(n not in lms.points for n in needed):
        return
    from neckmatch.geometry.measure import label_voxels

    centroids = {k: v.mean(axis=0) for k, v in label_voxels(case.label_map).items()}
    by_id = {p.node: p for p in case.path_nodes}
    for (mr, pn), r in sorted(rows.must_link.items(), key=lambda t: t[1]):
        node, c = by_id[pn], centroids.get(mr)
        if c is None or str(node.level) in ("IA", "VI", "VII"):
            continue
        offset = float(c[0] - lms.x_mid(c[2]))
        mr_side = "R" if offset > 0 else "L"
        if abs(offset) > MIDLINE_MM and mr_side != node.side.value:
            raise InputError(path, f"row {r}", f"must_link across sides: MR node {mr} lies on the {mr_side} side "
                             f"({abs(offset):.0f} mm from the midline), pathology node '{pn}' is {node.side.value}")


def _check_consistent(path: Path, rows: ConstraintRows) -> None:
    """No pair both linked and separated; no linked node forced unmatched; one MR partner per pathology node."""
    for pair, r in rows.must_link.items():
        if pair in rows.cannot_link:
            raise InputError(path, f"row {r}", f"must_link {pair[0]}-'{pair[1]}' contradicts cannot_link in row "
                             f"{rows.cannot_link[pair]}")  # fmt: skip
        if pair[0] in rows.unmatched_mr:
            raise InputError(path, f"row {r}", f"must_link of MR node {pair[0]} contradicts 'unmatched' in row "
                             f"{rows.unmatched_mr[pair[0]]}")  # fmt: skip
        if pair[1] in rows.unmatched_path:
            raise InputError(path, f"row {r}", f"must_link of pathology node '{pair[1]}' contradicts 'unmatched' "
                             f"in row {rows.unmatched_path[pair[1]]}")  # fmt: skip
    partner: dict[str, tuple[int, int]] = {}
    for (mr, pn), r in sorted(rows.must_link.items(), key=lambda t: t[1]):
        if pn in partner and partner[pn][0] != mr:
            raise InputError(path, f"row {r}", f"pathology node '{pn}' is already linked to MR node {partner[pn][0]} "
                             f"in row {partner[pn][1]}")  # fmt: skip
        partner[pn] = (mr, r)


def read_constraints(path: str | Path, case: Case | None = None) -> Any:
    """Read a constraints CSV into :class:`neckmatch.correlation.matching.Constraints`.

    Parameters
    ----------
    path : str or Path
        The CSV (``mr_node,path_node,action``).
    case : Case, optional
        When given, every node id must exist in it.

    Returns
    -------
    Constraints
        ``must_link`` / ``cannot_link``: frozensets of ``(mr_node: int, path_node: str)``;
        ``forced_unmatched_mr``: frozenset of int; ``forced_unmatched_path``: frozenset of str.
        Several pathology nodes may be linked to one MR node (fragments), not the reverse.

    Raises
    ------
    InputError
        Naming the file, the row and the value: unreadable rows, unknown actions or ids, contradictions.
    """
    path = Path(path)
    rows = parse_constraints(path)
    if case is not None:
        _check_case(path, rows, case)
    _check_consistent(path, rows)
    from neckmatch.correlation.matching import Constraints

    return Constraints(
        must_link=frozenset(rows.must_link),
        cannot_link=frozenset(rows.cannot_link),
        forced_unmatched_mr=frozenset(rows.unmatched_mr),
        forced_unmatched_path=frozenset(rows.unmatched_path),
        source=str(path),
    )
