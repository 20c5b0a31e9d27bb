"""Node-to-node matching of one case: which MR node is which pathology node, how sure, and what needs review.

:func:`match_case` builds the pair evidence (:mod:`neckmatch.correlation.evidence`), alternates between the best
joint assignment (:mod:`neckmatch.correlation.assign`) and re-estimating the per-case formalin shrinkage and
the per-container specimen warps (a few EM-style rounds), then scores every decision by its min-marginal margin
and calibrates it to a probability (:mod:`neckmatch.correlation.calibration`). The model is described with every
parameter in docs/matching.md. Reads and pathology status are never looked at.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from neckmatch.correlation.assign import (
    MARGIN_CAP,
    assignment_margins,
    best_assignment,
    best_value,
    soft_marginals,
)
from neckmatch.correlation.calibration import AUTO_THRESHOLD, calibrate, calibration_keys
from neckmatch.correlation.evidence import (
    MatchParams,
    MRNodes,
    PathUnits,
    axis_log_lik,
    fit_pos_outlier,
    fit_pos_sd,
    fit_shrinkage,
    fit_size_sd,
    fit_warp,
    fit_warp_soft,
    harvest_weights,
    level_weights,
    merge_prior,
    mr_nodes,
    order_warps,
    path_units,
    position_weights,
    relative_positions,
    size_evidence,
    size_weights,
)
from neckmatch.correlation.specimen_evidence import (
    SPECIMEN_AUTO_THRESHOLD,
    SpecimenEvidence,
    SpecimenParams,
    annotate_via,
    confident_pairs,
    keep_held,
    second_nodes,
    specimen_evidence,
)
from neckmatch.correlation.truth import truth_tables
from neckmatch.errors import InputError
from neckmatch.geometry.specimen import Specimen, Warp, reconstruct_specimen
from neckmatch.model import MIDLINE_LEVELS, Case, Decision, Level

__all__ = ["Constraints", "MatchResult", "MatchParams", "decide", "match_case", "provenance", "MATCH_COLUMNS"]

MATCH_COLUMNS = [
    "case_id", "mr_node", "path_node", "confidence", "decision", "kind", "reason", "level_only", "constrained",
    "merged",
    "mr_level", "mr_side", "container", "path_level", "mr_long_mm", "path_size_mm", "size_ratio", "position_mm",
    "cost", "cost_level", "cost_size", "cost_position", "cost_harvest", "margin", "decided_by",
    "via", "cost_specimen",  # via = specimen: pair decided through the ex vivo specimen MRI (specimen_evidence)
]


@dataclass(frozen=True)
class Constraints:
    """People's decisions the solver must honour: plain sets.

    ``must_link`` and ``cannot_link`` hold ``(mr_node, path_node)`` pairs (MR label, pathology node id);
    ``forced_unmatched_mr`` MR labels and ``forced_unmatched_path`` pathology node ids that must stay unmatched.
    A constraint on a fragment applies to its whole unit (the node and its fragments). ``source`` names the file
    the constraints came from, for error messages.

    Examples
    --------
    >>> c = Constraints(must_link={(3, "R-II-1")}, forced_unmatched_mr=[5])
    >>> sorted(c.must_link), sorted(c.forced_unmatched_mr)
    ([(3, 'R-II-1')], [5])
    """

    must_link: frozenset[tuple[int, str]] = frozenset()
    cannot_link: frozenset[tuple[int, str]] = frozenset()
    forced_unmatched_mr: frozenset[int] = frozenset()
    forced_unmatched_path: frozenset[str] = frozenset()
    source: str = "constraints"

    def __post_init__(self) -> None:
        for name in ("must_link", "cannot_link"):
            pairs = frozenset((int(m), str(p)) for m, p in getattr(self, name))
            object.__setattr__(self, name, pairs)
        object.__setattr__(self, "forced_unmatched_mr", frozenset(int(m) for m in self.forced_unmatched_mr))
        object.__setattr__(self, "forced_unmatched_path", frozenset(str(p) for p in self.forced_unmatched_path))


@dataclass
class MatchResult:
    """The matching of one case.

    ``matches``: DataFrame with :data:`MATCH_COLUMNS` (docs/outputs.md matches.csv): every MR node and every
    pathology node once, except that fragments of one node (``fragment_of``) each get a row with the MR node
    they share, and an MR label judged to hold two touching nodes has a row per partner (``merged`` true).
    ``specimen``: the reconstructed specimen with the estimated warps. ``shrinkage``: estimated
    pathology/MR size ratio. ``weights``: the final pair log-likelihood ratios, DataFrame (MR labels x units).
    ``truth_tables``: the node, reads, level, side and patient truth tables that follow from ``matches``
    (:func:`neckmatch.correlation.truth.truth_tables`; computed on first use).
    """

    matches: pd.DataFrame
    specimen: Specimen
    shrinkage: float
    weights: pd.DataFrame = field(default_factory=pd.DataFrame)
    params: MatchParams = field(default_factory=MatchParams)
    registration: SpecimenEvidence | None = None  # the specimen scans' registration, where the case has them
    case: Case | None = field(default=None, repr=False)
    levels: pd.DataFrame | None = field(default=None, repr=False)

    @cached_property
    def truth_tables(self) -> dict[str, pd.DataFrame]:
        """Truth tables by kind (``nodes``, ``reads``, ``levels``, ``sides``, ``patient``) of this matching."""
        if self.case is None or self.levels is None:
            raise ValueError("this MatchResult was made without its case and levels; call truth_tables() directly")
        return truth_tables(self.case, self.levels, self.matches)


def _index_constraints(c: Constraints, mr: MRNodes, units: PathUnits) -> dict[str, Any]:
    """Map constraint ids to (row, unit) indices; raise InputError for unknown ids or contradictions."""
    row = {int(v): k for k, v in enumerate(mr.node)}
    unit = {node: j for j, mem in enumerate(units.members) for node in mem}

    def r(v: int, fld: str) -> int:
        if v not in row:
            raise InputError(c.source, fld, f"MR node {v} is not in the case (labels {sorted(row)[:12]})")
        return row[v]

    def u(v: str, fld: str) -> int:
        if v not in unit:
            raise InputError(c.source, fld, f"pathology node '{v}' is not in the case")
        return unit[v]

    must = {(r(m, "must_link"), u(p, "must_link")) for m, p in c.must_link}
    seen: dict[int, int] = {}
    for i, j in sorted(must):
        if seen.setdefault(j, i) != i:  # several units may share one MR node (fragments), not the reverse
            raise InputError(c.source, "must_link", f"pathology unit '{units.unit[j]}' is linked to two MR nodes")
    cannot = {(r(m, "cannot_link"), u(p, "cannot_link")) for m, p in c.cannot_link}
    if must & cannot:
        raise InputError(c.source, "cannot_link", f"a pair is both must-link and cannot-link: {sorted(must & cannot)}")
    un_r = {r(m, "forced_unmatched_mr") for m in c.forced_unmatched_mr}
    un_u = {u(p, "forced_unmatched_path") for p in c.forced_unmatched_path}
    clash = [p for p in must if p[0] in un_r or p[1] in un_u]
    if clash:
        raise InputError(c.source, "must_link", f"pair(s) {clash} also forced unmatched")
    return {"must": must, "cannot": cannot, "unmatched_rows": un_r, "unmatched_units": un_u}


@dataclass
class _Fit:
    """Weights of the extended assignment: rows are the n MR nodes, then one second slot per merge candidate
    (``owner[r]`` = the MR node of row r); ``parts`` are the evidence terms of ``w`` (same shape)."""

    w: NDArray[np.float64]
    parts: dict[str, NDArray[np.float64]]
    log_k: float
    warps: dict[str, Warp]
    owner: NDArray[np.int64]
    merge_p: NDArray[np.float64]
    correction: NDArray[np.float64]  # (n, m): exact minus assumed log-weight of a node's first partner in a merge
    solve_owner: NDArray[np.int64]  # owner for the solver: the open second slot of a node whose first partner a
    # person fixed is a row of its own (the solver moves a second slot's partner to an unmatched first slot)


def _weights(base: NDArray[np.float64], harvest: NDArray[np.float64], mr: MRNodes, units: PathUnits,
             rel: NDArray[np.float64], params: MatchParams, log_k: float, warps: dict[str, Warp],
             sd_scale: float, merge_p: NDArray[np.float64], slot_base: NDArray[np.float64] | None = None) -> _Fit:
    """Pair weights of the MR nodes and of the second slots of merge candidates (``merge_p >= merge_min``).

    ``slot_base`` (default ``base``): the level weights of the second slots; it differs where a person fixed a
    node's one partner (its row of ``base`` forbidden, its second slot open).

    A slot pair scores the unit as a *piece* of a merged label (level, position, piece size, ``merge_log_odds``);
    the node's first partner keeps the single/piece size mixture, and ``correction`` holds, per (node, unit),
    how much that mixture overstates the first partner once the label is known to be merged."""
    n = len(mr.node)
    size, piece = size_evidence(mr, units, params, log_k, merge_p)
    unit_warps = [warps.get(u, warps.get(c, Warp())) for u, c in zip(units.unit, units.container, strict=True)]
    pos = position_weights(rel, units, unit_warps, params, sd_scale)
    w = base + harvest[:, None] + params.pair_log_odds + size + pos
    cand = np.flatnonzero(merge_p >= params.merge_min) if params.merge else np.zeros(0, dtype=np.int64)
    correction = np.log(np.maximum(merge_p, 1e-300))[:, None] + piece - size
    slot_level = (base if slot_base is None else slot_base)[cand]
    slot = slot_level + pos[cand] + piece[cand] + params.merge_log_odds
    parts = {"level": base, "size": size, "position": pos, "harvest": np.broadcast_to(harvest[:, None], base.shape)}
    slot_parts = {"level": slot_level, "size": piece[cand], "position": pos[cand],
                  "harvest": np.full(slot.shape, params.merge_log_odds)}
    owner = np.r_[np.arange(n), cand].astype(np.int64)
    solve_owner = owner.copy()
    fixed_first = ~np.isfinite(base[cand]).any(axis=1) & np.isfinite(slot_level).any(axis=1)
    solve_owner[n + np.flatnonzero(fixed_first)] = n + np.flatnonzero(fixed_first)
    return _Fit(np.vstack([w, slot]), {k: np.vstack([v, slot_parts[k]]) for k, v in parts.items()}, log_k, warps,
                owner, merge_p, correction, solve_owner)


def _solve_merges(fit: _Fit, n: int, max_rounds: int = 3) -> NDArray[np.int64]:
    """Best assignment of the extended rows, where a second slot is kept only if the merge still pays once the
    first partner is scored as a piece (``correction``); failing slots are forbidden (in ``fit.w``) and the
    assignment re-solved. Returns the partner per extended row."""
    for _ in range(max_rounds):
        partner = best_assignment(fit.w, fit.solve_owner)
        bad = [r for r in range(n, len(partner)) if partner[r] >= 0 and partner[fit.owner[r]] >= 0
               and fit.w[r, partner[r]] + fit.correction[fit.owner[r], partner[fit.owner[r]]] <= 0.0]
        if not bad:
            return partner
        fit.w[bad, :] = -np.inf
    return best_assignment(fit.w, fit.solve_owner)


def _warp_log_prior(stretch: float, shift: float, params: MatchParams) -> float:
    """Log prior of one axis' warp: log stretch ~ N(log stretch_prior_mean, stretch_prior_sd), shift ~ N(0, .)."""
    z = np.log(max(stretch, 1e-6) / params.stretch_prior_mean) / params.stretch_prior_sd
    return float(-0.5 * z**2 - 0.5 * (shift / params.shift_prior_sd) ** 2)


