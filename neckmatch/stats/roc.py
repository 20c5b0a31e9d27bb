"""ROC analysis of reader scores against pathology: empirical curve, AUC (Mann-Whitney), cluster-bootstrap CI,
Youden's best threshold; per reader.

The AUC is the Mann-Whitney probability that a random positive unit scores higher than a random negative one,
ties counting one half: ``AUC = (R_pos - n_pos (n_pos + 1) / 2) / (n_pos n_neg)`` with ``R_pos`` the sum of the
positives' mid-ranks (``scipy.stats.rankdata``). It equals the trapezoidal area under the empirical ROC curve.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy.stats import rankdata

from neckmatch.stats.accuracy import _as_bool_array

__all__ = ["MIN_BOOT_PATIENTS", "MIN_BOOT_VALID", "auc_mann_whitney", "roc_curve", "youden_threshold",
           "auc_bootstrap", "auc_bootstrap_note", "roc_by_reader"]


def _clean(scores: ArrayLike, labels: ArrayLike) -> tuple[Any, Any]:
    s = pd.to_numeric(pd.Series(np.asarray(scores, dtype=object)), errors="coerce").to_numpy(dtype=float)
    y = _as_bool_array(np.asarray(labels, dtype=object))
    ok = ~(np.isnan(s) | np.isnan(y))
    return s[ok], y[ok] == 1


def auc_mann_whitney(scores: ArrayLike, labels: ArrayLike) -> float:
    """AUC of ``scores`` for ``labels`` (True = positive) from the Mann-Whitney U statistic; NaN without
    both classes.

    Examples
    --------
    >>> auc_mann_whitney([1, 2, 3, 3], [False, False, True, False])  # 3 beats 1 and 2, ties with 3
    0.8333333333333334
    """
    s, y = _clean(scores, labels)
    n1, n0 = int(y.sum()), int((~y).sum())
    if n1 == 0 or n0 == 0:
        return float("nan")
    ranks = rankdata(s)
    return float((ranks[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def roc_curve(scores: ArrayLike, labels: ArrayLike) -> pd.DataFrame:
    """Empirical ROC curve: a unit is called positive when its score is >= ``threshold``.

    Returns
    -------
    DataFrame
        Columns ``threshold, tpr, fpr, sensitivity, specificity``; the first row is ``threshold=inf``
        (nothing positive, (0, 0)), then each distinct score, highest first, ending at (1, 1).
    """
    s, y = _clean(scores, labels)
    n1, n0 = max(int(y.sum()), 1), max(int((~y).sum()), 1)
    thr = np.unique(s)[::-1]
    called = s[None, :] >= thr[:, None]  # (T, N)
    tpr = np.concatenate([[0.0], (called & y).sum(axis=1) / n1])
    fpr = np.concatenate([[0.0], (called & ~y).sum(axis=1) / n0])
    return pd.DataFrame({"threshold": np.concatenate([[np.inf], thr]), "tpr": tpr, "fpr": fpr,
                         "sensitivity": tpr, "specificity": 1 - fpr})


def youden_threshold(scores: ArrayLike, labels: ArrayLike) -> dict[str, float]:
    """The threshold (call positive at score >= threshold) maximising Youden's J = sens + spec - 1.

    Ties are broken towards the higher threshold (fewer positive calls).

    Examples
    --------
    >>> youden_threshold([1, 2, 3, 4], [False, False, True, True])["threshold"]
    3.0
    """
    return _youden(roc_curve(scores, labels))


def _youden(curve: pd.DataFrame) -> dict[str, float]:
    """:func:`youden_threshold` from an already computed :func:`roc_curve`."""
    curve = curve.iloc[1:]
    if curve.empty:
        return {"threshold": float("nan"), "sensitivity": float("nan"), "specificity": float("nan"),
                "youden_j": float("nan")}
    j = np.round((curve["tpr"] - curve["fpr"]).to_numpy(), 12)  # exact ties stay ties
    best = curve.iloc[int(np.argmax(j))]
    return {"threshold": float(best["threshold"]), "sensitivity": float(best["sensitivity"]),
            "specificity": float(best["specificity"]), "youden_j": float(j.max())}


# The cluster-bootstrap interval is reported only where it can mean something: from at least this many patients,
# and where at least this fraction of the resamples holds both classes (resamples lacking one are skipped, so a
# low fraction would condition the interval on the rare class being drawn).
MIN_BOOT_PATIENTS = 5
MIN_BOOT_VALID = 0.9


def auc_bootstrap(
    scores: ArrayLike,
    labels: ArrayLike,
    clusters: ArrayLike,
    n_boot: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
    *,
    min_patients: int = MIN_BOOT_PATIENTS,
    min_valid: float = MIN_BOOT_VALID,
) -> tuple[float, float]:
    """Patient-level cluster bootstrap percentile interval of the AUC (``numpy.random.default_rng(seed)``).

    Resamples lacking either class are skipped. Returns ``(low, high)``; NaN (no interval) if the scores come
    from fewer than ``min_patients`` patients, or fewer than ``min_valid`` of the resamples hold both classes
    (:func:`auc_bootstrap_note` says which).

    All resamples at once: a resample draws patient ``c`` ``W[b, c]`` times, so its Mann-Whitney count is
    ``W[b] @ K @ W[b]`` with ``K[c, d]`` the count (ties one half) of positives of patient ``c`` scoring above
    negatives of patient ``d``; the counts are exact (integers and halves), so each AUC equals the mid-rank
    formula on the resampled units.

    Examples
    --------
    >>> auc_bootstrap([1, 2, 3, 4], [False, True, False, True], ["a", "a", "b", "b"])  # 2 patients: no CI
    (nan, nan)
    """
    aucs, n_c = _bootstrap_aucs(scores, labels, clusters, n_boot, seed)
    lo, hi, _note = _boot_interval(aucs, n_c, n_boot, alpha, min_patients, min_valid)
    return lo, hi


def auc_bootstrap_note(
    scores: ArrayLike,
    labels: ArrayLike,
    clusters: ArrayLike,
    n_boot: int = 2000,
    seed: int = 0,
    *,
    min_patients: int = MIN_BOOT_PATIENTS,
    min_valid: float = MIN_BOOT_VALID,
) -> str:
    """Why :func:`auc_bootstrap` gives no interval for these data (same arguments); empty if it gives one.

    Examples
    --------
    >>> auc_bootstrap_note([1, 2, 3, 4], [False, True, False, True], ["a", "a", "b", "b"])
    'CI n/a: scores from 2 patients (< 5)'
    """
    aucs, n_c = _bootstrap_aucs(scores, labels, clusters, n_boot, seed)
    return _boot_interval(aucs, n_c, n_boot, 0.05, min_patients, min_valid)[2]


def _boot_interval(aucs: Any, n_c: int, n_boot: int, alpha: float, min_patients: int,
                   min_valid: float) -> tuple[float, float, str]:
    """``(low, high, note)`` from the resampled AUCs: the percentile interval, or NaN with the reason."""
    if n_c < min_patients:
        return float("nan"), float("nan"), f"CI n/a: scores from {n_c} patient{'s' * (n_c != 1)} (< {min_patients})"
    if aucs.size == 0 or aucs.size < min_valid * n_boot:
        note = f"CI n/a: both classes in {aucs.size}/{n_boot} resamples (< {100 * min_valid:.0f} %)"
        return float("nan"), float("nan"), note
    lo, hi = np.percentile(aucs, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(lo), float(hi), ""


def _bootstrap_aucs(scores: ArrayLike, labels: ArrayLike, clusters: ArrayLike, n_boot: int,
                    seed: int) -> tuple[Any, int]:
    """The AUCs of the resamples holding both classes, ndarray (<= n_boot,), and the number of patients."""
    s = pd.to_numeric(pd.Series(np.asarray(scores, dtype=object)), errors="coerce").to_numpy(dtype=float)
    y = _as_bool_array(np.asarray(labels, dtype=object))
    ok = ~(np.isnan(s) | np.isnan(y))
    s, y = s[ok], y[ok] == 1
    codes, uniq = pd.factorize(pd.Series(np.asarray(clusters, dtype=object)[ok]), sort=True)
    n_c = len(uniq)
    if n_c == 0:
        return np.empty(0), 0
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_c, size=(n_boot, n_c))
    weights = np.bincount((draws + n_c * np.arange(n_boot)[:, None]).ravel(), minlength=n_boot * n_c)
    weights = weights.reshape(n_boot, n_c).astype(np.float64)  # (B, C): times each patient is drawn
    n1 = weights @ np.bincount(codes[y], minlength=n_c)
    n0 = weights @ np.bincount(codes[~y], minlength=n_c)
    u = np.einsum("bc,bc->b", weights @ _pair_counts(s, y, codes, n_c), weights)
    both = (n1 > 0) & (n0 > 0)
    return u[both] / (n1[both] * n0[both]), n_c


def _pair_counts(s: Any, y: Any, codes: Any, n_c: int) -> Any:
    """``K`` of shape (C, C): positives of patient c (rows) scoring above negatives of patient d, ties 1/2."""
    pos, pos_codes = s[y], codes[y]
    out = np.zeros((n_c, n_c))
    for d in range(n_c):
        neg = np.sort(s[~y & (codes == d)])
        if neg.size:
            wins = (np.searchsorted(neg, pos, "left") + np.searchsorted(neg, pos, "right")) / 2.0
            out[:, d] = np.bincount(pos_codes, weights=wins, minlength=n_c)
    return out


def roc_by_reader(
    reads: pd.DataFrame,
    *,
    score: str = "score",
    reference: str = "path_status",
    reader: str = "reader",
    cluster: str = "case_id",
    n_boot: int = 2000,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-reader AUC with cluster-bootstrap interval and Youden threshold, and the ROC curve points.

    Parameters
    ----------
    reads : DataFrame
        One row per unit and reader (truth_reads.csv schema): ``reader``, ``score``, ``path_status``, ``case_id``.

    Returns
    -------
    summary : DataFrame
        ``reader, n, n_positive, n_negative, n_patients, auc, auc_low_boot, auc_high_boot, youden_threshold,
        youden_sensitivity, youden_specificity, youden_j, auc_note``; ``auc_low_boot/_high_boot`` are NaN
        and ``auc_note`` says why where the bootstrap cannot give an interval (:func:`auc_bootstrap`).
    curves : DataFrame
        ``reader`` plus :func:`roc_curve` columns.
    """
    rows, curves = [], []
    for name, grp in reads.groupby(reader, sort=True):
        s, y = _clean(grp[score], grp[reference])
        aucs, n_c = _bootstrap_aucs(grp[score], grp[reference], grp[cluster], n_boot, seed)
        lo, hi, note = _boot_interval(aucs, n_c, n_boot, 0.05, MIN_BOOT_PATIENTS, MIN_BOOT_VALID)
        curve = roc_curve(grp[score], grp[reference])
        you = _youden(curve)
        rows.append({"reader": name, "n": len(s), "n_positive": int(y.sum()), "n_negative": int((~y).sum()),
                     "n_patients": n_c, "auc": auc_mann_whitney(grp[score], grp[reference]),
                     "auc_low_boot": lo, "auc_high_boot": hi, "youden_threshold": you["threshold"],
                     "youden_sensitivity": you["sensitivity"], "youden_specificity": you["specificity"],
                     "youden_j": you["youden_j"], "auc_note": note})
        curve.insert(0, "reader", name)
        curves.append(curve)
    summary = pd.DataFrame(rows, columns=["reader", "n", "n_positive", "n_negative", "n_patients", "auc",
                                          "auc_low_boot", "auc_high_boot", "youden_threshold",
                                          "youden_sensitivity", "youden_specificity", "youden_j", "auc_note"])
    curve_cols = ["reader", "threshold", "tpr", "fpr", "sensitivity", "specificity"]
    return summary, (pd.concat(curves, ignore_index=True) if curves else pd.DataFrame(columns=curve_cols))
