"""The ``expected`` node-level analysis: every MR node with its matching posterior, matching uncertainty propagated.

The main node-level analysis counts only decided pairs (``auto`` or a person's); it discards what the engine could
not decide. Here every MR node that may have a pathology partner enters with

- ``p_has``: the probability that it has a partner at all (1 for a proposed pair; ``1 - confidence`` of an
  ``mr-unmatched`` decision for a level-only node);
- ``p_pos``: the probability that its partner is positive, from the matching posterior alone:
  ``confidence * status(proposed partner) + (1 - confidence) * q``, where ``q`` is the positive fraction of the
  other nodes of the container (for a level-only node: of the container); 0 in a negative container.

Expected 2x2 counts are ``sum p_has p_pos [call]`` etc. The interval carries sampling and matching uncertainty:
the reference is multiply imputed and the completed-data estimates are combined by Rubin's rules (Rubin 1987)
inside the cluster-robust Wilson-deff method of :mod:`neckmatch.stats.accuracy` (within-imputation variance =
CR1 cluster-robust variance; Barnard & Rubin 1999 degrees of freedom with ``C - 1`` complete-data df).

The matching posterior never looks at the MR call (docs/matching.md), but the call is informative about which
node is which once accuracy is known: imputing the reference from ``p_pos`` alone would pull sensitivity and
specificity towards the uninformative value. The imputation is therefore a proper Bayesian data augmentation
(Tanner & Wong 1987): each chain alternates drawing sensitivity and specificity from their Beta(1, 1) posteriors
given the completed data and the reference given the call, ``P(ref | call) ∝ p_pos P(call | ref, sens, spec)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy.stats import t as student_t

from neckmatch.stats.accuracy import _DEN, _NUM, METRICS, _as_bool_array, _wilson_z, cluster_robust_variance

__all__ = ["EXPECTED_METHOD", "impute_reference", "expected_counts", "rubin_clustered", "expected_row"]

EXPECTED_METHOD = "multiple imputation of the matching, Rubin's rules, wilson-deff t(Barnard-Rubin df)"


def expected_counts(call: ArrayLike, p_pos: ArrayLike, p_has: ArrayLike) -> dict[str, float]:
    """Expected TP, FP, FN, TN over the matching posterior.

    Examples
    --------
    >>> {k: round(v, 3) for k, v in expected_counts([True, False], [0.9, 0.2], [1.0, 0.5]).items()}
    {'tp': 0.9, 'fp': 0.1, 'fn': 0.1, 'tn': 0.4}
    """
    c, p, h = (np.asarray(v, dtype=float) for v in (call, p_pos, p_has))
    return {"tp": float(np.sum(h * p * c)), "fp": float(np.sum(h * (1 - p) * c)),
            "fn": float(np.sum(h * p * (1 - c))), "tn": float(np.sum(h * (1 - p) * (1 - c)))}


def impute_reference(call: ArrayLike, p_pos: ArrayLike, p_has: ArrayLike, n_imp: int = 50, n_iter: int = 25,
                     rng: np.random.Generator | None = None) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """Draw ``n_imp`` completed data sets: whether each node has a partner and its reference status.

    ``n_imp`` independent data-augmentation chains of ``n_iter`` sweeps each (the module docstring); the last
    state of each chain is one imputation.

    Parameters
    ----------
    call : array_like of shape (N,), bool
    p_pos, p_has : array_like of shape (N,), float in [0, 1]

    Returns
    -------
    has, ref : ndarray of shape (n_imp, N), bool
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    c = np.asarray(call, dtype=bool)
    p = np.clip(np.asarray(p_pos, dtype=float), 0.0, 1.0)
    shape = (n_imp, len(c))
    has = rng.random(shape) < np.asarray(p_has, dtype=float)
    ref = rng.random(shape) < p
    for _ in range(n_iter):
        tp = (has & ref & c).sum(axis=1)
        fn = (has & ref & ~c).sum(axis=1)
        fp = (has & ~ref & c).sum(axis=1)
        tn = (has & ~ref & ~c).sum(axis=1)
        sens = rng.beta(1 + tp, 1 + fn)[:, None]
        spec = rng.beta(1 + tn, 1 + fp)[:, None]
        like_pos = np.where(c, sens, 1 - sens)
        like_neg = np.where(c, 1 - spec, spec)
        post = p * like_pos / (p * like_pos + (1 - p) * like_neg)
        ref = rng.random(shape) < post
    return has, ref