_STRETCH_GRID = np.exp(np.linspace(-0.3, 0.3, 5))
_SHIFT_GRID = np.linspace(-0.1, 0.1, 5)


def _grid_axis(block: NDArray[np.float64], obs: NDArray[np.float64], x: NDArray[np.float64],
               params: MatchParams) -> tuple[float, float, NDArray[np.float64]]:
    """Best (stretch, shift) of one axis on the grid, and its log-likelihood (r, k): the container block's best
    assignment value (``block`` (r, k) already holds every other term) plus the warp's log prior."""
    best = (-np.inf, 1.0, 0.0, np.zeros_like(block))
    for a in _STRETCH_GRID:
        for b in _SHIFT_GRID:
            ll = axis_log_lik(obs[None, :], x, a, b, params.pos_sd, params.pos_outlier, params.pos_censored)
            prior = _warp_log_prior(a, b, params)
            val = best_value(block + ll) + prior
            if val > best[0]:
                best = (val, float(a), float(b), ll)
    return best[1], best[2], best[3]


def _grid_warps(w0: NDArray[np.float64], rel: NDArray[np.float64], units: PathUnits,
                params: MatchParams) -> dict[str, Warp]:
    """Initial warp per container with positions: per axis (cc, then ap given cc), the grid warp whose best
    assignment of the container's own block (weights ``w0`` (n, m) without position, plus position) with the
    warp's log prior is largest. Robust start for the EM rounds (a wrong start converges to a wrong warp)."""
    out: dict[str, Warp] = {}
    cont = np.array(units.container, dtype=object)
    known = np.isfinite(units.cc) | np.isfinite(units.ap)
    for c in sorted(set(cont[known])):
        cols = np.flatnonzero(cont == c)
        rows = np.flatnonzero((w0[:, cols] > -40.0).any(axis=1))
        if len(rows) == 0:
            continue
        block, x = w0[np.ix_(rows, cols)], rel[np.ix_(rows, cols)]
        obs = (units.cc[cols], units.ap[cols])
        ll = [axis_log_lik(obs[ax][None, :], x[..., ax], 1.0, 0.0, params.pos_sd, params.pos_outlier,
                           params.pos_censored)
              for ax in (0, 1)]
        warp = [1.0, 0.0, 1.0, 0.0]
        for ax in (0, 1):
            if np.isfinite(obs[ax]).any():
                warp[2 * ax], warp[2 * ax + 1], ll[ax] = _grid_axis(block + ll[1 - ax], obs[ax], x[..., ax], params)
        out[c] = Warp(*warp)
    return out


