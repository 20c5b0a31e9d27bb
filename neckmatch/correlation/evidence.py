"""Evidence for node-to-node matching: the log-likelihood-ratio of every candidate (MR node, pathology unit) pair.

A pair's weight ``w[i, j]`` is ``log p(MR node i and pathology unit j are one node) - log p(i is an MR-only node)
- log p(j is a pathology-only node)``; a pair beats leaving both unmatched iff ``w > 0``. It sums

- **level**: the MR node's imaging level in the container's imaging levels (0), the runner-up level of a
  borderline node in it (``log p_runner``; the assigned level then gets ``log(1 - p_runner)``), an adjacent
  level (``level_adjacent``), otherwise impossible (``-inf``). Sides must agree except for the midline levels
  IA, VI, VII (``midline_other_side``);
- **harvest**: the log-odds that an MR node of that size was harvested (small nodes are often not found);
- **size**: pathology size vs MR long axis: ``log P = log L + log k + N(0, size_sd)`` with the formalin
  shrinkage ``k`` estimated per case, against the size density of pathology-only (MR-invisible, small) nodes;
- **position** (where ``cc``/``ap`` exist and the container has a region): the MR node's relative position in
  the container region, warped per container (:class:`neckmatch.geometry.specimen.Warp`), against the reported
  position with noise ``pos_sd`` mixed with a uniform outlier term, against a uniform position.

Never used: MR reads (scores, malignant calls) and pathology status.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy.special import gammaln, ndtr, stdtr

from neckmatch.geometry.levels import adjacent_level_pairs
from neckmatch.geometry.specimen import Specimen, Warp
from neckmatch.model import MIDLINE_LEVELS, Case, ContainerLevel, Level, Side

__all__ = ["MatchParams", "MRNodes", "PathUnits", "mr_nodes", "path_units", "level_weights", "size_weights",
           "position_weights", "axis_log_lik", "size_evidence", "round_step", "piece_size_weights", "merge_prior",
           "harvest_weights", "fit_shrinkage", "fit_warp", "fit_warp_soft", "fit_pos_sd", "order_warps",
           "adjacent_levels", "fit_pos_outlier", "fit_size_sd", "log_kernel"]

FloatArray = NDArray[np.float64]
_LOG_SQRT_2PI = 0.5 * np.log(2 * np.pi)

@dataclass(frozen=True)
class MatchParams:
    """Every parameter of the matching model (docs/matching.md explains each).

    Sizes in mm; ``*_sd`` of logarithms are in natural-log units; relative positions are unitless (0-1).
    """

    shrinkage: float = 0.85  # prior median of pathology size / MR long axis
    shrinkage_prior_sd: float = 0.10  # log units
    estimate_shrinkage: bool = True
    size_sd: float = 0.12  # log-normal noise of the size ratio (shrinkage spread, 1 mm rounding, MR measurement)
    size_round_mm: float | None = 0.0  # extra rounding term (step mm; None: 1 if all sizes are whole mm); off
    size_outlier: float = 0.10  # weight of a broad (sd 0.7) component: merged MR labels, fragments, rounding
    path_only_median_mm: float = 3.0  # pathology-only (MR-invisible) node sizes: log-normal
    path_only_sd: float = 0.45
    miss_max: float = 0.5  # P(not harvested) = miss_max / (1 + (L / miss_half_mm)^3), L = MR long axis
    miss_half_mm: float = 4.0
    miss_floor: float = 0.03  # P(not harvested) of even the largest nodes (lost, mislabelled)
    pair_log_odds: float = 0.0  # constant added to every pair weight
    p_runner: float = 0.40  # node on a level boundary: probability that its container holds the runner-up level
    runner_scale_mm: float = 4.0  # that probability decays as exp(-boundary_mm / runner_scale_mm)
    p_undissected: float = 0.10  # the same for a node of an undissected level (most such nodes stay in the neck)
    level_adjacent: float = -3.0  # log-probability weight of a container of an adjacent level
    midline_other_side: float = -1.0  # IA / VI / VII node in the other side's container
    pos_sd: float = 0.10  # relative-position noise per axis after the warp (report noise + warp error)
    pos_outlier: float = 0.05  # weight of the uniform outlier component of the position likelihood
    pos_censored: bool = True  # reports of exactly 0 or 1 are censored at the specimen edge
    estimate_pos_sd: bool = True  # per-case position noise from the pairs' residuals (shrunk towards pos_sd)
    pos_sd_inflation: float = 1.28  # predictive / in-sample residual sd (leave-one-out 0.100 / 0.078, seed 777)
    pos_sd_prior_n: float = 10.0  # pseudo-residuals of the prior pos_sd
    # robust terms (issue 14): Student-t kernels (df = inf: Gaussian) and per-case scales / outlier share
    pos_df: float = 4.0  # degrees of freedom of the position kernel
    estimate_pos_outlier: bool = True  # per-case outlier share of positions (EM on the pairs' residuals)
    pos_outlier_prior_n: float = 20.0  # pseudo-residuals of the prior pos_outlier
    size_df: float = 4.0  # degrees of freedom of the size-ratio kernel
    estimate_size_sd: bool = True  # per-case size noise from the pairs' log size ratios (shrunk towards size_sd)
    size_sd_prior_n: float = 10.0  # pseudo-ratios of the prior size_sd
    stretch_prior_mean: float = 1.0  # layouts are on average this much narrower / wider than the MR frame
    stretch_prior_sd: float = 0.20
    shift_prior_sd: float = 0.15
    estimate_warp: bool = True
    warp_grid: bool = False  # start the warps from a per-container grid search (no gain measured; slower)
    warp_starts: tuple[str, ...] = ("soft",)  # EM starts (identity, order, soft); the best objective wins per container
    soft_anneal: tuple[float, ...] = (2.5, 1.8, 1.4, 1.2, 1.0, 1.0)  # pos_sd scales of the soft-EM start ("soft")
    n_iter: int = 4  # EM rounds (assignment <-> shrinkage and warps)
    # merged MR labels (two touching nodes segmented as one label): prior P(merged) = sigmoid(c0 + c1 log(L/S)
    # + c2 log L + c3 log(V / (pi/6 L S^2))), fitted on the calibration cohort (benchmarks/matching.py --calibrate)
    merge: bool = True
    merge_coef: tuple[float, float, float, float] = (-17.325, 12.304, 2.994, -7.454)
    merge_min: float = 0.05  # MR nodes with a lower prior get no second slot
    # log(piece size / (k L)) of the two pieces of a merged label: mixture of N(mu1, sd1) and N(mu2, sd2)
    merge_piece: tuple[float, float, float, float] = (-0.398, 0.174, -0.757, 0.224)
    merge_log_odds: float = 0.0  # constant added to a second-slot pair


@dataclass(frozen=True)
class MRNodes:
    """MR nodes as arrays, shape (n,): label, side, level, runner_up, borderline, distance to the level boundary
    ``boundary_mm`` (mm, nan if unknown), long axis (mm), matchable, reason if unmatched (``""``, ``undissected``,
    ``no-counterpart``) and centroids ``pos`` (n, 3) float mm RAS. A node of an undissected level next to a
    dissected one is matchable (the surgeon's boundary differs from the imaging one) with reason ``undissected``;
    ``fixed`` marks nodes that can never match (confidence 1)."""

    node: NDArray[np.int64]
    side: NDArray[np.str_]
    level: NDArray[np.str_]
    runner_up: NDArray[np.str_]
    borderline: NDArray[np.bool_]
    long_mm: FloatArray
    pos: FloatArray
    matchable: NDArray[np.bool_]
    reason: NDArray[np.str_]
    boundary_mm: FloatArray | None = None
    short_mm: FloatArray | None = None
    volume_mm3: FloatArray | None = None

    @property
    def fixed(self) -> NDArray[np.bool_]:
        return ~self.matchable


@dataclass(frozen=True)
class PathUnits:
    """Pathology units (a node and its fragments), shape (m,): id of the unit, member node ids, container,
    side, container level, size (mm, nan if unknown), cc and ap (nan if unknown)."""

    unit: tuple[str, ...]
    members: tuple[tuple[str, ...], ...]
    container: tuple[str, ...]
    side: NDArray[np.str_]
    level: tuple[ContainerLevel, ...]
    size_mm: FloatArray
    cc: FloatArray
    ap: FloatArray


def _text(col: pd.Series) -> NDArray[np.str_]:
    return col.fillna("").astype(str).replace({"nan": ""}).to_numpy(dtype=str)


def mr_nodes(case: Case, levels: pd.DataFrame) -> MRNodes:
    """MR node arrays from the levels.csv table; marks nodes outside the neck or in undissected levels."""
    lv = levels.sort_values("node", kind="stable")
    side, level = _text(lv["side"]), _text(lv["level"])
    border = lv["borderline"].fillna(False).astype(str).str.lower().isin(["true", "1"]).to_numpy() \
        if "borderline" in lv else np.zeros(len(lv), bool)
    reason = np.full(len(lv), "", dtype=object)
    matchable = np.ones(len(lv), dtype=bool)
    adj = adjacent_levels()
    runner = _text(lv["runner_up"]) if "runner_up" in lv else np.full(len(lv), "")
    for k, (s, l) in enumerate(zip(side, level, strict=True)):
        if l not in Level.__members__ or s not in ("R", "L"):
            reason[k], matchable[k] = "no-counterpart", False
        elif not (case.is_dissected(s, l) or (l in MIDLINE_LEVELS and case.is_dissected(Side(s).other, l))):
            reason[k] = "undissected"
            run = runner[k]
            matchable[k] = run in adj.get(l, ()) and run in Level.__members__ and case.is_dissected(s, run)
    return MRNodes(
        node=lv["node"].to_numpy(dtype=np.int64),
        side=side,
        level=level,
        runner_up=runner,
        borderline=border,
        long_mm=pd.to_numeric(lv["long_axis_mm"], errors="coerce").to_numpy(dtype=np.float64),
        pos=lv[["x", "y", "z"]].to_numpy(dtype=np.float64),
        matchable=matchable,
        reason=reason.astype(str),
        boundary_mm=pd.to_numeric(lv["boundary_mm"], errors="coerce").to_numpy(dtype=np.float64)
        if "boundary_mm" in lv else np.full(len(lv), np.nan),
        short_mm=_num(lv, "short_axis_mm"),
        volume_mm3=_num(lv, "volume_mm3"),
    )


def _num(frame: pd.DataFrame, name: str) -> FloatArray:
    """A numeric column as float (nan where missing or absent)."""
    if name not in frame:
        return np.full(len(frame), np.nan)
    return pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=np.float64)


def _unit_root(node_ids: set[str], node: str, parent: str | None) -> str:
    return parent if parent is not None and parent in node_ids else node


def path_units(case: Case) -> PathUnits:
    """Group pathology nodes into units: a node plus every node whose ``fragment_of`` names it.

    Fragments whose ``fragment_of`` names no node of the case are grouped by that value. The unit's size is the
    largest member size, its cc/ap the mean of the members' (nan where none reports them).
    """
    ids = {p.node for p in case.path_nodes}
    groups: dict[str, list] = {}
    for p in case.path_nodes:
        key = _unit_root(ids, p.node, p.fragment_of) if p.fragment_of is None or p.fragment_of in ids \
            else f"fragments:{p.fragment_of}"
        groups.setdefault(key, []).append(p)
    units, members, cont, side, level, size, cc, ap = [], [], [], [], [], [], [], []
    for key, ps in groups.items():
        head = next((p for p in ps if p.node == key), ps[0])
        units.append(head.node)
        members.append(tuple(p.node for p in ps))
        cont.append(head.container)
        side.append(head.side.value)
        level.append(head.level)
        sizes = [p.size_mm for p in ps if p.size_mm is not None]
        size.append(max(sizes) if sizes else np.nan)
        ccs, aps = [p.cc for p in ps if p.cc is not None], [p.ap for p in ps if p.ap is not None]
        cc.append(np.mean(ccs) if ccs else np.nan)
        ap.append(np.mean(aps) if aps else np.nan)
    return PathUnits(tuple(units), tuple(members), tuple(cont), np.array(side, dtype=str), tuple(level),
                     np.array(size, dtype=np.float64), np.array(cc, dtype=np.float64), np.array(ap, dtype=np.float64))


@lru_cache(maxsize=1)
def adjacent_levels() -> dict[str, frozenset[str]]:
    """Same-side adjacency of imaging levels (spec list), as level -> neighbours."""
    out: dict[str, set[str]] = {lv.value: set() for lv in Level}
    for a, b in adjacent_level_pairs():
        if a in out and b in out and a != b:
            out[a].add(b)
            out[b].add(a)
    return {k: frozenset(v) for k, v in out.items()}


def level_weights(mr: MRNodes, units: PathUnits, params: MatchParams) -> FloatArray:
    """Level/side log-weight of every pair: ndarray (n, m), float, ``-inf`` where impossible."""
    n, m = len(mr.node), len(units.unit)
    out = np.full((n, m), -np.inf)
    if n == 0 or m == 0:
        return out
    adj = adjacent_levels()
    keys = sorted({(units.side[j], str(units.level[j])) for j in range(m)})
    kidx = {k: t for t, k in enumerate(keys)}
    col_key = np.array([kidx[(units.side[j], str(units.level[j]))] for j in range(m)])
    p_other = _runner_probability(mr, params)
    p_und = params.p_undissected / params.p_runner
    lp_same, lp_run = np.log1p(-p_other), np.maximum(np.log(np.maximum(p_other, 1e-300)), params.level_adjacent)
    table = np.full((n, len(keys)), -np.inf)
    for t, (cside, clevel) in enumerate(keys):
        names = {lv.value for lv in ContainerLevel.parse(clevel).imaging_levels()}
        for i in np.flatnonzero(mr.matchable):
            l, s = mr.level[i], mr.side[i]
            side_term = 0.0 if s == cside else (params.midline_other_side if l in MIDLINE_LEVELS else -np.inf)
            if l in names:
                val = lp_same[i]
            elif mr.runner_up[i] in names:
                val = lp_run[i] if mr.reason[i] == "" else np.log(max(p_other[i] * p_und, 1e-300))
            elif mr.reason[i] == "" and adj.get(l, frozenset()) & names:
                val = params.level_adjacent
            else:
                val = -np.inf
            table[i, t] = val + side_term
    out[:] = table[:, col_key]
    return out


def _runner_probability(mr: MRNodes, params: MatchParams) -> FloatArray:
    """P(the node's container holds its runner-up level), shape (n,): ``p_runner * exp(-d / runner_scale_mm)``
    with d the distance to the level boundary (mm); without distances ``p_runner`` for borderline nodes, else 0."""
    d = mr.boundary_mm if mr.boundary_mm is not None else np.full(len(mr.node), np.nan)
    has = np.isfinite(d) & (mr.runner_up != "")
    p = np.where(mr.borderline & (mr.runner_up != ""), params.p_runner, 0.0)
    return np.where(has, params.p_runner * np.exp(-np.where(has, d, 0.0) / params.runner_scale_mm), p)


def harvest_weights(mr: MRNodes, params: MatchParams) -> FloatArray:
    """Log-odds that each MR node was harvested (found by pathology), shape (n,); 0 for unknown size."""
    L = np.where(np.isfinite(mr.long_mm), mr.long_mm, params.miss_half_mm * 3)
    miss = params.miss_floor + params.miss_max / (1.0 + (L / params.miss_half_mm) ** 3)
    return np.log1p(-miss) - np.log(miss)


def _log_normal_pdf(x: FloatArray, mu: float, sd: float) -> FloatArray:
    return -0.5 * ((x - mu) / sd) ** 2 - np.log(sd) - _LOG_SQRT_2PI


def log_kernel(z: FloatArray, df: float) -> FloatArray:
    """Log-density of the standardised noise ``z``: Student-t with ``df`` degrees of freedom (``inf``: normal).

    Examples
    --------
    >>> z = np.array([0.0, 3.0])
    >>> log_kernel(z, np.inf).round(3).tolist(), log_kernel(z, 4.0).round(3).tolist()
    ([-0.919, -5.419], [-0.981, -3.927])
    """
    if not np.isfinite(df):
        return -0.5 * z**2 - _LOG_SQRT_2PI
    c = gammaln((df + 1) / 2) - gammaln(df / 2) - 0.5 * np.log(df * np.pi)
    return c - (df + 1) / 2 * np.log1p(z**2 / df)


def _cdf(z: FloatArray, df: float) -> FloatArray:
    return ndtr(z) if not np.isfinite(df) else stdtr(df, z)


def round_step(size_mm: FloatArray) -> float:
    """Rounding step of reported sizes (mm): 1 where every known size is a whole number, else 0.

    Examples
    --------
    >>> round_step(np.array([3.0, 12.0, np.nan])), round_step(np.array([3.0, 4.5]))
    (1.0, 0.0)
    """
    known = size_mm[np.isfinite(size_mm)]
    return 1.0 if len(known) and bool(np.all(known == np.round(known))) else 0.0


def _size_terms(mr: MRNodes, units: PathUnits, params: MatchParams, log_k: float
                ) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Log-densities (n, m) of the size log-ratio ``r = log P - log L - log k`` for a single node and for a piece
    of a merged label, and (1, m) of ``log P`` for a pathology-only node."""
    r = np.log(units.size_mm)[None, :] - np.log(mr.long_mm)[:, None] - log_k
    # sizes reported in whole mm: rounding adds a log-sd of about step / sqrt(12) / P
    step = params.size_round_mm if params.size_round_mm is not None else round_step(units.size_mm)
    sd = np.sqrt(params.size_sd**2 + (step / np.sqrt(12.0) / units.size_mm[None, :]) ** 2)
    single = np.logaddexp(np.log1p(-params.size_outlier) + log_kernel(r / sd, params.size_df) - np.log(sd),
                          np.log(params.size_outlier) + _log_normal_pdf(r, 0.0, 0.7))
    mu1, sd1, mu2, sd2 = params.merge_piece
    piece = np.logaddexp(_log_normal_pdf(r, mu1, sd1), _log_normal_pdf(r, mu2, sd2)) - np.log(2.0)
    only = _log_normal_pdf(np.log(units.size_mm)[None, :], np.log(params.path_only_median_mm), params.path_only_sd)
    return single, piece, only


def size_evidence(mr: MRNodes, units: PathUnits, params: MatchParams, log_k: float,
                  merge_p: FloatArray | None = None) -> tuple[FloatArray, FloatArray]:
    """Size log-likelihood ratios, each shape (n, m), 0 where either size is unknown: of a pair (against a
    pathology-only node) and of the unit being a *piece* of a merged MR label.

    With ``merge_p`` (n,), the prior probability that each MR label holds two merged nodes, the pair density is
    the mixture ``(1 - p) f_single + p f_piece`` (a merged label's partner is smaller than its long axis)."""
    with np.errstate(invalid="ignore"):  # an unknown size is NaN here and becomes 0 below, by design
        single, piece, only = _size_terms(mr, units, params, log_k)
        if merge_p is not None:
            p = np.clip(merge_p, 1e-12, 1 - 1e-12)[:, None]
            single = np.where(merge_p[:, None] > 0, np.logaddexp(np.log1p(-p) + single, np.log(p) + piece), single)
        pair, part = single - only, piece - only
    return np.where(np.isfinite(pair), pair, 0.0), np.where(np.isfinite(part), part, 0.0)


def size_weights(mr: MRNodes, units: PathUnits, params: MatchParams, log_k: float,
                 merge_p: FloatArray | None = None) -> FloatArray:
    """Size log-likelihood ratio of a pair, shape (n, m) (first output of :func:`size_evidence`)."""
    return size_evidence(mr, units, params, log_k, merge_p)[0]


def piece_size_weights(mr: MRNodes, units: PathUnits, params: MatchParams, log_k: float) -> FloatArray:
    """Size log-likelihood ratio of a unit being a piece of a merged MR label vs pathology-only, (n, m)."""
    return size_evidence(mr, units, params, log_k)[1]


def merge_prior(mr: MRNodes, params: MatchParams) -> FloatArray:
    """Prior probability that each MR label holds two (or more) touching nodes, shape (n,), from its shape:
    elongation ``L/S``, long axis ``L`` (mm) and volume ``V`` (mm^3) relative to the ellipsoid ``pi/6 L S^2``
    (coefficients ``merge_coef``). 0 where a measure is missing or ``merge`` is off.

    Examples
    --------
    >>> n = MRNodes(np.array([1, 2]), np.array(["R", "R"]), np.array(["III", "III"]), np.array(["", ""]),
    ...             np.zeros(2, bool), np.array([6.0, 10.0]), np.zeros((2, 3)), np.ones(2, bool),
    ...             np.array(["", ""]), short_mm=np.array([4.0, 4.5]), volume_mm3=np.array([50.0, 90.0]))
    >>> merge_prior(n, MatchParams()).round(3).tolist()
    [0.001, 0.649]
    """
    n = len(mr.node)
    if not params.merge or mr.short_mm is None or mr.volume_mm3 is None:
        return np.zeros(n)
    L, S, V = mr.long_mm, mr.short_mm, mr.volume_mm3
    with np.errstate(divide="ignore", invalid="ignore"):
        x = np.column_stack([np.ones(n), np.log(L / S), np.log(L), np.log(V / (np.pi / 6 * L * S**2))])
        p = 1.0 / (1.0 + np.exp(-(x @ np.asarray(params.merge_coef))))
    return np.where(np.isfinite(p) & mr.matchable, p, 0.0)


def relative_positions(mr: MRNodes, units: PathUnits, specimen: Specimen | None) -> FloatArray:
    """Each MR node's relative (cc, ap) in each unit's container region: ndarray (n, m, 2), nan without region."""
    n, m = len(mr.node), len(units.unit)
    out = np.full((n, m, 2), np.nan)
    if specimen is None or n == 0:
        return out
    for c in set(units.container):
        reg = specimen.regions.get(c)
        if reg is None:
            continue
        cols = [j for j in range(m) if units.container[j] == c]
        out[:, cols, :] = reg.relative(mr.pos)[:, None, :]
    return out


def position_weights(rel: FloatArray, units: PathUnits, warps: list[Warp], params: MatchParams,
                     sd_scale: float = 1.0) -> FloatArray:
    """Position log-likelihood ratio, shape (n, m), given per-unit warps; 0 where no position is known."""
    sd = params.pos_sd * sd_scale
    a_cc, b_cc = np.array([w.stretch_cc for w in warps]), np.array([w.shift_cc for w in warps])
    a_ap, b_ap = np.array([w.stretch_ap for w in warps]), np.array([w.shift_ap for w in warps])
    total = np.zeros(rel.shape[:2])
    for obs, x, a, b in ((units.cc, rel[..., 0], a_cc, b_cc), (units.ap, rel[..., 1], a_ap, b_ap)):
        total += axis_log_lik(obs[None, :], x, a[None, :], b[None, :], sd, params.pos_outlier, params.pos_censored,
                              params.pos_df)
    return total


def axis_log_lik(obs: FloatArray, x: FloatArray, a: FloatArray | float, b: FloatArray | float, sd: float,
                 outlier: float, censored: bool = True, df: float = np.inf) -> FloatArray:
    """Log-likelihood ratio of reported positions ``obs`` given MR-relative ``x`` under the warp ``(a, b)`` on
    one axis: ``log[(1-o) N(obs; mu, sd) + o]`` with ``mu = 0.5 + a (x-0.5) + b`` (uniform alternative); 0 where
    unknown. Arrays broadcast; unitless. ``df``: Student-t kernel of that many degrees of freedom instead of the
    normal (scale ``sd``).

    ``censored``: a report is a position on the specimen, within [0, 1], so a node whose warped position falls
    beyond an edge is reported *at* the edge. A report of exactly 0 (1) then has likelihood ``P(y <= 0)`` =
    ``Phi(-mu / sd)`` (``P(y >= 1)``), against the chance ``sd phi(0)`` that a uniform node lands there.

    Examples
    --------
    >>> axis_log_lik(np.array([0.0, 0.0]), np.array([0.0, 0.5]), 1.0, -0.1, 0.1, 0.05).round(2).tolist()
    [3.0, -2.98]
    """
    mu = 0.5 + a * (x - 0.5) + b
    z = (obs - mu) / sd
    ll = np.log((1 - outlier) * np.exp(log_kernel(z, df)) / sd + outlier)
    if censored:
        edge = sd * float(np.exp(log_kernel(np.zeros(1), df))[0])
        tail = np.where(obs <= 0.0, _cdf(-mu / sd, df), _cdf((mu - 1.0) / sd, df))
        ll = np.where((obs <= 0.0) | (obs >= 1.0), np.log((1 - outlier) * tail / edge + outlier), ll)
    return np.where(np.isfinite(ll), ll, 0.0)


def fit_shrinkage(mr: MRNodes, units: PathUnits, pairs: NDArray[np.int64], params: MatchParams) -> float:
    """Per-case log shrinkage: median log(P / L) over the given pairs (k, 2) shrunk towards the prior."""
    mu0 = np.log(params.shrinkage)
    if not params.estimate_shrinkage or len(pairs) == 0:
        return float(mu0)
    r = np.log(units.size_mm[pairs[:, 1]]) - np.log(mr.long_mm[pairs[:, 0]])
    r = r[np.isfinite(r)]
    if len(r) == 0:
        return float(mu0)
    # a median has variance ~ (pi/2) sd^2 / n
    prec_data = len(r) / (np.pi / 2 * params.size_sd**2)
    prec_prior = 1.0 / params.shrinkage_prior_sd**2
    return float((prec_data * np.median(r) + prec_prior * mu0) / (prec_data + prec_prior))


def _fit_axis(x: FloatArray, y: FloatArray, params: MatchParams, q: FloatArray | None = None
              ) -> tuple[float, float]:
    """Robust ridge fit y = a x + b (centred coordinates), priors a ~ N(stretch_prior_mean, .), b ~ N(0, .);
    Cauchy IRLS.

    A report at an edge (``y`` = -0.5 or 0.5, censored) whose fitted position lies beyond that edge agrees with
    the fit (its target is the fitted value); otherwise it pulls towards the edge. ``q`` (same shape as ``x``):
    optional weight of each (x, y) pair, e.g. the soft-assignment probability that it is a pair."""
    q = np.ones_like(x) if q is None else q
    w = q.copy()
    a, b = params.stretch_prior_mean, 0.0
    lo, hi = (y <= -0.5 + 1e-9), (y >= 0.5 - 1e-9)
    cens = (lo | hi) & params.pos_censored
    pa, pb = 1 / params.stretch_prior_sd**2, 1 / params.shift_prior_sd**2
    s2 = params.pos_sd**2
    for _ in range(5):
        t = y
        if cens.any():
            pred = a * x + b
            t = np.where((lo & (pred < y)) | (hi & (pred > y)), pred, y)
        wx = w * x
        sw, swx, swxx, swt, swxt = w.sum(), wx.sum(), wx @ x, w @ t, wx @ t
        det = (swxx / s2 + pa) * (sw / s2 + pb) - (swx / s2) ** 2
        ra, rb = swxt / s2 + params.stretch_prior_mean * pa, swt / s2
        a = (ra * (sw / s2 + pb) - rb * swx / s2) / det
        b = ((swxx / s2 + pa) * rb - swx / s2 * ra) / det
        r = (t - a * x - b) / (2 * params.pos_sd)
        w = q / (1.0 + r**2)
    return float(a), float(b)


def fit_warp(rel: FloatArray, units: PathUnits, pairs: NDArray[np.int64], params: MatchParams) -> dict[str, Warp]:
    """Per-container warps from the current pairs (k, 2) of (MR index, unit index)."""
    out: dict[str, Warp] = {}
    if not params.estimate_warp or len(pairs) == 0:
        return out
    cont = np.array(units.container, dtype=object)[pairs[:, 1]]
    for c in set(cont):
        sel = pairs[cont == c]
        x = rel[sel[:, 0], sel[:, 1], :]
        vals = []
        for ax, obs in ((0, units.cc), (1, units.ap)):
            y = obs[sel[:, 1]]
            ok = np.isfinite(y) & np.isfinite(x[:, ax])
            vals.append(_fit_axis(x[ok, ax] - 0.5, y[ok] - 0.5, params) if ok.any() else (1.0, 0.0))
        out[c] = Warp(vals[0][0], vals[0][1], vals[1][0], vals[1][1])
    return out


def fit_warp_soft(rel: FloatArray, units: PathUnits, q: FloatArray, params: MatchParams) -> dict[str, Warp]:
    """Per-container warps from soft pair probabilities ``q`` (n, m) (every candidate pair weighted by how likely
    it is a pair, as in the M-step of EM point-set registration)."""
    out: dict[str, Warp] = {}
    if not params.estimate_warp:
        return out
    cont = np.array(units.container, dtype=object)
    for c in sorted(set(cont)):
        cols = np.flatnonzero(cont == c)
        vals = []
        for ax, obs in ((0, units.cc), (1, units.ap)):
            x, y = rel[:, cols, ax], np.broadcast_to(obs[cols][None, :], (rel.shape[0], len(cols)))
            qq = q[:, cols]
            ok = np.isfinite(x) & np.isfinite(y) & (qq > 1e-3)
            vals.append(_fit_axis(x[ok] - 0.5, y[ok] - 0.5, params, qq[ok]) if ok.any() else (1.0, 0.0))
        if any(v != (1.0, 0.0) for v in vals):
            out[c] = Warp(vals[0][0], vals[0][1], vals[1][0], vals[1][1])
    return out


def _pos_residuals(rel: FloatArray, units: PathUnits, pairs: NDArray[np.int64], warps: dict[str, Warp]) -> FloatArray:
    """Residuals of the reported positions after the warps over the pairs (k, 2), both axes, edge reports left out."""
    i, j = pairs[:, 0], pairs[:, 1]
    res = []
    for ax, obs in ((0, units.cc), (1, units.ap)):
        ws = [warps.get(units.container[jj], Warp()) for jj in j]
        a = np.array([(w.stretch_cc, w.shift_cc) if ax == 0 else (w.stretch_ap, w.shift_ap) for w in ws]).reshape(-1, 2)
        pred = 0.5 + a[:, 0] * (rel[i, j, ax] - 0.5) + a[:, 1]
        y = obs[j]
        ok = np.isfinite(y) & np.isfinite(pred) & (y > 0.0) & (y < 1.0)
        res.append(y[ok] - pred[ok])
    return np.concatenate(res) if res else np.zeros(0)


def fit_pos_sd(rel: FloatArray, units: PathUnits, pairs: NDArray[np.int64], warps: dict[str, Warp],
               params: MatchParams) -> float:
    """Per-case position noise (relative units): the robust sd (1.4826 MAD) of the reported positions' residuals
    after the warps over the current pairs (k, 2), times ``pos_sd_inflation`` (residuals of a warp fitted on
    the same pairs understate the noise), shrunk towards ``pos_sd`` with ``pos_sd_prior_n`` pseudo-residuals."""
    if not params.estimate_pos_sd or len(pairs) == 0:
        return params.pos_sd
    r = _pos_residuals(rel, units, pairs, warps)
    if len(r) < 3:
        return params.pos_sd
    sd = params.pos_sd_inflation * 1.4826 * float(np.median(np.abs(r - np.median(r))))
    n0 = params.pos_sd_prior_n
    return float(np.sqrt((len(r) * sd**2 + n0 * params.pos_sd**2) / (len(r) + n0)))


def fit_pos_outlier(rel: FloatArray, units: PathUnits, pairs: NDArray[np.int64], warps: dict[str, Warp],
                    params: MatchParams, sd: float) -> float:
    """Per-case share of position reports that follow no warp (the uniform component), by EM over the current
    pairs' residuals with noise ``sd``, shrunk towards ``pos_outlier`` with ``pos_outlier_prior_n`` pseudo-reports.
    A case whose reports disagree with its geometry gets a larger share, which flattens its position evidence.

    Examples
    --------
    >>> u = PathUnits(("a", "b", "c"), (("a",), ("b",), ("c",)), ("X",) * 3, np.array(["R"] * 3), ("III",) * 3,
    ...               np.full(3, 5.0), np.array([0.2, 0.5, 0.9]), np.full(3, np.nan))
    >>> rel = np.broadcast_to(np.array([0.2, 0.5, 0.1])[None, :, None], (3, 3, 2)).copy()
    >>> pairs = np.array([[0, 0], [1, 1], [2, 2]])
    >>> p = MatchParams(pos_outlier=0.05, pos_outlier_prior_n=2.0, estimate_pos_outlier=True)
    >>> round(fit_pos_outlier(rel, u, pairs, {}, p, 0.05), 2)  # residuals 0, 0 and 0.8 (sd 0.05, t 4 df)
    0.24
    """
    if not params.estimate_pos_outlier or len(pairs) == 0:
        return params.pos_outlier
    r = _pos_residuals(rel, units, pairs, warps)
    if len(r) == 0:
        return params.pos_outlier
    inlier = np.exp(log_kernel(r / sd, params.pos_df)) / sd
    o, o0, n0 = params.pos_outlier, params.pos_outlier, params.pos_outlier_prior_n
    for _ in range(10):
        g = o / (o + (1 - o) * inlier)
        o = float((g.sum() + n0 * o0) / (len(r) + n0))
    return o


def fit_size_sd(mr: MRNodes, units: PathUnits, pairs: NDArray[np.int64], log_k: float, params: MatchParams) -> float:
    """Per-case noise of the log size ratio ``log P - log L - log k`` over the current single-node pairs (k, 2):
    robust sd (1.4826 MAD), shrunk towards ``size_sd`` with ``size_sd_prior_n`` pseudo-ratios (a pathologist who
    measures in 5 mm steps or the short axis gives a wider spread)."""
    if not params.estimate_size_sd or len(pairs) == 0:
        return params.size_sd
    r = np.log(units.size_mm[pairs[:, 1]]) - np.log(mr.long_mm[pairs[:, 0]]) - log_k
    r = r[np.isfinite(r)]
    if len(r) < 3:
        return params.size_sd
    sd = 1.4826 * float(np.median(np.abs(r - np.median(r))))
    n0 = params.size_sd_prior_n
    return float(np.sqrt((len(r) * sd**2 + n0 * params.size_sd**2) / (len(r) + n0)))


def _quantile_pairs(x: FloatArray, y: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Rank-order (Q-Q) pairs of two samples of one layout: the sorted smaller sample against the larger
    sample's quantiles at the same plotting positions."""
    x, y = np.sort(x), np.sort(y)
    if len(x) <= len(y):
        return x, np.quantile(y, (np.arange(len(x)) + 0.5) / len(x))
    return np.quantile(x, (np.arange(len(y)) + 0.5) / len(y)), y


def order_warps(rel: FloatArray, units: PathUnits, candidate: NDArray[np.bool_], params: MatchParams
                ) -> dict[str, Warp]:
    """Warp per container from the rank order alone (no assignment): on each axis, the MR nodes of the container
    (``candidate`` (n, m) marks the MR nodes whose own level lies in unit j's container) and its reported
    positions are two samples of one layout, so their quantiles pair up; a robust fit of those Q-Q pairs (with
    the warp priors) gives the start. Containers with < 3 MR nodes or < 3 reported positions keep the identity."""
    out: dict[str, Warp] = {}
    cont = np.array(units.container, dtype=object)
    for c in sorted(set(cont)):
        cols = np.flatnonzero(cont == c)
        rows = np.flatnonzero(candidate[:, cols].any(axis=1))
        vals = []
        for ax, obs in ((0, units.cc), (1, units.ap)):
            y = obs[cols][np.isfinite(obs[cols])]
            x = rel[rows, cols[0], ax] if len(rows) else np.zeros(0)
            x = x[np.isfinite(x)]
            if len(x) < 3 or len(y) < 3:
                vals.append((1.0, 0.0))
                continue
            qx, qy = _quantile_pairs(x, y)
            vals.append(_fit_axis(qx - 0.5, qy - 0.5, params))
        if any(v != (1.0, 0.0) for v in vals):
            out[c] = Warp(vals[0][0], vals[0][1], vals[1][0], vals[1][1])
    return out
