"""Multi-reader multi-case (MRMC) ROC analysis: Obuchowski-Rockette (OR) with Hillis' degrees of freedom.

Input is the field's standard long table, one row per (reader, test, case) rating: ``reader, test, case, truth,
score`` (``truth`` 0/1, higher ``score`` = more suspicious). The design must be fully crossed: every reader rates
every case under every test.

Method (Obuchowski & Rockette 1995; Hillis et al. 2005; Hillis 2007; as in OR-DBM MRMC, RJafroc and MRMCaov):

* figure of merit ``theta[t, r]``: the empirical (Wilcoxon, trapezoidal) AUC of reader ``r`` under test ``t``;
* its error covariance across (test, reader) pairs from the case-resampling jackknife (default) or DeLong's
  structural components; averaged into ``Var`` (error variance), ``Cov1`` (same reader, different tests),
  ``Cov2`` (different readers, same test), ``Cov3`` (different readers and tests);
* random readers and random cases (RRRC): ``F = MS(T) / [MS(T*R) + R max(Cov2 - Cov3, 0)]`` on ``T - 1`` and
  Hillis' ``ddf_H = [MS(T*R) + R max(Cov2 - Cov3, 0)]^2 / {MS(T*R)^2 / [(T - 1)(R - 1)]}`` degrees of freedom;
* fixed readers, random cases (FRRC): ``X2 = (T - 1) MS(T) / [Var - Cov1 + (R - 1) max(Cov2 - Cov3, 0)]``,
  chi-square on ``T - 1`` (z tests for pairs, ``df`` = inf);
* random readers, fixed cases (RRFC): ``F = MS(T) / MS(T*R)`` on ``T - 1, (T - 1)(R - 1)``.

Single-test rows use that test's data only (its reader mean square ``MS(R)`` and its own ``Cov2`` and ``Var``).

Clustered cases (several nodes of one patient): give ``cluster`` and the jackknife leaves out one cluster (all its
cases) at a time, so the covariances, and every interval, account for the correlation of nodes within a patient
(the clustered-AUC jackknife of Obuchowski 1997 carried into the OR model). DeLong's method is unclustered only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy import stats

from neckmatch.errors import InputError
from neckmatch.io.atomic import atomic_files, write_csv

__all__ = ["MRMC_COLUMNS", "READER_COLUMNS", "MrmcData", "mrmc_data", "auc_matrix", "error_covariance",
           "or_components", "or_analysis", "reader_aucs", "read_mrmc_table", "run_mrmc"]

MRMC_COLUMNS = ["analysis", "test_a", "test_b", "estimate", "se", "df", "ci_low", "ci_high", "statistic", "p"]
READER_COLUMNS = ["reader", "test", "n_pos", "n_neg", "auc", "se"]
ANALYSES = ("RRRC", "FRRC", "RRFC")


@dataclass(frozen=True)
class MrmcData:
    """A fully crossed MRMC design as arrays.

    Attributes
    ----------
    scores : ndarray of shape (T, R, K), float
        Score of each test, reader and case.
    truth : ndarray of shape (K,), bool
        True for a positive (diseased) case.
    groups : ndarray of shape (K,), int
        The jackknife unit of each case: its cluster code (0 .. G-1), or the case's own index unclustered.
    tests, readers, cases : tuple of str
        The labels, in the arrays' order.
    """

    scores: NDArray[np.float64]
    truth: NDArray[np.bool_]
    groups: NDArray[np.int64]
    tests: tuple[str, ...]
    readers: tuple[str, ...]
    cases: tuple[str, ...]


def _labels(values: pd.Series) -> list[str]:
    """Distinct labels in order of first appearance (the first test is ``test_a`` of every pair it is in)."""
    return [str(v) for v in pd.unique(values.astype(str))]


def _truth_of(frame: pd.DataFrame, source: str) -> pd.Series:
    t = pd.to_numeric(frame["truth"], errors="coerce")
    bad = ~t.isin([0, 1])
    if bad.any():
        value = frame["truth"][bad].iloc[0]
        raise InputError(source, "truth", f"must be 0 or 1, got '{value}'")
    per_case = t.groupby(frame["case"]).nunique()
    if (per_case > 1).any():
        raise InputError(source, "truth", f"case '{per_case[per_case > 1].index[0]}' has both 0 and 1")
    return t.groupby(frame["case"]).first().astype(bool)


def _check_crossed(frame: pd.DataFrame, source: str, tests: list[str], readers: list[str], cases: list[str]) -> None:
    dup = frame.duplicated(["test", "reader", "case"])
    if dup.any():
        row = frame[dup].iloc[0]
        raise InputError(source, "case", f"reader '{row['reader']}' rates case '{row['case']}' twice under test "
                                         f"'{row['test']}'")
    need = len(tests) * len(readers) * len(cases)
    if len(frame) != need:
        have = frame.groupby(["test", "reader"]).size()
        short = have[have < len(cases)]
        where = (f"reader '{short.index[0][1]}' under test '{short.index[0][0]}' rates {short.iloc[0]} of "
                 f"{len(cases)} cases") if len(short) else f"{len(have)} of {len(tests) * len(readers)} " \
                                                            "(test, reader) pairs are present"
        raise InputError(source, "design", f"not fully crossed (every reader must rate every case under every "
                                           f"test): {where}")


def mrmc_data(frame: pd.DataFrame, source: str = "<table>", cluster: str | None = None) -> MrmcData:
    """Validate a long table (``reader, test, case, truth, score`` [, ``cluster``]) and shape it as arrays.

    Raises
    ------
    InputError
        Missing or non-numeric score, truth not 0/1 or differing within a case, a design that is not fully
        crossed, or no positive or no negative case (every reader then sees one class only).
    """
    frame = frame.copy()
    for col in ("reader", "test", "case"):
        frame[col] = frame[col].astype(str)
    score = pd.to_numeric(frame["score"], errors="coerce")
    if score.isna().any() or not np.isfinite(score).all():
        value = frame["score"][score.isna() | ~np.isfinite(score.fillna(0))].iloc[0]
        raise InputError(source, "score", f"must be a number, got '{value}'")
    frame["score"] = score.astype(float)
    truth = _truth_of(frame, source)
    tests, readers, cases = _labels(frame["test"]), _labels(frame["reader"]), _labels(frame["case"])
    _check_crossed(frame, source, tests, readers, cases)
    truth = truth.reindex(cases)
    if truth.all() or not truth.any():
        cls = "positive" if truth.all() else "negative"
        raise InputError(source, "truth", f"every case is {cls}: each reader sees one class only, no AUC")
    cube = frame.set_index(["test", "reader", "case"])["score"].unstack("case")[cases]
    order = [(t, r) for t in tests for r in readers]
    scores = cube.loc[order].to_numpy(dtype=float).reshape(len(tests), len(readers), len(cases))
    if cluster is None:
        groups = np.arange(len(cases))
    else:
        cl = frame.groupby("case")[cluster].nunique()
        if (cl > 1).any():
            raise InputError(source, cluster, f"case '{cl[cl > 1].index[0]}' lies in more than one cluster")
        names = frame.groupby("case")[cluster].first().reindex(cases).astype(str)
        groups = pd.factorize(names)[0]
    return MrmcData(scores, truth.to_numpy(dtype=bool), np.asarray(groups, dtype=np.int64),
                    tuple(tests), tuple(readers), tuple(cases))


def _placements(s: NDArray[np.float64], y: NDArray[np.bool_]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Per positive, the count of negatives it beats (ties one half); per negative, the positives beating it."""
    all_r = stats.rankdata(s)
    pos = all_r[y] - stats.rankdata(s[y])
    neg = y.sum() - (all_r[~y] - stats.rankdata(s[~y]))
    return pos, neg


