"""Read every row of a reader-study ``mri/reads.csv`` (shared/spec/reader-study.md): modality, reading order or
time, phase and the visual features ``f_*`` beside ``node, reader, score, malignant``.

:func:`neckmatch.io.reads.read_reads` gives a case's reads for matching and per-case statistics (one per node and
reader); this reader keeps every reading for the reader study (modalities compared, learning curves, scores).

Examples
--------
>>> import tempfile
>>> from pathlib import Path
>>> with tempfile.TemporaryDirectory() as d:
...     f = Path(d) / "reads.csv"
...     _ = f.write_text("node,reader,score,malignant,modality,read_order,f_signal\\n"
...                      "1,R1,4,yes,T2star,1,bright\\n1,R1,2,no,T1,1,dark\\n")
...     reads = read_study_reads(f)
>>> reads[["node", "modality", "phase", "read_order", "f_signal"]].values.tolist()
[[1, 'T2star', 'pilot', 1.0, 'bright'], [1, 'T1', 'pilot', 1.0, 'dark']]
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from neckmatch.errors import InputError
from neckmatch.io.pathology import read_table, yes_no_cell

__all__ = ["PHASES", "STUDY_COLUMNS", "read_study_reads", "feature_columns"]

PHASES = ("explorative", "pilot")
STUDY_COLUMNS = ["node", "reader", "modality", "phase", "read_order", "read_at", "score", "malignant"]


def feature_columns(frame: pd.DataFrame) -> list[str]:
    """The visual-feature columns (``f_*``) of a reads frame, in file order."""
    return [c for c in frame.columns if str(c).startswith("f_")]


def _numbers(path: Path, frame: pd.DataFrame, col: str, integer: bool = False) -> pd.Series:
    text = frame[col]
    num = pd.to_numeric(text.where(text != ""), errors="coerce")
    bad = (text != "") & (num.isna() | ~np.isfinite(num) | ((num != num.round()) | (num < 1) if integer else False))
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0]) + 1
        rule = "must be a whole number >= 1" if integer else "must be a number"
        raise InputError(path, f"row {row}: {col}", f"{rule}, got '{text.iloc[row - 1]}'")
    return num.astype(float)


def _read_at(path: Path, frame: pd.DataFrame) -> pd.Series:
    text = frame["read_at"] if "read_at" in frame else pd.Series("", index=frame.index)
    out = pd.to_datetime(text.where(text != ""), errors="coerce", format="ISO8601")
    bad = (text != "") & out.isna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0]) + 1
        raise InputError(path, f"row {row}: read_at", f"must be an ISO 8601 date or date-time, got "
                                                      f"'{text.iloc[row - 1]}'")
    return text


def read_study_reads(path: str | Path) -> pd.DataFrame:
    """Every reading in ``reads.csv`` with the reader-study columns filled in.

    Returns
    -------
    DataFrame
        :data:`STUDY_COLUMNS` then the ``f_*`` columns as written (strings; empty = not recorded). ``modality``
        defaults to ``""`` (one modality), ``phase`` to ``pilot``; ``read_order`` float (NaN where absent),
        ``read_at`` the ISO text; ``score`` float (NaN where empty), ``malignant`` True / False / None.

    Raises
    ------
    InputError
        A phase other than explorative / pilot, a read_order that is not a whole number >= 1, a read_at that is
        not ISO 8601, a non-numeric score, or one reader reading one node twice under one modality at the same
        ``read_at`` / ``read_order``.
    """
    path = Path(path)
    frame = read_table(path, ("node", "reader", "score", "malignant"))
    out = pd.DataFrame({"node": _numbers(path, frame, "node", integer=True).astype("Int64"),
                        "reader": frame["reader"]})
    out["modality"] = frame["modality"] if "modality" in frame else ""
    phase = frame["phase"].str.lower().replace("", "pilot") if "phase" in frame else pd.Series("pilot", frame.index)
    bad = ~phase.isin(PHASES)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0]) + 1
        value = frame["phase"].iloc[row - 1]
        raise InputError(path, f"row {row}: phase", f"must be explorative or pilot, got '{value}'")
    out["phase"] = phase
    out["read_order"] = _numbers(path, frame, "read_order", integer=True) if "read_order" in frame else np.nan
    out["read_at"] = _read_at(path, frame)
    out["score"] = _numbers(path, frame, "score")
    out["malignant"] = [yes_no_cell(path, i, "malignant", v) for i, v in enumerate(frame["malignant"], start=1)]
    key = ["node", "reader", "modality", "read_order", "read_at"]
    dup = out[key].astype(str).duplicated()
    if dup.any():
        row = int(np.flatnonzero(dup.to_numpy())[0]) + 1
        raise InputError(path, f"row {row}: reader", f"reader '{out['reader'].iloc[row - 1]}' reads node "
                                                     f"{out['node'].iloc[row - 1]} twice at the same time")
    for col in feature_columns(frame):
        out[col] = frame[col]
    return out
