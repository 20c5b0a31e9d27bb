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

Each row's main interval (``<metric>_low/_high``, method in ``ci_method``) is honest for its units:

- one unit per patient: the Wilson score interval (``statsmodels`` ``proportion_confint(method="wilson")``);
- units clustered in patients (several nodes or levels per patient): the Wilson interval with a design effect
  (:func:`clustered_wilson`): the effective sample size ``n / deff``, where ``deff`` (floored at 1) is the
  cluster-robust (CR1) variance of the pooled proportion over its binomial variance, and the ``t`` quantile with
  ``C - 1`` degrees of freedom for ``C`` patients. Valid for few clusters, never of zero width.

Two further clustered intervals are added where units cluster: a patient-level cluster bootstrap (percentile,
seeded) only with at least :data:`BOOT_MIN_PATIENTS` patients and a metric with successes and failures (a zero
cell resamples to a zero-width interval), and a GEE logistic model with an intercept only, exchangeable working
correlation and the bias-reduced sandwich standard error (Mancl & DeRouen 2001) with a ``t(C - 1)`` quantile,
computed on the logit scale and back-transformed. Every interval's method is named in the row
(``ci_method``, ``boot_method``, ``gee_method``) and every missing one's reason (``boot_note``, ``gee_note``).
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
from scipy.stats import t as student_t
from statsmodels.stats.proportion import proportion_confint

