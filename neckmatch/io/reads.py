"""Read ``mri/reads.csv``: the readers' assessment of each MR node (``node,reader,score,malignant``).

Examples
--------
>>> import tempfile
>>> from pathlib import Path
>>> with tempfile.TemporaryDirectory() as d:
...     f = Path(d) / "reads.csv"
...     _ = f.write_text("node,reader,score,malignant\\n1,R1,4,yes\\n1,R2,2,no\\n2,R1,,\\n")
...     reads = read_reads(f, labels=[1, 2])
>>> [(r.node, r.reader, r.score, r.malignant) for r in reads]
[(1, 'R1', 4.0, True), (1, 'R2', 2.0, False), (2, 'R1', None, None)]
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

from neckmatch.errors import InputError
from neckmatch.io.pathology import read_table, yes_no_cell
from neckmatch.model import Read

__all__ = ["read_reads"]

def _node(path: Path, row: int, value: str, labels: set[int]) -> int:
    try:
        f = float(value)
        label = int(f)
    except (ValueError, OverflowError):
        raise InputError(path, f"row {row}: node", f"must be a label value (whole number), got '{value}'") from None
    if f != label:
        raise InputError(path, f"row {row}: node", f"must be a label value (whole number), got '{value}'")
    if label not in labels:
        shown = ", ".join(str(v) for v in sorted(labels)[:20]) + (" ..." if len(labels) > 20 else "")
        raise InputError(path, f"row {row}: node", f"label {label} does not exist in the label map (labels: {shown})")
    return label


def _score(path: Path, row: int, value: str) -> float | None:
    if value == "":
        return None
    try:
        v = float(value)
    except ValueError:
        v = float("nan")
    if not math.isfinite(v):
        raise InputError(path, f"row {row}: score", f"must be a number, got '{value}'")
    return v


def read_reads(path: str | Path, labels: Iterable[int]) -> list[Read]:
    """Read ``reads.csv`` in file order; several readers give several rows per node.

    Parameters
    ----------
    path : str or Path
        The CSV file, columns ``node, reader, score, malignant`` (``score`` and ``malignant`` may be empty).
    labels : iterable of int
        The label values present in the MR label map; a read of any other label is an error.

    Raises
    ------
    InputError
        A missing column, a label not in ``labels``, a non-numeric score, ``malignant`` not yes/no, an empty
        reader, or one reader reading one node twice.

    Notes
    -----
    A reader-study file (optional ``modality``, ``read_at`` / ``read_order``, ``phase``, ``f_*`` columns) gives
    the reads of its first row's modality only, and of a node read twice by one reader (rows differing in
    ``read_at`` / ``read_order``) the first; :func:`neckmatch.io.study_reads.read_study_reads` reads every row.
    """
    path = Path(path)
    known = {int(v) for v in labels}
    frame = read_table(path, ("node", "reader", "score", "malignant"))
    out: list[Read] = []
    seen: dict[tuple[int, str], int] = {}
    # reader-study files (shared/spec/reader-study.md): the case's reads are the first modality's, first reading
    primary = frame["modality"].iloc[0] if "modality" in frame and len(frame) else None
    timed = [c for c in ("read_at", "read_order") if c in frame]
    for row, rec in enumerate(frame.to_dict("records"), start=1):
        node = _node(path, row, rec["node"], known)
        reader = rec["reader"]
        if not reader:
            raise InputError(path, f"row {row}: reader", "must not be empty, got ''")
        if primary is not None and rec["modality"] != primary:
            continue
        if (node, reader) in seen and timed and any(rec[c] != frame.iloc[seen[node, reader] - 1][c] for c in timed):
            continue  # a repeated reading (intra-reader agreement): analysed by neckmatch.io.study_reads
        if (node, reader) in seen:
            first = seen[node, reader]
            msg = f"reader '{reader}' reads node {node} twice (first in row {first})"
            raise InputError(path, f"row {row}: reader", msg)
        seen[node, reader] = row
        out.append(Read(node=node, reader=reader, score=_score(path, row, rec["score"]),
                        malignant=yes_no_cell(path, row, "malignant", rec["malignant"])))
    return out