def _em(mr: MRNodes, units: PathUnits, rel: NDArray[np.float64], base: NDArray[np.float64],
        harvest: NDArray[np.float64], merge_p: NDArray[np.float64], fixed: set[tuple[int, int]],
        params: MatchParams, warps: dict[str, Warp], known: dict[str, Warp], loose: float,
        slot_base: NDArray[np.float64] | None = None) -> tuple[_Fit, NDArray[np.int64]]:
    """EM-style rounds from the start ``warps``: best assignment <-> shrinkage and warps, until the assignment
    repeats (at most ``n_iter`` rounds; the first with positions ``loose`` times less precise). Returns the fit
    of the final warps and its best assignment (per extended row)."""
    n = len(mr.node)
    log_k = float(np.log(params.shrinkage))
    prev, cur = None, params  # cur: params with this case's noise scales (estimate_pos_sd, _pos_outlier, _size_sd)
    for t in range(max(params.n_iter, 1)):
        fit = _weights(base, harvest, mr, units, rel, cur, log_k, warps, loose if t == 0 else 1.0, merge_p,
                       slot_base)
        partner = _solve_merges(fit, n)
        if prev is not None and np.array_equal(partner, prev):
            break
        prev = partner
        used = np.flatnonzero(partner >= 0)
        pairs = np.array(sorted({(int(fit.owner[r]), int(partner[r])) for r in used} | fixed),
                         dtype=np.int64).reshape(-1, 2)
        merged = {int(fit.owner[r]) for r in used if r >= n}  # their ratio is a piece's, not a node's
        single = np.array(sorted({(int(r), int(partner[r])) for r in used if r < n and r not in merged} | fixed),
                          dtype=np.int64).reshape(-1, 2)
        log_k = fit_shrinkage(mr, units, single, cur)
        warps = fit_warp(rel, units, pairs, cur) | known
        sd = fit_pos_sd(rel, units, pairs, warps, params)
        cur = replace(params, pos_sd=sd, pos_outlier=fit_pos_outlier(rel, units, pairs, warps, params, sd),
                      size_sd=fit_size_sd(mr, units, single, log_k, params))
    fit = _weights(base, harvest, mr, units, rel, cur, log_k, warps, 1.0, merge_p, slot_base)
    return fit, _solve_merges(fit, n)


