"""One case's results as one typed object, its writer and its reader.

:class:`CaseResult` is what the pipeline hands from stage to stage and what the renderer, the cohort report and
the review service take: the levels table, the matches, the truth tables, the fitted specimen and the summary of
one case. :func:`write_results` serialises it into a results folder (the files of ``docs/outputs.md``) and
:func:`read_results` loads such a folder back into the same object, so code that starts from files and code that
starts from a run in memory see the same thing.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from neckmatch.errors import InputError
from neckmatch.io.atomic import atomic_path, write_csv, write_text

__all__ = ["CaseResult", "TRUTH_KINDS", "RESULT_FILES", "OPTIONAL_RESULT_FILES", "read_results", "write_results",
           "stack_results", "stack_truth_tables", "write_stacked_tables"]

#: The truth tables of a case, in the order they are written (``truth_<kind>.csv``).
TRUTH_KINDS = ("nodes", "reads", "levels", "sides", "patient")
#: The files a results folder holds, in the order they are written.
RESULT_FILES = ("levels.csv", "matches.csv", *(f"truth_{k}.csv" for k in TRUTH_KINDS), "specimen.json",
                "summary.json")
#: Written only where the case has them: the ex vivo specimen scans' registration (specimen-imaging.md).
OPTIONAL_RESULT_FILES = ("specimen_registration.csv", "specimen_registration.json")

# Text columns that pandas would otherwise read as numbers (ids such as "0012", levels such as "II").
_TEXT_COLUMNS = {"case_id": str, "path_node": str, "runner_up": str, "level": str, "mr_level": str,
                 "path_level": str, "container": str, "reason": str, "reader": str}
_NUMERIC_PATH_COLUMNS = {"path_size_mm"}


@dataclass(frozen=True)
class CaseResult:
    """Everything one case produces.

    Parameters
    ----------
    case_id : str
    levels : pandas.DataFrame
        One row per MR node (``levels.csv``: side, level, boundary distance, runner-up, centroid RAS mm, sizes).
    matches : pandas.DataFrame
        One row per decision (``matches.csv``).
    truth : dict of str to pandas.DataFrame
        The truth tables by kind: ``nodes``, ``reads``, ``levels``, ``sides``, ``patient``.
    specimen : dict
        The fitted specimen (``specimen.json``): containers, profiles, warps, placed pathology nodes.
    summary : dict
        Counts of the case (``summary.json``).
    extra : dict of str to pandas.DataFrame
        Further tables by file stem (written as ``<stem>.csv`` after the standard ones), e.g.
        ``specimen_registration``.
    registration : dict, optional
        The ex vivo specimen scans' registration (``specimen_registration.json``), where the case has them.

    Examples
    --------
    >>> r = CaseResult("P1", pd.DataFrame({"node": [1]}), pd.DataFrame({"mr_node": [1]}), {}, {}, {})
    >>> list(r.tables)
    ['levels', 'matches']
    """

    case_id: str
    levels: pd.DataFrame
    matches: pd.DataFrame
    truth: dict[str, pd.DataFrame]
    specimen: dict[str, Any]
    summary: dict[str, Any]
    extra: dict[str, pd.DataFrame] = field(default_factory=dict)
    registration: dict[str, Any] | None = None

    @property
    def tables(self) -> dict[str, pd.DataFrame]:
        """Every table by file stem, in the order written: ``levels``, ``matches``, ``truth_nodes``, ..."""
        out = {"levels": self.levels, "matches": self.matches}
        out.update({f"truth_{k}": self.truth[k] for k in TRUTH_KINDS if k in self.truth})
        out.update(self.extra)
        return out

    def iter_files(self) -> Iterator[tuple[str, pd.DataFrame | dict[str, Any]]]:
        """(file name, content) pairs in the order :func:`write_results` writes them."""
        for stem, frame in self.tables.items():
            yield f"{stem}.csv", frame
        yield "specimen.json", self.specimen
        yield "summary.json", self.summary
        if self.registration is not None:
            yield "specimen_registration.json", self.registration


def write_results(result: CaseResult, folder: str | Path) -> list[Path]:
    """Write every file of ``result`` into ``folder`` (an existing folder; files are replaced one by one).

    Callers that need all-or-nothing output write into a staging folder (``neckmatch.io.atomic``).

    Returns
    -------
    list of Path
        The files written, in order.
    """
    folder = Path(folder)
    written = []
    for name, content in result.iter_files():
        path = folder / name
        if isinstance(content, pd.DataFrame):
            written.append(write_csv(content, path))
        else:
            written.append(write_text(json.dumps(content, indent=2, default=_json_default) + "\n", path))
    return written


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def read_table(path: Path) -> pd.DataFrame:
    """One results CSV: ids, levels and the carried-through report columns (``path_<column>``) kept as the text
    written, ``true``/``false`` as booleans, other numbers as numbers."""
    try:
        header = pd.read_csv(path, nrows=0).columns
        text = {c: str for c in header if c.startswith("path_") and c not in _NUMERIC_PATH_COLUMNS}
        frame = pd.read_csv(path, dtype=_TEXT_COLUMNS | text, true_values=["true"], false_values=["false"])
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(path, "", f"not a readable CSV ({' '.join(str(exc).split())})") from None
    return frame


def _read_json(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(path, "", f"not valid JSON ({exc})") from None
    if not isinstance(doc, Mapping):
        raise InputError(path, "", f"must hold a JSON object, got {type(doc).__name__}")
    return dict(doc)


def read_results(folder: str | Path) -> CaseResult:
    """Load a results folder (written by :func:`write_results`, ``neckmatch match`` or ``neckmatch run``).

    ``levels.csv``, ``matches.csv`` and ``truth_nodes.csv`` are required; the other truth tables, the specimen and
    the summary are read where present (empty otherwise).

    Raises
    ------
    InputError
        For a folder without the required files, or an unreadable file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "", "is not a results folder")
    for name in ("levels.csv", "matches.csv", "truth_nodes.csv"):
        if not (folder / name).is_file():
            raise InputError(folder, name, "missing: not a neckmatch results folder (the output of neckmatch match)")
    truth = {k: read_table(folder / f"truth_{k}.csv") for k in TRUTH_KINDS if (folder / f"truth_{k}.csv").is_file()}
    specimen = _read_json(folder / "specimen.json") if (folder / "specimen.json").is_file() else {}
    summary = _read_json(folder / "summary.json") if (folder / "summary.json").is_file() else {}
    levels = read_table(folder / "levels.csv")
    extra = {stem: read_table(folder / f"{stem}.csv") for stem in ("specimen_registration",)
             if (folder / f"{stem}.csv").is_file()}
    reg_path = folder / "specimen_registration.json"
    registration = _read_json(reg_path) if reg_path.is_file() else None
    case_id = str(summary.get("case_id") or (levels["case_id"].iloc[0] if "case_id" in levels and len(levels)
                                             else folder.name))
    return CaseResult(case_id, levels, read_table(folder / "matches.csv"), truth, specimen, summary, extra,
                      registration)


