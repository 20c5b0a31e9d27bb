"""The points score: ridge logistic against statsmodels, points that recover the reading rule, optimism,
validation on other patients only, unseen levels."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from neckmatch.errors import InputError
from neckmatch.stats.score import develop_score, ridge_logistic, score_points, score_table, validate_score
from neckmatch.synth.reads import StudyReadParams, draw_study_reads

FEATURES = ["f_signal", "f_signal_vs_fat", "f_border", "f_hilum", "f_short_axis_mm"]


def _cohort(n_cases, prefix, seed):
    rng = np.random.default_rng(seed)
    frames = []
    for k in range(n_cases):
        pos = rng.random(25) < 0.15
        micro = pos & (rng.random(25) < 0.25)
        short = rng.gamma(4, 1.2, 25) + 2 * pos
        r = draw_study_reads(rng, pos, micro, short, np.arange(1, 26), "pilot", {"R1": 20, "R2": 20, "R3": 20},
                             StudyReadParams(modalities=("T2star",)))
        frames.append(r.assign(truth=pos[r["node"] - 1].astype(float), case_id=f"{prefix}{k}"))
    return pd.concat(frames, ignore_index=True).astype({f: str for f in FEATURES})


@pytest.fixture(scope="module")
def developed():
    dev = _cohort(8, "D", 1)
    return dev, develop_score(dev, FEATURES, n_boot=20, seed=0)


def test_ridge_without_penalty_is_maximum_likelihood():
    rng = np.random.default_rng(0)
    x = (rng.random((300, 4)) < 0.4).astype(float)
    y = (rng.random(300) < 0.3).astype(float)
    ml = sm.Logit(y, sm.add_constant(x)).fit(disp=0).params
    np.testing.assert_allclose(ridge_logistic(x, y, 0.0), ml, atol=1e-7)
    shrunk = ridge_logistic(x, y, 50.0)
    assert np.abs(shrunk[1:]).sum() < np.abs(ml[1:]).sum()  # the penalty shrinks the slopes


def test_points_recover_the_reading_rule(developed):
    dev, score = developed
    pts = score["points"]
    assert pts["f_signal"]["bright"] > pts["f_signal"]["dark"]
    assert pts["f_signal_vs_fat"]["brighter"] > pts["f_signal_vs_fat"]["darker"]
    assert all(min(v.values()) == 0 and all(isinstance(p, int) for p in v.values()) for v in pts.values())
    table = score_table(score)
    assert set(table["feature"]) == {f.removeprefix("f_") for f in FEATURES}
    total = score_points(dev, score)
    np.testing.assert_array_equal(total, [sum(pts[f][_level(score, f, row)] for f in FEATURES)
                                          for _, row in dev.iterrows()])


def _level(score, f, row):
    spec = score["spec"][f]
    if spec["cuts"] is None:
        return row[f]
    return spec["levels"][int(np.searchsorted(spec["cuts"], float(row[f]), side="right"))]


def test_optimism_corrected_below_apparent(developed):
    _, score = developed
    assert 0.5 < score["optimism_corrected"]["auc"] <= score["apparent"]["auc"]
    assert score["development"]["patients"] == 8 and len(score["development"]["patient_hashes"]) == 8


def test_validation_on_other_patients(developed):
    _, score = developed
    val = validate_score(_cohort(10, "V", 2), score, n_boot=200, seed=0)
    assert val["auc"] > 0.8 and val["auc_low_boot"] < val["auc"] < val["auc_high_boot"]
    assert val["sensitivity_wilson"][0] <= val["sensitivity"] <= val["sensitivity_wilson"][1]
    assert sum(r["n"] for r in val["calibration"]["by_total"]) == val["readings"]


def test_validation_refuses_development_patients(developed):
    dev, score = developed
    with pytest.raises(InputError, match="8 validation patient\\(s\\) also developed the score"):
        validate_score(dev, score, n_boot=10)


def test_unseen_level_scores_as_reference(developed):
    _, score = developed
    val = _cohort(6, "W", 3)
    val.loc[0, "f_border"] = "spiculated"
    out = validate_score(val, score, n_boot=10)
    assert out["unseen_levels"] == {"f_border": {"spiculated": 1}}