def _soft_start(mr: MRNodes, units: PathUnits, rel: NDArray[np.float64], base: NDArray[np.float64],
                harvest: NDArray[np.float64], merge_p: NDArray[np.float64], params: MatchParams,
                known: dict[str, Warp], slot_base: NDArray[np.float64] | None = None) -> dict[str, Warp]:
    """Warps by deterministic annealing: soft EM (pair probabilities from :func:`soft_marginals`, every candidate
    pair weighting the warp fit) with the position noise shrinking from loose to ``pos_sd`` (``soft_anneal``), as
    in robust point matching; less prone than hard EM to lock onto an assignment shifted by one node."""
    n = len(mr.node)
    log_k, warps = float(np.log(params.shrinkage)), dict(known)
    for scale in params.soft_anneal:
        fit = _weights(base, harvest, mr, units, rel, params, log_k, warps, scale, merge_p, slot_base)
        q = soft_marginals(fit.w[:n])
        warps = fit_warp_soft(rel, units, q, params) | known
        log_k = fit_shrinkage(mr, units, np.argwhere(q > 0.5), params)
    return warps


def _container_scores(fit: _Fit, partner: NDArray[np.int64], units: PathUnits, params: MatchParams
                      ) -> dict[str, float]:
    """Joint log-objective per container: weights of its chosen pairs plus its warp's log prior."""
    out: dict[str, float] = {}
    for r in np.flatnonzero(partner >= 0):
        c = units.container[partner[r]]
        out[c] = out.get(c, 0.0) + float(fit.w[r, partner[r]])
    for c, w in fit.warps.items():
        prior = _warp_log_prior(w.stretch_cc, w.shift_cc, params) + _warp_log_prior(w.stretch_ap, w.shift_ap, params)
        out[c] = out.get(c, 0.0) + prior
    return out


