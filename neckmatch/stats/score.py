"""A points score from the readers' visual features: developed on the explorative readings, validated on the pilot.

Development (:func:`develop_score`): each categorical feature ``f_*`` enters as indicators of its levels (the most
frequent level is the reference); a numeric feature is first cut at its development tertiles (rounded to 0.5) so
the score stays a table. A ridge (L2-penalised) logistic regression is fitted, its penalty chosen by
cross-validation with folds of whole patients (out-of-fold deviance). Coefficients become integer points (Sullivan
et al. 2004): one point per ``unit`` (default 1) of log-odds, rounded, then shifted so each feature's lowest
level scores 0 (a heavily penalised, uninformative feature scores 0 throughout). The total points map to a risk
through a logistic recalibration on the development data, and the cut-off is the total maximising Youden's J
there. Performance is reported apparent and optimism-corrected (Harrell's bootstrap:
the whole development, penalty choice and rounding included, repeated on patient-resampled data and tested on the
original; the tertile cuts are kept fixed).

Validation (:func:`validate_score`) applies the frozen score to other readings: AUC of the total points with a
patient cluster-bootstrap interval, calibration (in the large, intercept and slope, a table by total), and
sensitivity and specificity at the cut-off (Wilson and patient cluster-bootstrap intervals).
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy.optimize import brentq
from scipy.special import expit

from neckmatch.errors import InputError
from neckmatch.stats.accuracy import cluster_bootstrap, wilson_interval
from neckmatch.stats.roc import auc_bootstrap, auc_bootstrap_note, auc_mann_whitney

__all__ = ["ridge_logistic", "design_spec", "design_matrix", "develop_score", "score_points", "validate_score",
           "score_table", "patient_hash", "unseen_levels"]

LAMBDAS = tuple(float(v) for v in np.logspace(-2, 2, 9))


def patient_hash(case_id: str) -> str:
    """A short one-way hash of a case id (the score records which patients developed it, not who they are)."""
    return hashlib.sha256(str(case_id).encode()).hexdigest()[:16]


def ridge_logistic(x: NDArray[np.float64], y: NDArray[np.float64], lam: float,
                   max_iter: int = 50) -> NDArray[np.float64]:
    """Coefficients ``[intercept, beta...]`` minimising ``-loglik + lam / 2 * |beta|^2`` (intercept free), by
    Newton-Raphson with step halving.

    ``x`` ndarray of shape (N, P), ``y`` of shape (N,) with 0/1; returns shape (P + 1,).

    Examples
    --------
    >>> b = ridge_logistic(np.array([[0.0], [0.0], [1.0], [1.0]]), np.array([0.0, 1.0, 1.0, 1.0]), 0.0)
    >>> round(float(b[0]), 6)  # logit(1/2) = 0 where x = 0
    0.0
    """
    xi = np.column_stack([np.ones(len(x)), x])
    pen = np.r_[0.0, np.full(x.shape[1], lam)]
    ridge = np.diag(pen + 1e-9)

    def objective(b: NDArray[np.float64]) -> float:
        eta = xi @ b
        return float(np.sum(np.logaddexp(0.0, eta) - y * eta)) + 0.5 * float(pen @ (b * b))

    b = np.zeros(xi.shape[1])
    f = objective(b)
    for _ in range(max_iter):
        mu = expit(xi @ b)
        grad = xi.T @ (mu - y) + pen * b
        hess = (xi * (mu * (1 - mu))[:, None]).T @ xi + ridge
        step = np.linalg.solve(hess, grad)
        t = 1.0
        while t > 1e-8 and objective(b - t * step) > f + 1e-12:
            t /= 2
        b, f_new = b - t * step, objective(b - t * step)
        if abs(f - f_new) < 1e-10 * (1 + abs(f)):
            break
        f = f_new
    return b


def _is_numeric(col: pd.Series) -> bool:
    vals = col[col.astype(str) != ""]
    return len(vals) > 0 and pd.to_numeric(vals, errors="coerce").notna().all()


def design_spec(reads: pd.DataFrame, features: list[str]) -> dict[str, Any]:
    """How each feature becomes indicator columns: levels (reference first) and, for numeric ones, the cuts."""
    spec: dict[str, Any] = {}
    for f in features:
        col = reads[f]
        if _is_numeric(col):
            v = pd.to_numeric(col, errors="coerce")
            cuts = sorted({float(np.round(q * 2) / 2) for q in np.nanquantile(v, [1 / 3, 2 / 3])})
            labels = _bin_labels(cuts)
            spec[f] = {"cuts": cuts, "levels": labels}
        else:
            counts = col.astype(str).value_counts()
            spec[f] = {"cuts": None, "levels": list(counts.index)}
    return spec


def _bin_labels(cuts: list[float]) -> list[str]:
    middle = [f"{a:g} to < {b:g}" for a, b in zip(cuts, cuts[1:], strict=False)]
    return [f"< {cuts[0]:g}", *middle, f">= {cuts[-1]:g}"]


def _levels_of(reads: pd.DataFrame, f: str, spec_f: dict[str, Any]) -> pd.Series:
    """Each reading's level of feature ``f`` (a numeric feature's tertile bin)."""
    if spec_f["cuts"] is None:
        return reads[f].astype(str)
    v = pd.to_numeric(reads[f], errors="coerce").to_numpy()
    idx = np.searchsorted(spec_f["cuts"], v, side="right")
    return pd.Series(np.asarray(spec_f["levels"], dtype=object)[idx], index=reads.index)


def design_matrix(reads: pd.DataFrame, spec: dict[str, Any], source: str = "reads") -> NDArray[np.float64]:
    """Indicator matrix (N, sum of levels - 1 per feature): one column per non-reference level.

    A level the specification does not list (unseen in development) gets no indicator: the reference level's
    points (:func:`unseen_levels` counts them).
    """
    cols = []
    for f, s in spec.items():
        lv = _levels_of(reads, f, s)  # a level unseen in development scores as the reference level
        cols += [(lv == level).to_numpy(float) for level in s["levels"][1:]]
    return np.column_stack(cols) if cols else np.zeros((len(reads), 0))


def unseen_levels(reads: pd.DataFrame, spec: dict[str, Any]) -> dict[str, dict[str, int]]:
    """Per feature, the levels in ``reads`` that development never saw, with their counts."""
    out = {}
    for f, s in spec.items():
        lv = _levels_of(reads, f, s)
        counts = lv[~lv.isin(s["levels"])].value_counts()
        if len(counts):
            out[f] = {str(k): int(v) for k, v in counts.items()}
    return out


def _folds(groups: NDArray[Any], k: int, seed: int) -> NDArray[np.int64]:
    uniq = np.unique(groups)
    order = np.random.default_rng(seed).permutation(uniq.size)
    fold_of = dict(zip(uniq[order], np.arange(uniq.size) % k, strict=True))
    return np.array([fold_of[g] for g in groups])


def _choose_lambda(x: NDArray[np.float64], y: NDArray[np.float64], groups: NDArray[Any], seed: int) -> float:
    k = min(5, np.unique(groups).size)
    if k < 2:
        return LAMBDAS[len(LAMBDAS) // 2]
    fold = _folds(groups, k, seed)
    dev = np.zeros(len(LAMBDAS))
    for j in range(k):
        tr, te = fold != j, fold == j
        if len(np.unique(y[tr])) < 2:
            continue
        for i, lam in enumerate(LAMBDAS):
            b = ridge_logistic(x[tr], y[tr], lam)
            eta = b[0] + x[te] @ b[1:]
            dev[i] += float(np.sum(np.logaddexp(0.0, eta) - y[te] * eta))
    return LAMBDAS[int(np.argmin(dev))]


def _points(beta: NDArray[np.float64], spec: dict[str, Any], unit: float) -> dict[str, dict[str, int]]:
    """Integer points per level: ``round(beta / unit)``, shifted so each feature's lowest level scores 0."""
    out, i = {}, 0
    for f, s in spec.items():
        raw = [0] + [int(np.round(b / unit)) for b in beta[i:i + len(s["levels"]) - 1]]
        i += len(s["levels"]) - 1
        low = min(raw)
        out[f] = {lv: p - low for lv, p in zip(s["levels"], raw, strict=True)}
    return out


