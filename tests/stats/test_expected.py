"""The expected analysis: expected counts, imputation, Rubin's rules, and interval coverage by simulation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit

from neckmatch.stats.accuracy import accuracy_row, clustered_wilson
from neckmatch.stats.expected import expected_counts, expected_row, impute_reference, rubin_clustered


def test_expected_counts_by_hand():
    # node 1: surely a positive partner, called; node 2: 50 % that it has a partner, 30 % positive if so, not called
    got = expected_counts([True, False], [1.0, 0.3], [1.0, 0.5])
    assert got == pytest.approx({"tp": 1.0, "fp": 0.0, "fn": 0.15, "tn": 0.35})


def test_imputation_keeps_what_is_certain():
    call = np.array([True, False, True, False])
    has, ref = impute_reference(call, [1.0, 0.0, 0.5, 0.5], [1.0, 1.0, 0.0, 1.0], n_imp=30,
                                rng=np.random.default_rng(1))
    assert has.shape == ref.shape == (30, 4)
    assert ref[:, 0].all() and not ref[:, 1].any()  # p_pos 1 and 0 stay as they are
    assert not has[:, 2].any() and has[:, [0, 1, 3]].all()  # p_has 0 never has a partner, 1 always


def test_imputation_conditions_on_the_call():
    """With a good test, an uncertain node called positive is more often imputed positive than one called negative
    (P(ref | call) ∝ p_pos P(call | ref)); imputing from p_pos alone would give both 50 %."""
    rng = np.random.default_rng(3)
    ref = rng.random(400) < 0.4
    call = np.where(ref, rng.random(400) < 0.9, rng.random(400) < 0.1)
    p_pos = np.r_[ref[:-2].astype(float), 0.5, 0.5]  # all certain but two coin flips
    call[-2:] = [True, False]
    _, imputed = impute_reference(call, p_pos, np.ones(400), n_imp=400, rng=np.random.default_rng(4))
    assert imputed[:, -2].mean() > 0.8 and imputed[:, -1].mean() < 0.2


def test_certain_matching_gives_the_plain_clustered_row():
    rng = np.random.default_rng(5)
    clusters = np.repeat(np.arange(12), 4)
    ref = rng.random(48) < 0.4
    call = np.where(ref, rng.random(48) < 0.8, rng.random(48) < 0.2)
    row = expected_row(call, ref.astype(float), np.ones(48), clusters, n_imp=10)
    plain = accuracy_row(call, ref, clusters, n_boot=10)
    assert [row[c] for c in ("tp", "fp", "fn", "tn")] == [plain[c] for c in ("tp", "fp", "fn", "tn")]
    for m in ("sensitivity", "specificity"):
        assert row[m] == pytest.approx(plain[m])
        # no matching uncertainty: Rubin's total variance is the within variance; only the df differ slightly
        assert row[f"{m}_deff"] == pytest.approx(plain[f"{m}_deff"])
        assert row[f"{m}_low"] == pytest.approx(plain[f"{m}_low"], abs=0.01)
    assert "sensitivity 0.00" in row["gee_note"]  # fraction of missing information


def test_rubin_of_identical_imputations_is_the_complete_data_interval():
    k = np.array([[3.0, 2, 0, 4, 1, 2]] * 5)
    n = np.array([[4.0, 3, 2, 4, 2, 3]] * 5)
    r, cw = rubin_clustered(k, n), clustered_wilson(k[0], n[0])
    assert r["fmi"] == 0.0 and r["estimate"] == pytest.approx(cw["estimate"])
    assert r["deff"] == pytest.approx(cw["deff"])
    # Barnard & Rubin's df without missing information: nu (nu + 1) / (nu + 3) = 5 * 6 / 8 for nu = C - 1 = 5,
    # a little below the complete-data t(5): the interval is a little wider, never narrower
    assert r["df"] == pytest.approx(5 * 6 / 8)
    assert r["high"] - r["low"] > cw["high"] - cw["low"]


def _cohort(rng, n_patients):
    """One simulated cohort with matching uncertainty. Per node the matching posterior (computed without the call)
    says: partner status ``s`` with confidence ``c`` (Beta(3, 1)), else a node of the patient's prevalence ``q``;
    15 % of the nodes are level-only (partner with probability ``p_has``, then ``q``). The true reference is drawn
    from that posterior, and the call from the true reference with patient random effects (SD 1)."""
    m = rng.integers(1, 9, size=n_patients)
    cl = np.repeat(np.arange(n_patients), m)
    u, v = rng.normal(0, 1, n_patients)[cl], rng.normal(0, 1, n_patients)[cl]
    q, n = expit(-1 + u), len(cl)
    conf = rng.beta(3, 1, n)
    p_pos = conf * (rng.random(n) < q) + (1 - conf) * q
    level_only = rng.random(n) < 0.15
    p_has = np.where(level_only, rng.uniform(0.2, 0.9, n), 1.0)
    p_pos = np.where(level_only, q, p_pos)
    has, ref = rng.random(n) < p_has, rng.random(n) < p_pos
    call = np.where(ref, rng.random(n) < expit(1.2 + v), rng.random(n) < expit(-1.5 + v))
    return cl, call, p_pos, p_has, has, ref


def test_expected_interval_coverage_simulation():
    """600 simulated cohorts of 30 patients: the expected analysis' 95 % intervals (20 imputations) cover the
    population sensitivity and specificity in 93-97 % (Monte Carlo SE 0.9 %: the band is about +-2.2 SE)."""
    cl, call, _, _, has, ref = _cohort(np.random.default_rng(99), 300_000)
    truth = {"sens": (has & ref & call).sum() / (has & ref).sum(),
             "spec": (has & ~ref & ~call).sum() / (has & ~ref).sum()}
    hits, single = {"sens": 0, "spec": 0}, {"sens": 0, "spec": 0}
    n_rep = 600
    for r in range(n_rep):
        cl, call, p_pos, p_has, _, _ = _cohort(np.random.default_rng(1000 + r), 30)
        h, f = impute_reference(call, p_pos, p_has, n_imp=20, rng=np.random.default_rng(r))
        for name, unit, success in (("sens", h & f, call), ("spec", h & ~f, ~call)):
            k = np.stack([np.bincount(cl, weights=(u & success), minlength=30) for u in unit])
            n = np.stack([np.bincount(cl, weights=u, minlength=30) for u in unit])
            mi, one = rubin_clustered(k, n), clustered_wilson(k[0], n[0])
            hits[name] += mi["low"] <= truth[name] <= mi["high"]
            single[name] += one["low"] <= truth[name] <= one["high"]
    assert 0.93 <= hits["sens"] / n_rep <= 0.97
    assert 0.93 <= hits["spec"] / n_rep <= 0.97
    # one imputation treated as the truth (sampling uncertainty only) undercovers: the matching's share matters
    assert single["sens"] / n_rep < 0.9 and single["spec"] / n_rep < 0.92
