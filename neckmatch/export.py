"""Exports of a results folder for other tools: the cohort's level tables as a lyDATA CSV (``neckmatch export
lydata``), which the ``lydata`` package validates, ``lymph-model`` loads and ``neckmatch stats lydata`` reads back.

The level truth tables (``truth_levels.csv``: per case, side and container level the MR call and the pathology
status) become one lyDATA row per patient (:func:`neckmatch.stats.lydata.write_lydata`); ipsi / contra need each
patient's primary side, read from the case folders (``--cohort``) or a patients CSV (``--patients``), which may
also carry lyDATA's patient and tumour fields (``t_stage``, ``n_stage``, ``sex``, ``age`` ...).
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pandas as pd

from neckmatch.errors import InputError
from neckmatch.io.atomic import atomic_path
from neckmatch.stats.lydata import write_lydata

__all__ = ["export_lydata", "find_truth_levels", "patients_table"]

_WRITTEN = ("MRI", "pathology")  # the modality names write_lydata puts in the top header row
_RESERVED = frozenset({"patient", "tumor", "total_dissected", "positive_dissected"})


def find_truth_levels(results: str | Path) -> Path:
    """The level truth table of a results folder: ``tables/truth_levels.csv`` of a cohort run (``neckmatch run``),
    else ``truth_levels.csv`` of one case (``neckmatch match``)."""
    root = Path(results)
    for path in (root / "tables" / "truth_levels.csv", root / "truth_levels.csv"):
        if path.is_file():
            return path
    raise InputError(root, "", "holds no level truth table (tables/truth_levels.csv of `neckmatch run`, or "
                     "truth_levels.csv of `neckmatch match`)")  # fmt: skip


def _cohort_patients(cohort: Path) -> pd.DataFrame:
    """``case_id, primary_side``, ``n_stage`` from ``pN`` and any lyDATA patient / tumour field named at the top
    of each ``case.json``."""
    from neckmatch.cohort import find_cases
    from neckmatch.stats.lydata import _PATIENT_FIELDS, _TUMOR_FIELDS

    fields = (set(_PATIENT_FIELDS) | set(_TUMOR_FIELDS)) - {"id", "side", "central"}
    rows = []
    for case_dir in find_cases(cohort):
        path = case_dir / "case.json"
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InputError(path, "", f"not readable JSON ({exc})") from None
        if not isinstance(doc, dict) or "case_id" not in doc:
            raise InputError(path, "case_id", "missing")
        row = {"case_id": str(doc["case_id"]), "primary_side": doc.get("primary_side")}
        n_stage = re.fullmatch(r"[pyc]*N([0-3])[a-c]?", str(doc.get("pN", "")).strip(), flags=re.I)
        if n_stage:  # case.json's pathological N category (pN0 ... pN3b) as lyDATA's n_stage
            row["n_stage"] = int(n_stage.group(1))
        row.update({k: v for k, v in doc.items() if k in fields and not isinstance(v, (dict, list))})
        rows.append(row)
    return pd.DataFrame(rows, columns=None if rows else ["case_id", "primary_side"])


def patients_table(cohort: str | Path | None = None, patients: str | Path | None = None) -> pd.DataFrame:
    """One row per case: ``case_id``, ``primary_side`` (``R`` / ``L`` / ``midline``) and lyDATA patient fields.

    Parameters
    ----------
    cohort : path, optional
        The cohort's case folders (``case.json`` gives ``primary_side``, ``n_stage`` from ``pN`` such as
        ``pN2b``, and any top-level lyDATA field).
    patients : path, optional
        A CSV with ``case_id`` and any of ``primary_side`` and lyDATA's patient / tumour fields; its values win
        over the case folders'. lyDATA's validator requires ``institution, sex, age, diagnose_date,
        alcohol_abuse, nicotine_abuse, n_stage, location, subsite, t_stage``; ``neck_dissection`` is True unless
        given.
    """
    if cohort is None and patients is None:
        raise InputError("options", "--cohort / --patients", "give the case folders or a patients CSV: lyDATA's "
                         "ipsi / contra columns need each patient's primary side")  # fmt: skip
    table = _cohort_patients(Path(cohort)) if cohort is not None else pd.DataFrame(columns=["case_id"])
    if patients is not None:
        try:
            extra = pd.read_csv(patients, dtype={"case_id": str}, keep_default_na=False, na_values=[""])
        except (OSError, ValueError) as exc:
            raise InputError(patients, "", f"not a readable CSV ({' '.join(str(exc).split())})") from None
        if "case_id" not in extra:
            raise InputError(patients, "header", f"needs a case_id column, got {list(extra.columns)}")
        if len(table):  # the CSV's values win; cases and fields of either are kept
            table = extra.set_index("case_id").combine_first(table.set_index("case_id")).reset_index()
        else:
            table = extra
    if "neck_dissection" not in table:  # every neckmatch case has a neck dissection (its pathology is the reference)
        table["neck_dissection"] = True
    return table


def _check_names(modality: str, reference: str) -> None:
    for option, name in (("--modality", modality), ("--reference", reference)):
        if not name or name != name.strip() or any(c in name for c in ',"\n') or name in _RESERVED:
            raise InputError("options", option, f"{name!r} is not a usable lyDATA modality name (e.g. MRI, CT, "
                             "pathology)")  # fmt: skip
    if modality == reference:
        raise InputError("options", "--reference", f"must differ from --modality, got {reference!r} for both")


def export_lydata(
    results: str | Path, out: str | Path, *, cohort: str | Path | None = None, patients: str | Path | None = None,
    modality: str = "MRI", reference: str = "pathology",
) -> Path:  # fmt: skip
    """Write a results folder's level truth tables as one lyDATA CSV (old three-row header layout).

    Parameters
    ----------
    results : path
        A cohort run's results folder (``tables/truth_levels.csv``) or one case's ``neckmatch match`` output.
    out : path
        The CSV to write (atomically).
    cohort, patients : path, optional
        Where each patient's primary side (and lyDATA's clinical fields) come from (:func:`patients_table`).
    modality : str
        Top-header name of the MR calls (the index test), e.g. ``MRI``.
    reference : str
        Top-header name of the pathology status of the dissected levels, e.g. ``pathology``.

    Returns
    -------
    Path
        ``out``. Every case of the truth table is one row; a case without a primary side is an InputError.
    """
    _check_names(modality, reference)
    source = find_truth_levels(results)
    levels = pd.read_csv(source, dtype={"case_id": str}, keep_default_na=False, na_values=[""])
    need = {"case_id", "side", "level", "dissected", "mr_call", "path_status"}
    if not need <= set(levels.columns):
        raise InputError(source, "header", f"missing columns {sorted(need - set(levels.columns))}")
    table = patients_table(cohort, patients)
    sides = dict(zip(table["case_id"].astype(str), table.get("primary_side", pd.Series(dtype=object)), strict=False))
    for cid in dict.fromkeys(levels["case_id"]):
        side = sides.get(cid)
        if side not in ("R", "L", "midline"):
            raise InputError(source, "case_id", f"{cid!r} has no primary side R / L / midline in --cohort or "
                             f"--patients (got {side!r})")  # fmt: skip
    table = table[table["case_id"].astype(str).isin(set(levels["case_id"]))]
    names = dict(zip(_WRITTEN, (modality, reference), strict=True))
    with atomic_path(out) as tmp:
        write_lydata(levels, table, tmp)
        head, _, body = tmp.read_text(encoding="utf-8").partition("\n")
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow([names.get(h, h) for h in next(csv.reader([head]))])
        tmp.write_text(buf.getvalue() + body, encoding="utf-8")
    return Path(out)