def auc_matrix(data: MrmcData) -> NDArray[np.float64]:
    """Empirical AUC of each test and reader: ndarray of shape (T, R)."""
    y = data.truth
    n1, n0 = int(y.sum()), int((~y).sum())
    out = np.empty(data.scores.shape[:2])
    for t, r in np.ndindex(out.shape):
        pos, _ = _placements(data.scores[t, r], y)
        out[t, r] = pos.sum() / (n1 * n0)
    return out


def _jackknife_aucs(data: MrmcData) -> NDArray[np.float64]:
    """AUCs with each jackknife group left out: ndarray of shape (G, T, R).

    Leaving out group g removes its positives' and negatives' placement sums and adds back the pairs inside g
    (counted twice): ``S_-g = S - sum_pos_g - sum_neg_g + S_g``.
    """
    y, g = data.truth, data.groups
    n_g = int(g.max()) + 1
    gp = np.bincount(g[y], minlength=n_g).astype(float)
    gn = np.bincount(g[~y], minlength=n_g).astype(float)
    n1, n0 = float(y.sum()), float((~y).sum())
    if ((n1 - gp) < 1).any() or ((n0 - gn) < 1).any():
        raise InputError("<table>", "cluster", "leaving out one cluster leaves one class only: too few clusters "
                                               "hold positive or negative cases for the jackknife")
    out = np.empty((n_g, *data.scores.shape[:2]))
    within = np.unique(g).size < g.size
    for t, r in np.ndindex(data.scores.shape[:2]):
        s = data.scores[t, r]
        pos, neg = _placements(s, y)
        total = pos.sum()
        drop = np.bincount(g[y], weights=pos, minlength=n_g) + np.bincount(g[~y], weights=neg, minlength=n_g)
        if within:
            sp, sn = s[y], s[~y]
            psi = (sp[:, None] > sn[None, :]) + 0.5 * (sp[:, None] == sn[None, :])
            same = g[y][:, None] == g[~y][None, :]
            drop -= np.bincount(np.broadcast_to(g[y][:, None], psi.shape)[same], weights=psi[same], minlength=n_g)
        out[:, t, r] = (total - drop) / ((n1 - gp) * (n0 - gn))
    return out


