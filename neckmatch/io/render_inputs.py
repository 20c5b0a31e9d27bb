"""Read back the outputs of one case (``neckmatch match`` / a cohort run's case folder) for the maps.

The maps take their inputs in memory (:func:`neckmatch.viz.maps.render_maps`); this is the one place that reads a
results folder from disk for them (``neckmatch render --results``). A results folder's general reader returning the
typed per-case result can take its place: the maps need only its tables by stem and its specimen document.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from neckmatch.errors import InputError

__all__ = ["read_case_results"]

_DTYPES = {"case_id": str, "path_node": str, "runner_up": str, "level": str, "container": str}


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path, dtype=_DTYPES)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(path, "", f"not a readable CSV ({exc})") from None


def read_case_results(results_dir: str | Path) -> tuple[dict[str, pd.DataFrame], dict[str, Any]]:
    """The tables (by file stem) and the specimen JSON of one case's results folder.

    Parameters
    ----------
    results_dir : str or Path
        A folder written by ``neckmatch match`` (or a case folder of ``neckmatch run``): ``truth_nodes.csv`` is
        required; ``levels.csv``, ``matches.csv`` and ``specimen.json`` are read where present.

    Returns
    -------
    tables : dict of str to pandas.DataFrame
        ``truth_nodes`` and, where present, ``levels`` and ``matches``.
    specimen : dict
        ``specimen.json`` (empty without it).

    Raises
    ------
    InputError
        No ``truth_nodes.csv``, or a file that is not a readable CSV / JSON (named).
    """
    res = Path(results_dir)
    if not (res / "truth_nodes.csv").is_file():
        raise InputError(res, "", "holds no truth_nodes.csv (the output of neckmatch match)")
    tables = {stem: _read_csv(res / f"{stem}.csv") for stem in ("truth_nodes", "levels", "matches")
              if (res / f"{stem}.csv").is_file()}
    specimen: dict[str, Any] = {}
    if (res / "specimen.json").is_file():
        try:
            doc = json.loads((res / "specimen.json").read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(res / "specimen.json", "", f"not valid JSON ({exc})") from None
        specimen = doc if isinstance(doc, dict) else {}
    return tables, specimen
