"""One case end to end: read, levels, specimen, matching, truth tables; every output written atomically.

:func:`process_case` computes everything in memory first and then writes the whole output folder through
:func:`neckmatch.io.atomic.atomic_dir`, so a bad case or a crash leaves no output folder (or the previous one
untouched). Output files and columns: ``docs/outputs.md``.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from neckmatch import __version__
from neckmatch.errors import InputError
from neckmatch.io.atomic import atomic_dir, atomic_files, write_csv, write_text

__all__ = [
    "Settings",
    "CaseOutputs",
    "OUTPUT_FILES",
    "apply_auto_threshold",
    "compute_case",
    "format_summary",
    "process_case",
    "summarise",
    "write_levels",
    "write_outputs",
]

OUTPUT_FILES = (
    "levels.csv",
    "matches.csv",
    "truth_nodes.csv",
    "truth_reads.csv",
    "truth_levels.csv",
    "truth_sides.csv",
    "truth_patient.csv",
    "specimen.json",
    "summary.json",
)


@dataclass(frozen=True)
class Settings:
    """Settings of one case run.

    Parameters
    ----------
    tolerance_mm : float
        Borderline tolerance of the level assignment, mm (>= 0).
    auto_threshold : float or None
        Override of the matcher's auto-decision threshold: a decision is ``auto`` where its confidence is >= this
        (0-1); None keeps the matcher's own decisions.
    constraints : str or None
        A constraints CSV (``mr_node,path_node,action``) applied on every case it names; None for none.
    calibration : str or None
        A calibration file of ``neckmatch calibrate``: its certified threshold becomes ``auto_threshold``
        (given both, the explicit ``auto_threshold`` wins).

    Examples
    --------
    >>> Settings().fingerprint() == Settings(tolerance_mm=3.0).fingerprint()
    True
    >>> Settings().fingerprint() == Settings(tolerance_mm=2.0).fingerprint()
    False
    """

    tolerance_mm: float = 3.0
    auto_threshold: float | None = None
    constraints: str | None = None
    calibration: str | None = None

    def __post_init__(self) -> None:
        tol = self.tolerance_mm
        if not isinstance(tol, (int, float)) or not math.isfinite(tol) or tol < 0:
            raise InputError("settings", "tolerance_mm", f"must be a finite number >= 0, got {tol!r}")
        thr = self.auto_threshold
        if thr is not None and (not isinstance(thr, (int, float)) or not 0.0 <= thr <= 1.0):
            raise InputError("settings", "auto_threshold", f"must lie in [0, 1], got {thr!r}")
        if self.constraints is not None:
            object.__setattr__(self, "constraints", str(self.constraints))
        if self.calibration is not None:
            from neckmatch.io.calibration import load_calibration

            object.__setattr__(self, "calibration", str(self.calibration))
            if self.auto_threshold is None:
                object.__setattr__(self, "auto_threshold", load_calibration(self.calibration))

    def fingerprint(self) -> str:
        """Stable SHA-256 hex digest of the settings; a constraints file enters by its content, not its path."""
        fields = asdict(self)
        fields["tolerance_mm"] = float(self.tolerance_mm)
        path = fields.pop("constraints")
        fields.pop("calibration")  # enters through the auto_threshold it sets
        if path is None:
            fields["constraints_sha256"] = None
        else:
            p = Path(path)
            fields["constraints_sha256"] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else f"missing:{p}"
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class CaseOutputs:
    """Everything one case produces, in memory: tables (by file stem), the specimen JSON and the summary."""

    case_id: str
    tables: dict[str, pd.DataFrame]
    specimen: dict[str, Any]
    summary: dict[str, Any]


def compute_case(case_dir: str | Path, settings: Settings | None = None) -> CaseOutputs:
    """Run one case in memory: read -> levels -> specimen -> matching (with constraints) -> truth tables.

    Raises
    ------
    InputError
        For a bad case folder or constraints file (nothing is written).
    """
    from neckmatch.correlation.constraints import read_constraints
    from neckmatch.correlation.matching import match_case
    from neckmatch.correlation.truth import truth_tables
    from neckmatch.geometry.levels import levels_table
    from neckmatch.geometry.specimen import reconstruct_specimen
    from neckmatch.io.case import read_case

    settings = settings if settings is not None else Settings()
    case = read_case(case_dir)
    constraints = read_constraints(settings.constraints, case) if settings.constraints else None
    levels = _with_case_id(levels_table(case, tolerance_mm=settings.tolerance_mm), case.case_id)
    specimen = reconstruct_specimen(case, levels)
    result = match_case(case, levels, specimen=specimen, constraints=constraints)
    matches = _with_case_id(apply_auto_threshold(result.matches, settings.auto_threshold), case.case_id)
    truth = truth_tables(case, levels, matches)
    tables = {"levels": levels, "matches": matches} | {f"truth_{k}": v for k, v in truth.items()}
    fitted = getattr(result, "specimen", None) or specimen
    summary = summarise(case.case_id, tables, settings)
    summary["path_nodes"] = len(case.path_nodes)
    summary["containers"] = len(case.containers)
    return CaseOutputs(case.case_id, tables, fitted.to_json(), summary)


def apply_auto_threshold(matches: pd.DataFrame, threshold: float | None) -> pd.DataFrame:
    """Re-decide ``auto`` / ``review`` from ``confidence`` where a threshold is given (else unchanged).

    Examples
    --------
    >>> m = pd.DataFrame({"confidence": [0.99, 0.5], "decision": ["auto", "auto"]})
    >>> apply_auto_threshold(m, 0.9)["decision"].tolist()
    ['auto', 'review']
    """
    if threshold is None:
        return matches
    out = matches.copy()
    conf = pd.to_numeric(out["confidence"], errors="coerce").to_numpy(dtype=float)
    out["decision"] = np.where(conf >= threshold, "auto", "review")
    return out


def _with_case_id(frame: pd.DataFrame, case_id: str) -> pd.DataFrame:
    """``frame`` with ``case_id`` as its first column (docs/outputs.md)."""
    out = frame.drop(columns=["case_id"], errors="ignore")
    out.insert(0, "case_id", case_id)
    return out


def _counts(series: pd.Series) -> dict[str, int]:
    return {str(k): int(v) for k, v in series.dropna().value_counts().sort_index().items()}


def summarise(case_id: str, tables: dict[str, pd.DataFrame], settings: Settings) -> dict[str, Any]:
    """Counts of one case (JSON-able, no identifiers beyond ``case_id``): decisions, match kinds, outcomes."""
    m, nodes = tables["matches"], tables["truth_nodes"]
    patient = tables["truth_patient"]["outcome"].dropna().tolist()
    return {
        "case_id": case_id,
        "neckmatch": __version__,
        "settings": {**asdict(settings), "constraints": _file_name(settings.constraints),
                     "calibration": _file_name(settings.calibration),
                     "fingerprint": settings.fingerprint()},
        "mr_nodes": len(tables["levels"]),
        "pairs": int((m["kind"] == "pair").sum()),
        "mr_unmatched": int((m["kind"] == "mr-unmatched").sum()),
        "path_unmatched": int((m["kind"] == "path-unmatched").sum()),
        "decisions": _counts(m["decision"]),
        "match_kinds": _counts(nodes.loc[nodes["mr_node"].notna(), "match_kind"]),
        "node_outcomes": _counts(nodes["outcome"]),
        "level_outcomes": _counts(tables["truth_levels"]["outcome"]),
        "patient_outcome": patient[0] if patient else None,
    }


def _file_name(path: str | None) -> str | None:
    """Only the file name: folders above it may carry a patient's name."""
    return None if path is None else Path(path).name