def error_covariance(data: MrmcData, method: str = "jackknife") -> NDArray[np.float64]:
    """Covariance of the AUC estimates across (test, reader) pairs: ndarray of shape (T*R, T*R), test-major.

    ``jackknife``: ``(G - 1) / G * sum_g (theta_-g - mean)(theta_-g - mean)'`` over the G jackknife groups;
    ``delong``: ``S10 / n1 + S01 / n0`` from the structural components (unclustered cases only).
    """
    T, R, _ = data.scores.shape
    if method == "jackknife":
        jk = _jackknife_aucs(data).reshape(-1, T * R)
        n_g = jk.shape[0]
        d = jk - jk.mean(axis=0)
        return np.asarray((n_g - 1) / n_g * d.T @ d)
    if method == "delong":
        if np.unique(data.groups).size < data.groups.size:
            raise InputError("<table>", "method", "DeLong covariance is for unclustered cases; use jackknife")
        y = data.truth
        n1, n0 = int(y.sum()), int((~y).sum())
        v10 = np.empty((n1, T * R))
        v01 = np.empty((n0, T * R))
        for i, (t, r) in enumerate(np.ndindex(T, R)):
            pos, neg = _placements(data.scores[t, r], y)
            v10[:, i], v01[:, i] = pos / n0, neg / n1
        return np.asarray(np.cov(v10, rowvar=False).reshape(T * R, T * R) / n1
                          + np.cov(v01, rowvar=False).reshape(T * R, T * R) / n0)
    raise InputError("<options>", "method", f"must be 'jackknife' or 'delong', got '{method}'")


def or_components(cov: NDArray[np.float64], n_tests: int, n_readers: int) -> dict[str, float]:
    """``Var``, ``Cov1``, ``Cov2``, ``Cov3``: averages of the (T*R, T*R) test-major covariance by pair type.

    Cov2 and Cov3 are NaN with one reader, Cov1 and Cov3 with one test.
    """
    t = np.repeat(np.arange(n_tests), n_readers)
    r = np.tile(np.arange(n_readers), n_tests)
    same_t, same_r = t[:, None] == t[None, :], r[:, None] == r[None, :]

    def mean(mask: NDArray[np.bool_]) -> float:
        return float(cov[mask].mean()) if mask.any() else float("nan")

    return {"var": mean(same_t & same_r), "cov1": mean(~same_t & same_r), "cov2": mean(same_t & ~same_r),
            "cov3": mean(~same_t & ~same_r)}