def _estimate(mr: MRNodes, units: PathUnits, rel: NDArray[np.float64], base: NDArray[np.float64],
              fixed: set[tuple[int, int]], params: MatchParams, known: dict[str, Warp] | None = None,
              slot_base: NDArray[np.float64] | None = None) -> _Fit:
    """Joint warps + shrinkage + assignment: EM from each start in ``warp_starts`` (identity with a loose first
    round; ``order``: rank-order warps; the grid start with ``warp_grid``), then per container the warp of the
    start with the best joint objective, and a last EM from that combination.

    ``known`` warps (per container) are used as given and not re-estimated."""
    known = dict(known or {})
    harvest, merge_p = harvest_weights(mr, params), merge_prior(mr, params)
    log_k0 = float(np.log(params.shrinkage))
    starts: list[tuple[dict[str, Warp], float]] = []
    has_pos = params.estimate_warp and bool(np.isfinite(units.cc).any() or np.isfinite(units.ap).any())
    if "identity" in params.warp_starts or not has_pos:
        starts.append((dict(known), 1.0 if params.warp_grid else 2.5))
    if has_pos and "order" in params.warp_starts:
        starts.append((order_warps(rel, units, base > np.log(0.5), params) | known, 1.0))
    if has_pos and "soft" in params.warp_starts:
        starts.append((_soft_start(mr, units, rel, base, harvest, merge_p, params, known, slot_base), 1.0))
    if has_pos and params.warp_grid:
        w0 = base + harvest[:, None] + params.pair_log_odds + size_weights(mr, units, params, log_k0, merge_p)
        starts.append((_grid_warps(w0, rel, units, params) | known, 1.0))
    runs = [_em(mr, units, rel, base, harvest, merge_p, fixed, params, w, known, loose, slot_base)
            for w, loose in starts]
    if len(runs) == 1:
        return runs[0][0]
    scores = [_container_scores(f, p, units, params) for f, p in runs]
    best: dict[str, Warp] = {}
    for c in set(units.container):
        k = int(np.argmax([sc.get(c, -np.inf) for sc in scores]))
        if c in runs[k][0].warps:
            best[c] = runs[k][0].warps[c]
    return _em(mr, units, rel, base, harvest, merge_p, fixed, params, best | known, known, 1.0, slot_base)[0]


