"""The confidence calibration and the certified auto threshold (Clopper-Pearson, fixed-sequence testing)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binom

from neckmatch.correlation.calibration import clopper_pearson_upper, guaranteed_threshold, min_decisions


@pytest.mark.parametrize(("errors", "n"), [(0, 99), (1, 50), (5, 200)])
def test_clopper_pearson_bound_is_where_the_binomial_tail_is_delta(errors, n):
    ub = clopper_pearson_upper(errors, n, 0.05)
    # the exact one-sided bound: P(X <= errors | n, ub) = delta
    assert binom.cdf(errors, n, ub) == pytest.approx(0.05, abs=1e-6)


def test_min_decisions_is_the_first_n_whose_error_free_bound_meets_the_target():
    n = min_decisions(0.97, 0.05)
    assert clopper_pearson_upper(0, n, 0.05) <= 0.03 < clopper_pearson_upper(0, n - 1, 0.05)


def test_too_few_decisions_certify_nothing():
    conf = np.linspace(0.99, 0.5, 98)
    cert = guaranteed_threshold(conf, np.ones(98, bool), 0.97, 0.05)
    assert cert.threshold is None and cert.n_decisions == 98


def test_all_right_decisions_certify_the_lowest_confidence():
    conf = np.linspace(0.99, 0.5, 150)
    cert = guaranteed_threshold(conf, np.ones(150, bool), 0.97, 0.05)
    assert cert.threshold == pytest.approx(0.5) and cert.n_above == 150 and cert.errors_above == 0


def test_the_sequence_stops_at_the_first_failure():
    # 200 right decisions, then a block of 20 wrong ones, then 300 right ones: the running error rate falls below
    # 3 % again further down, but fixed-sequence testing must stop at the block
    conf = np.linspace(0.999, 0.3, 520)
    ok = np.ones(520, bool)
    ok[200:220] = False
    cert = guaranteed_threshold(conf, ok, 0.97, 0.05)
    assert cert.threshold is not None and cert.threshold >= conf[205]
    assert cert.upper_error <= 0.03


def test_guarantee_holds_in_repeated_samples():
    # decisions whose error probability rises as confidence falls; the certified threshold's true error rate
    # must exceed the target in at most ~delta of repetitions
    rng = np.random.default_rng(3)
    fails = 0
    for _ in range(100):
        conf = rng.uniform(0.5, 1.0, 600)
        p_err = (1.0 - conf) * 0.4
        ok = rng.random(600) >= p_err
        cert = guaranteed_threshold(conf, ok, 0.97, 0.05)
        if cert.threshold is None:
            continue
        t = cert.threshold
        true_err = np.mean((1.0 - np.linspace(t, 1.0, 2001)) * 0.4)  # mean error above t (uniform confidence)
        fails += true_err > 0.03
    assert fails <= 12
