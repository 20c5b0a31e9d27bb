"""Accuracy: known answers, Wilson against Newcombe (1998), bootstrap and GEE checks, zero cells."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy.special import expit
from scipy.stats import t as student_t

from neckmatch.stats.accuracy import (
    accuracy_columns,
    accuracy_row,
    accuracy_table,
    cluster_bootstrap,
    cluster_robust_variance,
    clustered_wilson,
    confusion_counts,
    diagnostic_metrics,
    gee_proportion,
    metric_outcomes,
    wilson_interval,
)


def test_confusion_counts_known_and_missing_skipped():
    idx = [True, True, True, False, False, None, "false"]
    ref = ["positive", "positive", "negative", "positive", "negative", "negative", "negative"]
    assert confusion_counts(idx, ref) == {"tp": 2, "fp": 1, "fn": 1, "tn": 2}


@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    # Newcombe RG. Stat Med 1998;17:857-872, Table I, method 3 (Wilson score, no continuity correction)
    [(81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611), (1, 29, 0.0061, 0.1718)],
)
def test_wilson_matches_newcombe_table(k, n, low, high):
    lo, hi = wilson_interval(k, n)
    assert (round(lo, 4), round(hi, 4)) == (low, high)


def test_wilson_zero_denominator_is_nan():
    lo, hi = wilson_interval(0, 0)
    assert np.isnan(lo) and np.isnan(hi)


def test_metrics_known_answer():
    m = diagnostic_metrics(tp=30, fp=10, fn=5, tn=55)
    assert m["sensitivity"] == pytest.approx(30 / 35)
    assert m["specificity"] == pytest.approx(55 / 65)
    assert m["ppv"] == pytest.approx(30 / 40)
    assert m["npv"] == pytest.approx(55 / 60)
    assert m["accuracy"] == pytest.approx(0.85)
    assert m["sensitivity_low"] < m["sensitivity"] < m["sensitivity_high"]


def test_zero_cells_do_not_crash_and_wilson_stays_defined():
    m = diagnostic_metrics(tp=0, fp=0, fn=5, tn=7)
    assert m["sensitivity"] == 0.0
    assert m["sensitivity_low"] == 0.0
    # Wilson upper bound for 0/n is z^2 / (n + z^2)
    z2 = 1.959963984540054**2
    assert m["sensitivity_high"] == pytest.approx(z2 / (5 + z2))
    assert np.isnan(m["ppv"]) and np.isnan(m["ppv_low"])
    assert m["specificity"] == 1.0


def _clustered_data(n_patients=80, seed=3):
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_patients):
        m = rng.integers(1, 6)
        frailty = rng.normal(0, 1.0)
        ref = rng.random(m) < expit(-1 + frailty)
        idx = np.where(ref, rng.random(m) < 0.8, rng.random(m) < expit(-2 + frailty))
        rows += [{"case_id": f"P{p:03d}", "ref": r, "call": c} for r, c in zip(ref, idx, strict=True)]
    return pd.DataFrame(rows)


def test_bootstrap_reproducible_by_seed():
    d = _clustered_data()
    a = cluster_bootstrap(d["call"], d["ref"], d["case_id"], n_boot=300, seed=7)
    b = cluster_bootstrap(d["call"], d["ref"], d["case_id"], n_boot=300, seed=7)
    c = cluster_bootstrap(d["call"], d["ref"], d["case_id"], n_boot=300, seed=8)
    assert a == b
    assert a != c


def test_bootstrap_close_to_wilson_for_independent_units():
    rng = np.random.default_rng(11)
    n = 600
    ref = rng.random(n) < 0.5
    idx = np.where(ref, rng.random(n) < 0.85, rng.random(n) < 0.1)
    boot = cluster_bootstrap(idx, ref, np.arange(n), n_boot=1000, seed=1)
    c = confusion_counts(idx, ref)
    lo, hi = wilson_interval(c["tp"], c["tp"] + c["fn"])
    assert boot["sensitivity"][0] == pytest.approx(lo, abs=0.015)
    assert boot["sensitivity"][1] == pytest.approx(hi, abs=0.015)


def test_gee_matches_direct_statsmodels_fit():
    d = _clustered_data()
    g = gee_proportion(d["call"].to_numpy(), d["case_id"].to_numpy())
    codes = pd.factorize(d["case_id"], sort=True)[0]
    res = sm.GEE(d["call"].astype(float).to_numpy(), np.ones((len(d), 1)), groups=codes,
                 family=sm.families.Binomial(), cov_struct=sm.cov_struct.Exchangeable()).fit(cov_type="bias_reduced")
    b, se, se_robust = res.params[0], res.bse[0], np.sqrt(res.cov_robust[0, 0])
    t = student_t.ppf(0.975, d["case_id"].nunique() - 1)  # small-sample t(C - 1), bias-reduced sandwich
    assert se > se_robust
    assert g.estimate == pytest.approx(expit(b))
    assert g.low == pytest.approx(expit(b - t * se))
    assert g.high == pytest.approx(expit(b + t * se))
    assert g.design_effect == pytest.approx(se_robust**2 * len(d) * expit(b) * (1 - expit(b)))
    assert g.note == ""


def test_gee_design_effect_one_for_singletons_two_for_duplicated_units():
    rng = np.random.default_rng(5)
    y = rng.random(200) < 0.3
    assert gee_proportion(y, np.arange(200)).design_effect == pytest.approx(1.0, rel=1e-6)
    dup = gee_proportion(np.repeat(y, 2), np.repeat(np.arange(200), 2))
    assert dup.design_effect == pytest.approx(2.0, rel=1e-3)


def test_gee_zero_cell_is_nan_with_note():
    g = gee_proportion(np.ones(10, bool), np.repeat(np.arange(5), 2))
    assert np.isnan(g.estimate) and np.isnan(g.low)
    assert "separation" in g.note


def test_metric_outcomes_rejects_unknown_metric():
    with pytest.raises(ValueError, match="unknown metric 'auc'"):
        metric_outcomes("auc", np.array([True]), np.array([True]))


def test_accuracy_row_clusters_only_where_patients_repeat():
    single = accuracy_row([True, False, True], [True, False, False], ["a", "b", "c"], n_boot=50)
    assert np.isnan(single["sensitivity_low_boot"]) and single["max_units_per_patient"] == 1
    d = _clustered_data(n_patients=40)
    row = accuracy_row(d["call"], d["ref"], d["case_id"], n_boot=200, seed=0)
    assert row["sensitivity_low_boot"] <= row["sensitivity"] <= row["sensitivity_high_boot"]
    assert row["design_effect"] == row["accuracy_deff"] > 0
    assert row["n_patients"] == 40 and row["n"] == len(d)


def test_accuracy_table_groups_and_pooled_row():
    d = pd.DataFrame({
        "case_id": ["A", "A", "B", "B", "C", "C"],
        "level": ["II", "III", "II", "III", "II", "III"],
        "side": ["R"] * 6,
        "call": [True, False, True, True, False, False],
        "ref": [True, False, False, True, True, False],
    })
    out = accuracy_table(d, "call", "ref", n_boot=100)
    assert list(out.columns) == accuracy_columns()
    assert out[["level", "side"]].values.tolist() == [["II", "R"], ["III", "R"], ["all", "both"]]
    ii = out.iloc[0]
    assert (ii.tp, ii.fp, ii.fn, ii.tn) == (1, 1, 1, 0)
    pooled = out.iloc[-1]
    assert (pooled.tp, pooled.fp, pooled.fn, pooled.tn) == (2, 1, 1, 2)
    assert pooled.max_units_per_patient == 2
    # 3 patients: no bootstrap (its note says why), the Wilson-deff interval is the row's interval
    assert np.isnan(pooled.accuracy_low_boot) and pooled.boot_note == "3 patients < 20"
    assert pooled.ci_method == "wilson-deff t(C-1)" and ii.ci_method == "wilson"
    assert 0 < pooled.accuracy_low < pooled.accuracy < pooled.accuracy_high < 1


@pytest.mark.parametrize("n", [7, 18, 19, 36])
def test_wilson_ends_are_exact_for_zero_and_full_counts(n):
    """statsmodels gives 1.4e-17 / 0.9999999999999999 for these n; the table must show 0 and 1."""
    assert wilson_interval(0, n)[0] == 0.0
    assert wilson_interval(n, n)[1] == 1.0
    lo, hi = wilson_interval(np.array([0, n]), np.array([n, n]))
    assert lo[0] == 0.0 and hi[1] == 1.0 and 0.0 < hi[0] < lo[1] < 1.0


def test_gee_fit_of_the_same_units_is_reused_and_other_labels_give_the_same_fit():
    from neckmatch.stats.accuracy import _gee_fit

    d = _clustered_data()
    first = gee_proportion(d["call"].to_numpy(), d["case_id"].to_numpy())
    hits = _gee_fit.cache_info().hits
    renamed = gee_proportion(d["call"].to_numpy(), ("patient-" + d["case_id"].astype(str)).to_numpy())
    assert renamed == first and _gee_fit.cache_info().hits == hits + 1  # same units, same cluster structure
    other = gee_proportion(~d["call"].to_numpy(), d["case_id"].to_numpy())
    assert other.estimate == pytest.approx(1 - first.estimate) and _gee_fit.cache_info().hits == hits + 1


def test_cluster_robust_variance_is_statsmodels_gee_sandwich_times_cr1():
    """Independent computation: statsmodels GEE, independence working correlation, robust (sandwich) covariance
    of the logit; by the delta method var(p) = (p (1 - p))**2 var(logit p); CR1 multiplies by C / (C - 1)."""
    d = _clustered_data(n_patients=25, seed=11)
    codes = pd.factorize(d["case_id"], sort=True)[0]
    y = d["call"].astype(float).to_numpy()
    res = sm.GEE(y, np.ones((len(d), 1)), groups=codes, family=sm.families.Binomial(),
                 cov_struct=sm.cov_struct.Independence()).fit()
    p_sm = expit(res.params[0])
    k, n = np.bincount(codes, weights=y), np.bincount(codes)
    p, var = cluster_robust_variance(k, n)
    c = len(n)
    assert float(p) == pytest.approx(p_sm)
    assert float(var) == pytest.approx(c / (c - 1) * (p_sm * (1 - p_sm)) ** 2 * res.bse[0] ** 2, rel=1e-8)
    cw = clustered_wilson(k, n)
    assert cw["deff"] == pytest.approx(max(1.0, float(var) / (p_sm * (1 - p_sm) / len(d))))


def test_clustered_interval_widens_with_duplicated_units_and_never_collapses_on_a_zero_cell():
    rng = np.random.default_rng(2)
    k1 = (rng.random(40) < 0.3).astype(float)
    single = clustered_wilson(k1, np.ones(40))
    doubled = clustered_wilson(2 * k1, 2 * np.ones(40))  # each patient's unit counted twice: no new information
    assert doubled["deff"] == pytest.approx(2 * single["deff"], rel=1e-9)
    assert doubled["high"] - doubled["low"] == pytest.approx(single["high"] - single["low"], rel=1e-9)
    none_wrong = clustered_wilson(np.full(6, 3.0), np.full(6, 3.0))
    assert none_wrong["high"] == 1.0 and 0.5 < none_wrong["low"] < 0.9  # not [1, 1]


def test_zero_cell_bootstrap_is_left_out_with_a_note():
    d = _clustered_data(n_patients=30, seed=4)
    ref = d["ref"].to_numpy()
    row = accuracy_row(ref, ref, d["case_id"], n_boot=100)  # a perfect test: every metric is a zero cell
    assert np.isnan(row["sensitivity_low_boot"]) and "sensitivity: zero cell" in row["boot_note"]
    assert row["sensitivity"] == 1.0 and row["sensitivity_low"] < 1.0 and row["sensitivity_high"] == 1.0
    assert row["ci_method"] == "wilson-deff t(C-1)" and "separation" in row["gee_note"]


def _simulate_clustered(rng, n_rep, n_patients):
    """Per replicate and patient: TP and reference-positive counts of 1-8 nodes, with patient random effects on the
    prevalence and on the sensitivity (logit scale, SD 1): strongly clustered node-level data."""
    m = rng.integers(1, 9, size=(n_rep, n_patients))
    slots = np.arange(8)[None, None, :] < m[..., None]
    u = rng.normal(0, 1, size=(n_rep, n_patients, 1))
    v = rng.normal(0, 1, size=(n_rep, n_patients, 1))
    ref = (rng.random((n_rep, n_patients, 8)) < expit(-1.0 + u)) & slots
    call = ref & (rng.random((n_rep, n_patients, 8)) < expit(1.2 + v))
    return call.sum(axis=-1), ref.sum(axis=-1)


def test_clustered_interval_coverage_simulation():
    """1000 simulated cohorts of 30 patients: the Wilson-deff 95 % interval of the pooled sensitivity covers the
    population value in 93-97 % (Monte Carlo SE 0.7 %: the band is about +-3 SE); naive Wilson undercovers."""
    tp, pos = _simulate_clustered(np.random.default_rng(2024), 400, 2000)
    truth = tp.sum() / pos.sum()  # population sensitivity (ratio of expectations), 800 000 patients
    tp, pos = _simulate_clustered(np.random.default_rng(7), 1000, 30)
    ci = clustered_wilson(tp, pos)
    coverage = np.mean((ci["low"] <= truth) & (truth <= ci["high"]))
    assert 0.93 <= coverage <= 0.97
    lo, hi = wilson_interval(tp.sum(axis=1), pos.sum(axis=1))
    assert np.mean((lo <= truth) & (truth <= hi)) < 0.93  # ignoring the clustering is not honest here


def test_a_metric_held_by_one_patient_keeps_its_wilson_interval_with_a_note():
    # sensitivity: the only positive units belong to patient A; specificity spreads over three patients
    row = accuracy_row([True, True, False, False, False, True], [True, True, False, False, False, False],
                       ["A", "A", "B", "B", "C", "C"], n_boot=10)
    lo, hi = wilson_interval(2, 2)
    assert (row["sensitivity_low"], row["sensitivity_high"]) == (lo, hi)
    assert row["ci_note"] == "sensitivity: 1 patient, wilson"  # PPV: index positives in A and C
    assert row["specificity_low"] != wilson_interval(3, 4)[0]  # clustered: Wilson-deff
