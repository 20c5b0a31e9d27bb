"""lyDATA CSVs: read per-level involvement, level-wise accuracy of one modality against another, and write a
cohort's level truth tables in lyDATA's (old) three-row header layout.

A lyDATA CSV (github.com/rmnldwg/lydata) has three header rows: top (``patient``, ``tumor``, a modality such as
``MRI`` or ``pathology``), middle (``#`` / ``1`` for patient / tumour fields, ``ipsi`` / ``contra`` / ``info``
for a modality) and the field or level (``I``, ``Ia``, ``Ib``, ``II``, ...). ``True`` = at least one involved
node in that level by that modality, ``False`` = none, empty = not assessed.

Superlevels ``I``, ``II``, ``V`` without their own value are inferred from their sublevels: positive if any
sublevel is positive, negative if all sublevels are known negative, else unknown.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from neckmatch.errors import InputError
from neckmatch.io.atomic import atomic_path
from neckmatch.model import ContainerLevel, Level, Status, pn_status
from neckmatch.stats.accuracy import _as_bool_array, accuracy_columns, accuracy_table

__all__ = [
    "LYDATA_LEVELS", "SUPERLEVELS", "read_lydata", "involvement", "lydata_accuracy", "patient_reference",
    "write_lydata", "run_lydata_stats",
]

LYDATA_LEVELS: tuple[str, ...] = ("I", "Ia", "Ib", "II", "IIa", "IIb", "III", "IV", "V", "Va", "Vb")
SUPERLEVELS: dict[str, tuple[str, ...]] = {"I": ("Ia", "Ib"), "II": ("IIa", "IIb"), "V": ("Va", "Vb")}
POOLED_LEVELS: tuple[str, ...] = ("I", "II", "III", "IV", "V")
_SEP = "|"
_IMAGING_ONLY = frozenset({Level.RP.value, Level.SC.value})  # imaging levels no surgical level is named after


def read_lydata(path: str | Path) -> pd.DataFrame:
    """Read a lyDATA CSV; columns are flattened to ``"top|middle|field"`` strings (e.g. ``"MRI|ipsi|IIa"``).

    Raises
    ------
    InputError
        If the file does not have three header rows with a ``patient`` id column.
    """
    path = Path(path)
    try:
        frame = pd.read_csv(path, header=[0, 1, 2], low_memory=False)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise InputError(path, "header", f"not a lyDATA CSV with three header rows ({exc})") from None
    frame.columns = [_SEP.join(str(x) for x in c) for c in frame.columns]
    if not any(c in frame for c in ("patient|#|id", "patient|core|id")):
        raise InputError(path, "header", f"no 'patient / # / id' column (first columns: {list(frame.columns)[:3]})")
    return frame


def _patient_ids(frame: pd.DataFrame) -> pd.Series:
    col = "patient|#|id" if "patient|#|id" in frame else "patient|core|id"
    return frame[col].astype(str)


def involvement(frame: pd.DataFrame, modality: str, source: str | Path = "lyDATA") -> pd.DataFrame:
    """Per-level involvement of one modality, with superlevels inferred from sublevels.

    Parameters
    ----------
    frame : DataFrame
        From :func:`read_lydata`.
    modality : str
        Top-level header, e.g. ``"MRI"`` or ``"pathology"``.

    Returns
    -------
    DataFrame
        Long format: ``patient, side (ipsi/contra), level, value`` (float 1.0 / 0.0 / NaN), one row per patient,
        side and level of :data:`LYDATA_LEVELS`.
    """
    mods = sorted({c.split(_SEP)[0] for c in frame.columns})
    if modality not in mods:
        raise InputError(source, "modality", f"'{modality}' is not in the file (modalities: {', '.join(mods)})")
    ids = _patient_ids(frame)
    parts = []
    for side in ("ipsi", "contra"):
        vals = {}
        for lv in LYDATA_LEVELS:
            col = f"{modality}{_SEP}{side}{_SEP}{lv}"
            vals[lv] = _as_bool_array(frame[col].to_numpy(dtype=object)) if col in frame else np.full(len(frame),
                                                                                                     np.nan)
        for sup, subs in SUPERLEVELS.items():
            sub = np.stack([vals[s] for s in subs])
            inferred = np.where((sub == 1).any(axis=0), 1.0, np.where((sub == 0).all(axis=0), 0.0, np.nan))
            vals[sup] = np.where(np.isnan(vals[sup]), inferred, vals[sup])
        for lv in LYDATA_LEVELS:
            parts.append(pd.DataFrame({"patient": ids.to_numpy(), "side": side, "level": lv, "value": vals[lv]}))
    return pd.concat(parts, ignore_index=True)


def _patient_any(table: pd.DataFrame, column: str) -> pd.Series:
    """Index test per patient: 1 if any pooled level is positive, 0 if none is but one is known, else NaN.

    (Imaging reads the whole neck: a level without a value was read as not reported.)
    """
    sub = table[table["level"].isin(POOLED_LEVELS)]
    pos = sub.groupby("patient")[column].apply(lambda v: (v == 1).any())
    known = sub.groupby("patient")[column].apply(lambda v: v.notna().any())
    return pd.Series(np.where(pos, 1.0, np.where(known, 0.0, np.nan)), index=pos.index)


def _patient_all(table: pd.DataFrame, column: str) -> pd.Series:
    """Reference from levels per patient: 1 if any pooled level is positive, 0 only if every pooled level of both
    sides is known negative, else NaN (a positive node may lie in a level not assessed or sent en bloc)."""
    sub = table[table["level"].isin(POOLED_LEVELS)]
    pos = sub.groupby("patient")[column].apply(lambda v: (v == 1).any())
    all_neg = sub.groupby("patient")[column].apply(lambda v: bool((v == 0).all()))
    return pd.Series(np.where(pos, 1.0, np.where(all_neg, 0.0, np.nan)), index=pos.index)


def _n_positive(value: Any) -> float:
    """1.0 / 0.0 from an N category given as a number (``0``-``3``) or text (``N2b``, ``pN0``); NaN if unknown.

    Examples
    --------
    >>> _n_positive(0), _n_positive("2"), _n_positive("pN1"), _n_positive("NX"), _n_positive(None)
    (0.0, 1.0, 1.0, nan, nan)
    """
    num = pd.to_numeric(pd.Series([value], dtype=object), errors="coerce").iloc[0]
    if num == num:
        return 1.0 if num > 0 else 0.0
    try:
        status = pn_status(value)
    except ValueError:
        return float("nan")
    return float("nan") if status is None else float(status is Status.POSITIVE)


def patient_reference(frame: pd.DataFrame, table: pd.DataFrame, reference: str) -> tuple[pd.Series, str]:
    """Patient-level reference: the pathological N category where the reference is pathology, else from levels.

    With ``reference="pathology"`` and a ``patient / # / n_stage`` column: ``n_stage > 0`` for patients who had a
    neck dissection (``neck_dissection`` not False) and whose pathology was assessed in at least one level (their
    N category is pathological); the level rule (:func:`_patient_all`) where ``n_stage`` is missing; others have
    no reference. Otherwise the level rule alone.

    Parameters
    ----------
    frame : DataFrame
        From :func:`read_lydata`.
    table : DataFrame
        Long per-level table with ``patient, level, reference`` (1.0 / 0.0 / NaN).

    Returns
    -------
    values : Series
        Per patient 1.0 / 0.0 / NaN.
    name : str
        The reference used, for the row's ``reference`` column.
    """
    by_levels = _patient_all(table, "reference")
    n_col = next((c for c in ("patient|#|n_stage", "patient|core|n_stage") if c in frame), None)
    if reference != "pathology" or n_col is None:
        return by_levels, f"{reference} (levels)"
    ids = _patient_ids(frame).to_numpy()
    n_stage = pd.Series([_n_positive(v) for v in frame[n_col]], index=ids)
    nd_col = next((c for c in ("patient|#|neck_dissection", "patient|core|neck_dissection") if c in frame), None)
    operated = _as_bool_array(frame[nd_col].to_numpy(dtype=object)) != 0 if nd_col else np.ones(len(ids), bool)
    assessed = table.groupby("patient")["reference"].apply(lambda v: v.notna().any())
    ok = pd.Series(operated, index=ids).reindex(by_levels.index).fillna(False).astype(bool) & assessed.reindex(
        by_levels.index).fillna(False).astype(bool)
    ref = n_stage.reindex(by_levels.index).where(ok)
    return ref.where(ref.notna(), by_levels.where(ok)), "pathology N category (patient/#/n_stage)"


def lydata_accuracy(
    frame: pd.DataFrame, index: str = "MRI", reference: str = "pathology", *, n_boot: int = 2000, seed: int = 0,
    source: str | Path = "lyDATA",
) -> pd.DataFrame:
    """Level-wise accuracy of modality ``index`` against ``reference``.

    Rows: one per (level, side) for :data:`LYDATA_LEVELS` and ``ipsi`` / ``contra`` (units: patients with both
    values); a pooled row (``level=all``, ``side=both``) over levels I-V of both sides, clustered by patient
    (bootstrap and GEE intervals); a patient row (``unit=patient``, ``level=any``, ``side=both``): index positive if
    any of I-V on either side is positive, negative if none is and at least one is known; reference from
    :func:`patient_reference` (the pathological N category for ``reference="pathology"``), named in the row's
    ``reference`` column.
    """
    idx = involvement(frame, index, source).rename(columns={"value": "index"})
    ref = involvement(frame, reference, source)
    table = idx.assign(reference=ref["value"].to_numpy())
    both = table.dropna(subset=["index", "reference"])
    rows = []
    for lv in LYDATA_LEVELS:
        for side in ("ipsi", "contra"):
            sub = both[(both["level"] == lv) & (both["side"] == side)]
            rows.append(accuracy_table(sub, "index", "reference", cluster="patient", by=(), unit="level",
                                       n_boot=n_boot, seed=seed).assign(level=lv, side=side))
    pooled = both[both["level"].isin(POOLED_LEVELS)]
    rows.append(accuracy_table(pooled, "index", "reference", cluster="patient", by=(), unit="level",
                               n_boot=n_boot, seed=seed).assign(level="all", side="both"))
    ref, ref_name = patient_reference(frame, table, reference)
    pat = pd.DataFrame({"index": _patient_any(table, "index"), "reference": ref})
    pat = pat.dropna().rename_axis("patient").reset_index()
    rows.append(accuracy_table(pat, "index", "reference", cluster="patient", by=(), unit="patient",
                               n_boot=n_boot, seed=seed).assign(level="any", side="both"))
    records = [r for f in rows for r in f.to_dict("records")]
    out = pd.DataFrame(records, columns=accuracy_columns()).assign(index=index, reference=reference)
    out.loc[out["unit"] == "patient", "reference"] = ref_name
    return out


_PATIENT_FIELDS = ("id", "institution", "sex", "age", "diagnose_date", "alcohol_abuse", "nicotine_abuse",
                   "hpv_status", "neck_dissection", "tnm_edition", "n_stage", "m_stage")
_TUMOR_FIELDS = ("location", "subsite", "side", "central", "extension", "volume", "stage_prefix", "t_stage")
_TO_LYDATA = {"I": "I", "IA": "Ia", "IB": "Ib", "II": "II", "IIA": "IIa", "IIB": "IIb", "III": "III", "IV": "IV",
              "V": "V", "VA": "Va", "VB": "Vb"}


def _superlevel_of(parts: list[str]) -> str | None:
    """The lyDATA superlevel holding every part (``["IIa", "IIb"] -> "II"``), else None."""
    for sup, subs in SUPERLEVELS.items():
        if all(p == sup or p in subs for p in parts):
            return sup
    return None


def _level_values(levels: str, value: float) -> dict[str, float]:
    """lyDATA columns set by one container level and its value (1/0/NaN).

    A single level sets its own column. A merged container sets every part when negative; when positive only
    the superlevel that holds all parts (if any), since which part held the metastasis is unknown. Imaging-only
    levels of undissected rows (``RP``, ``SC``) have no lyDATA column and set nothing.
    """
    if value != value or levels in _IMAGING_ONLY:
        return {}
    parts = [_TO_LYDATA[p.value] for p in ContainerLevel.parse(levels).parts if p.value in _TO_LYDATA]
    if len(parts) == 1:
        return {parts[0]: value}
    if value == 0:
        return dict.fromkeys(parts, 0.0)
    sup = _superlevel_of(parts)
    return {sup: 1.0} if sup else {}


def _side_row(rows: pd.DataFrame, column: str) -> dict[str, float]:
    """lyDATA level values of one side from its truth_levels rows (positive wins over negative)."""
    out: dict[str, float] = {}
    for level, value in zip(rows["level"].astype(str), rows[column], strict=True):
        for lv, v in _level_values(level, value).items():
            out[lv] = max(out.get(lv, v), v)
    for sup, subs in SUPERLEVELS.items():
        if sup not in out:
            sub = [out.get(s, np.nan) for s in subs]
            if any(v == 1 for v in sub):
                out[sup] = 1.0
            elif all(v == 0 for v in sub):
                out[sup] = 0.0
    return out


def _ipsi_side(primary: str, levels: pd.DataFrame) -> str:
    """The ipsilateral side: the primary's; for a midline primary the side with more positive levels (R on ties)."""
    if primary in ("R", "L"):
        return primary
    pos = levels[levels["_ref"] == 1]["side"].value_counts()
    return "L" if pos.get("L", 0) > pos.get("R", 0) else "R"