def _row(analysis: str, a: str, b: str, est: float, se: float, df: float, stat: float, p: float,
         alpha: float) -> dict[str, Any]:
    q = stats.norm.ppf(1 - alpha / 2) if np.isinf(df) else stats.t.ppf(1 - alpha / 2, df)
    return {"analysis": analysis, "test_a": a, "test_b": b, "estimate": est, "se": se, "df": df,
            "ci_low": est - q * se, "ci_high": est + q * se, "statistic": stat, "p": p}


def _t_or_z(est: float, se: float, df: float) -> tuple[float, float]:
    stat = est / se if se > 0 else float("nan")
    dist = stats.norm if np.isinf(df) else stats.t(df)
    return stat, float(2 * dist.sf(abs(stat))) if np.isfinite(stat) else float("nan")


def _single_tests(theta: NDArray[np.float64], cov: NDArray[np.float64], tests: Sequence[str],
                  alpha: float) -> list[dict[str, Any]]:
    T, R = theta.shape
    rows = []
    for t, name in enumerate(tests):
        block = cov[t * R:(t + 1) * R, t * R:(t + 1) * R]
        c = or_components(block, 1, R)
        est = float(theta[t].mean())
        ms_r = float(theta[t].var(ddof=1)) if R > 1 else float("nan")
        cov2 = max(c["cov2"], 0.0) if R > 1 else 0.0
        if R > 1:
            se = np.sqrt((ms_r + R * cov2) / R)
            df = (ms_r + R * cov2) ** 2 / (ms_r ** 2 / (R - 1)) if ms_r > 0 else float("inf")
            rows.append(_row("RRRC", name, "", est, se, df, float("nan"), float("nan"), alpha))
        se = np.sqrt((c["var"] + (R - 1) * cov2) / R)
        rows.append(_row("FRRC", name, "", est, se, float("inf"), float("nan"), float("nan"), alpha))
        if R > 1:
            rows.append(_row("RRFC", name, "", est, np.sqrt(ms_r / R), R - 1, float("nan"), float("nan"), alpha))
    return rows


def _pair_and_global(theta: NDArray[np.float64], comp: dict[str, float], tests: Sequence[str],
                     alpha: float) -> list[dict[str, Any]]:
    T, R = theta.shape
    if T < 2:
        return []
    means = theta.mean(axis=1)
    ms_t = R * float(((means - means.mean()) ** 2).sum()) / (T - 1)
    resid = theta - theta.mean(axis=1, keepdims=True) - theta.mean(axis=0, keepdims=True) + theta.mean()
    ms_tr = float((resid ** 2).sum()) / ((T - 1) * (R - 1)) if R > 1 else float("nan")
    c23 = max(comp["cov2"] - comp["cov3"], 0.0) if R > 1 else 0.0
    fixed_den = comp["var"] - comp["cov1"] + (R - 1) * c23
    designs = [("FRRC", fixed_den, float("inf"))]
    if R > 1:
        den = ms_tr + R * c23
        ddf = den ** 2 / (ms_tr ** 2 / ((T - 1) * (R - 1))) if ms_tr > 0 else float("inf")
        designs = [("RRRC", den, ddf), designs[0], ("RRFC", ms_tr, float((T - 1) * (R - 1)))]
    rows = []
    for analysis, den, df in designs:
        if analysis == "FRRC":
            stat = (T - 1) * ms_t / den
            p = float(stats.chi2.sf(stat, T - 1))
        else:
            stat = ms_t / den
            p = float(stats.f.sf(stat, T - 1, df)) if np.isfinite(df) else float(stats.chi2.sf(stat * (T - 1), T - 1))
        rows.append({"analysis": analysis, "test_a": "", "test_b": "", "estimate": float("nan"),
                     "se": float("nan"), "df": df, "ci_low": float("nan"), "ci_high": float("nan"),
                     "statistic": stat, "p": p})
        se = float(np.sqrt(2 / R * den))
        for a, b in combinations(range(T), 2):
            est = float(means[a] - means[b])
            t_stat, p_ab = _t_or_z(est, se, df)
            rows.append(_row(analysis, tests[a], tests[b], est, se, df, t_stat, p_ab, alpha))
    return rows


