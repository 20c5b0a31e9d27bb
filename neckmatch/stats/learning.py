"""Learning curves of readers: performance against reading order, with the learning-curve CUSUM (LC-CUSUM) of
Biau et al. (Br J Surg 2008; 95: 925-929).

Each reading is a success (the reader's call agrees with pathology) or a failure. LC-CUSUM tests, case after
case, the null hypothesis that the reader still performs at an unacceptable failure rate ``p_unacceptable``
against the alternative of an acceptable rate ``p_acceptable``: ``S_0 = 0``, ``S_n = max(0, S_(n-1) + W_n)`` with
``W = log[(1 - p_acc) / (1 - p_unacc)] > 0`` for a success and ``W = log(p_acc / p_unacc) < 0`` for a failure. The
curve signals, and the reader is declared to have reached competence, when ``S_n >= h``. The limit ``h`` is set by
simulation so that a reader who stays at the unacceptable rate signals within the same number of readings with
probability at most ``alpha`` (the false-competence rate).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from neckmatch.errors import InputError

__all__ = ["LEARNING_COLUMNS", "lc_cusum", "lc_cusum_limit", "learning_curve"]

LEARNING_COLUMNS = ["reader", "index", "read_order", "case_id", "node", "correct", "cum_accuracy",
                    "moving_accuracy", "cusum", "limit", "signal", "competent"]


def _weights(p_acceptable: float, p_unacceptable: float) -> tuple[float, float]:
    if not 0 < p_acceptable < p_unacceptable < 1:
        raise InputError("<options>", "LC-CUSUM", f"needs 0 < acceptable < unacceptable failure rate < 1, got "
                                                  f"{p_acceptable} and {p_unacceptable}")
    return (float(np.log((1 - p_acceptable) / (1 - p_unacceptable))),
            float(np.log(p_acceptable / p_unacceptable)))


def lc_cusum(failures: ArrayLike, p_acceptable: float = 0.10, p_unacceptable: float = 0.20) -> NDArray[np.float64]:
    """The LC-CUSUM path ``S_1 .. S_n`` of a sequence of outcomes (True = failure): ndarray of shape (n,).

    Examples
    --------
    >>> s = lc_cusum([False, False, True], p_acceptable=0.1, p_unacceptable=0.2)
    >>> [round(float(v), 4) for v in s]  # success +log(0.9/0.8) = 0.1178, failure log(0.1/0.2) = -0.6931, floor 0
    [0.1178, 0.2356, 0.0]
    """
    w_ok, w_fail = _weights(p_acceptable, p_unacceptable)
    fail = np.asarray(failures, dtype=bool)
    out = np.empty(fail.size)
    s = 0.0
    for i, f in enumerate(fail):
        s = max(0.0, s + (w_fail if f else w_ok))
        out[i] = s
    return out


def lc_cusum_limit(n: int, p_acceptable: float = 0.10, p_unacceptable: float = 0.20, alpha: float = 0.05,
                   n_sim: int = 4000, seed: int = 0) -> float:
    """The limit ``h``: the smallest value reached by at most ``alpha`` of ``n_sim`` simulated readers who stay at
    the unacceptable failure rate for ``n`` readings (``numpy.random.default_rng(seed)``)."""
    w_ok, w_fail = _weights(p_acceptable, p_unacceptable)
    if n < 1:
        return float("nan")
    rng = np.random.default_rng(seed)
    fail = rng.random((n_sim, n)) < p_unacceptable
    s = np.zeros(n_sim)
    peak = np.zeros(n_sim)
    for j in range(n):
        s = np.maximum(0.0, s + np.where(fail[:, j], w_fail, w_ok))
        peak = np.maximum(peak, s)
    values = np.unique(peak)
    exceed = np.array([(peak >= v).mean() for v in values])
    ok = values[exceed <= alpha]
    return float(ok[0]) if ok.size else float(values[-1] + w_ok)


def learning_curve(reads: pd.DataFrame, *, order: str = "read_order", p_acceptable: float = 0.10,
                   p_unacceptable: float = 0.20, alpha: float = 0.05, window: int = 20,
                   seed: int = 0) -> pd.DataFrame:
    """One reader's learning curve from their readings.

    Parameters
    ----------
    reads : DataFrame
        One reader's readings with columns ``reader``, ``correct`` (bool), ``case_id``, ``node`` and ``order``.
    order : str
        Column giving the reading order (``read_order``, or ``read_at`` as ISO text); ties (the nodes of one case)
        in case and node order.
    window : int
        Readings in the moving accuracy.

    Returns
    -------
    DataFrame
        :data:`LEARNING_COLUMNS`: each reading in order with the cumulative and moving accuracy, the LC-CUSUM
        ``cusum``, its ``limit`` h, ``signal`` (True at the first crossing) and ``competent`` (from it on).
    """
    key = pd.to_datetime(reads[order], format="ISO8601") if order == "read_at" else reads[order]
    frame = reads.assign(_key=key).sort_values(["_key", "case_id", "node"], kind="stable").reset_index(drop=True)
    correct = frame["correct"].astype(bool).to_numpy()
    n = correct.size
    s = lc_cusum(~correct, p_acceptable, p_unacceptable)
    h = lc_cusum_limit(n, p_acceptable, p_unacceptable, alpha, seed=seed)
    crossed = s >= h
    first = int(np.argmax(crossed)) if crossed.any() else -1
    return pd.DataFrame({
        "reader": frame["reader"], "index": np.arange(1, n + 1),
        "read_order": frame[order], "case_id": frame["case_id"], "node": frame["node"], "correct": correct,
        "cum_accuracy": np.cumsum(correct) / np.arange(1, n + 1),
        "moving_accuracy": pd.Series(correct, dtype=float).rolling(window, min_periods=1).mean().to_numpy(),
        "cusum": s, "limit": h, "signal": np.arange(n) == first,
        "competent": (np.arange(n) >= first) if first >= 0 else np.zeros(n, bool),
    }, columns=LEARNING_COLUMNS)