def score_points(reads: pd.DataFrame, score: dict[str, Any], source: str = "reads") -> NDArray[np.float64]:
    """Total points of each reading under ``score`` (a :func:`develop_score` result): ndarray of shape (N,)."""
    x = design_matrix(reads, score["spec"], source)
    w = np.concatenate([[score["points"][f][lv] - score["points"][f][s["levels"][0]] for lv in s["levels"][1:]]
                        for f, s in score["spec"].items()]) if score["spec"] else np.zeros(0)
    base = sum(score["points"][f][s["levels"][0]] for f, s in score["spec"].items())
    return np.asarray(base + x @ w, dtype=float)


def _fit_points(x: NDArray[np.float64], y: NDArray[np.float64], groups: NDArray[Any], spec: dict[str, Any],
                unit: float, seed: int) -> dict[str, Any]:
    lam = _choose_lambda(x, y, groups, seed)
    b = ridge_logistic(x, y, lam)
    score = {"spec": spec, "points": _points(b[1:], spec, unit), "lambda": lam}
    return score


def _calibrate(total: NDArray[np.float64], y: NDArray[np.float64]) -> tuple[float, float]:
    b = ridge_logistic(total[:, None], y, 1e-8)
    return float(b[0]), float(b[1])


def _offset_intercept(lp: NDArray[np.float64], y: NDArray[np.float64]) -> float:
    """Calibration in the large: the intercept ``a`` of ``logit P(y) = a + lp`` (0 when well calibrated)."""
    if y.min() == y.max():
        return float("nan")
    return float(brentq(lambda a: float(np.sum(y - expit(a + lp))), -30.0, 30.0))