def write_outputs(outputs: CaseOutputs, folder: Path) -> None:
    """Write every output file of one case into ``folder`` (an existing, empty folder)."""
    for stem, frame in outputs.tables.items():
        write_csv(frame, folder / f"{stem}.csv")
    for stem, doc in (("specimen", outputs.specimen), ("summary", outputs.summary)):
        write_text(json.dumps(doc, indent=2, default=_json_default) + "\n", folder / f"{stem}.json")


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def _check_out_dir(out_dir: Path) -> None:
    """Refuse to replace a file, or a non-empty folder that is not an earlier neckmatch case output."""
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(out_dir, "", "output folder is an existing file")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / "summary.json").is_file():
        raise InputError(out_dir, "", "output folder is not empty and holds no earlier neckmatch output; "
                         "refusing to replace it")  # fmt: skip


def process_case(case_dir: str | Path, out_dir: str | Path, settings: Settings | None = None) -> dict[str, Any]:
    """Run one case and write all its outputs into ``out_dir`` atomically.

    Parameters
    ----------
    case_dir : str or Path
        A case folder (``case.json``; shared/spec/case-format.md).
    out_dir : str or Path
        The output folder; replaced whole on success (an earlier neckmatch output is replaced, any other
        non-empty folder is refused), never created on failure.
    settings : Settings, optional

    Returns
    -------
    dict
        The case summary (as written to ``summary.json``).
    """
    out_dir = Path(out_dir)
    _check_out_dir(out_dir)
    outputs = compute_case(case_dir, settings)
    with atomic_dir(out_dir) as tmp:
        write_outputs(outputs, tmp)
    return outputs.summary


