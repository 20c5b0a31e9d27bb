"""Inter-reader agreement: Cohen's (weighted) kappa for reader pairs, Fleiss' kappa for several readers, with
the Landis & Koch (1977) words. Computed with ``statsmodels.stats.inter_rater``.
"""

from __future__ import annotations

from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from statsmodels.stats.inter_rater import aggregate_raters, cohens_kappa, fleiss_kappa

from neckmatch.stats.accuracy import _as_bool_array

__all__ = ["landis_koch", "weighted_kappa", "fleiss", "agreement_table"]

_BANDS = ((0.0, "poor"), (0.20, "slight"), (0.40, "fair"), (0.60, "moderate"), (0.80, "substantial"),
          (1.0, "almost perfect"))


def landis_koch(kappa: float) -> str:
    """Landis & Koch (1977) word for a kappa: < 0 poor, 0-0.20 slight, 0.21-0.40 fair, 0.41-0.60 moderate,
    0.61-0.80 substantial, 0.81-1 almost perfect; empty for NaN.

    Examples
    --------
    >>> landis_koch(0.55), landis_koch(0.81), landis_koch(-0.1)
    ('moderate', 'almost perfect', 'poor')
    """
    if kappa is None or not np.isfinite(kappa):
        return ""
    if kappa < 0:
        return "poor"
    for upper, word in _BANDS[1:]:
        if kappa <= upper:
            return word
    return "almost perfect"


def weighted_kappa(a: ArrayLike, b: ArrayLike, weights: str | None = "linear",
                   categories: ArrayLike | None = None) -> dict[str, float]:
    """Cohen's kappa of two readers' ordinal ratings; ``weights`` ``None`` (unweighted), ``"linear"`` or
    ``"quadratic"``. Weights use the category values themselves (``categories``, default: the sorted union of
    both readers' values), so a scale 1-5 with an unused 3 keeps its spacing.

    Returns
    -------
    dict
        ``kappa, se, low, high`` (95 % Wald interval from statsmodels' asymptotic variance, truncated to [-1, 1]).

    Examples
    --------
    >>> round(weighted_kappa([1, 2, 3, 1], [1, 2, 3, 2], weights=None)["kappa"], 4)  # po=.75, pe=5/16
    0.6364
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    ok = ~(np.isnan(a) | np.isnan(b))
    a, b = a[ok], b[ok]
    cats = np.unique(np.concatenate([a, b])) if categories is None else np.asarray(categories, dtype=float)
    if np.size(a) == 0 or np.size(cats) < 2:
        return {"kappa": float("nan"), "se": float("nan"), "low": float("nan"), "high": float("nan")}
    table = np.zeros((len(cats), len(cats)))
    np.add.at(table, (np.searchsorted(cats, a), np.searchsorted(cats, b)), 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        res = cohens_kappa(table, weights=None if weights is None else cats, wt=weights)
    # The Wald interval can pass the bounds of kappa (e.g. 0.86 +- 0.26); truncated to [-1, 1].
    return {"kappa": float(res["kappa"]), "se": float(res["std_kappa"]), "low": max(float(res["kappa_low"]), -1.0),
            "high": min(float(res["kappa_upp"]), 1.0)}


def fleiss(ratings: ArrayLike) -> float:
    """Fleiss' kappa of a (units, readers) array of category ratings; rows with a missing rating are dropped.

    Examples
    --------
    >>> fleiss([[1, 1, 1], [2, 2, 2], [1, 1, 1], [2, 2, 2]])
    1.0
    """
    r = np.asarray(ratings, dtype=float)
    r = r[~np.isnan(r).any(axis=1)]
    if len(r) == 0 or len(np.unique(r)) < 2:
        return float("nan")
    counts, _ = aggregate_raters(r)
    return float(fleiss_kappa(counts, method="fleiss"))


def _wide(reads: pd.DataFrame, value: str, reader: str, unit: tuple[str, ...]) -> pd.DataFrame:
    data = reads.copy()
    raw = data[value].to_numpy(dtype=object)
    num = pd.to_numeric(pd.Series(raw), errors="coerce").to_numpy(dtype=float)
    data[value] = np.where(np.isnan(num), _as_bool_array(raw), num)  # numbers as they are; true/yes -> 1
    return data.pivot_table(index=list(unit), columns=reader, values=value, aggfunc="first")


def agreement_table(reads: pd.DataFrame, *, reader: str = "reader",
                    unit: tuple[str, ...] = ("case_id", "mr_node")) -> pd.DataFrame:
    """Agreement between readers on ``score`` (ordinal) and ``malignant`` (binary calls).

    Rows: per reader pair Cohen's kappa (``unweighted``, ``linear``, ``quadratic`` for scores; ``unweighted``
    for calls); with three or more readers also Fleiss' kappa over all (units rated by every reader).

    Returns
    -------
    DataFrame
        ``variable, readers, statistic, n, kappa, se, low, high, landis_koch``.
    """
    rows: list[dict[str, Any]] = []
    for variable, stats in (("score", (None, "linear", "quadratic")), ("malignant", (None,))):
        if variable not in reads:
            continue
        wide = _wide(reads, variable, reader, unit)
        names = list(wide.columns)
        for r1, r2 in combinations(names, 2):
            pair = wide[[r1, r2]].dropna()
            for wt in stats:
                k = weighted_kappa(pair[r1], pair[r2], weights=wt)
                rows.append({"variable": variable, "readers": f"{r1}|{r2}", "statistic": f"cohen_{wt or 'unweighted'}",
                             "n": len(pair), **k})
        if len(names) >= 3:
            full = wide.dropna()
            rows.append({"variable": variable, "readers": "|".join(map(str, names)), "statistic": "fleiss",
                         "n": len(full), "kappa": fleiss(full.to_numpy()), "se": np.nan, "low": np.nan,
                         "high": np.nan})
    out = pd.DataFrame(rows, columns=["variable", "readers", "statistic", "n", "kappa", "se", "low", "high"])
    out["landis_koch"] = [landis_koch(k) for k in out["kappa"]]
    return out