def _bool_text(v: float) -> Any:
    return "" if v != v else ("True" if v == 1 else "False")


def _lydata_record(case_id: str, info: Mapping[str, Any], lv: pd.DataFrame) -> dict[tuple[str, str, str], Any]:
    primary = str(info.get("primary_side", "midline"))
    ipsi = _ipsi_side(primary, lv)
    rec: dict[tuple[str, str, str], Any] = {}
    for f in _PATIENT_FIELDS:
        rec[("patient", "#", f)] = case_id if f == "id" else info.get(f, "")
    tumor_side = {"R": "right", "L": "left"}.get(primary, "central")
    for f in _TUMOR_FIELDS:
        default = {"side": tumor_side, "central": primary == "midline"}.get(f, "")
        rec[("tumor", "1", f)] = info.get(f, default)
    for modality, column, use in (("MRI", "_index", lv), ("pathology", "_ref", lv[lv["_dissected"] == 1])):
        for side_name, side in (("ipsi", ipsi), ("contra", "L" if ipsi == "R" else "R")):
            vals = _side_row(use[use["side"] == side], column)
            for level in LYDATA_LEVELS:
                rec[(modality, side_name, level)] = _bool_text(vals.get(level, np.nan))
    return rec


def write_lydata(levels: pd.DataFrame, patients: pd.DataFrame, path: str | Path) -> Path:
    """Write a cohort's level truth tables as a lyDATA CSV (old header layout: ``patient / # / id``,
    ``tumor / 1 / t_stage``, ``MRI`` and ``pathology`` with ``ipsi`` / ``contra`` levels).

    Parameters
    ----------
    levels : DataFrame
        Stacked truth_levels.csv rows: ``case_id, side, level, dissected, mr_call, path_status``.
    patients : DataFrame
        One row per case: ``case_id``, ``primary_side`` (``R``/``L``/``midline``) and optionally lyDATA patient
        / tumour fields (``institution, sex, age, diagnose_date, n_stage, t_stage, subsite, location, ...``),
        written as given; absent fields are left empty.
    path : str or Path
        Output CSV, written atomically.

    Notes
    -----
    ipsi = the primary's side; for a ``midline`` primary ``tumor / 1 / central`` is True and ipsi is the side
    with more positive pathology levels (R on ties). Pathology values come from dissected levels only; MRI
    values from every imaged level.
    """
    if "primary_side" not in patients or "case_id" not in patients:
        raise InputError("patients", "header", f"needs case_id and primary_side, got {list(patients.columns)}")
    lv = levels.copy()
    lv["_index"] = _as_bool_array(lv["mr_call"].to_numpy(dtype=object))
    lv["_ref"] = _as_bool_array(lv["path_status"].to_numpy(dtype=object))
    lv["_dissected"] = _as_bool_array(lv["dissected"].to_numpy(dtype=object))
    lv["case_id"] = lv["case_id"].astype(str)
    info = {str(r["case_id"]): r for r in patients.to_dict("records")}
    records = [_lydata_record(cid, info.get(cid, {}), lv[lv["case_id"] == cid])
               for cid in sorted(set(lv["case_id"]) | set(info))]
    out = pd.DataFrame(records)
    keep = {("patient", "#", "id"), ("tumor", "1", "t_stage")}
    empty = [c for c in out.columns if c[0] in ("patient", "tumor") and c not in keep
             and out[c].map(lambda v: v is None or str(v) in ("", "nan")).all()]
    out = out.drop(columns=empty)  # absent clinical fields are left out (lyDATA defaults apply), not written empty
    out.columns = pd.MultiIndex.from_tuples(out.columns)
    with atomic_path(path) as tmp:
        out.to_csv(tmp, index=False)
    return Path(path)


def run_lydata_stats(path: str | Path, out_dir: str | Path, index: str = "MRI", reference: str = "pathology",
                     n_boot: int = 2000, seed: int = 0) -> Path:
    """Read a lyDATA CSV, compute :func:`lydata_accuracy` and write ``out_dir/accuracy.csv``; returns its path."""
    from neckmatch.io.atomic import write_csv

    frame = read_lydata(path)
    table = lydata_accuracy(frame, index, reference, n_boot=n_boot, seed=seed, source=path)
    return write_csv(table, Path(out_dir) / "accuracy.csv")