def write_levels(
    case_dir: str | Path, out_dir: str | Path, tolerance_mm: float = 3.0, level_map: bool = True,
    meshes: bool = False,
) -> pd.DataFrame:
    """``neckmatch levels``: write ``levels.csv`` of one case (and its level regions) into ``out_dir``.

    Everything is computed in a staging folder and moved into ``out_dir`` only when complete, so a failure writes
    nothing (other files in ``out_dir`` are kept).

    Parameters
    ----------
    case_dir, out_dir : str or Path
    tolerance_mm : float
        Borderline tolerance of the level assignment, mm.
    level_map : bool
        Also write ``level_map.nii.gz`` and ``level_map.json``.
    meshes : bool
        Also write ``level_meshes/<name>.ply`` (implies the level map).

    Returns
    -------
    pandas.DataFrame
        The levels table, one row per MR node (docs/outputs.md).

    Raises
    ------
    InputError
        For a bad case, or a case without landmarks (nothing is written).
    """
    from neckmatch.geometry.levels import levels_table
    from neckmatch.geometry.regions import write_level_regions
    from neckmatch.io.case import read_case

    case = read_case(case_dir)
    if case.landmarks is None:
        raise InputError(Path(case_dir) / "case.json", "mri.landmarks", "the case has no landmarks; levels need them")
    table = levels_table(case, tolerance_mm=tolerance_mm)
    with atomic_files(out_dir) as stage:
        write_csv(table, stage / "levels.csv")
        if level_map or meshes:
            write_level_regions(stage, case.landmarks, case.label_map, meshes=meshes)
    return table


def _fmt_counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{v} {k}" for k, v in counts.items()) or "none"


def format_summary(summary: dict[str, Any], out_dir: str | Path | None = None) -> str:
    """A few human-readable lines from a case summary (plain text).

    Examples
    --------
    >>> s = {"case_id": "P1", "mr_nodes": 3, "path_nodes": 2, "pairs": 2, "mr_unmatched": 1, "path_unmatched": 0,
    ...      "decisions": {"auto": 2, "review": 1}, "match_kinds": {"matched": 2, "unmatched": 1},
    ...      "node_outcomes": {"TP": 1, "TN": 1}, "level_outcomes": {"TP": 1}, "patient_outcome": "TP"}
    >>> print(format_summary(s))
    P1: 3 MR nodes, 2 pathology nodes -> 2 pairs, 1 MR unmatched, 0 pathology unmatched
    decisions: 2 auto, 1 review
    MR nodes: 2 matched, 1 unmatched
    outcomes: nodes 1 TP, 1 TN | levels 1 TP | patient TP
    """
    lines = [
        f"{summary['case_id']}: {summary['mr_nodes']} MR nodes, {summary.get('path_nodes', 0)} pathology nodes -> "
        f"{summary['pairs']} pairs, {summary['mr_unmatched']} MR unmatched, {summary['path_unmatched']} pathology "
        "unmatched",
        f"decisions: {_fmt_counts(summary['decisions'])}",
        f"MR nodes: {_fmt_counts(summary['match_kinds'])}",
        f"outcomes: nodes {_fmt_counts(summary['node_outcomes'])} | levels {_fmt_counts(summary['level_outcomes'])}"
        f" | patient {summary['patient_outcome'] or 'n/a'}",
    ]
    if out_dir is not None:
        lines.append(f"written to {out_dir}")
    return "\n".join(lines)
