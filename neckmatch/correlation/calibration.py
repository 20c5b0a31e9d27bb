"""Confidence calibration: from a decision's margin to the probability that the decision is right.

``confidence = 1 / (1 + exp(-(a_key * margin + b_key)))`` per calibration key (:func:`calibration_keys`: the
decision kind ``pair``, ``mr-unmatched``, ``path-unmatched``, pairs split by the evidence they rest on), where
``margin`` is the min-marginal drop of the best assignment's log-likelihood
(:func:`neckmatch.correlation.assign.assignment_margins`). The constants below were fitted by
``python benchmarks/families.py --seed 777 --fit`` (logistic regression of correctness on the margin, per key) on
every misspecification family of the synthetic generator pooled, whose seed differs from the benchmark's;
``AUTO_THRESHOLD`` is the threshold :func:`guaranteed_threshold` certifies there for precision 0.97. Decisions
fixed by construction (undissected level, people's constraints) have confidence 1. ``neckmatch calibrate``
(:mod:`neckmatch.calibrate`) certifies a threshold from a study's own reviewed decisions instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = ["CALIBRATION", "AUTO_THRESHOLD", "calibrate", "fit_logistic", "auto_threshold", "clopper_pearson_upper",
           "guaranteed_threshold", "min_decisions", "Certified", "calibration_keys"]

FloatArray = NDArray[np.float64]

# key -> (a, b) (calibration_keys); fitted by benchmarks/families.py --seed 777 --fit on every misspecification
# family pooled (32 cases each), and the auto threshold certified there by guaranteed_threshold (precision 0.97,
# delta 0.05) - see docs/matching.md, round 4
CALIBRATION: dict[str, tuple[float, float]] = {
    "pair": (1.2043, -0.9547),
    "pair/pos": (0.7689, -0.5357),
    "pair/nosize": (8.9563, -1.8984),
    "mr-unmatched": (0.6396, -0.4389),
    "path-unmatched": (0.7407, -0.5805),
}
AUTO_THRESHOLD = 0.93


def calibration_keys(kind: NDArray[np.str_], has_size: NDArray[np.bool_], has_position: NDArray[np.bool_]
                     ) -> NDArray[np.str_]:
    """Calibration key per decision (N,): its kind, and for pairs the evidence it rests on: ``pair/pos`` (the
    pathology node has a reported position), ``pair/nosize`` (no size and no position), else ``pair``. Margins of
    these classes mean different things (a position-backed margin was over-confident on other cohorts).

    Examples
    --------
    >>> calibration_keys(np.array(["pair", "pair", "pair", "mr-unmatched"]), np.array([True, False, True, True]),
    ...                  np.array([True, False, False, False])).tolist()
    ['pair/pos', 'pair/nosize', 'pair', 'mr-unmatched']
    """
    kind = np.asarray(kind, dtype=object)
    pair = kind == "pair"
    out = np.where(pair & np.asarray(has_position, bool), "pair/pos",
                   np.where(pair & ~np.asarray(has_size, bool), "pair/nosize", kind))
    return out.astype(str)


def calibrate(margin: FloatArray, kind: NDArray[np.str_], table: dict[str, tuple[float, float]] | None = None
              ) -> FloatArray:
    """Calibrated confidence (0-1) of decisions with margins ``margin`` (N,) and kinds ``kind`` (N,) (decision kinds
    or :func:`calibration_keys`; a key missing from ``table`` falls back to its kind).

    Examples
    --------
    >>> calibrate(np.array([0.0, 50.0]), np.array(["pair", "pair"]), {"pair": (1.0, 0.0)}).round(3).tolist()
    [0.5, 1.0]
    """
    table = CALIBRATION if table is None else table
    margin = np.asarray(margin, dtype=np.float64)
    kind = np.array([k if k in table else k.split("/")[0] for k in np.asarray(kind, dtype=str)], dtype=str)
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


def clopper_pearson_upper(errors: int, n: int, delta: float = 0.05) -> float:
    """One-sided Clopper-Pearson upper confidence bound (level ``1 - delta``) on an error rate from ``errors`` of
    ``n`` (1.0 for n = 0).

    Examples
    --------
    >>> round(clopper_pearson_upper(0, 99, 0.05), 4), round(clopper_pearson_upper(1, 10, 0.05), 4)
    (0.0298, 0.3942)
    """
    if n <= 0 or errors >= n:
        return 1.0
    from scipy.stats import beta  # here, not at the top: scipy.stats costs every process that matches ~0.5 s

    return float(beta.ppf(1.0 - delta, errors + 1, n - errors))


def min_decisions(target_precision: float, delta: float = 0.05) -> int:
    """Fewest error-free decisions that can certify ``target_precision`` at level ``1 - delta``:
    the smallest n with ``1 - delta^(1/n) <= 1 - target_precision``.

    Examples
    --------
    >>> min_decisions(0.97), min_decisions(0.9)
    (99, 29)
    """
    return int(np.ceil(np.log(delta) / np.log(target_precision) - 1e-12))


@dataclass(frozen=True)
class Certified:
    """A certified auto threshold: decisions with confidence >= ``threshold`` have an error rate of at most
    ``1 - target_precision`` with probability >= ``1 - delta``. ``n_above`` / ``errors_above``: labelled decisions
    at or above the threshold and the wrong ones among them; ``upper_error``: their Clopper-Pearson bound.
    ``threshold`` is None when no threshold could be certified."""

    threshold: float | None
    target_precision: float
    delta: float
    n_decisions: int
    n_above: int
    errors_above: int
    upper_error: float


def guaranteed_threshold(confidence: FloatArray, correct: NDArray[np.bool_], target_precision: float = 0.97,
                         delta: float = 0.05) -> Certified:
    """Lowest auto threshold whose precision is certified, by fixed-sequence testing (Learn-then-Test).

    Candidate thresholds are the distinct confidences, tested from the highest down; the null hypothesis at
    threshold t, "the error rate of decisions with confidence >= t exceeds ``1 - target_precision``", is rejected
    when the one-sided Clopper-Pearson upper bound (level ``1 - delta``) of the errors among the labelled
    decisions at or above t is <= ``1 - target_precision``. Testing stops at the first threshold that fails; the
    last rejected one is returned. The sequence starts at the first threshold with at least
    :func:`min_decisions` decisions above it (where a rejection is possible at all; chosen from the confidences
    alone, not the labels). Because the sequence is fixed before looking at the labels, the chance that
    the chosen threshold's true error rate exceeds the target is at most ``delta`` (for decisions exchangeable
    with the labelled ones).

    Parameters
    ----------
    confidence : ndarray (N,), float
        The engine's confidence of each labelled decision (0-1).
    correct : ndarray (N,), bool
        Whether people judged the decision right.
    target_precision, delta : float
        Required precision of auto decisions (0-1) and the allowed probability that the guarantee fails.

    Examples
    --------
    >>> conf = np.r_[np.linspace(0.999, 0.95, 200), np.linspace(0.9, 0.5, 100)]
    >>> ok = np.r_[np.ones(200, bool), np.arange(100) % 3 == 0]
    >>> c = guaranteed_threshold(conf, ok, 0.97)
    >>> round(c.threshold, 3), c.n_above, c.errors_above
    (0.896, 202, 1)
    >>> guaranteed_threshold(conf[:50], ok[:50], 0.97).threshold is None
    True
    """
    conf = np.asarray(confidence, dtype=np.float64)
    ok = np.asarray(correct, dtype=bool)
    alpha = 1.0 - target_precision
    order = np.argsort(-conf, kind="stable")
    c, err = conf[order], np.cumsum(~ok[order])
    best = Certified(None, target_precision, delta, len(conf), 0, 0, 1.0)
    last = np.r_[np.flatnonzero(np.diff(c) != 0), len(c) - 1] if len(c) else np.zeros(0, dtype=np.int64)
    n_min = min_decisions(target_precision, delta)
    for k in last:  # the last index of each distinct confidence, highest first
        n, e = int(k) + 1, int(err[k])
        if n < n_min:
            continue  # no label could reject here: the sequence starts where n >= n_min (labels not looked at)
        ub = clopper_pearson_upper(e, n, delta)
        if ub > alpha:
            break
        best = Certified(float(c[k]), target_precision, delta, len(conf), n, e, ub)
    return best
