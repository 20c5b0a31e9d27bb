"""Obuchowski-Rockette MRMC analysis against published results (OR-DBM MRMC 2.51 output for the VanDyke,
Franken and FedRoc example data sets, and MRMCaov's DeLong analysis of VanDyke; see tests/data/README.md),
hand-computed covariances, and bad designs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from neckmatch.errors import InputError
from neckmatch.stats.mrmc import MRMC_COLUMNS, auc_matrix, error_covariance, mrmc_data, or_analysis, or_components
from neckmatch.stats.roc import auc_mann_whitney
from tests.cli_helpers import run_main

DATA = Path(__file__).resolve().parents[1] / "data"


def _data(name):
    return mrmc_data(pd.read_csv(DATA / f"mrmc_{name}.csv"))


def _row(table, analysis, a, b=""):
    sel = table[(table.analysis == analysis) & (table.test_a == a) & (table.test_b == b)]
    assert len(sel) == 1
    return sel.iloc[0]


# --- VanDyke (RJafroc inst/IowaResults/VanDyke.txt) ------------------------------------------------------------

def test_vandyke_aucs_and_covariances_match_published():
    d = _data("vandyke")
    published = [[0.91964573, 0.85877617, 0.90386473, 0.97310789, 0.82979066],
                 [0.94782609, 0.90531401, 0.92173913, 0.99935588, 0.92995169]]
    np.testing.assert_allclose(auc_matrix(d), published, atol=1e-8)
    comp = or_components(error_covariance(d), 2, 5)
    np.testing.assert_allclose([comp["var"], comp["cov1"], comp["cov2"], comp["cov3"]],
                               [0.00080229, 0.00034661, 0.00034407, 0.00023903], atol=1e-8)


def test_vandyke_rrrc_matches_published():
    t = or_analysis(_data("vandyke"))
    glob, diff = _row(t, "RRRC", ""), _row(t, "RRRC", "0", "1")
    assert glob.statistic == pytest.approx(4.46, abs=0.005) and glob.p == pytest.approx(0.0517, abs=5e-5)
    assert glob.df == pytest.approx(15.26, abs=0.005)
    assert diff.estimate == pytest.approx(-0.04380032, abs=1e-8)
    assert diff.se ** 2 * 5 / 2 == pytest.approx(0.00107626, abs=1e-8)  # the published error-term mean square
    assert (diff.ci_low, diff.ci_high) == pytest.approx((-0.08796, 0.00036), abs=5e-6)
    assert diff.p == pytest.approx(0.0517, abs=5e-5)
    for test, (auc, se, df, lo, hi) in {"0": (0.89703704, 0.03317360, 12.74, 0.82522360, 0.96885048),
                                        "1": (0.94083736, 0.02156637, 12.71, 0.89413783, 0.98753689)}.items():
        r = _row(t, "RRRC", test)
        assert (r.estimate, r.se, r.ci_low, r.ci_high) == pytest.approx((auc, se, lo, hi), abs=1e-6)
        assert r.df == pytest.approx(df, abs=0.005)


def test_vandyke_frrc_and_rrfc_match_published():
    t = or_analysis(_data("vandyke"))
    assert _row(t, "FRRC", "").statistic == pytest.approx(5.47595, abs=5e-6)
    assert _row(t, "FRRC", "").p == pytest.approx(0.0193, abs=5e-5)
    fd = _row(t, "FRRC", "0", "1")
    assert (fd.se, fd.ci_low, fd.ci_high) == pytest.approx((0.01872, -0.08049, -0.00711), abs=5e-6)
    assert np.isinf(fd.df)
    for test, (se, lo, hi) in {"0": (0.02428971, 0.84943008, 0.94464399),
                               "1": (0.01677632, 0.90795637, 0.97371835)}.items():
        assert tuple(_row(t, "FRRC", test)[["se", "ci_low", "ci_high"]]) == pytest.approx((se, lo, hi), abs=1e-6)
    rg, rd = _row(t, "RRFC", ""), _row(t, "RRFC", "0", "1")
    assert (rg.statistic, rg.p, rg.df) == pytest.approx((8.70, 0.0420, 4), abs=5e-3)
    assert (rd.se, rd.ci_low, rd.ci_high) == pytest.approx((0.01485, -0.08502, -0.00258), abs=5e-6)
    for test, (se, lo, hi) in {"0": (0.02482994, 0.82809808, 0.96597599),
                               "1": (0.01615303, 0.89598936, 0.98568536)}.items():
        assert tuple(_row(t, "RRFC", test)[["se", "ci_low", "ci_high"]]) == pytest.approx((se, lo, hi), abs=1e-6)


def test_vandyke_delong_matches_mrmcaov():
    # MRMCaov JSS paper (docs/jss/MRMCaov.tex): mrmc(empirical_auc(truth, rating), ..., data = VanDyke, cov = DeLong)
    d = _data("vandyke")
    comp = or_components(error_covariance(d, "delong"), 2, 5)
    np.testing.assert_allclose([comp["var"], comp["cov1"], comp["cov2"], comp["cov3"]],
                               [0.0007921325, 0.0003420090, 0.0003395265, 0.0002358497], atol=1e-10)
    t = or_analysis(d, "delong")
    g, diff = _row(t, "RRRC", ""), _row(t, "RRRC", "0", "1")
    assert (g.statistic, g.p) == pytest.approx((4.484854, 0.05123303), abs=1e-6)
    assert g.df == pytest.approx(15.06611, abs=5e-6)  # printed to 5 decimals
    assert (diff.se, diff.ci_low, diff.ci_high) == pytest.approx((0.0206825, -0.0878671960, 0.0002665519), abs=1e-7)
    single = _row(t, "RRRC", "0")
    assert (single.se, single.ci_low, single.ci_high) == pytest.approx((0.03307642, 0.8253461, 0.9687280), abs=1e-6)
    assert single.df == pytest.approx(12.59597, abs=5e-6)


# --- Franken (RJafroc tests/testthat/goodValues361/Iowa/Franken1.txt): Cov2 < Cov3, so max(.., 0) bites ------

def test_franken_matches_published():
    d = _data("franken")
    comp = or_components(error_covariance(d), 2, 4)
    np.testing.assert_allclose([comp["var"], comp["cov1"], comp["cov2"], comp["cov3"]],
                               [0.00152578, 0.00079168, 0.00048364, 0.00051251], atol=1e-8)
    t = or_analysis(d)
    g = _row(t, "RRRC", "")
    assert (g.statistic, g.p, g.df) == pytest.approx((4.69, 0.1188, 3.00), abs=5e-3)
    for test, (se, df, lo, hi) in {"TREAT1": (0.02440215, 70.12, 0.79908282, 0.89641696),
                                   "TREAT2": (0.02356642, 253.64, 0.79048429, 0.88330585)}.items():
        r = _row(t, "RRRC", test)
        assert (r.se, r.ci_low, r.ci_high) == pytest.approx((se, lo, hi), abs=1e-6)
        assert r.df == pytest.approx(df, abs=0.005)
    assert _row(t, "FRRC", "").statistic == pytest.approx(0.32101, abs=5e-6)
    assert tuple(_row(t, "FRRC", "TREAT2")[["se", "ci_low", "ci_high"]]) == pytest.approx(
        (0.02744860, 0.78309680, 0.89069334), abs=1e-6)


# --- FedRoc (RJafroc inst/Iowa/FedRoc.txt): five tests ---------------------------------------------------------

def test_fedroc_five_tests_match_published():
    t = or_analysis(_data("fedroc"))
    g = _row(t, "RRRC", "")
    assert (g.statistic, g.p, g.df) == pytest.approx((3.47, 0.0305, 16.80), abs=5e-3)
    assert _row(t, "FRRC", "").statistic == pytest.approx(13.60126, abs=5e-6)
    d45 = _row(t, "RRRC", "4", "5")
    assert (d45.estimate, d45.se, d45.ci_low, d45.ci_high) == pytest.approx((0.0421875, 0.01654, 0.00727, 0.07711),
                                                                            abs=5e-6)
    assert d45.p == pytest.approx(0.0208, abs=5e-5)
    r2 = _row(t, "RRRC", "2")
    assert (r2.estimate, r2.se, r2.ci_low, r2.ci_high) == pytest.approx((0.8502625, 0.01992816, 0.80942311,
                                                                         0.89110189), abs=1e-6)
    assert list(t.columns) == MRMC_COLUMNS
    assert len(t) == 3 * (1 + 10 + 5)  # per analysis: global, 10 pairs, 5 tests


# --- hand-computed covariances and the cluster jackknife ------------------------------------------------------

def _tiny(scores_pos, scores_neg, clusters=None):
    rows = [("R1", "A", f"p{i}", 1, s) for i, s in enumerate(scores_pos)]
    rows += [("R1", "A", f"n{i}", 0, s) for i, s in enumerate(scores_neg)]
    frame = pd.DataFrame(rows, columns=["reader", "test", "case", "truth", "score"])
    if clusters is not None:
        frame["cluster"] = clusters
    return frame


def test_delong_and_jackknife_variance_hand_computed():
    # pos (2, 3), neg (1, 2): AUC 3.5 / 4; placements V10 (.75, 1), V01 (1, .75): DeLong .03125 / 2 * 2 = .03125;
    # leave-one-out AUCs 1, .75, .75, 1 around .875: jackknife 3/4 * 4 * .125^2 = .046875
    d = mrmc_data(_tiny([2, 3], [1, 2]))
    assert auc_matrix(d)[0, 0] == 0.875
    assert error_covariance(d, "delong")[0, 0] == pytest.approx(0.03125)
    assert error_covariance(d, "jackknife")[0, 0] == pytest.approx(0.046875)


def test_cluster_jackknife_equals_leaving_each_patient_out():
    rng = np.random.default_rng(3)
    pos, neg = rng.integers(1, 6, 9), rng.integers(1, 5, 14)
    clusters = [f"P{c}" for c in [*rng.integers(0, 6, 9), *rng.integers(0, 6, 14)]]
    frame = _tiny(pos, neg, clusters)
    d = mrmc_data(frame, cluster="cluster")
    loo = np.array([auc_mann_whitney(frame.score[frame.cluster != c], frame.truth[frame.cluster != c])
                    for c in pd.unique(frame.cluster)])
    g = len(loo)
    assert error_covariance(d)[0, 0] == pytest.approx((g - 1) / g * ((loo - loo.mean()) ** 2).sum())
    singletons = mrmc_data(frame.assign(cluster=range(len(frame))), cluster="cluster")
    assert error_covariance(singletons)[0, 0] == pytest.approx(error_covariance(mrmc_data(frame))[0, 0])


# --- designs it cannot analyse ---------------------------------------------------------------------------------

def test_refuses_design_not_fully_crossed():
    frame = pd.read_csv(DATA / "mrmc_vandyke.csv").iloc[1:]
    with pytest.raises(InputError, match="not fully crossed.*reader '0' under test '0' rates 113 of 114"):
        mrmc_data(frame)


def test_refuses_one_class_only():
    with pytest.raises(InputError, match="every case is positive: each reader sees one class only"):
        mrmc_data(_tiny([1, 2, 3], []))


def test_refuses_truth_not_binary_and_differing_within_a_case():
    bad = _tiny([2, 3], [1, 2]).assign(truth=[1, 1, 0, 2])
    with pytest.raises(InputError, match="truth: must be 0 or 1, got '2'"):
        mrmc_data(bad)
    frame = pd.concat([_tiny([2], [1]), _tiny([2], [1]).assign(reader="R2", truth=[0, 0])])
    with pytest.raises(InputError, match="case 'p0' has both 0 and 1"):
        mrmc_data(frame)


def test_cli_mrmc_writes_tables_and_refuses_bad_design(tmp_path, monkeypatch):
    src = pd.read_csv(DATA / "mrmc_vandyke.csv").rename(columns={"reader": "rdr", "score": "rating"})
    src.to_csv(tmp_path / "vd.csv", index=False)
    args = ["stats", "mrmc", str(tmp_path / "vd.csv"), "--reader", "rdr", "--score", "rating"]
    assert run_main(monkeypatch, *args, "--out", str(tmp_path / "o")) == 0
    table = pd.read_csv(tmp_path / "o" / "mrmc.csv", dtype={"test_a": str, "test_b": str})
    assert list(table.columns) == MRMC_COLUMNS
    assert table[(table.analysis == "RRRC") & (table.test_b == "1")].estimate.iloc[0] == pytest.approx(-0.0438003)
    readers = pd.read_csv(tmp_path / "o" / "mrmc_readers.csv")
    assert len(readers) == 10 and readers.auc.max() == pytest.approx(0.999356)
    src.iloc[5:].to_csv(tmp_path / "bad.csv", index=False)
    assert run_main(monkeypatch, *args[:2], str(tmp_path / "bad.csv"), *args[3:], "--out", str(tmp_path / "b")) == 2
    assert not (tmp_path / "b").exists()
