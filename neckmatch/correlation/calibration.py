"""Confidence calibration: from a decision's margin to the probability that the decision is right.

``confidence = 1 / (1 + exp(-(a_kind * margin + b_kind)))`` per decision kind (``pair``, ``mr-unmatched``,
``path-unmatched``), where ``margin`` is the min-marginal drop of the best assignment's log-likelihood
(:func:`neckmatch.correlation.assign.assignment_margins`). The constants below were fitted by
``python benchmarks/matching.py --calibrate`` (logistic regression of correctness on the margin) on a synthetic
calibration cohort whose seed differs from the benchmark's; ``AUTO_THRESHOLD`` is the smallest confidence at which
the auto decisions of that cohort are >= 97 % right. Decisions fixed by construction (undissected level, people's
constraints) have confidence 1.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = ["CALIBRATION", "AUTO_THRESHOLD", "calibrate", "fit_logistic", "auto_threshold"]

FloatArray = NDArray[np.float64]

# kind -> (a, b); fitted by benchmarks/matching.py --calibrate (see docs/matching.md for the cohort and seed)
CALIBRATION: dict[str, tuple[float, float]] = {
    "pair": (1.0136, -0.7208),
    "mr-unmatched": (0.7553, -0.3774),
    "path-unmatched": (0.7901, -0.5037),
}
AUTO_THRESHOLD = 0.9062


def calibrate(margin: FloatArray, kind: NDArray[np.str_], table: dict[str, tuple[float, float]] | None = None
              ) -> FloatArray:
    """Calibrated confidence (0-1) of decisions with margins ``margin`` (N,) and kinds ``kind`` (N,).

    Examples
    --------
    >>> calibrate(np.array([0.0, 50.0]), np.array(["pair", "pair"]), {"pair": (1.0, 0.0)}).round(3).tolist()
    [0.5, 1.0]
    """
    table = CALIBRATION if table is None else table
    margin = np.asarray(margin, dtype=np.float64)
    kind = np.asarray(kind, dtype=str)
    a = np.array([table[k][0] for k in kind]) if len(kind) else np.zeros(0)
    b = np.array([table[k][1] for k in kind]) if len(kind) else np.zeros(0)
    return 1.0 / (1.0 + np.exp(-(a * margin + b)))


def fit_logistic(x: FloatArray, y: NDArray[np.bool_], n_iter: int = 50, ridge: float = 1e-3) -> tuple[float, float]:
    """Fit ``P(y) = sigmoid(a x + b)`` by Newton's method (tiny ridge for separable data); returns (a, b).

    Examples
    --------
    >>> x = np.r_[np.zeros(50), np.ones(50) * 2]
    >>> y = np.r_[np.arange(50) < 25, np.arange(50) < 45]
    >>> [round(v, 2) for v in fit_logistic(x, y)]
    [1.1, 0.0]
    """
    X = np.column_stack([np.asarray(x, dtype=np.float64), np.ones(len(x))])
    t = np.asarray(y, dtype=np.float64)
    beta = np.zeros(2)
    for _ in range(n_iter):
        p = 1.0 / (1.0 + np.exp(-X @ beta))
        grad = X.T @ (t - p) - ridge * beta
        hess = (X * (p * (1 - p))[:, None]).T @ X + ridge * np.eye(2)
        step = np.linalg.solve(hess, grad)
        beta += step
        if np.max(np.abs(step)) < 1e-10:
            break
    return float(beta[0]), float(beta[1])


def auto_threshold(confidence: FloatArray, correct: NDArray[np.bool_], target: float = 0.97) -> float:
    """Smallest threshold t such that decisions with confidence >= t are at least ``target`` right.

    Examples
    --------
    >>> auto_threshold(np.array([0.99, 0.9, 0.8, 0.7]), np.array([True, True, False, True]), 0.9)
    0.9
    """
    order = np.argsort(-np.asarray(confidence), kind="stable")
    c = np.asarray(confidence)[order]
    ok = np.asarray(correct, dtype=np.float64)[order]
    prec = np.cumsum(ok) / np.arange(1, len(ok) + 1)
    good = np.flatnonzero(prec >= target)
    if len(good) == 0:
        return 1.0
    k = good[-1]
    # threshold must not split ties: move to the last index whose confidence is distinct from the next one
    while k + 1 < len(c) and c[k + 1] == c[k] and prec[k + 1] < target:
        k -= 1
    return float(c[k]) if k >= 0 else 1.0
