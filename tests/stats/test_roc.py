"""ROC: AUC against a hand-computed Mann-Whitney U, curve area, Youden threshold, bootstrap by seed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from neckmatch.stats.roc import (
    auc_bootstrap,
    auc_bootstrap_note,
    auc_mann_whitney,
    roc_by_reader,
    roc_curve,
    youden_threshold,
)

SCORES = [1, 2, 2, 3, 4, 5, 3, 4, 5, 5]
LABELS = ["negative"] * 6 + ["positive"] * 4


def test_auc_equals_hand_counted_mann_whitney():
    # positives 3, 4, 5, 5 against negatives 1, 2, 2, 3, 4, 5: count wins + 0.5 ties by hand
    # 3: beats 1,2,2 (3) tie 3 (.5) -> 3.5; 4: beats 1,2,2,3 (4) tie 4 -> 4.5; 5: beats 5 + tie -> 5.5 (twice)
    u = 3.5 + 4.5 + 5.5 + 5.5
    assert auc_mann_whitney(SCORES, LABELS) == pytest.approx(u / 24)


def test_auc_is_trapezoidal_area_of_the_curve():
    curve = roc_curve(SCORES, LABELS)
    area = np.trapezoid(curve["tpr"], curve["fpr"])
    assert area == pytest.approx(auc_mann_whitney(SCORES, LABELS))
    assert curve.iloc[0][["tpr", "fpr"]].tolist() == [0.0, 0.0]
    assert curve.iloc[-1][["tpr", "fpr"]].tolist() == [1.0, 1.0]


def test_auc_nan_without_both_classes():
    assert np.isnan(auc_mann_whitney([1, 2], [True, True]))


def test_youden_threshold_known():
    you = youden_threshold([1, 2, 3, 4, 5, 6], [False, False, True, False, True, True])
    # threshold 3: sens 1, spec 2/3 -> J = 2/3; threshold 5: sens 2/3, spec 1 -> J = 2/3: tie -> higher
    assert you["threshold"] == 5.0
    assert you["youden_j"] == pytest.approx(2 / 3)


def test_auc_bootstrap_reproducible_and_brackets_estimate():
    rng = np.random.default_rng(2)
    n = 120
    y = rng.random(n) < 0.4
    s = np.where(y, rng.integers(2, 6, n), rng.integers(1, 5, n))
    cl = np.repeat(np.arange(40), 3)
    a = auc_bootstrap(s, y, cl, n_boot=300, seed=4)
    assert a == auc_bootstrap(s, y, cl, n_boot=300, seed=4)
    assert a[0] < auc_mann_whitney(s, y) < a[1]


def test_roc_by_reader_one_row_per_reader():
    reads = pd.DataFrame({"case_id": list("AABBCC") * 2, "reader": ["r1"] * 6 + ["r2"] * 6,
                          "score": [1, 5, 2, 4, 1, 3] + [2, 2, 1, 5, 3, 4],
                          "path_status": ["negative", "positive", "negative", "positive", "negative", "positive"] * 2})
    summary, curves = roc_by_reader(reads, n_boot=100)
    assert summary["reader"].tolist() == ["r1", "r2"]
    assert summary.loc[0, "auc"] == 1.0
    assert summary.loc[1, "auc"] == pytest.approx(auc_mann_whitney([2, 2, 1, 5, 3, 4], [0, 1, 0, 1, 0, 1]))
    assert set(curves["reader"]) == {"r1", "r2"}


def _auc_bootstrap_by_resampling(s, y, cl, n_boot, seed):
    """Reference: build each resample's units and take the mid-rank AUC (the same draws as auc_bootstrap)."""
    from scipy.stats import rankdata

    ok = ~np.isnan(s)
    s, y, cl = s[ok], y[ok], cl[ok]
    codes, uniq = pd.factorize(pd.Series(cl), sort=True)
    draws = np.random.default_rng(seed).integers(0, len(uniq), size=(n_boot, len(uniq)))
    aucs = []
    for row in draws:
        sel = np.concatenate([np.flatnonzero(codes == c) for c in row])
        yb, n1 = y[sel], int(y[sel].sum())
        if 0 < n1 < len(yb):
            aucs.append((rankdata(s[sel])[yb].sum() - n1 * (n1 + 1) / 2) / (n1 * (len(yb) - n1)))
    return tuple(np.percentile(aucs, [2.5, 97.5]))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auc_bootstrap_equals_resampling_the_units(seed):
    """The all-resamples-at-once count equals ranking every resample (tied scores, NaN, uneven patients)."""
    rng = np.random.default_rng(seed)
    n = 90
    cl = rng.integers(0, 12, n)
    y = rng.random(n) < 0.35
    s = rng.integers(1, 6, n).astype(float) + y
    s[rng.random(n) < 0.1] = np.nan
    got = auc_bootstrap(s, y, cl, n_boot=150, seed=seed)
    assert got == _auc_bootstrap_by_resampling(s, y, cl, 150, seed)


def _reads_of(n_patients: int, seed: int = 3) -> pd.DataFrame:
    """Four nodes per patient, two positive and two negative, scores 1-5 (positives one higher on average)."""
    rng = np.random.default_rng(seed)
    n = 4 * n_patients
    y = np.tile([True, True, False, False], n_patients)
    return pd.DataFrame({"case_id": np.repeat([f"P{i}" for i in range(n_patients)], 4), "reader": "r1",
                         "score": rng.integers(1, 5, n) + y, "path_status": np.where(y, "positive", "negative")})


def test_bootstrap_ci_nan_below_five_patients_with_a_note():
    summary, _ = roc_by_reader(_reads_of(4), n_boot=200)
    row = summary.iloc[0]
    assert row["n_patients"] == 4 and np.isfinite(row["auc"])  # the AUC itself is still reported
    assert np.isnan(row["auc_low_boot"]) and np.isnan(row["auc_high_boot"])
    assert row["auc_note"] == "CI n/a: scores from 4 patients (< 5)"


def test_bootstrap_ci_from_five_patients_brackets_the_auc():
    summary, _ = roc_by_reader(_reads_of(5), n_boot=200)
    row = summary.iloc[0]
    assert row["auc_low_boot"] <= row["auc"] <= row["auc_high_boot"]
    assert row["auc_low_boot"] < row["auc_high_boot"] and row["auc_note"] == ""


def test_bootstrap_ci_nan_when_the_rare_class_is_often_not_drawn():
    # one positive node in one of 8 patients: a resample misses it with probability (7/8)^8 = 0.34
    s = np.arange(16.0)
    y = np.zeros(16, bool)
    y[15] = True
    cl = np.repeat(np.arange(8), 2)
    assert np.isnan(auc_bootstrap(s, y, cl, n_boot=500)).all()
    note = auc_bootstrap_note(s, y, cl, n_boot=500)
    assert note.startswith("CI n/a: both classes in ") and note.endswith("/500 resamples (< 90 %)")
    valid = int(note.removeprefix("CI n/a: both classes in ").split("/")[0])
    assert 0.55 * 500 < valid < 0.77 * 500  # about 1 - 0.34 of the resamples hold both classes


def test_n_patients_counts_the_patients_whose_scores_are_used():
    # a fifth patient whose nodes have no reference adds no score: 4 patients, no CI, and the row says 4
    reads = pd.concat([_reads_of(4), _reads_of(1).assign(case_id="P9", path_status="")], ignore_index=True)
    row = roc_by_reader(reads, n_boot=200)[0].iloc[0]
    assert (row["n"], row["n_patients"]) == (16, 4)
    assert row["auc_note"] == "CI n/a: scores from 4 patients (< 5)"
