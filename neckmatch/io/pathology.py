"""Read the pathology report: ``pathology/nodes.csv`` (one row per node) and ``pathology/containers.csv``
(per-container counts, for count-only reports), as specified in shared/spec/case-format.md.

Errors name the file, ``row N`` (1-based data row, the header not counted) and the column, and show the value.

Examples
--------
>>> import tempfile
>>> from pathlib import Path
>>> with tempfile.TemporaryDirectory() as d:
...     f = Path(d) / "nodes.csv"
...     _ = f.write_text("node,container,side,level,size_mm,status,slide\\nR-II-01,R-II,R,II,8.5,positive,A3\\n")
...     nodes = read_path_nodes(f)
>>> n = nodes[0]
>>> n.node, n.side.value, str(n.level), n.size_mm, n.positive, dict(n.extra)
('R-II-01', 'R', 'II', 8.5, True, {'slide': 'A3'})
>>> c = derive_containers(nodes)[0]
>>> c.container, c.nodes_examined, c.nodes_positive
('R-II', 1, 1)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from neckmatch.errors import InputError
from neckmatch.model import Container, ContainerLevel, PathNode, Side, Status, optional_float

__all__ = ["read_path_nodes", "read_containers", "derive_containers", "check_containers", "NODE_COLUMNS",
           "MAX_ROWS", "MAX_SIZE_MM"]

MAX_ROWS = 5000  # a neck dissection yields tens of nodes; a longer table is refused (bounded cost downstream)
MAX_SIZE_MM = 200.0  # no lymph node is larger; a larger size_mm is a unit or typing error

NODE_COLUMNS = ("node", "container", "side", "level", "size_mm", "status", "cc", "ap", "fragment_of")
_NODE_REQUIRED = ("node", "container", "side", "level", "status")
_CONTAINER_REQUIRED = ("container", "side", "level", "nodes_examined", "nodes_positive")
_YES = {"yes", "true", "1", "y"}
_NO = {"no", "false", "0", "n"}


def read_table(path: str | Path, required: Sequence[str]) -> pd.DataFrame:
    """A CSV file as a frame of stripped strings (empty cells = ``""``) with the ``required`` columns."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "", "file does not exist")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True, encoding="utf-8-sig")
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise InputError(path, "", f"not a readable CSV table: {exc}") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    if len(frame) > MAX_ROWS:
        raise InputError(path, "", f"{len(frame)} rows; at most {MAX_ROWS} are accepted")
    _check_field_counts(path, len(frame.columns))
    missing = [c for c in required if c not in frame.columns]
    if missing:
        have = ", ".join(frame.columns)
        raise InputError(path, "header", f"missing required column '{missing[0]}' (columns: {have})")
    return frame.apply(lambda col: col.str.strip())


def _check_field_counts(path: Path, n_columns: int) -> None:
    """InputError naming the first row whose number of fields differs from the header's (a truncated file)."""
    import csv

    with open(path, newline="", encoding="utf-8-sig") as fh:
        for row, fields in enumerate(csv.reader(fh)):
            if row and fields and len(fields) != n_columns:
                raise InputError(path, f"row {row}", f"has {len(fields)} fields, the header {n_columns} "
                                 "(a truncated or misaligned row)")


def _check_text(path: Path, row: int, col: str, value: str | None) -> None:
    """Identifiers may not hold control characters (NUL, newline, ...)."""
    if value and any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise InputError(path, f"row {row}: {col}", f"must not contain control characters, got {value!r}")


def _parse_side(path: Path, row: int, value: str) -> Side:
    try:
        return Side(value.upper())
    except ValueError:
        raise InputError(path, f"row {row}: side", f"must be R or L, got '{value}'") from None


def _parse_level(path: Path, row: int, value: str) -> ContainerLevel:
    try:
        return ContainerLevel.parse(value)
    except ValueError as exc:
        raise InputError(path, f"row {row}: level", str(exc)) from None


def _parse_status(path: Path, row: int, value: str) -> Status:
    try:
        return Status(value.lower())
    except ValueError:
        raise InputError(path, f"row {row}: status", f"must be positive or negative, got '{value}'") from None


def _field_of(message: str, fields: Iterable[str]) -> str:
    """The column a model error message is about (its first word), else ''."""
    head = message.split(" ", 1)[0]
    return head if head in fields else ""