def match_case(case: Case, levels: pd.DataFrame, specimen: Specimen | None = None,
               constraints: Constraints | None = None, params: MatchParams | None = None,
               warps: dict[str, Warp] | None = None, auto_threshold: float | None = None) -> MatchResult:
    """Match the MR nodes of ``case`` to its pathology nodes.

    Parameters
    ----------
    case : Case
    levels : pandas.DataFrame
        levels.csv table of the case (``node, side, level, runner_up, borderline, x, y, z, long_axis_mm``).
    specimen : Specimen, optional
        From :func:`neckmatch.geometry.specimen.reconstruct_specimen`; built here when omitted.
    constraints : Constraints, optional
        People's decisions; unknown node ids or contradictions raise :class:`~neckmatch.errors.InputError`.
    params : MatchParams, optional
        Model parameters (defaults documented in docs/matching.md).
    warps : dict of str to Warp, optional
        Known specimen warps per container (used as given, not estimated), e.g. the benchmark's oracle; a key
        naming a pathology unit (its head node id) sets the warp for that unit alone (leave-one-out oracle).
    auto_threshold : float, optional
        A decision is ``auto`` where its confidence is at least this (0-1); default the calibrated
        :data:`~neckmatch.correlation.calibration.AUTO_THRESHOLD`. ``level_only`` follows the same decision.

    Returns
    -------
    MatchResult
    """
    params = params or MatchParams()
    specimen = specimen if specimen is not None else reconstruct_specimen(case, levels)
    mr, units = mr_nodes(case, levels), path_units(case)
    cons = _index_constraints(constraints or Constraints(), mr, units)
    # ex vivo specimen MRI: one more evidence term (None without)
    via = specimen_evidence(case, mr, units, match_params=params)
    res = _match_once(case, levels, mr, units, cons, specimen, via, params, warps, auto_threshold)
    sp = SpecimenParams()
    if via is not None and sp.refit:  # second pass: re-register from the first assignment's confident pairs
        mr_rows = {int(v): k for k, v in enumerate(mr.node)}
        unit_of = {node: j for j, mem in enumerate(units.members) for node in mem}
        fixed = confident_pairs(res.matches, via, mr_rows, unit_of, sp.refit_confidence)
        if any(len(v) >= sp.refit_min_pairs for v in fixed.values()):
            second = specimen_evidence(case, mr, units, sp, fixed=fixed, previous=via, match_params=params)
            via = keep_held(second, via, fixed) if second is not None and sp.refit_keep_held else second
            res = _match_once(case, levels, mr, units, cons, specimen, via, params, warps, auto_threshold)
    return res


def _match_once(case: Case, levels: pd.DataFrame, mr: MRNodes, units: PathUnits, cons: dict[str, Any],
                specimen: Specimen, via: SpecimenEvidence | None, params: MatchParams,
                warps: dict[str, Warp] | None, auto_threshold: float | None) -> MatchResult:
    """One joint assignment of the case with the specimen evidence ``via`` (None: containers only)."""
    base = level_weights(mr, units, params)
    if via is not None:
        base = base + via.weights
    for i, j in cons["cannot"]:
        base[i, j] = -np.inf
    base[list(cons["unmatched_rows"]), :] = -np.inf
    base[:, list(cons["unmatched_units"])] = -np.inf
    for _, j in cons["must"]:
        base[:, j] = -np.inf
    # a node a person linked to one unit keeps its second slot (if it has one: the label may hold two nodes)
    slot_base = base.copy()
    forced = Counter(i for i, _ in cons["must"])
    for i, k in forced.items():
        base[i, :] = -np.inf
        if k > 1:
            slot_base[i, :] = -np.inf
    rel = relative_positions(mr, units, specimen)
    fit = _estimate(mr, units, rel, base, cons["must"], params, warps, slot_base)
    partner, row_m, col_m = assignment_margins(fit.w, fit.solve_owner)
    for i, j in sorted(cons["must"]):
        partner[i] = j
    specimen = specimen.with_warps(fit.warps, case.path_nodes, params.pos_sd)
    # linked units left unmatched: how near their registered specimen twin lies to an MR label (a second node?)
    held = {int(fit.owner[r]) for r in np.flatnonzero(partner >= 0)}
    paired = {int(partner[r]) for r in np.flatnonzero(partner >= 0)} | {j for _, j in cons["must"]}
    left = [] if via is None else [int(j) for j in np.flatnonzero(via.linked)
                                   if j not in paired and j not in cons["unmatched_units"]]
    nearest = {j: via.nearest_mr(j, case.label_map, mr) for j in left} if via is not None else {}
    slots = {int(i) for i in fit.owner[len(mr.node):]}  # the merge candidates: labels with a second slot
    proposed = second_nodes(nearest, held, lambda i, j: i in slots and (i, j) not in cons["cannot"])
    table = _decision_table(case, mr, units, fit, partner, row_m, col_m, cons, specimen, proposed)
    table = annotate_via(table, via, {int(v): k for k, v in enumerate(mr.node)},
                         {node: j for j, mem in enumerate(units.members) for node in mem}, nearest)
    if auto_threshold is None:  # pairs decided through the specimen have their own calibration and threshold
        through_specimen = (table["via"] == "specimen").to_numpy() & ~table["constrained"].to_numpy(dtype=bool)
        table = decide(table, np.where(through_specimen, SPECIMEN_AUTO_THRESHOLD, AUTO_THRESHOLD))
    else:
        table = decide(table, auto_threshold)
    weights = pd.DataFrame(fit.w[: len(mr.node)], index=pd.Index(mr.node, name="mr_node"), columns=list(units.unit))
    return MatchResult(table, specimen, float(np.exp(fit.log_k)), weights, params, registration=via, case=case,
                       levels=levels)


