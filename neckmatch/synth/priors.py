"""Priors of the synthetic cohort computed from the real lyDATA tables (shared/data/lydata).

The numbers that :mod:`neckmatch.synth.params` stores were computed by these functions; a test recomputes them
from the CSVs so the stored numbers cannot drift from their source. Each lyDATA ``data.csv`` has a three-row
header (modality / ``ipsi``|``contra``|``info`` / level); ``total_dissected`` holds harvested node counts per
level and side, ``pathology`` holds per-level involvement (``True`` = at least one metastatic node).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

__all__ = [
    "LYDATA_SETS",
    "read_lydata",
    "primary_location",
    "count_stats",
    "involvement_stats",
    "cohort_stats",
]

#: The lyDATA folders with per-level node counts and pathology (the brief's sources).
LYDATA_SETS: tuple[str, ...] = ("2023-isb-multisite", "2021-clb-oropharynx", "2023-clb-multisite")

# ICD-10 subsite prefix -> primary location (C01 base of tongue, C05.1/2 soft palate/uvula are oropharynx).
_ICD_LOCATION = {
    "C00": "oral cavity", "C02": "oral cavity", "C03": "oral cavity", "C04": "oral cavity",
    "C05.0": "oral cavity", "C06": "oral cavity", "C01": "oropharynx", "C05.1": "oropharynx",
    "C05.2": "oropharynx", "C09": "oropharynx", "C10": "oropharynx", "C12": "hypopharynx",
    "C13": "hypopharynx", "C32": "larynx",
}  # fmt: skip

#: Coarse lyDATA levels of the involvement model and each one's upstream (parent) level.
INVOLVEMENT_PARENT: dict[str, str | None] = {"I": None, "II": None, "III": "II", "IV": "III", "V": "II"}


def read_lydata(root: str | Path) -> list[pd.DataFrame]:
    """Read the :data:`LYDATA_SETS` tables under ``root`` (the ``lydata`` folder), three-row headers kept."""
    return [pd.read_csv(Path(root) / name / "data.csv", header=[0, 1, 2], low_memory=False) for name in LYDATA_SETS]


def primary_location(frame: pd.DataFrame) -> pd.Series:
    """Primary site per patient (``oral cavity``, ``oropharynx``, ``hypopharynx``, ``larynx``; NaN if unknown),
    from the ICD-10 ``tumor/1/subsite`` code."""
    sub = frame[("tumor", "1", "subsite")].astype(str).str.strip()
    out = sub.str[:5].map(_ICD_LOCATION)
    return out.fillna(sub.str[:3].map(_ICD_LOCATION))


def _bool(col: pd.Series) -> pd.Series:
    """lyDATA booleans (True/False/'True'/'False'/NaN) -> float 1/0/NaN."""
    m = {True: 1.0, False: 0.0, "True": 1.0, "False": 0.0, "true": 1.0, "false": 0.0}
    return col.map(lambda v: m.get(v, np.nan) if not isinstance(v, float) else np.nan).astype(float)


def _counts(frames: list[pd.DataFrame], level: str) -> np.ndarray:
    """Pooled harvested counts (> 0) of one lyDATA level column, ipsi and contra, all sets that have it."""
    vals = []
    for f in frames:
        for side in ("ipsi", "contra"):
            key = ("total_dissected", side, level)
            if key in f.columns:
                v = pd.to_numeric(f[key], errors="coerce").to_numpy(dtype=float)
                vals.append(v[np.isfinite(v) & (v > 0)])
    return np.concatenate(vals) if vals else np.zeros(0)


def _split_share(frames: list[pd.DataFrame], a: str, b: str) -> float:
    """Share of level ``a`` in ``a + b`` (ratio of summed counts where both are recorded)."""
    sa = sb = 0.0
    for f in frames:
        for side in ("ipsi", "contra"):
            ka, kb = ("total_dissected", side, a), ("total_dissected", side, b)
            if ka in f.columns and kb in f.columns:
                va = pd.to_numeric(f[ka], errors="coerce")
                vb = pd.to_numeric(f[kb], errors="coerce")
                ok = va.notna() & vb.notna() & ((va + vb) > 0)
                sa, sb = sa + float(va[ok].sum()), sb + float(vb[ok].sum())
    return sa / (sa + sb)


def count_stats(frames: list[pd.DataFrame]) -> dict[str, tuple[float, float]]:
    """Median and log-spread of the true node count per imaging level, from ``total_dissected``.

    IA, IB, III, IV: pooled medians of the ``Ia``, ``Ib``, ``III``, ``IV`` columns (counts > 0, both sides,
    all three sets). IIA/IIB and VA/VB: the pooled ``II`` / ``V`` median split by the share of ``IIa`` in
    ``IIa + IIb`` (``Va`` in ``Va + Vb``) where both are recorded. The spread is the log-normal sigma
    implied by the interquartile range, ``ln(q75 / q25) / 1.349``.

    Returns
    -------
    dict
        ``{level: (median, sigma)}`` for IA, IB, IIA, IIB, III, IV, VA, VB.
    """
    out: dict[str, tuple[float, float]] = {}

    def med_sigma(v: np.ndarray) -> tuple[float, float]:
        q25, q50, q75 = np.quantile(v, [0.25, 0.5, 0.75])
        return float(q50), float(np.log(q75 / q25) / 1.349)

    for name, col in (("IA", "Ia"), ("IB", "Ib"), ("III", "III"), ("IV", "IV")):
        out[name] = med_sigma(_counts(frames, col))
    for coarse, (a, b) in (("II", ("IIa", "IIb")), ("V", ("Va", "Vb"))):
        med, sig = med_sigma(_counts(frames, coarse))
        share = _split_share(frames, a, b)
        out[a.upper()] = (med * share, sig)
        out[b.upper()] = (med * (1.0 - share), sig)
    return out


def _involved(f: pd.DataFrame, side: str, level: str) -> pd.Series:
    """Pathology involvement of a coarse level (I = Ia or Ib where only those exist)."""
    path = f["pathology"]
    if (side, level) in path.columns:
        v = _bool(path[(side, level)])
        if v.notna().any():
            return v
    subs = [c for c in (level + "a", level + "b") if (side, c) in path.columns]
    if not subs:
        return pd.Series(np.nan, index=f.index)
    parts = pd.concat([_bool(path[(side, c)]) for c in subs], axis=1)
    return parts.max(axis=1, skipna=False)


def involvement_stats(frames: list[pd.DataFrame]) -> dict[str, dict[str, dict[str, tuple[float, float]]]]:
    """Per primary location and side (``ipsi``/``contra``), per coarse level: P(involved | parent involved) and
    P(involved | parent not involved) (roots: the marginal twice), with a Beta(1, 1) prior (Laplace).

    Returns
    -------
    dict
        ``{location: {side: {level: (p_if_parent_pos, p_if_parent_neg)}}}``, probabilities in [0, 1].
    """
    rows = []
    for f in frames:
        loc = primary_location(f)
        for side in ("ipsi", "contra"):
            d = pd.DataFrame({lv: _involved(f, side, lv) for lv in INVOLVEMENT_PARENT})
            d["location"], d["side"] = loc.to_numpy(), side
            rows.append(d)
    data = pd.concat(rows, ignore_index=True).dropna(subset=["location"])
    out: dict[str, dict[str, dict[str, tuple[float, float]]]] = {}
    for (loc, side), g in data.groupby(["location", "side"]):
        lv_out = {}
        for lv, parent in INVOLVEMENT_PARENT.items():
            if parent is None:
                v = g[lv].dropna()
                p = (v.sum() + 1.0) / (len(v) + 2.0)
                lv_out[lv] = (round(float(p), 3), round(float(p), 3))
                continue
            both = g[[lv, parent]].dropna()
            pos, neg = both[both[parent] == 1][lv], both[both[parent] == 0][lv]
            lv_out[lv] = (
                round(float((pos.sum() + 1.0) / (len(pos) + 2.0)), 3),
                round(float((neg.sum() + 1.0) / (len(neg) + 2.0)), 3),
            )
        out.setdefault(str(loc), {})[str(side)] = lv_out
    return out


def cohort_stats(frames: list[pd.DataFrame]) -> dict[str, object]:
    """Patient-level frequencies: primary location shares, fraction midline (isb ``central``), fraction with a
    contralateral dissection (any contra ``total_dissected`` > 0), mean positive nodes per involved level."""
    locs = pd.concat([primary_location(f) for f in frames]).dropna()
    share = (locs.value_counts() / len(locs)).round(3).to_dict()
    central = pd.concat([f[("tumor", "1", "central")] for f in frames if ("tumor", "1", "central") in f.columns])
    midline = float(_bool(central).mean())
    bil, pos = [], []
    for f in frames:
        contra = f["total_dissected"]["contra"].apply(pd.to_numeric, errors="coerce").fillna(0)
        bil.append((contra.sum(axis=1) > 0).to_numpy())
        for side in ("ipsi", "contra"):
            for lv in INVOLVEMENT_PARENT:
                key = ("positive_dissected", side, lv)
                if key in f.columns:
                    n = pd.to_numeric(f[key], errors="coerce")
                    pos.append(n[(_involved(f, side, lv) == 1) & (n > 0)].to_numpy(dtype=float))
    return {
        "location_share": {str(k): float(v) for k, v in share.items()},
        "midline_fraction": round(midline, 3),
        "bilateral_fraction": round(float(np.concatenate(bil).mean()), 3),
        "positive_per_involved_level": round(float(np.concatenate(pos).mean()), 3),
    }
