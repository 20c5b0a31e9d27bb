"""LC-CUSUM learning curves: hand-computed paths, the false-competence rate of the limit, signal bookkeeping."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from neckmatch.errors import InputError
from neckmatch.stats.learning import LEARNING_COLUMNS, lc_cusum, lc_cusum_limit, learning_curve


def test_path_hand_computed():
    ok, fail = np.log(0.9 / 0.8), np.log(0.1 / 0.2)
    s = lc_cusum([False, True, False, False, True, True])
    np.testing.assert_allclose(s, [ok, 0.0, ok, 2 * ok, 0.0, 0.0])  # failures pull down, floored at 0
    assert lc_cusum([False] * 3, 0.05, 0.15)[-1] == pytest.approx(3 * np.log(0.95 / 0.85))
    assert fail < 0 < ok


def test_limit_keeps_false_competence_below_alpha():
    h = lc_cusum_limit(120, alpha=0.05, seed=1)
    rng = np.random.default_rng(99)  # independent readers who stay at the unacceptable 20 % failure rate
    peaks = np.array([lc_cusum(rng.random(120) < 0.2).max() for _ in range(1500)])
    assert (peaks >= h).mean() <= 0.05 + 0.015
    assert (peaks >= 0.8 * h).mean() > 0.05  # and not much more conservative than needed
    assert lc_cusum_limit(400, seed=1) > lc_cusum_limit(40, seed=1)  # more readings, more chances: higher h


def test_bad_rates_refused():
    with pytest.raises(InputError, match="needs 0 < acceptable < unacceptable failure rate < 1, got 0.3 and 0.2"):
        lc_cusum([True], 0.3, 0.2)


def test_learning_curve_orders_and_signals():
    rng = np.random.default_rng(0)
    n = 200
    correct = np.r_[rng.random(60) > 0.4, rng.random(n - 60) > 0.03]  # learns after 60 readings
    reads = pd.DataFrame({"reader": "R1", "case_id": [f"P{i // 5:02d}" for i in range(n)], "node": np.arange(n) % 5,
                          "read_order": np.arange(n) // 5 + 1, "correct": correct}).sample(frac=1, random_state=1)
    curve = learning_curve(reads)
    assert list(curve.columns) == LEARNING_COLUMNS
    assert curve["read_order"].is_monotonic_increasing and curve["index"].tolist() == list(range(1, n + 1))
    assert curve["signal"].sum() == 1
    first = int(curve.loc[curve["signal"], "index"].iloc[0])
    assert first > 60
    assert curve["cusum"].iloc[first - 1] >= curve["limit"].iloc[0] > curve["cusum"].iloc[:first - 1].max()
    assert curve["competent"].tolist() == [i >= first for i in range(1, n + 1)]
    assert curve["cum_accuracy"].iloc[-1] == pytest.approx(correct.mean())


def test_learning_curve_by_read_at():
    reads = pd.DataFrame({"reader": "R1", "case_id": ["b", "a"], "node": [1, 1], "correct": [True, False],
                          "read_at": ["2024-02-01", "2024-01-05T10:00"]})
    assert learning_curve(reads, order="read_at")["case_id"].tolist() == ["a", "b"]
