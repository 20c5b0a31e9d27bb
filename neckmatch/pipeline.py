"""One case end to end: read, levels, specimen, matching, truth tables; every output written atomically.

:func:`process_case` computes everything in memory first and then writes the output folder through
:func:`neckmatch.io.outdir.write_into`, so a bad case or a crash leaves no output folder (or the previous one
untouched), and no file neckmatch did not write is ever deleted. Output files and columns: ``docs/outputs.md``.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from neckmatch._version import __version__
from neckmatch.errors import InputError
from neckmatch.io.atomic import atomic_files, write_csv
from neckmatch.io.results import OPTIONAL_RESULT_FILES, RESULT_FILES, CaseResult, write_results
from neckmatch.model import Case

__all__ = [
    "Settings",
    "OUTPUT_FILES",
    "compute_case",
    "format_summary",
    "process_case",
    "run_case",
    "summarise",
    "write_levels",
]

OUTPUT_FILES = RESULT_FILES + OPTIONAL_RESULT_FILES  # the files of one case (neckmatch.io.results)


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


def run_case(case: Case, settings: Settings | None = None) -> CaseResult:
    """Run one case that is already in memory: levels -> specimen -> matching (with constraints) -> truth tables.

    Parameters
    ----------
    case : Case
        From :func:`neckmatch.io.case.read_case`.
    settings : Settings, optional

    Returns
    -------
    CaseResult
        Levels, matches, truth tables, the fitted specimen and the summary of the case.

    Raises
    ------
    InputError
        For a bad constraints file.
    """
    from neckmatch.correlation.constraints import read_constraints
    from neckmatch.correlation.matching import match_case
    from neckmatch.geometry.levels import levels_table
    from neckmatch.geometry.specimen import reconstruct_specimen

    settings = settings if settings is not None else Settings()
    constraints = read_constraints(settings.constraints, case) if settings.constraints else None
    levels = with_case_id(levels_table(case, tolerance_mm=settings.tolerance_mm), case.case_id)
    specimen = reconstruct_specimen(case, levels)
    result = match_case(case, levels, specimen=specimen, constraints=constraints,
                        auto_threshold=settings.auto_threshold)
    matches = with_case_id(result.matches, case.case_id)
    truth = dict(result.truth_tables)
    tables = {"levels": levels, "matches": matches} | {f"truth_{k}": v for k, v in truth.items()}
    summary = summarise(case.case_id, tables, settings)
    summary["path_nodes"] = len(case.path_nodes)
    summary["containers"] = len(case.containers)
    reg = result.registration  # ex vivo specimen scans: specimen_registration.csv / .json
    extra = {} if reg is None else {"specimen_registration": with_case_id(reg.table, case.case_id)}
    if reg is not None:
        summary["specimen"] = {"pairs_via_specimen": int((matches["via"] == "specimen").sum()),
                               "second_nodes": int((matches["reason"] == "second-node").sum()), "pieces": [
            {k: piece[k] for k in ("image", "pose", "specimen_nodes", "paired_nodes", "median_residual_mm")}
            for piece in reg.summary]}
    return CaseResult(case.case_id, levels, matches, truth, result.specimen.to_json(), summary, extra,
                      reg.to_json() if reg is not None else None)


def compute_case(case_dir: str | Path, settings: Settings | None = None) -> CaseResult:
    """Read the case folder ``case_dir`` and run it in memory (:func:`run_case`); nothing is written.

    Raises
    ------
    InputError
        For a bad case folder or constraints file.
    """
    from neckmatch.io.case import read_case

    return run_case(read_case(case_dir), settings)


def with_case_id(frame: pd.DataFrame, case_id: str) -> pd.DataFrame:
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


def process_case(case_dir: str | Path, out_dir: str | Path, settings: Settings | None = None,
                 force: bool = False) -> dict[str, Any]:
    """Run one case and write all its outputs into ``out_dir`` atomically.

    Parameters
    ----------
    case_dir : str or Path
        A case folder (``case.json``; shared/spec/case-format.md).
    out_dir : str or Path
        The output folder: new, empty or written by neckmatch before (else refused unless ``force``); only
        neckmatch's own files in it are replaced, on success only; never created on failure
        (:mod:`neckmatch.io.outdir`).
    settings : Settings, optional
    force : bool
        Write into a non-empty folder neckmatch did not make (replacing only the files it writes).

    Returns
    -------
    dict
        The case summary (as written to ``summary.json``).
    """
    from neckmatch.io.outdir import check_out_dir, inputs_fingerprint, older_output, write_into

    check_out_dir(out_dir, force, older_output(OUTPUT_FILES))
    result = compute_case(case_dir, settings)
    info = {"command": "match", "case_id": result.case_id, "inputs_sha256": inputs_fingerprint(case_dir)}
    with write_into(out_dir, info, force, older_output(OUTPUT_FILES)) as tmp:
        write_results(result, tmp)
    return result.summary


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


def _format_specimen(spec: dict[str, Any]) -> str:
    """Lines on the ex vivo specimen scans: pairs matched through them and each piece's registration; a pose other
    than the sutures' frame is named (a piece scanned upside down, or sutures to check).

    Examples
    --------
    >>> print(_format_specimen({"pairs_via_specimen": 12, "second_nodes": 1, "pieces": [
    ...     {"image": "R", "pose": "sutures", "specimen_nodes": 20, "paired_nodes": 17, "median_residual_mm": 0.34},
    ...     {"image": "L", "pose": "turned-z", "specimen_nodes": 9, "paired_nodes": 0, "median_residual_mm": None}]}))
    specimen MRI: 12 pairs matched through it (1 proposed as the second node of a matted MR label: review)
      R: 17 of 20 specimen nodes paired, median residual 0.3 mm
      L: 0 of 9 specimen nodes paired, pose turned-z (not the sutures' frame: check them)
    """
    lines = [f"specimen MRI: {spec['pairs_via_specimen']} pairs matched through it"]
    if spec.get("second_nodes"):
        n = spec["second_nodes"]
        lines[0] += f" ({n} proposed as the second node{'s' if n > 1 else ''} of a matted MR label: review)"
    for p in spec["pieces"]:
        text = f"  {p['image']}: {p['paired_nodes']} of {p['specimen_nodes']} specimen nodes paired"
        if p.get("median_residual_mm") is not None:
            text += f", median residual {p['median_residual_mm']:.1f} mm"
        if not str(p["pose"]).startswith("sutures"):
            text += f", pose {p['pose']} (not the sutures' frame: check them)"
        lines.append(text)
    return "\n".join(lines)


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
    if summary.get("specimen"):
        lines.append(_format_specimen(summary["specimen"]))
    if out_dir is not None:
        lines.append(f"written to {out_dir}")
    return "\n".join(lines)