def rubin_clustered(k: ArrayLike, n: ArrayLike, alpha: float = 0.05) -> dict[str, float]:
    """Rubin's rules over imputations of a cluster-pooled proportion, with a Wilson-deff interval.

    Per imputation ``m``: ``p_m`` and its CR1 cluster-robust variance ``W_m``. Then ``p = mean p_m``,
    ``T = mean W_m + (1 + 1/M) var(p_m)``, degrees of freedom by Barnard & Rubin (1999) with ``C - 1``
    complete-data df, and a Wilson interval at the effective size ``min(N, p (1 - p) / T)`` with that ``t``.

    Parameters
    ----------
    k, n : array_like of shape (M, C)
        Successes and units per imputation and cluster.

    Returns
    -------
    dict
        ``estimate, low, high, deff`` (total variance over the binomial one, floored at 1), ``fmi`` (fraction of
        missing information), ``df``; NaN where no imputation has units or fewer than two clusters hold any.
    """
    k, n = np.asarray(k, dtype=float), np.asarray(n, dtype=float)
    p_m, w_m = cluster_robust_variance(k, n)
    ok = np.isfinite(p_m) & np.isfinite(w_m)
    nan = float("nan")
    if ok.sum() < 2:
        return {"estimate": nan, "low": nan, "high": nan, "deff": nan, "fmi": nan, "df": nan}
    p_m, w_m, m = p_m[ok], w_m[ok], int(ok.sum())
    p, w, b = float(p_m.mean()), float(w_m.mean()), float(p_m.var(ddof=1))
    total = w + (1 + 1 / m) * b
    big_n = float(n[ok].sum(axis=1).mean())
    n_com = max(int((n > 0).any(axis=0).sum()) - 1, 1)
    lam = (1 + 1 / m) * b / total if total > 0 else 0.0
    df_obs = (n_com + 1) / (n_com + 3) * n_com * (1 - lam)
    df = df_obs if lam == 0 else 1 / (lam**2 / (m - 1) + 1 / df_obs)
    binom = p * (1 - p) / big_n
    deff = max(total / binom, 1.0) if binom > 0 else 1.0
    n_eff = big_n / deff
    lo, hi = _wilson_z(np.array(p * n_eff), np.array(n_eff), student_t.ppf(1 - alpha / 2, max(df, 1.0)))
    return {"estimate": p, "low": float(lo), "high": float(hi), "deff": deff, "fmi": lam, "df": float(df)}


def _per_cluster(has: NDArray[np.bool_], cell: NDArray[np.int64], codes: NDArray[np.int64], n_clusters: int
                 ) -> NDArray[np.float64]:
    """Per imputation and cluster the TP, FP, FN, TN counts: shape (M, C, 4), from ``has`` and ``cell`` (M, N)."""
    n_imp = has.shape[0]
    flat = (np.arange(n_imp)[:, None] * n_clusters + codes[None, :]) * 4 + cell
    counts = np.bincount(flat[has], minlength=n_imp * n_clusters * 4)
    return counts.reshape(n_imp, n_clusters, 4).astype(float)


def expected_row(call: ArrayLike, p_pos: ArrayLike, p_has: ArrayLike, clusters: ArrayLike, *, n_imp: int = 50,
                 seed: int = 0, alpha: float = 0.05) -> dict[str, Any]:
    """One ``analysis=expected`` accuracy row: expected counts, MI point estimates and intervals per metric.

    Nodes with a missing call or ``p_has = 0`` are left out. ``n`` and the cells are expected counts (floats),
    ``n_patients`` the patients with any node; ``<metric>`` is the mean over imputations, ``<metric>_low/_high``
    the interval of :func:`rubin_clustered`, ``<metric>_deff`` its total design effect.
    """
    c = _as_bool_array(call)
    h = np.asarray(p_has, dtype=float)
    keep = ~np.isnan(c) & (h > 0) & np.isfinite(np.asarray(p_pos, dtype=float))
    cl = np.asarray(clusters, dtype=object)[keep]
    cv, pv, hv = c[keep] == 1, np.asarray(p_pos, dtype=float)[keep], h[keep]
    cells = expected_counts(cv, pv, hv)
    codes, uniq = pd.factorize(pd.Series(cl), sort=True)
    row: dict[str, Any] = {"n_patients": int(len(uniq)), "n": float(sum(cells.values())), **cells}
    row["prevalence"] = (cells["tp"] + cells["fn"]) / row["n"] if row["n"] > 0 else float("nan")
    has, ref = impute_reference(cv, pv, hv, n_imp=n_imp, rng=np.random.default_rng(seed))
    cell = np.where(cv & ref, 0, np.where(cv & ~ref, 1, np.where(~cv & ref, 2, 3)))  # (M, N)
    per = _per_cluster(has, cell, np.asarray(codes), len(uniq))
    fmi = []
    for m in METRICS:
        r = rubin_clustered(per[:, :, _NUM[m]].sum(axis=2), per[:, :, _DEN[m]].sum(axis=2), alpha)
        row |= {m: r["estimate"], f"{m}_low": r["low"], f"{m}_high": r["high"], f"{m}_deff": r["deff"]}
        fmi.append(f"{m} {r['fmi']:.2f}")
    counts = pd.Series(cl).value_counts()
    row |= {"max_units_per_patient": int(counts.max()) if len(counts) else 0, "design_effect": row["accuracy_deff"],
            "ci_method": f"{EXPECTED_METHOD}, {n_imp} imputations, seed {seed}",
            "boot_note": "not used: the matching is imputed",
            "gee_note": "fraction of missing information: " + ", ".join(fmi)}
    return row