def or_analysis(data: MrmcData, method: str = "jackknife", alpha: float = 0.05) -> pd.DataFrame:
    """The OR analysis under RRRC, FRRC and RRFC: one row per analysis and pair of tests (``estimate`` = AUC of
    ``test_a`` minus AUC of ``test_b``), per analysis and test (``test_b`` empty, ``estimate`` = the
    reader-averaged AUC), and per analysis the global test of equal AUCs (``test_a`` and ``test_b`` empty,
    ``statistic`` = F, or the chi-square for FRRC, ``df`` = its denominator df).

    Columns :data:`MRMC_COLUMNS`. ``df`` is ``inf`` for the FRRC z tests and intervals. RRRC and RRFC rows need
    at least two readers; pair rows at least two tests.
    """
    theta = auc_matrix(data)
    cov = error_covariance(data, method)
    T, R = theta.shape
    comp = or_components(cov, T, R)
    rows = _pair_and_global(theta, comp, data.tests, alpha) + _single_tests(theta, cov, data.tests, alpha)
    out = pd.DataFrame(rows, columns=MRMC_COLUMNS)
    out["_k"] = out["analysis"].map({a: i for i, a in enumerate(ANALYSES)})
    return out.sort_values("_k", kind="stable").drop(columns="_k").reset_index(drop=True)


def reader_aucs(data: MrmcData, method: str = "jackknife") -> pd.DataFrame:
    """Each reader's AUC per test with its standard error (the covariance diagonal): columns
    :data:`READER_COLUMNS`."""
    theta = auc_matrix(data)
    se = np.sqrt(np.diag(error_covariance(data, method))).reshape(theta.shape)
    n1, n0 = int(data.truth.sum()), int((~data.truth).sum())
    rows = [{"reader": r, "test": t, "n_pos": n1, "n_neg": n0, "auc": theta[i, j], "se": se[i, j]}
            for j, r in enumerate(data.readers) for i, t in enumerate(data.tests)]
    return pd.DataFrame(rows, columns=READER_COLUMNS)


def read_mrmc_table(path: str | Path, columns: dict[str, str]) -> pd.DataFrame:
    """Read a long CSV and rename the user's columns to ``reader, test, case, truth, score`` (``cluster``).

    ``columns`` maps each standard name to the file's column name.
    """
    path = Path(path)
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(path, "", f"not a readable CSV table ({exc})") from None
    missing = [c for c in columns.values() if c not in frame.columns]
    if missing:
        raise InputError(path, "header", f"no column '{missing[0]}' (columns: {', '.join(frame.columns)})")
    return frame[list(columns.values())].set_axis(list(columns), axis=1)


def run_mrmc(path: str | Path, out_dir: str | Path, columns: dict[str, str], method: str = "jackknife",
             alpha: float = 0.05) -> dict[str, Path]:
    """``neckmatch stats mrmc``: read the table, analyse, write ``mrmc.csv`` and ``mrmc_readers.csv`` into
    ``out_dir`` (together, or nothing on bad input)."""
    if method not in ("jackknife", "delong"):
        raise InputError("--method", "", f"must be 'jackknife' or 'delong', got '{method}'")
    frame = read_mrmc_table(path, columns)
    try:
        data = mrmc_data(frame, str(path), cluster="cluster" if "cluster" in columns else None)
        table, readers = or_analysis(data, method, alpha), reader_aucs(data, method)
    except InputError as exc:
        if exc.file.startswith("<"):
            raise InputError(path, exc.field, exc.message) from None
        raise
    with atomic_files(out_dir) as tmp:
        write_csv(table, tmp / "mrmc.csv")
        write_csv(readers, tmp / "mrmc_readers.csv")
    return {"mrmc": Path(out_dir) / "mrmc.csv", "readers": Path(out_dir) / "mrmc_readers.csv"}