def _path_node(path: Path, row: int, rec: dict[str, str], extras: Sequence[str]) -> PathNode:
    for col in ("node", "container"):
        if not rec[col]:
            raise InputError(path, f"row {row}: {col}", "must not be empty, got ''")
    for col in ("node", "container", "fragment_of"):
        _check_text(path, row, col, rec.get(col))
    extra = {c: (rec[c] if rec[c] != "" else None) for c in extras}
    try:
        return PathNode(
            node=rec["node"], container=rec["container"], side=_parse_side(path, row, rec["side"]),
            level=_parse_level(path, row, rec["level"]), status=_parse_status(path, row, rec["status"]),
            size_mm=optional_float(rec.get("size_mm"), "size_mm", positive=True),
            cc=optional_float(rec.get("cc"), "cc", 0.0, 1.0), ap=optional_float(rec.get("ap"), "ap", 0.0, 1.0),
            fragment_of=rec.get("fragment_of"),
            extra=extra,
        )
    except (ValueError, TypeError) as exc:
        if isinstance(exc, InputError):
            raise
        col = _field_of(str(exc), NODE_COLUMNS)
        msg = str(exc).removeprefix(f"{col} ") if col else str(exc)  # "size_mm must be > 0" under field size_mm
        raise InputError(path, f"row {row}: {col}" if col else f"row {row}", msg) from None


def read_path_nodes(path: str | Path) -> list[PathNode]:
    """Read ``pathology/nodes.csv``: one :class:`PathNode` per row, in file order.

    Columns ``node, container, side, level, status`` are required; ``size_mm`` (mm, > 0), ``cc``, ``ap``
    (in [0, 1]) and ``fragment_of`` are optional; every other column is carried in ``PathNode.extra``.
    Node ids must be unique; all rows of one container must agree on side and level.
    """
    path = Path(path)
    frame = read_table(path, _NODE_REQUIRED)
    extras = [c for c in frame.columns if c not in NODE_COLUMNS]
    nodes: list[PathNode] = []
    first_row: dict[str, int] = {}
    seen_container: dict[str, tuple[int, PathNode]] = {}
    for row, rec in enumerate(frame.to_dict("records"), start=1):
        node = _path_node(path, row, rec, extras)
        if node.node in first_row:
            first = first_row[node.node]
            raise InputError(path, f"row {row}: node", f"duplicate node id '{node.node}' (first in row {first})")
        first_row[node.node] = row
        if node.size_mm is not None and node.size_mm > MAX_SIZE_MM:
            raise InputError(path, f"row {row}: size_mm", f"must be at most {MAX_SIZE_MM:g} mm, got {node.size_mm:g}")
        prev = seen_container.setdefault(node.container, (row, node))
        if (prev[1].side, prev[1].level) != (node.side, node.level):
            raise InputError(
                path, f"row {row}: container",
                f"container '{node.container}' is {node.side.value} {node.level} here but "
                f"{prev[1].side.value} {prev[1].level} in row {prev[0]}",
            )
        nodes.append(node)
    _check_fragments(path, nodes)
    return nodes


def _check_fragments(path: Path, nodes: Sequence[PathNode]) -> None:
    """Every ``fragment_of`` names another node of the file that is not itself a fragment."""
    by_id = {n.node: n for n in nodes}
    for row, n in enumerate(nodes, start=1):
        if n.fragment_of is None:
            continue
        whole = by_id.get(n.fragment_of)
        if whole is None or whole is n or whole.fragment_of is not None:
            raise InputError(path, f"row {row}: fragment_of", f"must name another whole node of this file, "
                             f"got '{n.fragment_of}'")


def derive_containers(nodes: Iterable[PathNode]) -> list[Container]:
    """Containers implied by node rows (first-appearance order).

    Fragments (``fragment_of``) are not counted as nodes, but a node is positive if it or any of its fragments is
    (as in the node truth table).
    """
    nodes = list(nodes)
    positive = {n.fragment_of if n.fragment_of is not None else n.node for n in nodes if n.positive}
    groups: dict[str, list[PathNode]] = {}
    for n in nodes:
        groups.setdefault(n.container, []).append(n)
    out = []
    for name, members in groups.items():
        whole = [n for n in members if n.fragment_of is None]
        out.append(Container(
            container=name, side=members[0].side, level=members[0].level,
            nodes_examined=len(whole), nodes_positive=sum(n.node in positive for n in whole),
        ))
    return out