def _mr_container(case: Case, side: str, level: str) -> str:
    """The container holding imaging ``level`` on ``side`` (a central level IA/VI/VII: else the other side's)."""
    if not level or level not in Level.__members__:
        return ""
    own = [c.container for c in case.containers if c.side.value == side and c.level.contains(level)]
    other = [c.container for c in case.containers if c.side.value != side and c.level.contains(level)]
    return (own or (other if level in MIDLINE_LEVELS else []) or [""])[0]


def _decision_table(case: Case, mr: MRNodes, units: PathUnits, fit: _Fit, partner: NDArray[np.int64],
                    row_m: NDArray[np.float64], col_m: NDArray[np.float64], cons: dict[str, Any],
                    specimen: Specimen, proposed: dict[int, int] | None = None) -> pd.DataFrame:
    """One row per decision (fragments expanded), with calibrated confidence and evidence columns.

    ``proposed`` (unit -> MR row): units the assignment left out, proposed as a label's second node
    (:func:`~neckmatch.correlation.specimen_evidence.second_nodes`): pairs without an assignment row (no cost,
    no margin), ``reason`` ``second-node``."""
    sizes = {p.node: p.size_mm for p in case.path_nodes}
    placed = {}
    if len(specimen.placed):
        pl = specimen.placed
        xyz = pl[["x", "y", "z"]].to_numpy(dtype=np.float64)
        placed = {n: xyz[k] for k, (n, ok) in enumerate(zip(pl["node"], pl["positioned"], strict=True)) if ok}
    rows: list[dict[str, Any]] = []
    n = len(mr.node)
    linked: dict[int, list[tuple[int, int]]] = {}  # MR index -> [(extended row, unit)]
    for i, j in sorted(cons["must"]):
        linked.setdefault(i, []).append((i, j))
    linked_rows = {i for i, _ in cons["must"]}
    for rp in np.flatnonzero(partner >= 0):
        if rp >= n or int(fit.owner[rp]) not in linked_rows:  # a linked node's open second slot is the engine's
            linked.setdefault(int(fit.owner[rp]), []).append((int(rp), int(partner[rp])))
    for j, i in (proposed or {}).items():
        linked.setdefault(i, []).append((-1, j))  # no row of the assignment holds it
    matched_units = {j for v in linked.values() for _, j in v}
    for i in range(n):
        base = {"mr_node": int(mr.node[i]), "mr_level": mr.level[i], "mr_side": mr.side[i],
                "mr_long_mm": mr.long_mm[i]}
        if i not in linked:
            fixed = bool(mr.fixed[i]) or i in cons["unmatched_rows"]
            reason = mr.reason[i] or ("no-counterpart" if i in cons["unmatched_rows"] else "not-harvested")
            rows.append({**base, "path_node": None, "kind": "mr-unmatched", "reason": reason,
                         "container": _mr_container(case, mr.side[i], mr.level[i]), "margin": row_m[i],
                         "constrained": i in cons["unmatched_rows"], "fixed": fixed, "cost": 0.0, "merged": False})
            continue
        merged = len(linked[i]) > 1
        for r, ju in sorted(linked[i]):
            constrained = (i, ju) in cons["must"]
            scored = r >= 0 and not constrained  # the assignment's own pair: its cost and terms
            for node in units.members[ju]:
                pos_mm = float(np.linalg.norm(placed[node] - mr.pos[i])) if node in placed else np.nan
                rows.append({**base, "path_node": node, "kind": "pair", "reason": None if r >= 0 else "second-node",
                             "merged": merged, "container": units.container[ju], "path_level": str(units.level[ju]),
                             "path_size_mm": sizes.get(node), "position_mm": pos_mm,
                             "margin": row_m[r] if r >= 0 else np.nan, "constrained": constrained,
                             "fixed": constrained, "cost": -fit.w[r, ju] if scored else np.nan,
                             **({f"cost_{k}": -v[r, ju] for k, v in fit.parts.items()} if scored else {})})
    for j in range(len(units.unit)):
        if j in matched_units:
            continue
        forced = j in cons["unmatched_units"]
        for node in units.members[j]:
            rows.append({"mr_node": None, "path_node": node, "kind": "path-unmatched",
                         "reason": "no-counterpart" if forced else "not-visible", "container": units.container[j],
                         "path_level": str(units.level[j]), "path_size_mm": sizes.get(node), "margin": col_m[j],
                         "constrained": forced, "fixed": forced, "cost": 0.0, "merged": False})
    return _finish(case, rows)