__all__ = [
    "METRICS",
    "BOOT_MIN_PATIENTS",
    "GeeResult",
    "cluster_robust_variance",
    "clustered_wilson",
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
# A percentile cluster bootstrap needs enough clusters: with fewer than ~20 the resampled clusters hold too few
# distinct patterns and its intervals undercover (Field & Welsh 2007; Cameron & Miller 2015, J Hum Resour 50:317,
# section VI); below this count the Wilson-deff interval with t(C - 1) stands alone.
BOOT_MIN_PATIENTS = 20

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


def _wilson_z(k: Any, n: Any, z: Any) -> tuple[Any, Any]:
    """Wilson score interval of ``k / n`` (arrays, ``n > 0``) for the quantile ``z``; exact ends at 0 and 1."""
    p = k / n
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z / (1 + z**2 / n) * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    lo = np.where(k <= 0, 0.0, np.clip(centre - half, 0.0, 1.0))
    hi = np.where(k >= n, 1.0, np.clip(centre + half, 0.0, 1.0))
    return lo, hi


def cluster_robust_variance(k: ArrayLike, n: ArrayLike) -> tuple[Any, Any]:
    """Pooled proportion ``p = sum k / sum n`` over clusters and its cluster-robust (CR1) variance.

    ``var = C / (C - 1) * sum_c (k_c - p n_c)**2 / N**2`` over the ``C`` clusters with ``n_c > 0``: the sandwich
    variance of an intercept-only GEE with independence working correlation (identity scale), with the usual
    small-sample factor ``C / (C - 1)``.

    Parameters
    ----------
    k, n : array_like of shape (..., C)
        Successes and units per cluster; leading axes are independent problems (e.g. replicates).

    Returns
    -------
    p, var : ndarray of shape (...)
        NaN where ``N = 0``; ``var`` NaN with fewer than two clusters holding units.

    Examples
    --------
    >>> p, v = cluster_robust_variance([2, 0, 1], [2, 1, 1])
    >>> round(float(p), 3), round(float(v), 4)  # 1.5 * (0.5**2 + 0.75**2 + 0.25**2) / 4**2
    (0.75, 0.082)
    """
    k, n = np.asarray(k, dtype=float), np.asarray(n, dtype=float)
    big_n = n.sum(axis=-1)
    p = np.divide(k.sum(axis=-1), big_n, out=np.full(big_n.shape, np.nan), where=big_n > 0)
    c = (n > 0).sum(axis=-1)
    resid = ((k - p[..., None] * n) ** 2).sum(axis=-1)
    ok = (c >= 2) & (big_n > 0)
    var = np.divide(c * resid, (c - 1) * big_n**2, out=np.full(big_n.shape, np.nan), where=ok)
    return p, var


def clustered_wilson(k: ArrayLike, n: ArrayLike, alpha: float = 0.05) -> dict[str, Any]:
    """Wilson interval with a design effect for a proportion pooled over clusters (patients).

    ``deff = max(1, var_CR1 / (p (1 - p) / N))`` (:func:`cluster_robust_variance`; 1 where ``p`` is 0 or 1, so a
    zero cell keeps a Wilson interval of positive width), effective size ``N / deff``, and the ``t`` quantile
    with ``C - 1`` degrees of freedom. The floor at 1 keeps the interval at least as wide as the independent
    Wilson interval (a negative within-patient correlation is not credited).

    Parameters
    ----------
    k, n : array_like of shape (..., C)
        Successes and units per cluster.

    Returns
    -------
    dict
        ``estimate, low, high, deff, n_clusters`` (arrays of shape (...), or floats); NaN where ``N = 0`` or
        fewer than two clusters hold units.

    Examples
    --------
    >>> r = clustered_wilson([3, 3, 3, 3], [3, 3, 3, 3])  # no errors at all: a Wilson interval, not [1, 1]
    >>> r["estimate"], r["high"], round(r["low"], 3), r["deff"]
    (1.0, 1.0, 0.542, 1.0)
    """
    k, n = np.asarray(k, dtype=float), np.asarray(n, dtype=float)
    p, var = cluster_robust_variance(k, n)
    big_n, c = n.sum(axis=-1), (n > 0).sum(axis=-1)
    binom = np.divide(p * (1 - p), big_n, out=np.zeros(big_n.shape), where=big_n > 0)
    raw = np.divide(var, binom, out=np.ones(big_n.shape), where=binom > 0)
    deff = np.where(np.isnan(var), np.nan, np.maximum(raw, 1.0))
    ok = np.isfinite(deff)
    n_eff = np.where(ok, big_n / np.where(ok, deff, 1.0), 1.0)
    t = student_t.ppf(1 - alpha / 2, np.maximum(c - 1, 1))
    lo, hi = _wilson_z(np.where(ok, p, 0.5) * n_eff, n_eff, t)
    out = {"estimate": p, "low": np.where(ok, lo, np.nan), "high": np.where(ok, hi, np.nan), "deff": deff,
           "n_clusters": c}
    if np.ndim(p) == 0:
        return {key: float(v) for key, v in out.items()}
    return out


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
    working correlation within clusters; the interval is ``expit(b0 -+ t se)`` with the bias-reduced sandwich
    standard error (Mancl & DeRouen 2001, statsmodels ``cov_type="bias_reduced"``) and the ``t`` quantile with
    ``C - 1`` degrees of freedom (small-sample correction for few clusters). The design effect is
    ``se_robust**2 * n * p * (1 - p)`` with the plain sandwich standard error and ``p = expit(b0)``: the sandwich
    variance of the logit over its binomial variance under independence. Zero cells (all successes or none)
    separate the model: the result is NaN with a note, as it is with fewer than two clusters or when the fit
    fails.

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
                      cov_struct=cov_struct.Exchangeable()).fit(cov_type="bias_reduced")
            b0, se = float(res.params[0]), float(res.bse[0])  # bias-reduced (Mancl-DeRouen)
            se_robust = float(np.sqrt(res.cov_robust[0, 0]))  # plain sandwich, for the design effect
        except (ValueError, np.linalg.LinAlgError, ZeroDivisionError) as exc:
            return GeeResult(nan, nan, nan, nan, f"GEE failed: {exc}")
    notes = sorted({type(w.message).__name__ for w in caught})
    if not (np.isfinite(b0) and np.isfinite(se)) or any("Convergence" in s or "IterationLimit" in s for s in notes):
        return GeeResult(nan, nan, nan, nan, "GEE did not converge")
    z = float(student_t.ppf(1 - alpha / 2, max(len(np.unique(groups)) - 1, 1)))
    p = float(expit(b0))
    deff = se_robust**2 * n * p * (1 - p)
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
    return [*cols, "design_effect", "max_units_per_patient", "gee_note", "ci_method", "ci_note", "boot_method",
            "boot_note", "gee_method"]


