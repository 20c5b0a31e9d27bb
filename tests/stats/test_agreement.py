"""Agreement: Cohen's kappa (unweighted, linear, quadratic) and Fleiss' kappa against hand-computed values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from neckmatch.stats.agreement import agreement_table, fleiss, landis_koch, weighted_kappa

A, B = [1, 2, 3, 1], [1, 2, 3, 2]


@pytest.mark.parametrize(
    ("weights", "expected"),
    [
        (None, (0.75 - 5 / 16) / (1 - 5 / 16)),  # po = 3/4, pe = (2*1 + 1*2 + 1*1) / 16
        ("linear", (0.875 - 0.5625) / (1 - 0.5625)),  # w = 1 - |i-j|/2: po = 3.5/4, pe = 0.5625 by hand
        ("quadratic", (0.9375 - 0.6875) / (1 - 0.6875)),  # w = 1 - (|i-j|/2)^2: po = 3.75/4, pe = 0.6875
    ],
)
def test_cohen_kappa_hand_computed(weights, expected):
    assert weighted_kappa(A, B, weights=weights)["kappa"] == pytest.approx(expected)


def test_kappa_weights_follow_category_values():
    # a scale 1, 2, 5: linear weights use the values (distance 3 between 2 and 5), not the ranks
    k_values = weighted_kappa([1, 2, 5, 5], [1, 5, 5, 2], weights="linear")["kappa"]
    k_ranks = weighted_kappa([1, 2, 3, 3], [1, 3, 3, 2], weights="linear")["kappa"]
    assert k_values != pytest.approx(k_ranks)


def test_fleiss_hand_computed():
    # per-unit agreement 1/3, 1, 1, 1/3 -> P = 2/3; category shares 1/2, 1/2 -> Pe = 1/2; kappa = 1/3
    assert fleiss([[1, 1, 2], [2, 2, 2], [1, 1, 1], [1, 2, 2]]) == pytest.approx(1 / 3)


@pytest.mark.parametrize(("k", "word"), [(-0.2, "poor"), (0.1, "slight"), (0.3, "fair"), (0.5, "moderate"),
                                         (0.7, "substantial"), (0.95, "almost perfect"), (float("nan"), "")])
def test_landis_koch_words(k, word):
    assert landis_koch(k) == word


def test_agreement_table_pairs_and_fleiss():
    ratings = {"r1": [1, 2, 3, 1, 5], "r2": [1, 2, 3, 2, 5], "r3": [1, 3, 3, 1, 4]}
    rows = [{"case_id": "P1", "mr_node": n, "reader": r, "score": s, "malignant": "true" if s >= 4 else "false"}
            for r, scores in ratings.items() for n, s in enumerate(scores)]
    out = agreement_table(pd.DataFrame(rows))
    pair = out[(out["readers"] == "r1|r2") & (out["variable"] == "score")]
    assert pair["statistic"].tolist() == ["cohen_unweighted", "cohen_linear", "cohen_quadratic"]
    fl = out[(out["statistic"] == "fleiss") & (out["variable"] == "score")].iloc[0]
    assert fl["n"] == 5
    assert fl["kappa"] == pytest.approx(fleiss(np.array(list(ratings.values())).T))
    calls = out[(out["variable"] == "malignant") & (out["readers"] == "r1|r2")].iloc[0]
    assert calls["kappa"] == pytest.approx(1.0) and calls["landis_koch"] == "almost perfect"


def test_kappa_interval_stays_within_minus_one_one():
    """25 units, one disagreement: kappa 0.865, se 0.131, so the Wald upper end 1.122 is truncated to 1."""
    res = weighted_kappa([0] * 20 + [1] * 5, [0] * 20 + [1] * 4 + [0], weights=None)
    assert res["kappa"] == pytest.approx(0.864865, abs=1e-6)
    assert res["high"] == 1.0
    assert res["low"] == pytest.approx(0.864865 - 1.959964 * res["se"], abs=1e-6)
