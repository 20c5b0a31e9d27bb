"""Robust likelihood terms of the pair evidence: Student-t kernels, the per-case position outlier share and the
per-case size noise."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import t as student_t

from neckmatch.correlation.evidence import (
    MatchParams,
    MRNodes,
    PathUnits,
    axis_log_lik,
    fit_pos_outlier,
    fit_size_sd,
    log_kernel,
)
from neckmatch.geometry.specimen import Warp
from neckmatch.model import ContainerLevel


def _units(cc, size=None):
    m = len(cc)
    return PathUnits(tuple(f"u{k}" for k in range(m)), tuple((f"u{k}",) for k in range(m)), ("R-II",) * m,
                     np.array(["R"] * m), (ContainerLevel.parse("II"),) * m,
                     np.full(m, 5.0) if size is None else np.asarray(size, float), np.asarray(cc, float),
                     np.full(m, np.nan))


def _mr(long_mm):
    n = len(long_mm)
    return MRNodes(np.arange(1, n + 1), np.array(["R"] * n), np.array(["IIA"] * n), np.array([""] * n),
                   np.zeros(n, bool), np.asarray(long_mm, float), np.zeros((n, 3)), np.ones(n, bool),
                   np.array([""] * n))


@pytest.mark.parametrize("df", [3.0, 4.0, 10.0])
def test_t_kernel_is_the_student_t_log_density(df):
    z = np.linspace(-6, 6, 13)
    assert np.allclose(log_kernel(z, df), student_t.logpdf(z, df))


def test_a_far_report_costs_less_under_the_t_kernel():
    far = axis_log_lik(np.array([0.9]), np.array([0.3]), 1.0, 0.0, 0.08, 0.0, True, 4.0)
    gauss = axis_log_lik(np.array([0.9]), np.array([0.3]), 1.0, 0.0, 0.08, 0.0, True, np.inf)
    near_t = axis_log_lik(np.array([0.3]), np.array([0.3]), 1.0, 0.0, 0.08, 0.0, True, 4.0)
    assert far[0] > gauss[0] + 10 and near_t[0] > far[0]


def test_outlier_share_grows_when_reports_disagree_with_the_geometry():
    rng = np.random.default_rng(5)
    x = rng.uniform(0.1, 0.9, 60)
    rel = np.repeat(np.column_stack([x, x])[:, None, :], 60, axis=1)
    pairs = np.column_stack([np.arange(60), np.arange(60)])
    params = MatchParams(estimate_pos_outlier=True)
    good = np.clip(x + rng.normal(0, 0.05, 60), 0.01, 0.99)
    bad = good.copy()
    bad[:20] = rng.uniform(0.01, 0.99, 20)  # a third of the reports follow no layout
    o_good = fit_pos_outlier(rel, _units(good), pairs, {"R-II": Warp()}, params, 0.05)
    o_bad = fit_pos_outlier(rel, _units(bad), pairs, {"R-II": Warp()}, params, 0.05)
    assert o_good < 0.06 and o_bad > 0.2
    # the same disagreeing report is worth less once the case's outlier share is known
    ll = [axis_log_lik(np.array([0.5]), np.array([0.5]), 1.0, 0.0, 0.05, o, True, 4.0)[0] for o in (o_good, o_bad)]
    assert ll[1] < ll[0]
    assert fit_pos_outlier(rel, _units(bad), pairs, {}, MatchParams(estimate_pos_outlier=False), 0.05) == 0.05


def test_size_noise_is_estimated_per_case():
    rng = np.random.default_rng(2)
    long_mm = rng.uniform(4, 20, 80)
    exact = np.round(0.85 * long_mm * np.exp(rng.normal(0, 0.05, 80)), 1)
    coarse = np.maximum(5.0 * np.round(exact / 5.0), 2.0)  # a pathologist measuring in 5 mm steps
    pairs = np.column_stack([np.arange(80), np.arange(80)])
    p = MatchParams()
    k = float(np.log(0.85))
    sd_exact = fit_size_sd(_mr(long_mm), _units(np.full(80, np.nan), exact), pairs, k, p)
    sd_coarse = fit_size_sd(_mr(long_mm), _units(np.full(80, np.nan), coarse), pairs, k, p)
    assert sd_exact < p.size_sd < sd_coarse
    assert fit_size_sd(_mr(long_mm), _units(np.full(80, np.nan), coarse), pairs, k,
                       MatchParams(estimate_size_sd=False)) == p.size_sd


def test_a_report_without_sizes_is_matched_without_numeric_warnings(tmp_path):
    """Unknown sizes are NaN inside the size term and become 0 by design: no RuntimeWarning reaches the user
    (the suite turns warnings into errors), and every size-less pair gets no size evidence."""
    from neckmatch.correlation.matching import match_case
    from neckmatch.geometry.levels import levels_table
    from neckmatch.io.case import read_case
    from neckmatch.synth.misspec import generate_family_cohort

    (case_dir,) = generate_family_cohort("count-only", 1, 3, tmp_path)
    case = read_case(case_dir)
    assert any(p.size_mm is None for p in case.path_nodes)
    matches = match_case(case, levels_table(case)).matches
    sizeless = matches["path_size_mm"].isna() & (matches["kind"] == "pair")
    assert sizeless.any() and (matches.loc[sizeless, "cost_size"].fillna(0.0) == 0.0).all()
