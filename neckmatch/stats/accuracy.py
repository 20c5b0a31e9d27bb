"""Diagnostic accuracy of a binary index test against a binary reference, with naive and clustered intervals.

Every estimate is a proportion ``k / n`` of units:

=============== ============================== ==========================
metric          units counted (``n``)           successes (``k``)
=============== ============================== ==========================
``sensitivity`` reference positive (TP + FN)    index positive (TP)
``specificity`` reference negative (TN + FP)    index negative (TN)
``ppv``         index positive (TP + FP)        reference positive (TP)
``npv``         index negative (TN + FN)        reference negative (TN)
``accuracy``    all (TP + FP + FN + TN)         index == reference
=============== ============================== ==========================

Naive intervals are Wilson score intervals (``statsmodels`` ``proportion_confint(method="wilson")``), defined
for zero cells too. Where units are clustered in patients (several nodes or levels per patient), two clustered
intervals are added: a patient-level cluster bootstrap (percentile, seeded) and a GEE logistic model with an
intercept only, exchangeable working correlation and the sandwich (robust) standard error, whose interval is
computed on the logit scale and back-transformed. The design effect is the ratio of the sandwich variance of
the logit to its binomial variance under independence, ``1 / (n p (1 - p))``.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy.special import expit
from scipy.stats import norm
from statsmodels.stats.proportion import proportion_confint

__all__ = [
    "METRICS",
    "GeeResult",
    "confusion_counts",
    "wilson_interval",
    "diagnostic_metrics",
    "cluster_bootstrap",
    "gee_proportion",
    "metric_outcomes",
    "accuracy_row",
    "accuracy_table",
    "accuracy_columns",
]

METRICS: tuple[str, ...] = ("sensitivity", "specificity", "ppv", "npv", "accuracy")

# Cell order used throughout: TP, FP, FN, TN. Per metric: which cells are successes and which are counted.
_CELLS = ("tp", "fp", "fn", "tn")
_NUM = {"sensitivity": [0], "specificity": [3], "ppv": [0], "npv": [3], "accuracy": [0, 3]}
_DEN = {"sensitivity": [0, 2], "specificity": [3, 1], "ppv": [0, 1], "npv": [3, 2], "accuracy": [0, 1, 2, 3]}


_BOOL_TEXT = {"true": 1.0, "false": 0.0, "positive": 1.0, "negative": 0.0, "yes": 1.0, "no": 0.0,
              "1": 1.0, "0": 0.0, "1.0": 1.0, "0.0": 0.0}


def _as_bool(v: Any) -> float:
    if isinstance(v, (bool, np.bool_, int, np.integer, float, np.floating)):
        return 1.0 if bool(v) else 0.0
    return _BOOL_TEXT.get(str(v).strip().lower(), np.nan)


def _as_bool_array(values: ArrayLike) -> NDArray[np.float64]:
    """1.0 / 0.0 / NaN from booleans, 0/1, ``"true"``/``"false"``, ``"positive"``/``"negative"`` or missing.

    Each distinct value is read once (``pandas.factorize``), so long columns of a few values are cheap.

    Examples
    --------
    >>> _as_bool_array([True, "negative", None, 0, " Yes", "maybe", float("nan")]).tolist()
    [1.0, 0.0, nan, 0.0, 1.0, nan, nan]
    """
    codes, uniques = pd.factorize(np.asarray(values, dtype=object), use_na_sentinel=True)
    mapped = np.array([_as_bool(v) for v in uniques] + [np.nan], dtype=np.float64)
    return mapped[codes]  # code -1 (missing) takes the trailing NaN


def confusion_counts(index: ArrayLike, reference: ArrayLike) -> dict[str, int]:
    """TP, FP, FN, TN of ``index`` against ``reference``; units missing either are left out.

    Parameters
    ----------
    index, reference : array_like of shape (N,)
        Booleans (or ``true``/``false``, ``positive``/``negative`` strings); missing values are skipped.

    Examples
    --------
    >>> confusion_counts([True, True, False, False, None], ["positive", "negative", "positive", "negative", "positive"])
    {'tp': 1, 'fp': 1, 'fn': 1, 'tn': 1}
    """
    idx, ref = _as_bool_array(index), _as_bool_array(reference)
    ok = ~(np.isnan(idx) | np.isnan(ref))
    idx, ref = idx[ok] == 1, ref[ok] == 1
    return {"tp": int(np.sum(idx & ref)), "fp": int(np.sum(idx & ~ref)),
            "fn": int(np.sum(~idx & ref)), "tn": int(np.sum(~idx & ~ref))}


def wilson_interval(count: ArrayLike, nobs: ArrayLike, alpha: float = 0.05) -> tuple[Any, Any]:
    """Wilson score interval of ``count / nobs``; NaN where ``nobs`` is 0.

    Examples
    --------
    >>> lo, hi = wilson_interval(81, 263)  # Newcombe (1998), Table I
    >>> round(float(lo), 4), round(float(hi), 4)
    (0.2553, 0.3662)
    """
    k, n = np.asarray(count, dtype=float), np.asarray(nobs, dtype=float)
    safe = np.where(n > 0, n, 1.0)
    lo, hi = proportion_confint(k, safe, alpha=alpha, method="wilson")
    # Exact ends where the count is 0 or n (statsmodels leaves rounding noise such as 1.4e-17 / 0.9999999999999999).
    lo, hi = np.where(k <= 0, 0.0, np.clip(lo, 0.0, 1.0)), np.where(k >= n, 1.0, np.clip(hi, 0.0, 1.0))
    lo, hi = np.where(n > 0, lo, np.nan), np.where(n > 0, hi, np.nan)
    if lo.ndim == 0:
        return float(lo), float(hi)
    return lo, hi


def diagnostic_metrics(tp: int, fp: int, fn: int, tn: int, alpha: float = 0.05) -> dict[str, float]:
    """Sensitivity, specificity, PPV, NPV and accuracy with Wilson intervals (``<metric>_low``/``_high``).

    A metric whose denominator is 0 is NaN.

    Examples
    --------
    >>> m = diagnostic_metrics(tp=8, fp=0, fn=2, tn=10)
    >>> m["sensitivity"], m["specificity"], m["ppv"]
    (0.8, 1.0, 1.0)
    """
    cells = np.array([tp, fp, fn, tn], dtype=float)
    out: dict[str, float] = {}
    for m in METRICS:
        k, n = cells[_NUM[m]].sum(), cells[_DEN[m]].sum()
        lo, hi = wilson_interval(k, n, alpha)
        out[m] = float(k / n) if n > 0 else float("nan")
        out[f"{m}_low"], out[f"{m}_high"] = lo, hi
    return out


def _cluster_cells(idx: NDArray[np.bool_], ref: NDArray[np.bool_], codes: NDArray[np.int64], n_clusters: int) -> Any:
    """Per-cluster TP, FP, FN, TN: ndarray of shape (C, 4), int."""
    cell = np.where(idx & ref, 0, np.where(idx & ~ref, 1, np.where(~idx & ref, 2, 3)))
    counts = np.zeros((n_clusters, 4), dtype=np.int64)
    np.add.at(counts, (codes, cell), 1)
    return counts


def cluster_bootstrap(
    index: ArrayLike,
    reference: ArrayLike,
    clusters: ArrayLike,
    n_boot: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, tuple[float, float]]:
    """Patient-level cluster bootstrap percentile intervals of every metric.

    Whole clusters (patients) are resampled with replacement, ``n_boot`` times, with
    ``numpy.random.default_rng(seed)``; each metric's interval is the ``alpha/2`` and ``1 - alpha/2``
    percentiles of the resampled estimates (resamples with a zero denominator are ignored).

    Parameters
    ----------
    index, reference : array_like of shape (N,), bool
    clusters : array_like of shape (N,)
        Cluster (patient) of each unit.

    Returns
    -------
    dict
        ``{metric: (low, high)}``; NaN where no resample defines the metric.
    """
    idx, ref = np.asarray(index, dtype=bool), np.asarray(reference, dtype=bool)
    codes, uniq = pd.factorize(pd.Series(np.asarray(clusters)), sort=True)
    n_c = len(uniq)
    if n_c == 0:
        return {m: (float("nan"), float("nan")) for m in METRICS}
    per_cluster = _cluster_cells(idx, ref, np.asarray(codes), n_c)
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(n_c, np.full(n_c, 1.0 / n_c), size=n_boot)  # (B, C): times each patient drawn
    totals = weights @ per_cluster  # (B, 4)
    out = {}
    for m in METRICS:
        k, n = totals[:, _NUM[m]].sum(axis=1), totals[:, _DEN[m]].sum(axis=1)
        est = np.divide(k, n, out=np.full(len(n), np.nan), where=n > 0)
        est = est[~np.isnan(est)]
        if est.size == 0:
            out[m] = (float("nan"), float("nan"))
        else:
            lo, hi = np.percentile(est, [100 * alpha / 2, 100 * (1 - alpha / 2)])
            out[m] = (float(lo), float(hi))
    return out


@dataclass(frozen=True)
class GeeResult:
    """GEE estimate of a clustered proportion: estimate, interval, design effect and a note (empty if fine)."""

    estimate: float
    low: float
    high: float
    design_effect: float
    note: str = ""


def gee_proportion(success: ArrayLike, clusters: ArrayLike, alpha: float = 0.05) -> GeeResult:
    """Proportion of successes with a GEE (logit link, exchangeable, sandwich SE) interval.

    The model is ``logit P(y = 1) = b0`` fitted by ``statsmodels`` GEE with a Binomial family and exchangeable
    working correlation within clusters; the interval is ``expit(b0 -+ z se_robust)``. The design effect is
    ``se_robust**2 * n * p * (1 - p)`` with ``p = expit(b0)``: the sandwich variance of the logit over its
    binomial variance under independence. Zero cells (all successes or none) separate the model: the result is
    NaN with a note, as it is with fewer than two clusters or when the fit fails.

    Parameters
    ----------
    success : array_like of shape (N,), bool
    clusters : array_like of shape (N,)
    """
    y = np.asarray(success, dtype=float)
    groups = pd.factorize(pd.Series(np.asarray(clusters)), sort=True)[0]
    nan = float("nan")
    n, k = len(y), float(y.sum()) if len(y) else 0.0
    if n == 0:
        return GeeResult(nan, nan, nan, nan, "no units")
    if k == 0 or k == n:
        return GeeResult(nan, nan, nan, nan, f"separation: {int(k)}/{n} successes")
    if len(np.unique(groups)) < 2:
        return GeeResult(nan, nan, nan, nan, "fewer than 2 clusters")
    return _gee_fit(y.tobytes(), groups.astype(np.int64).tobytes(), alpha)


@lru_cache(maxsize=256)
def _gee_fit(y_bytes: bytes, groups_bytes: bytes, alpha: float) -> GeeResult:
    """The GEE fit of :func:`gee_proportion`; the statistics fit the same units more than once, so it is cached."""
    from statsmodels.genmod import cov_struct, families  # not statsmodels.api: 0.25 s more to import
    from statsmodels.genmod.generalized_estimating_equations import GEE

    y, groups = np.frombuffer(y_bytes, dtype=np.float64).copy(), np.frombuffer(groups_bytes, dtype=np.int64).copy()
    n, nan = len(y), float("nan")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            res = GEE(y, np.ones((n, 1)), groups=groups, family=families.Binomial(),
                      cov_struct=cov_struct.Exchangeable()).fit()
            b0, se = float(res.params[0]), float(res.bse[0])
        except (ValueError, np.linalg.LinAlgError, ZeroDivisionError) as exc:
            return GeeResult(nan, nan, nan, nan, f"GEE failed: {exc}")
    notes = sorted({type(w.message).__name__ for w in caught})
    if not (np.isfinite(b0) and np.isfinite(se)) or any("Convergence" in s or "IterationLimit" in s for s in notes):
        return GeeResult(nan, nan, nan, nan, "GEE did not converge")
    z = float(norm.ppf(1 - alpha / 2))
    p = float(expit(b0))
    deff = se**2 * n * p * (1 - p)
    return GeeResult(p, float(expit(b0 - z * se)), float(expit(b0 + z * se)), float(deff), "; ".join(notes))


def metric_outcomes(metric: str, index: NDArray[np.bool_], reference: NDArray[np.bool_]) -> tuple[Any, Any]:
    """Units counted by ``metric`` (bool mask, shape (N,)) and their success flags (shape (N,))."""
    if metric == "sensitivity":
        return reference, index
    if metric == "specificity":
        return ~reference, ~index
    if metric == "ppv":
        return index, reference
    if metric == "npv":
        return ~index, ~reference
    if metric == "accuracy":
        return np.ones_like(index), index == reference
    raise ValueError(f"unknown metric '{metric}' (one of {', '.join(METRICS)})")


def accuracy_columns() -> list[str]:
    """The columns of an accuracy table, in order (see docs/statistics.md)."""
    cols = ["analysis", "unit", "level", "side", "n_patients", "n", *_CELLS, "prevalence"]
    for m in METRICS:
        cols += [m, f"{m}_low", f"{m}_high"]
    for m in METRICS:
        cols += [f"{m}_low_boot", f"{m}_high_boot", f"{m}_gee", f"{m}_low_gee", f"{m}_high_gee", f"{m}_deff"]
    return [*cols, "design_effect", "max_units_per_patient", "gee_note"]


def accuracy_row(
    index: ArrayLike,
    reference: ArrayLike,
    clusters: ArrayLike,
    *,
    clustered: bool | None = None,
    n_boot: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, Any]:
    """Counts, metrics, Wilson intervals and (where units cluster) bootstrap and GEE intervals for one row.

    Units with a missing index or reference are dropped first. ``clustered=None`` adds the clustered
    intervals only where some patient contributes more than one unit; otherwise those columns are NaN.
    """
    idx, ref = _as_bool_array(index), _as_bool_array(reference)
    cl = np.asarray(clusters, dtype=object)
    ok = ~(np.isnan(idx) | np.isnan(ref))
    idx, ref, cl = idx[ok] == 1, ref[ok] == 1, cl[ok]
    cells = confusion_counts(idx, ref)
    per_patient = pd.Series(cl).value_counts()
    row: dict[str, Any] = {"n_patients": int(len(per_patient)), "n": int(len(idx)), **cells}
    row["prevalence"] = float(ref.mean()) if len(ref) else float("nan")
    row["max_units_per_patient"] = int(per_patient.max()) if len(per_patient) else 0
    row.update(diagnostic_metrics(**cells, alpha=alpha))
    for m in METRICS:
        for suffix in ("low_boot", "high_boot", "gee", "low_gee", "high_gee", "deff"):
            row[f"{m}_{suffix}"] = float("nan")
    row["design_effect"] = float("nan")
    do_cluster = row["max_units_per_patient"] > 1 if clustered is None else clustered
    notes = []
    if do_cluster and len(idx):
        boot = cluster_bootstrap(idx, ref, cl, n_boot=n_boot, seed=seed, alpha=alpha)
        for m in METRICS:
            row[f"{m}_low_boot"], row[f"{m}_high_boot"] = boot[m]
            mask, succ = metric_outcomes(m, idx, ref)
            g = gee_proportion(succ[mask], cl[mask], alpha=alpha)
            row.update({f"{m}_gee": g.estimate, f"{m}_low_gee": g.low, f"{m}_high_gee": g.high,
                        f"{m}_deff": g.design_effect})
            if g.note:
                notes.append(f"{m}: {g.note}")
        row["design_effect"] = row["accuracy_deff"]
    row["gee_note"] = "; ".join(notes)
    return row


def accuracy_table(
    frame: pd.DataFrame,
    index: str,
    reference: str,
    *,
    cluster: str = "case_id",
    by: Sequence[str] = ("level", "side"),
    unit: str = "node",
    analysis: str = "main",
    pooled: Iterable[str] | None = None,
    n_boot: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """Accuracy rows per group of ``by`` columns and one pooled row (``level=all``, ``side=both``).

    Parameters
    ----------
    frame : DataFrame
        One row per unit with the ``index`` (bool call), ``reference`` (bool or positive/negative) and
        ``cluster`` (patient) columns, and the ``by`` columns.
    pooled : iterable of str, optional
        Values for the pooled row's ``by`` columns; defaults to ``all`` for ``level`` and ``both`` for ``side``.

    Returns
    -------
    DataFrame
        Columns :func:`accuracy_columns`; groups in sorted order, the pooled row last.
    """
    rows = []
    keys = list(by)
    if keys:
        for key, grp in frame.groupby(keys, sort=True, dropna=True):
            key = key if isinstance(key, tuple) else (key,)
            row = accuracy_row(grp[index], grp[reference], grp[cluster], n_boot=n_boot, seed=seed)
            rows.append({**dict(zip(keys, key, strict=True)), **row})
    fill = list(pooled) if pooled is not None else ["all" if k == "level" else "both" if k == "side" else "all"
                                                     for k in keys]
    row = accuracy_row(frame[index], frame[reference], frame[cluster], n_boot=n_boot, seed=seed)
    rows.append({**dict(zip(keys, fill, strict=True)), **row})
    out = pd.DataFrame(rows)
    out["analysis"], out["unit"] = analysis, unit
    for col in ("level", "side"):
        if col not in out:
            out[col] = "all" if col == "level" else "both"
    return out.reindex(columns=accuracy_columns())