def _youden_cutoff(total: NDArray[np.float64], y: NDArray[np.float64]) -> float:
    best, cut = -np.inf, float(np.max(total)) + 1
    for c in np.unique(total)[::-1]:
        call = total >= c
        j = call[y == 1].mean() + (~call[y == 0]).mean() - 1
        if j > best + 1e-12:
            best, cut = j, float(c)
    return cut


def develop_score(reads: pd.DataFrame, features: list[str], *, unit: float = 1.0, n_boot: int = 100,
                  seed: int = 0) -> dict[str, Any]:
    """Develop the points score on ``reads`` (columns ``truth`` 0/1, ``case_id``, the ``features``).

    Returns
    -------
    dict
        ``spec`` (levels and cuts), ``points`` (feature -> level -> points), ``lambda``, ``intercept`` and
        ``slope`` (risk = expit(intercept + slope * total)), ``cutoff`` (malignant if total >= cutoff),
        ``apparent`` and ``optimism_corrected`` performance, ``development`` counts and patient hashes.
    """
    y = reads["truth"].to_numpy(float)
    if y.min() == y.max():
        raise InputError("reads", "truth", "the development readings hold one class only: no score")
    groups = reads["case_id"].astype(str).to_numpy()
    spec = design_spec(reads, features)
    x = design_matrix(reads, spec)
    score = _fit_points(x, y, groups, spec, unit, seed)
    total = score_points(reads, score)
    score["intercept"], score["slope"] = _calibrate(total, y)
    score["cutoff"] = _youden_cutoff(total, y)
    score["apparent"] = _performance(total, y, score)
    score["optimism_corrected"] = _optimism(reads, x, y, groups, score, unit, n_boot, seed)
    score["development"] = {"readings": len(reads), "positives": int(y.sum()),
                            "patients": int(np.unique(groups).size),
                            "patient_hashes": sorted({patient_hash(g) for g in groups})}
    return score


def _performance(total: NDArray[np.float64], y: NDArray[np.float64], score: dict[str, Any]) -> dict[str, float]:
    call = total >= score["cutoff"]
    risk = expit(score["intercept"] + score["slope"] * total)
    return {"auc": auc_mann_whitney(total, y == 1), "sensitivity": float(call[y == 1].mean()),
            "specificity": float((~call[y == 0]).mean()), "brier": float(np.mean((risk - y) ** 2))}