def provenance(matches: pd.DataFrame) -> NDArray[np.str_]:
    """Who decided each row (``decided_by``): ``person`` where a constraint fixed it, else its ``decision``
    (set together with the decision by :func:`decide`).

    Examples
    --------
    >>> provenance(pd.DataFrame({"constrained": [True, False, False], "decision": ["auto", "auto", "review"]})).tolist()
    ['person', 'auto', 'review']
    """
    constrained = matches["constrained"] if "constrained" in matches else pd.Series(False, index=matches.index)
    person = constrained.fillna(False).astype(bool).to_numpy()
    return np.where(person, "person", matches["decision"].astype(str).to_numpy())


def _finish(case: Case, rows: list[dict[str, Any]]) -> pd.DataFrame:
    rows = sorted(rows, key=lambda r: (r["kind"] == "path-unmatched", r["mr_node"] if r["mr_node"] is not None
                                       else -1, r["path_node"] or ""))
    df = pd.DataFrame(rows, columns=[*MATCH_COLUMNS, "fixed"])
    margin = df["margin"].fillna(MARGIN_CAP).to_numpy(dtype=np.float64)
    keys = calibration_keys(df["kind"].to_numpy(dtype=str), df["path_size_mm"].notna().to_numpy(),
                            df["position_mm"].notna().to_numpy())
    conf = calibrate(margin, keys)
    fixed = df["fixed"].fillna(False).to_numpy(dtype=bool)
    df["confidence"] = np.where(fixed, 1.0, conf)
    df["constrained"] = df["constrained"].fillna(False).astype(bool)
    df["merged"] = df["merged"].fillna(False).astype(bool)
    df["size_ratio"] = pd.to_numeric(df["path_size_mm"], errors="coerce") / pd.to_numeric(df["mr_long_mm"],
                                                                                         errors="coerce")
    df["case_id"] = case.case_id
    df["mr_node"] = df["mr_node"].astype("Int64")
    df["decision"], df["level_only"] = Decision.REVIEW.value, False  # set by decide()
    return df[MATCH_COLUMNS]


def decide(matches: pd.DataFrame, threshold: float | NDArray[np.float64]) -> pd.DataFrame:
    """``matches`` with ``decision`` (``auto`` where ``confidence`` >= ``threshold``, else ``review``) and
    ``level_only`` (an undecided row that still has a container: usable level-to-level) set from one rule.

    Examples
    --------
    >>> m = pd.DataFrame({"confidence": [0.99, 0.5, 0.5], "container": ["R-II", "R-II", None]})
    >>> d = decide(m, 0.9)
    >>> d["decision"].tolist(), d["level_only"].tolist()
    (['auto', 'review', 'review'], [False, True, False])
    """
    if not np.all((np.asarray(threshold) >= 0.0) & (np.asarray(threshold) <= 1.0)):
        raise ValueError(f"auto threshold must lie in [0, 1], got {threshold!r}")
    out = matches.copy()
    auto = pd.to_numeric(out["confidence"], errors="coerce").to_numpy(dtype=float) >= threshold
    out["decision"] = np.where(auto, Decision.AUTO.value, Decision.REVIEW.value)
    out["level_only"] = ~auto & (out["container"].fillna("") != "").to_numpy()
    out["decided_by"] = provenance(out)
    return out