def stack_results(out_dir: str | Path, case_ids: Iterable[str], name: str) -> pd.DataFrame:
    """Concatenate one results file (``out_dir/<case_id>/<name>``, a CSV) over ``case_ids``, in their order;
    cases without the file are passed over; an empty frame where none has it.

    Consecutive files with the same header are parsed at once, so a column gets one type from all its rows and a
    carried-through text column keeps each case's text.
    """
    paths = [p for p in (Path(out_dir) / cid / name for cid in case_ids) if p.is_file()]
    frames = [_read_stacked(chunk) for chunk in _same_header_runs(paths)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def stack_truth_tables(out_dir: str | Path, case_ids: Iterable[str]) -> dict[str, pd.DataFrame]:
    """The truth tables of ``case_ids`` (results folders under ``out_dir``) stacked, by kind, in case order."""
    ids = list(case_ids)
    return {kind: stack_results(out_dir, ids, f"truth_{kind}.csv") for kind in TRUTH_KINDS}


def _same_header_runs(paths: list[Path]) -> Iterator[list[str]]:
    """The files' texts in runs of consecutive files with the same header line (usually one run)."""
    run: list[str] = []
    for path in paths:
        text = path.read_text(encoding="utf-8")
        if run and text.partition("\n")[0] != run[0].partition("\n")[0]:
            yield run
            run = []
        run.append(text)
    if run:
        yield run


def _read_stacked(texts: list[str]) -> pd.DataFrame:
    """One frame from CSV texts with the same header, parsed at once (one dtype per column from all rows)."""
    head, _, first = texts[0].partition("\n")
    bodies = [first] + [t.partition("\n")[2] for t in texts[1:]]
    body = "".join(b if not b or b.endswith("\n") else b + "\n" for b in bodies)
    return pd.read_csv(io.StringIO(f"{head}\n{body}"), keep_default_na=False, na_values=[""], dtype={"case_id": str})


def _parquet_ready(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with every column of mixed value types as text (Parquet needs one type per column).

    A carried-through pathology column (``path_deposit_mm``) reads as numbers in one case and as text in another
    (fragments joined: ``8.2;1.1``), so the stacked column mixes float and str.

    Examples
    --------
    >>> out = _parquet_ready(pd.DataFrame({"a": [8.2, "8.2;1.1", None], "b": [1, 2, 3]}))
    >>> out["a"].tolist()[:2], bool(out["a"].isna().iloc[2]), out["b"].tolist()
    (['8.2', '8.2;1.1'], True, [1, 2, 3])
    """
    out = frame
    for col in [c for c in frame.columns if pd.api.types.is_object_dtype(frame[c])]:
        if len({type(v) for v in frame[col] if not pd.isna(v)}) > 1:
            out = frame.copy() if out is frame else out
            out[col] = [None if pd.isna(v) else str(v) for v in frame[col]]
    return out


def write_stacked_tables(frames: Mapping[str, pd.DataFrame], tables_dir: str | Path) -> dict[str, Path]:
    """Write stacked truth tables (by kind) as ``truth_<kind>.csv`` and ``.parquet``, each atomically."""
    tables_dir = Path(tables_dir)
    files = {}
    for kind, frame in frames.items():
        files[f"truth_{kind}.csv"] = write_csv(frame, tables_dir / f"truth_{kind}.csv")
        with atomic_path(tables_dir / f"truth_{kind}.parquet") as tmp:
            _parquet_ready(frame).to_parquet(tmp, index=False)
        files[f"truth_{kind}.parquet"] = tables_dir / f"truth_{kind}.parquet"
    return files