def _optimism(reads: pd.DataFrame, x: NDArray[np.float64], y: NDArray[np.float64], groups: NDArray[Any],
              score: dict[str, Any], unit: float, n_boot: int, seed: int) -> dict[str, Any]:
    """Harrell's bootstrap: the whole development on patient resamples, tested on the resample and the original."""
    rng = np.random.default_rng(seed)
    uniq = np.unique(groups)
    rows_of = {g: np.flatnonzero(groups == g) for g in uniq}
    opt_auc, slopes = [], []
    for _ in range(n_boot):
        idx = np.concatenate([rows_of[g] for g in rng.choice(uniq, uniq.size, replace=True)])
        yb = y[idx]
        if yb.min() == yb.max():
            continue
        sb = _fit_points(x[idx], yb, groups[idx], score["spec"], unit, seed)
        tb, to = score_points(reads.iloc[idx], sb), score_points(reads, sb)
        opt_auc.append(auc_mann_whitney(tb, yb == 1) - auc_mann_whitney(to, y == 1))
        a, b = _calibrate(tb, yb)
        slopes.append(_calibrate(a + b * to, y)[1])  # slope of the resample's linear predictor on the original
    apparent = score["apparent"]["auc"]
    return {"auc": float(apparent - np.mean(opt_auc)) if opt_auc else float("nan"),
            "optimism_auc": float(np.mean(opt_auc)) if opt_auc else float("nan"),
            "calibration_slope": float(np.mean(slopes)) if slopes else float("nan"), "n_boot": len(opt_auc)}


def score_table(score: dict[str, Any]) -> pd.DataFrame:
    """The score on paper: one row per feature and finding with its points."""
    rows = [(f.removeprefix("f_"), lv, pts) for f, levels in score["points"].items() for lv, pts in levels.items()]
    return pd.DataFrame(rows, columns=["feature", "finding", "points"])


def validate_score(reads: pd.DataFrame, score: dict[str, Any], *, n_boot: int = 2000, seed: int = 0,
                   source: str = "reads") -> dict[str, Any]:
    """Apply a developed score to ``reads`` (``truth``, ``case_id``, the score's features) and measure it.

    Raises
    ------
    InputError
        A validation patient was among the development patients.
    """
    groups = reads["case_id"].astype(str).to_numpy()
    seen = set(score["development"]["patient_hashes"]) & {patient_hash(g) for g in groups}
    if seen:
        raise InputError(source, "case_id", f"{len(seen)} validation patient(s) also developed the score: "
                                            "validation must use other patients")
    y = reads["truth"].to_numpy(float)
    total = score_points(reads, score, source)
    lo, hi = auc_bootstrap(total, y == 1, groups, n_boot=n_boot, seed=seed)
    risk = expit(score["intercept"] + score["slope"] * total)
    lp = score["intercept"] + score["slope"] * total
    cal_a = _offset_intercept(lp, y)
    a, b = _calibrate(lp, y)
    call = total >= score["cutoff"]
    pos, neg = y == 1, y == 0
    sens_ci, spec_ci = wilson_interval(int(call[pos].sum()), int(pos.sum())), wilson_interval(
        int((~call[neg]).sum()), int(neg.sum()))
    boot = cluster_bootstrap(call, pos, groups, n_boot=n_boot, seed=seed)
    by_total = (pd.DataFrame({"total": total, "y": y, "risk": risk}).groupby("total")
                .agg(n=("y", "size"), observed=("y", "mean"), predicted=("risk", "mean")).reset_index())
    return {"readings": len(y), "positives": int(pos.sum()), "patients": int(np.unique(groups).size),
            "unseen_levels": unseen_levels(reads, score["spec"]),
            "auc": auc_mann_whitney(total, pos), "auc_low_boot": lo, "auc_high_boot": hi,
            "auc_note": auc_bootstrap_note(total, pos, groups, n_boot=n_boot, seed=seed),
            "calibration": {"observed_rate": float(y.mean()), "mean_predicted": float(risk.mean()),
                            "in_the_large": cal_a, "intercept": a, "slope": b, "brier": float(np.mean((risk - y) ** 2)),
                            "by_total": by_total.to_dict("records")},
            "cutoff": score["cutoff"], "sensitivity": float(call[pos].mean()),
            "specificity": float((~call[neg]).mean()),
            "sensitivity_wilson": list(sens_ci), "specificity_wilson": list(spec_ci),
            "sensitivity_boot": list(boot.get("sensitivity", (np.nan, np.nan))),
            "specificity_boot": list(boot.get("specificity", (np.nan, np.nan)))}