CI_WILSON = "wilson"
CI_CLUSTERED = "wilson-deff t(C-1)"
BOOT_METHOD = "cluster bootstrap percentile"
GEE_METHOD = "GEE logit exchangeable, bias-reduced sandwich, t(C-1)"


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
    """Counts, metrics and honest intervals for one row (the module docstring names the methods).

    Units with a missing index or reference are dropped first. ``clustered=None`` treats the units as clustered
    where some patient contributes more than one unit: then ``<metric>_low/_high`` are Wilson-deff intervals and
    the bootstrap (>= :data:`BOOT_MIN_PATIENTS` patients) and GEE columns are filled; otherwise they are Wilson
    intervals and the clustered columns are NaN.
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
    row |= {"design_effect": float("nan"), "ci_method": CI_WILSON, "ci_note": "", "boot_method": "", "boot_note": "",
            "gee_method": "", "gee_note": ""}
    do_cluster = row["max_units_per_patient"] > 1 if clustered is None else clustered
    if do_cluster and len(idx):
        row.update(_clustered_columns(idx, ref, cl, n_boot=n_boot, seed=seed, alpha=alpha))
    return row


def _clustered_columns(idx: NDArray[np.bool_], ref: NDArray[np.bool_], cl: NDArray[Any], *, n_boot: int,
                       seed: int, alpha: float) -> dict[str, Any]:
    """Wilson-deff main intervals, the bootstrap (enough patients, no zero cell) and GEE columns of one row."""
    codes, uniq = pd.factorize(pd.Series(cl), sort=True)
    per_cluster = _cluster_cells(idx, ref, np.asarray(codes), len(uniq))
    n_c = len(uniq)
    out: dict[str, Any] = {"ci_method": CI_CLUSTERED if n_c >= 2 else f"{CI_WILSON} (1 patient)"}
    boot = cluster_bootstrap(idx, ref, cl, n_boot=n_boot, seed=seed, alpha=alpha) if n_c >= BOOT_MIN_PATIENTS \
        else None
    boot_notes, gee_notes, ci_notes = [], [], []
    if boot is None:
        boot_notes.append(f"{n_c} patients < {BOOT_MIN_PATIENTS}")
    else:
        out["boot_method"] = f"{BOOT_METHOD}, {n_boot} resamples, seed {seed}"
    for m in METRICS:
        k, n = per_cluster[:, _NUM[m]].sum(axis=1), per_cluster[:, _DEN[m]].sum(axis=1)
        if n_c >= 2:
            cw = clustered_wilson(k, n, alpha)
            if np.isfinite(cw["low"]):
                out |= {f"{m}_low": cw["low"], f"{m}_high": cw["high"], f"{m}_deff": cw["deff"]}
            elif n.sum() > 0:  # every unit of this metric in one patient: no design effect to estimate
                ci_notes.append(f"{m}: 1 patient, {CI_WILSON}")
        if boot is not None:
            if 0 < k.sum() < n.sum():
                out[f"{m}_low_boot"], out[f"{m}_high_boot"] = boot[m]
            elif n.sum() > 0:
                boot_notes.append(f"{m}: zero cell ({int(k.sum())}/{int(n.sum())})")
        mask, succ = metric_outcomes(m, idx, ref)
        g = gee_proportion(succ[mask], cl[mask], alpha=alpha)
        out |= {f"{m}_gee": g.estimate, f"{m}_low_gee": g.low, f"{m}_high_gee": g.high}
        if g.note:
            gee_notes.append(f"{m}: {g.note}")
    out["gee_method"] = GEE_METHOD
    out["design_effect"] = out.get("accuracy_deff", float("nan"))
    out["boot_note"], out["gee_note"], out["ci_note"] = "; ".join(boot_notes), "; ".join(gee_notes), "; ".join(ci_notes)
    return out


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