def _int_cell(path: Path, row: int, col: str, value: str) -> int:
    try:
        f = float(value)
    except ValueError:
        f = float("nan")
    if not math.isfinite(f) or f != int(f) or f < 0:
        raise InputError(path, f"row {row}: {col}", f"must be a whole number >= 0, got '{value}'")
    return int(f)


def _deposit_cell(path: Path, row: int, value: str) -> float | None:
    """``largest_deposit_mm``: empty (None) or a finite number >= 0, mm."""
    try:
        v = optional_float(value, "largest_deposit_mm")
    except ValueError as exc:
        raise InputError(path, f"row {row}: largest_deposit_mm", str(exc).removeprefix("largest_deposit_mm ")) from None
    if v is not None and v < 0:
        raise InputError(path, f"row {row}: largest_deposit_mm", f"must be >= 0, got {value}")
    return v


def yes_no_cell(path: Path, row: int, col: str, value: str) -> bool | None:
    """A yes/no cell (``yes/no``, ``true/false``, ``y/n``, ``1/0``, any case): True, False, or None where empty."""
    v = value.lower()
    if v == "":
        return None
    if v in _YES or v in _NO:
        return v in _YES
    raise InputError(path, f"row {row}: {col}", f"must be yes or no, got '{value}'")


def _container(path: Path, row: int, rec: dict[str, Any]) -> Container:
    if not rec["container"]:
        raise InputError(path, f"row {row}: container", "must not be empty, got ''")
    try:
        return Container(
            container=rec["container"], side=_parse_side(path, row, rec["side"]),
            level=_parse_level(path, row, rec["level"]),
            nodes_examined=_int_cell(path, row, "nodes_examined", rec["nodes_examined"]),
            nodes_positive=_int_cell(path, row, "nodes_positive", rec["nodes_positive"]),
            largest_deposit_mm=_deposit_cell(path, row, rec.get("largest_deposit_mm", "")),
            ene=yes_no_cell(path, row, "ene", rec.get("ene", "")),
        )
    except ValueError as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError(path, f"row {row}: nodes_positive", str(exc)) from None


def read_containers(path: str | Path, nodes: Sequence[PathNode] | None = None) -> list[Container]:
    """Read ``pathology/containers.csv``; with ``nodes`` given, check the counts agree with the node rows.

    Columns ``container, side, level, nodes_examined, nodes_positive`` are required; ``largest_deposit_mm``
    (mm) and ``ene`` (yes/no) optional. Container names must be unique.
    """
    path = Path(path)
    frame = read_table(path, _CONTAINER_REQUIRED)
    out: list[Container] = []
    seen: dict[str, int] = {}
    for row, rec in enumerate(frame.to_dict("records"), start=1):
        c = _container(path, row, rec)
        if c.container in seen:
            first = seen[c.container]
            msg = f"duplicate container '{c.container}' (first in row {first})"
            raise InputError(path, f"row {row}: container", msg)
        seen[c.container] = row
        out.append(c)
    if nodes is not None:
        check_containers(path, out, nodes)
    return out


def check_containers(path: str | Path, containers: Sequence[Container], nodes: Sequence[PathNode]) -> None:
    """Raise InputError where ``containers`` disagree with the node rows (side, level or counts)."""
    derived = {c.container: c for c in derive_containers(nodes)}
    given = {c.container: c for c in containers}
    unlisted = sorted(derived.keys() - given.keys())
    if unlisted:
        raise InputError(path, "container", f"'{unlisted[0]}' has node rows but is not listed")
    for row, c in enumerate(containers, start=1):
        d = derived.get(c.container)
        got = (c.side, c.level, c.nodes_examined, c.nodes_positive)
        want = (d.side, d.level, d.nodes_examined, d.nodes_positive) if d else (c.side, c.level, 0, 0)
        for col, a, b in zip(("side", "level", "nodes_examined", "nodes_positive"), got, want, strict=True):
            if a != b:
                raise InputError(
                    path, f"row {row}: {col}",
                    f"container '{c.container}' says {getattr(a, 'value', a)} "
                    f"but the node rows give {getattr(b, 'value', b)}",
                )
