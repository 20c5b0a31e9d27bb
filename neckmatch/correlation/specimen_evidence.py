"""Matching through the ex vivo specimen MRI: MR node <-> specimen node (registration) <-> pathology node (link).

For every scanned piece (:class:`neckmatch.model.SpecimenPiece`) the specimen nodes are registered to the MR
nodes of its side whose level (or runner-up level) lies in its containers
(:func:`neckmatch.geometry.registration.register_piece`). A pathology unit linked to specimen node ``s`` then adds
to the pair weight of every MR node ``i`` the log-likelihood ratio of the link

    w_spec[i, j] = log( rho * N3(x_i; T(y_s), sigma^2 I) / u + (1 - rho) )

where ``T(y_s)`` is ``s`` registered into the patient, ``sigma`` the piece's residual sd (mm), ``u`` a uniform
density over the piece's MR nodes (the position of an unrelated node) and ``rho`` the probability that the link
is right: prior ``1 - link_error`` (``probable`` links ``1 - probable_error``), updated by how well the
pathology size fits the specimen node's long axis against the piece's other nodes. Units without a link add 0
(their container evidence decides). Reads, image signal and pathology status are never used.

Pairs whose unit is linked and whose specimen term is positive are marked ``via = specimen`` in matches.csv and
get their confidence from :data:`SPECIMEN_CALIBRATION` (fitted by ``benchmarks/specimen.py --calibrate``).

An MR node's evidence for a specimen node is weighted by that node's share of the MR node's registration
responsibility; a possibly merged MR label shares it between its two best specimen nodes where their combined
volume fits (:func:`merge_shares`). A second pass (``fixed``, ``previous``; run by
:func:`neckmatch.correlation.matching.match_case`) re-registers each piece holding the first joint assignment's
confident pairs (:func:`confident_pairs`); those pairs keep their first-pass evidence (:func:`keep_held`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from neckmatch.correlation.assign import MARGIN_CAP
from neckmatch.correlation.evidence import MatchParams, MRNodes, PathUnits, adjacent_levels, merge_prior
from neckmatch.geometry.registration import SIZE_MU, PieceRegistration, register_piece, size_deviation, specimen_nodes
from neckmatch.model import MIDLINE_LEVELS, Case, LabelMap, SpecimenPiece

__all__ = ["SpecimenParams", "FEATURES", "SpecimenEvidence", "specimen_evidence", "annotate_via", "specimen_confidence",
           "merge_shares", "confident_pairs", "keep_held", "second_nodes",
           "SPECIMEN_CALIBRATION",
           "SPECIMEN_AUTO_THRESHOLD", "NEAR_MR_MM", "NEAR_MR_RIGHT", "SECOND_NODE_MM", "SECOND_NODE_RIGHT",
           "label_distance",
           "REGISTRATION_COLUMNS"]

FloatArray = NDArray[np.float64]

#: Weights of ``sigmoid(w . (margin, term, *FEATURES) + b)`` (the last value is ``b``) for pairs decided through
#: the specimen: ``term`` = their specimen evidence (``-cost_specimen``), the rest :meth:`SpecimenEvidence.features`;
#: fitted by ``benchmarks/specimen.py --calibrate`` (the ``stress`` family held out)
SPECIMEN_CALIBRATION: tuple[float, ...] = (0.4214, -0.4875, 2.8566, -0.2785, 0.4702, 0.0245, -0.2227, -3.3601,
                                           -1.0068, 0.1964)
#: auto threshold of those pairs: the smallest confidence at which the calibration cohort's are shown >= 99 % right
#: in every family of it (one-sided 95 % Clopper-Pearson per family; the largest of the families' thresholds)
SPECIMEN_AUTO_THRESHOLD = 0.9733

#: A linked pathology node left unmatched whose specimen twin, registered, lies within this distance (mm) of an MR
#: node's voxels may well be a second node inside that MR label, which the one-to-one registration cannot pair.
NEAR_MR_MM = 6.0
#: ... and such decisions were right this often (201 decisions, calibration seeds 777-781, the five tuned
#: families, 20 cases each; 0.51 within 3 mm): their confidence, below every auto threshold.
NEAR_MR_RIGHT = 0.70
#: ... and where the twin lies within this distance (mm) of the voxels of a merge candidate (an MR label the engine
#: gives a second slot: two touching nodes may be segmented as one) that holds a partner already, the node is
#: proposed as that label's second node (``merged``, review) instead of unmatched
SECOND_NODE_MM = 1.5
#: ... such proposals were right this often (22 decisions on the calibration seeds, 17 right; left unmatched, 5
#: would have been right): their confidence, below every auto threshold
SECOND_NODE_RIGHT = 0.77

#: How a transform in specimen_registration.json maps any point (PieceRegistration.map_points).
MAPPING = ("q = ((p - spec_centre) @ rotation.T) / spec_scale; q = q @ affine.T + bend * q_z ** 2 + shift "
           "(q_z = q[:, 2] before this step); "
           "q = q + exp(-|q - ctrl_k|^2 / (2 beta^2)) summed over k with weights coef_k; "
           "x = q * pat_scale + pat_centre "
           "(p: points (K, 3) in the specimen scanner's RAS mm, x: patient RAS mm)")

#: Names of :meth:`SpecimenEvidence.features` (after margin and term in the calibration).
FEATURES = ("share", "zdist", "log_nodes", "pose_gap", "sigma", "size_misfit", "warp")

REGISTRATION_COLUMNS = ["image", "specimen_node", "mr_node", "confidence", "x", "y", "z", "residual_mm"]


@dataclass(frozen=True)
class SpecimenParams:
    """Parameters of the specimen evidence (docs/matching.md, section Specimen MRI)."""

    link_error: float = 0.04  # prior probability that a (sure or unrated) link names the wrong specimen node
    probable_error: float = 0.20  # the same for a link marked probable
    size_sd: float = 0.2  # log-sd of pathology size / specimen long axis (fixation, rounding, measurement)
    cpd_outlier: float = 0.4  # CPD outlier weight (MR nodes without a specimen node)
    cpd_beta_mm: float = 30.0  # non-rigid kernel width, mm
    cpd_lambda: float = 3.0  # non-rigid smoothness
    cpd_ridge: float = 0.08  # pull of the affine part towards the suture frame and expected flattening, per node
    cpd_small: int = 10  # pieces with fewer nodes also try shifted starts
    cpd_start_sigma_mm: float = 10.0  # smallest noise sd the non-rigid stage starts from
    cpd_spec_outlier: float = 0.3  # share of specimen nodes without an MR partner (one-to-one correspondences)
    exclusive: bool = True  # an MR node another specimen node explains better weakens the link's evidence for it
    exclusive_floor: float = 0.02  # the smallest such factor
    merge_share: bool = True  # a merge candidate of the engine (MatchParams.merge_min) whose size fits its two best
    # specimen nodes together lets both hold their combined share
    merge_size_sd: float = 0.15  # log-sd of specimen / MR equivalent diameter in that size test
    refit: bool = True  # second pass: re-register each piece from the first joint assignment's confident pairs
    refit_min_pairs: int = 4  # ... where it has at least this many
    refit_confidence: float = 0.9  # ... pairs via the specimen at this confidence or more
    refit_keep_held: bool = True  # the held pairs keep their first-pass evidence (no self-confirmation)
    refit_lock: float = 0.05  # prior of a held pair's specimen node (MR node) for any other MR (specimen) node
    pose_prior: float = 6.0  # log-likelihood a pose other than the suture frame must gain (a mirror: twice)
    margin_mm: float = 10.0  # padding of the box whose volume gives the uniform density u
    sigma_floor_mm: float = 3.0  # smallest per-axis sd of a registered position (mm)
    runner_candidates: bool = False  # MR nodes whose runner-up level is the piece's are candidates (measured: worse)
    adjacent_candidates: bool = False  # so are those of adjacent levels (measured: more outliers, worse)
    level_adjacent: float = 0.3  # CPD prior of a linked specimen node for an MR node of an adjacent level
    level_mismatch: float = 0.05  # CPD prior of a linked specimen node for an MR node outside its container's levels


@dataclass
class SpecimenEvidence:
    """The registrations of a case's pieces and the specimen term of every (MR node, unit) pair.

    ``weights`` (n, m): ``w_spec``; ``linked`` (m,): the unit has a link to a registered piece;
    ``registrations``: one per piece; ``table``: specimen_registration.csv rows; ``share``, ``zdist``,
    ``piece_nodes``, ``pose_gap``, ``sigma``, ``size_misfit``, ``warp``: calibration features (:meth:`features`).
    """

    weights: FloatArray
    linked: NDArray[np.bool_]
    registrations: list[PieceRegistration]
    table: pd.DataFrame
    summary: list[dict[str, Any]] = field(default_factory=list)
    share: FloatArray = field(default_factory=lambda: np.zeros((0, 0)))  # (n, m) linked node's share of MR node i
    zdist: FloatArray = field(default_factory=lambda: np.zeros((0, 0)))  # (n, m) its distance to i / sigma
    piece_nodes: FloatArray = field(default_factory=lambda: np.zeros(0))  # (m,) specimen nodes of the unit's piece
    pose_gap: FloatArray = field(default_factory=lambda: np.zeros(0))  # (m,) PieceRegistration.pose_gap
    sigma: FloatArray = field(default_factory=lambda: np.zeros(0))  # (m,) the piece's residual sd, mm
    size_misfit: FloatArray = field(default_factory=lambda: np.zeros((0, 0)))  # (n, m) |log diameter ratio - mu|
    warp: FloatArray = field(default_factory=lambda: np.zeros(0))  # (m,) non-rigid move of the linked node / sigma
    links: dict[int, tuple[str, int, str | None]] = field(default_factory=dict)  # unit -> (image, label, certainty)
    at: FloatArray = field(default_factory=lambda: np.zeros((0, 3)))  # (m, 3) linked node registered, RAS mm (nan)

    def features(self, i: int, j: int) -> tuple[float, ...]:
        """Calibration features (:data:`FEATURES`) of the pair (MR row i, unit j): the share of MR node i's
        registration responsibility held by the unit's linked specimen node, their distance in units of the piece's
        residual sd, log(number of specimen nodes of the piece), the piece's pose log-likelihood gap, its
        residual sd (mm), how far the linked node's equivalent diameter is from the MR node's (absolute log ratio
        beyond the expected fixation shrinkage; 0 where a size is missing) and how far the non-rigid warp moved
        the linked node (in units of the residual sd)."""
        return (float(self.share[i, j]), float(self.zdist[i, j]), float(np.log(max(self.piece_nodes[j], 1.0))),
                float(self.pose_gap[j]), float(self.sigma[j]), float(self.size_misfit[i, j]), float(self.warp[j]))

    def nearest_mr(self, j: int, label_map: LabelMap, mr: MRNodes) -> tuple[float, int]:
        """Distance (mm) from unit j's linked specimen node, registered, to the nearest voxel of an MR node within
        :data:`NEAR_MR_MM` of it, and that node's row ((inf, -1) if none, or the unit is unlinked); computed on
        demand: only the units left unmatched need it."""
        if j >= len(self.at) or not np.all(np.isfinite(self.at[j])):
            return float("inf"), -1
        point = self.at[j]
        dist = np.sqrt(np.sum((mr.pos - point) ** 2, axis=1))
        near = np.flatnonzero(dist <= mr.long_mm / 2 + NEAR_MR_MM)
        return min(((label_distance(label_map, int(mr.node[i]), point, mr.pos[i],
                                    float(mr.long_mm[i]) / 2 + NEAR_MR_MM), int(i)) for i in near),
                   default=(float("inf"), -1))

    def to_json(self) -> dict[str, Any]:
        """specimen_registration.json: per image the transform (parameters and how to map a point), counts and
        the median residual."""
        return {"images": self.summary, "mapping": MAPPING}


def _candidates(case: Case, mr: MRNodes, piece: SpecimenPiece, params: SpecimenParams
                ) -> tuple[NDArray[np.int64], NDArray[np.bool_]]:
    """MR rows that can lie in ``piece`` (its side, IA/VI/VII either side; level or runner-up in its containers)
    and which of them are core (level in its containers)."""
    levels: set[str] = set()
    for c in case.containers:
        if c.container in piece.containers:
            levels |= {lv.value for lv in c.level.imaging_levels()}
    rows, core = [], []
    for i in range(len(mr.node)):
        if mr.reason[i] == "no-counterpart":
            continue
        side_ok = mr.side[i] == piece.side.value or mr.level[i] in MIDLINE_LEVELS
        near = params.adjacent_candidates and bool(adjacent_levels().get(mr.level[i], frozenset()) & levels)
        runner = params.runner_candidates and mr.runner_up[i] in levels
        if side_ok and (mr.level[i] in levels or runner or near):
            rows.append(i)
            core.append(mr.level[i] in levels and mr.side[i] == piece.side.value)
    return np.array(rows, dtype=np.int64), np.array(core, dtype=bool)


def _level_prior(case: Case, mr: MRNodes, units: PathUnits, links: dict[int, tuple[str, int, str | None]],
                 image: str, labels: NDArray[np.int64], rows: NDArray[np.int64], params: SpecimenParams
                 ) -> FloatArray:
    """Correspondence prior (M, N) for the CPD of one piece: a specimen node linked to a pathology node of
    container C corresponds to MR nodes of C's levels (level or runner-up); others get ``level_mismatch``."""
    prior = np.ones((len(labels), len(rows)))
    index = {int(v): k for k, v in enumerate(labels)}
    for j, (img, label, _) in links.items():
        if img != image or int(label) not in index:
            continue
        allowed = {lv.value for lv in units.level[j].imaging_levels()}
        ok = np.array([mr.level[i] in allowed or mr.runner_up[i] in allowed for i in rows], dtype=bool)
        adj = np.array([bool(adjacent_levels().get(mr.level[i], frozenset()) & allowed) for i in rows], dtype=bool)
        prior[index[int(label)]] = np.where(ok, 1.0, np.where(adj, params.level_adjacent, params.level_mismatch))
    return prior


def _anchors(mr: MRNodes, units: PathUnits, links: dict[int, tuple[str, int, str | None]], image: str,
             nodes: pd.DataFrame, rows: NDArray[np.int64], core: NDArray[np.bool_]
             ) -> tuple[FloatArray, FloatArray, FloatArray] | None:
    """Per container with links into this piece: the centroid of its linked specimen nodes and of the core MR
    nodes of its levels (weights: the smaller count). None without any."""
    xyz = {int(k): p for k, p in zip(nodes["node"], nodes[["x", "y", "z"]].to_numpy(float), strict=True)}
    by_cont: dict[str, list[FloatArray]] = {}
    for j, (img, label, _) in links.items():
        if img == image and int(label) in xyz:
            by_cont.setdefault(units.container[j], []).append(xyz[int(label)])
    a_y, a_x, wt = [], [], []
    for c, pts in by_cont.items():
        j = units.container.index(c)
        allowed = {lv.value for lv in units.level[j].imaging_levels()}
        sel = [i for k, i in enumerate(rows) if core[k] and mr.level[i] in allowed]
        if sel:
            a_y.append(np.mean(pts, axis=0))
            a_x.append(mr.pos[sel].mean(axis=0))
            wt.append(min(len(pts), len(sel)))
    if not a_y:
        return None
    return np.array(a_y), np.array(a_x), np.array(wt, float)


def _diameter(volume: FloatArray) -> FloatArray:
    return np.asarray((6.0 * np.asarray(volume, float) / np.pi) ** (1.0 / 3.0), dtype=np.float64)


def _link_map(case: Case, units: PathUnits) -> dict[int, tuple[str, int, str | None]]:
    """Unit index -> (image, specimen label, certainty) of its head's link (else of any member's)."""
    by_node = {lk.path_node: lk for lk in case.specimen.links} if case.specimen is not None else {}
    out = {}
    for j, members in enumerate(units.members):
        lk = by_node.get(units.unit[j]) or next((by_node[m] for m in members if m in by_node), None)
        if lk is not None:
            out[j] = (lk.image, lk.specimen_node, lk.certainty)
    return out


def _reliability(size: float, long_s: float, long_all: FloatArray, mu: float, prior: float, sd: float) -> float:
    """P(link right | pathology size): the linked node's long axis against the piece's other nodes'."""
    if not np.isfinite(size) or not np.isfinite(long_s) or len(long_all) == 0:
        return prior
    z = lambda d: (np.log(size) - np.log(np.maximum(d, 0.1)) - mu) / sd  # noqa: E731
    g = float(np.exp(-0.5 * z(long_s) ** 2))
    f = float(np.mean(np.exp(-0.5 * z(long_all) ** 2)))
    return prior * g / max(prior * g + (1.0 - prior) * f, 1e-300)


def specimen_evidence(case: Case, mr: MRNodes, units: PathUnits, params: SpecimenParams | None = None,
                      fixed: dict[str, dict[int, int]] | None = None, previous: SpecimenEvidence | None = None,
                      match_params: MatchParams | None = None) -> SpecimenEvidence | None:
    """Register every piece of ``case.specimen`` and compute the specimen term (None without a specimen block).

    A second pass (``fixed``: per image, specimen label -> MR row of the confident pairs of a first joint
    assignment; ``previous``: that pass's evidence) keeps each piece's pose, starts from those pairs and holds
    them in the correspondence prior (:func:`_fixed_prior`). ``match_params``: the engine's, whose merge
    candidates (a second slot) may share a specimen node's evidence (:func:`merge_shares`)."""
    if case.specimen is None:
        return None
    params = params or SpecimenParams()
    n, m = len(mr.node), len(units.unit)
    d_mr = _diameter(mr.volume_mm3) if mr.volume_mm3 is not None else mr.long_mm * 0.75
    mp = match_params or MatchParams()
    mergeable = (merge_prior(mr, mp) >= mp.merge_min) & (params.merge_share and mp.merge)
    regs, measured, cands, warps = {}, {}, {}, {}
    links = _link_map(case, units)
    before = {r.image: r for r in previous.registrations} if previous is not None else {}
    for piece in case.specimen.pieces:
        nodes = specimen_nodes(piece.label_map)
        rows, core = _candidates(case, mr, piece, params)
        reg = _register(case, mr, units, links, piece, nodes, rows, core, d_mr, params, before.get(piece.id),
                        (fixed or {}).get(piece.id, {}))
        regs[piece.id], measured[piece.id], cands[piece.id], warps[piece.id] = reg, nodes, rows, reg.warp_mm()
    mu = _size_offset(links, units, measured)
    weights, linked = np.zeros((n, m)), np.zeros(m, dtype=bool)
    share, zdist, misfit = np.ones((n, m)), np.zeros((n, m)), np.zeros((n, m))
    piece_nodes, gap, sig, warp = np.ones(m), np.zeros(m), np.zeros(m), np.zeros(m)
    at = np.full((m, 3), np.nan)
    for j, (image, label, cert) in links.items():
        reg, nodes, rows = regs[image], measured[image], cands[image]
        s = int(np.flatnonzero(nodes["node"].to_numpy() == label)[0])
        sigma = reg.residual_sd_mm(mr.pos[rows], floor=params.sigma_floor_mm)
        box = np.ptp(mr.pos[rows], axis=0) + 2 * params.margin_mm if len(rows) else np.full(3, 60.0)
        u = 1.0 / max(float(np.prod(box)), 1e3)
        d2 = np.sum((mr.pos - reg.registered[s]) ** 2, axis=1)
        dens = np.exp(-d2 / (2 * sigma**2)) / (2 * np.pi * sigma**2) ** 1.5
        if len(rows):
            C = reg.correspondence(mr.pos[rows], sigma, params.cpd_outlier, None)
            share[rows, j] = merge_shares(C, nodes["volume_mm3"].to_numpy(float), d_mr[rows],
                                          mergeable[rows], params.merge_size_sd)[s]
            if params.exclusive:
                dens[rows] *= np.maximum(share[rows, j], params.exclusive_floor)
        p_right = 1.0 - (params.probable_error if cert == "probable" else params.link_error)
        long_all = nodes["long_axis_mm"].to_numpy(float)
        rho = _reliability(float(units.size_mm[j]), float(long_all[s]), long_all, mu, p_right, params.size_sd)
        weights[:, j] = np.log(rho * dens / u + (1.0 - rho))
        linked[j] = True
        zdist[:, j] = np.sqrt(d2) / sigma
        piece_nodes[j], gap[j], sig[j] = len(reg.specimen_nodes), reg.pose_gap(), sigma
        dev = size_deviation(_diameter(nodes["volume_mm3"].to_numpy(float)[s]), d_mr)
        misfit[:, j] = np.where(np.isfinite(dev), np.abs(dev), 0.0)
        warp[j] = float(warps[image][s]) / sigma
        at[j] = reg.registered[s]
    table, summary = _outputs(regs, measured, cands, mr)
    return SpecimenEvidence(weights, linked, list(regs.values()), table, summary, share, zdist, piece_nodes, gap, sig,
                            misfit, warp, links, at)


def label_distance(label_map: LabelMap, label: int, point: FloatArray, centre: FloatArray, radius_mm: float) -> float:
    """Distance (mm) from ``point`` (RAS) to the voxels of ``label`` within ``radius_mm`` of ``centre`` (the
    label's centroid): 0 within half a voxel of one, inf when none is that close.

    Examples
    --------
    >>> data = np.zeros((20, 20, 20), np.uint8); data[5:10, 5:10, 5:10] = 3  # voxels 5-9, 1 mm
    >>> lm = LabelMap(data, np.eye(4)); centre = np.array([7.0, 7, 7])
    >>> [label_distance(lm, 3, np.array(p), centre, 10.0) for p in ([7.0, 7, 7], [13.0, 7, 7], [7.0, 7, 19])]
    [0.0, 3.5, 9.5]
    >>> label_distance(lm, 4, centre, centre, 10.0)
    inf
    """
    c = label_map.to_ijk(np.reshape(centre, (1, 3)))[0]
    r = radius_mm / float(np.min(label_map.spacing))
    shape = np.array(label_map.data.shape[:3])
    lo = np.clip(np.floor(c - r), 0, shape).astype(int)
    hi = np.clip(np.ceil(c + r) + 1, 0, shape).astype(int)
    ijk = np.argwhere(label_map.data[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] == label) + lo
    if not len(ijk):
        return float("inf")
    d = float(np.sqrt(np.min(np.sum((label_map.to_ras(ijk) - point) ** 2, axis=1))))
    return max(d - 0.5 * float(np.max(label_map.spacing)), 0.0)


def merge_shares(C: FloatArray, vol_spec: FloatArray, d_mr: FloatArray, mergeable: NDArray[np.bool_],
                 size_sd: float = 0.15, size_mu: float = SIZE_MU) -> FloatArray:
    """Share (M, N) of each MR candidate's registration responsibility ``C`` (M, N) held by each specimen node.

    A ``mergeable`` MR label (two touching nodes segmented as one may be) whose equivalent diameter ``d_mr`` (mm)
    fits the combined volume of its two largest holders better than the largest alone (log diameter ratio
    ~ N(``size_mu``, ``size_sd``), within 2 sd) is explained by both: each holds their combined share.
    ``vol_spec`` (M,): specimen node volumes, mm^3.

    Examples
    --------
    >>> C = np.array([[0.7], [0.2], [0.1]]); v = np.array([65.0, 65.0, 30.0])  # 5-mm nodes, a 6.6-mm label
    >>> merge_shares(C, v, np.array([6.6]), np.array([True])).round(2).tolist()
    [[0.9], [0.9], [0.1]]
    >>> merge_shares(C, v, np.array([5.2]), np.array([True])).round(2).tolist()  # one node's size: no merge
    [[0.7], [0.2], [0.1]]
    """
    share = C / np.maximum(C.sum(axis=0), 1e-12)
    if len(C) < 2:
        return share
    for n in np.flatnonzero(mergeable & np.isfinite(d_mr)):
        a, b = np.argsort(-C[:, n], kind="stable")[:2]
        if C[b, n] <= 0.0:
            continue
        z1 = abs(float(size_deviation(_diameter(vol_spec[a]), d_mr[n], size_mu))) / size_sd
        z2 = abs(float(size_deviation(_diameter(vol_spec[a] + vol_spec[b]), d_mr[n], size_mu))) / size_sd
        if z2 < min(z1, 2.0):
            share[[a, b], n] = share[a, n] + share[b, n]
    return share


def _register(case: Case, mr: MRNodes, units: PathUnits, links: dict[int, tuple[str, int, str | None]],
              piece: SpecimenPiece, nodes: pd.DataFrame, rows: NDArray[np.int64], core: NDArray[np.bool_],
              d_mr: FloatArray, params: SpecimenParams, prev: PieceRegistration | None, pairs: dict[int, int]
              ) -> PieceRegistration:
    """Register one piece (a second pass where ``prev`` and enough held ``pairs``: label -> MR row; with ``prev``
    and too few, the first pass's registration as it is: the same inputs would give it again)."""
    if prev is not None and len(pairs) < params.refit_min_pairs:
        return prev
    prior = _level_prior(case, mr, units, links, piece.id, nodes["node"].to_numpy(), rows, params)
    anchors = _anchors(mr, units, links, piece.id, nodes, rows, core)
    poses = None
    if prev is not None:
        prior, anchors = _fixed_prior(prior, nodes, rows, mr, pairs, params.refit_lock)
        poses = [prev.pose_key()]
    reg = register_piece(piece.id, nodes[["x", "y", "z"]].to_numpy(float), mr.pos[rows], piece.side.value,
                         dict(piece.sutures), nodes["node"].to_numpy(), mr.node[rows],
                         _diameter(nodes["volume_mm3"].to_numpy(float)), d_mr[rows], params.cpd_outlier,
                         params.cpd_beta_mm, params.cpd_lambda, pose_prior=params.pose_prior, core=core,
                         prior=prior, ridge=params.cpd_ridge, small=params.cpd_small,
                         start_sigma_mm=params.cpd_start_sigma_mm, anchors=anchors,
                         spec_outlier=params.cpd_spec_outlier, poses=poses)
    if poses is not None and prev is not None:  # the pose was chosen once: keep its evidence (pose gap)
        reg = dataclasses.replace(reg, pose=prev.pose, pose_log_lik=prev.pose_log_lik)
    return reg


def confident_pairs(table: pd.DataFrame, spec: SpecimenEvidence, mr_rows: dict[int, int],
                    unit_of: dict[str, int], min_confidence: float) -> dict[str, dict[int, int]]:
    """Per image, specimen label -> MR row of the pairs of ``table`` (matches) decided through the specimen at
    ``min_confidence`` or more (constrained pairs included): the held pairs of a second registration pass."""
    out: dict[str, dict[int, int]] = {}
    sel = (table["kind"] == "pair") & (table["via"] == "specimen") & (table["confidence"] >= min_confidence)
    for mr_node, path_node in zip(table.loc[sel, "mr_node"], table.loc[sel, "path_node"], strict=True):
        link = spec.links.get(unit_of[str(path_node)])
        if link is not None:
            out.setdefault(link[0], {})[int(link[1])] = mr_rows[int(mr_node)]
    return out


def keep_held(new: SpecimenEvidence, old: SpecimenEvidence, fixed: dict[str, dict[int, int]]) -> SpecimenEvidence:
    """The second pass's evidence ``new`` with the held units' columns (their link in ``fixed``) taken from the
    first pass ``old``: a registration that was made to fit a pair is no new evidence for it."""
    held = np.array([j for j, (image, label, _) in new.links.items() if int(label) in fixed.get(image, {})],
                    dtype=np.int64)
    if len(held) == 0:
        return new
    out = {}
    for name in ("weights", "share", "zdist"):
        a = getattr(new, name).copy()
        a[:, held] = getattr(old, name)[:, held]
        out[name] = a
    for name in ("piece_nodes", "pose_gap", "sigma", "warp"):
        a = getattr(new, name).copy()
        a[held] = getattr(old, name)[held]
        out[name] = a
    return dataclasses.replace(new, **out)


def _fixed_prior(prior: FloatArray, nodes: pd.DataFrame, rows: NDArray[np.int64], mr: MRNodes,
                 pairs: dict[int, int], lock: float
                 ) -> tuple[FloatArray, tuple[FloatArray, FloatArray, FloatArray]]:
    """The correspondence prior (M, N) with the confident pairs held (each pair's row and column times ``lock``
    elsewhere) and those pairs as anchors (specimen mm, patient mm, unit weights) for the start."""
    prior = prior.copy()
    index = {int(v): k for k, v in enumerate(nodes["node"].to_numpy())}
    col = {int(i): k for k, i in enumerate(rows)}
    xyz = nodes[["x", "y", "z"]].to_numpy(float)
    a_y, a_x = [], []
    for label, i in pairs.items():
        if int(label) in index and int(i) in col:
            s, c = index[int(label)], col[int(i)]
            keep = prior[s, c]
            prior[s, :] *= lock
            prior[:, c] *= lock
            prior[s, c] = max(keep, 1.0)
            a_y.append(xyz[s])
            a_x.append(mr.pos[int(i)])
    return prior, (np.array(a_y).reshape(-1, 3), np.array(a_x).reshape(-1, 3), np.ones(len(a_y)))


def _size_offset(links: dict[int, tuple[str, int, str | None]], units: PathUnits,
                 measured: dict[str, pd.DataFrame]) -> float:
    """Median log(pathology size / specimen long axis) over the links (fixation shrinkage; 0 without sizes)."""
    long = {(image, int(k)): float(v) for image, nodes in measured.items()
            for k, v in zip(nodes["node"], nodes["long_axis_mm"], strict=True)}
    vals = [np.log(units.size_mm[j]) - np.log(max(long[(image, label)], 0.1))
            for j, (image, label, _) in links.items() if np.isfinite(units.size_mm[j]) and (image, label) in long]
    return float(np.median(vals)) if vals else 0.0


def _outputs(regs: dict[str, PieceRegistration], measured: dict[str, pd.DataFrame],
             cands: dict[str, NDArray[np.int64]], mr: MRNodes) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """specimen_registration.csv rows and the per-image JSON summaries."""
    rows, summary = [], []
    for image, reg in regs.items():
        pos = mr.pos[cands[image]]
        pair = {sm: (n_, p) for sm, n_, p in reg.pairs()}
        resid = []
        for k, label in enumerate(measured[image]["node"].to_numpy()):
            mr_node, conf, res = None, np.nan, np.nan
            if k in pair:
                n_, conf = pair[k]
                mr_node = int(reg.mr_nodes[n_])
                res = float(np.linalg.norm(reg.registered[k] - pos[n_]))
                resid.append(res)
            x, y, z = (round(float(v), 3) for v in reg.registered[k])
            rows.append({"image": image, "specimen_node": int(label), "mr_node": mr_node, "confidence": conf,
                         "x": x, "y": y, "z": z, "residual_mm": res})
        summary.append(_summary(reg, len(measured[image]), resid))
    table = pd.DataFrame(rows, columns=REGISTRATION_COLUMNS)
    table["mr_node"] = table["mr_node"].astype("Int64")
    return table, summary


def _summary(reg: PieceRegistration, n_spec: int, resid: list[float]) -> dict[str, Any]:
    def arr(a: Any) -> Any:
        return np.round(np.asarray(a, float), 6).tolist()

    return {"image": reg.image, "pose": reg.pose, "pose_log_lik": reg.pose_log_lik, "specimen_nodes": n_spec,
            "mr_candidates": len(reg.mr_nodes), "paired_nodes": len(resid),
            "median_residual_mm": round(float(np.median(resid)), 3) if resid else None,
            "transform": {"rotation": arr(reg.rotation), "spec_centre": arr(reg.spec_centre),
                          "spec_scale": arr(reg.spec_scale), "affine": arr(reg.affine), "shift": arr(reg.shift),
                          "bend": arr(reg.bend),
                          "beta": reg.beta, "ctrl": arr(reg.ctrl), "coef": arr(reg.coef),
                          "pat_centre": arr(reg.pat_centre), "pat_scale": round(reg.pat_scale, 6)}}


def specimen_confidence(x: FloatArray, coef: tuple[float, ...] | None = None) -> FloatArray:
    """Calibrated confidence of pairs decided through the specimen from their features ``x`` (K, 2 + F): margin,
    specimen term and :data:`FEATURES` (``coef``: F + 2 weights and the intercept).

    Examples
    --------
    >>> x = np.array([[0.0, 0, 0], [50.0, 0, 0]])
    >>> specimen_confidence(x, (1.0, 0.0, 0.0, 0.0)).round(3).tolist()
    [0.5, 1.0]
    """
    c = np.asarray(SPECIMEN_CALIBRATION if coef is None else coef, dtype=np.float64)
    return np.asarray(1.0 / (1.0 + np.exp(-(np.asarray(x, dtype=np.float64) @ c[:-1] + c[-1]))), dtype=np.float64)


def annotate_via(table: pd.DataFrame, spec: SpecimenEvidence | None, mr_rows: dict[int, int],
                 unit_of: dict[str, int], nearest: dict[int, tuple[float, int]] | None = None) -> pd.DataFrame:
    """Add ``via`` (``specimen`` / ``containers`` for pairs, empty otherwise) and ``cost_specimen`` to matches;
    a linked pathology node left unmatched whose specimen twin lies within :data:`NEAR_MR_MM` of an MR node's
    voxels (``nearest[unit]``: distance in mm and the MR row, :meth:`SpecimenEvidence.nearest_mr`) gets at most
    :data:`NEAR_MR_RIGHT` confidence (it may be a second node inside that label); a pair proposed as a label's
    second node (:func:`second_nodes`, ``reason`` ``second-node``) is ``via`` ``specimen`` at
    :data:`SECOND_NODE_RIGHT`;
    pairs via the specimen move their specimen term out of ``cost_level`` and take the specimen calibration
    (their confidence; the decision follows in :func:`neckmatch.correlation.matching.decide`, at
    :data:`SPECIMEN_AUTO_THRESHOLD`)."""
    out = table.copy()
    pair = (out["kind"] == "pair").to_numpy()
    out["via"] = np.where(pair, "containers", "")
    out["cost_specimen"] = np.where(pair, 0.0, np.nan)
    if spec is None:
        return out
    via = np.zeros(len(out), dtype=bool)
    feats = np.zeros((len(out), len(FEATURES)))
    for k in np.flatnonzero(pair):
        i, j = mr_rows[int(out["mr_node"].iat[k])], unit_of[str(out["path_node"].iat[k])]
        term = float(spec.weights[i, j])
        out.iat[k, out.columns.get_loc("cost_specimen")] = -term
        if pd.notna(out["cost_level"].iat[k]):
            out.iat[k, out.columns.get_loc("cost_level")] = out["cost_level"].iat[k] + term
        via[k] = bool(spec.linked[j]) and term > 0.0
        feats[k] = spec.features(i, j)
    second = (out["reason"] == "second-node").to_numpy()
    out.loc[via | second, "via"] = "specimen"
    fixed = out["constrained"].to_numpy(dtype=bool)
    recal = via & ~fixed & ~second
    if recal.any():
        x = np.column_stack([out.loc[recal, "margin"].fillna(MARGIN_CAP).to_numpy(float),
                             -out.loc[recal, "cost_specimen"].to_numpy(float), feats[recal]])
        out.loc[recal, "confidence"] = specimen_confidence(x)
    out.loc[second, "confidence"] = SECOND_NODE_RIGHT
    # a linked pathology node left unmatched although its specimen twin lies at an MR node: NEAR_MR_RIGHT
    for k in np.flatnonzero((out["kind"] == "path-unmatched").to_numpy() & ~fixed):
        unit = unit_of.get(str(out["path_node"].iat[k]))
        if unit is not None and (nearest or {}).get(unit, (np.inf, -1))[0] <= NEAR_MR_MM:
            out.iat[k, out.columns.get_loc("confidence")] = min(float(out["confidence"].iat[k]), NEAR_MR_RIGHT)
    return out


def second_nodes(nearest: dict[int, tuple[float, int]], held: set[int],
                 second_slot: Callable[[int, int], bool]) -> dict[int, int]:
    """The linked units left unmatched to propose as an MR label's second node: unit -> MR row, where the unit's
    registered specimen twin lies within :data:`SECOND_NODE_MM` of the label's voxels (``nearest[unit]``: mm, MR
    row), the label holds a partner (``held``: MR rows) and may hold two nodes (``second_slot(row, unit)``: a merge
    candidate that a person has not forbidden for the unit).

    Examples
    --------
    >>> second_nodes({1: (0.4, 0), 2: (0.2, 1), 3: (2.5, 0), 4: (1.0, 2)}, {0, 2}, lambda i, j: i != 2)
    {1: 0}
    """
    return {j: i for j, (gap, i) in nearest.items() if gap <= SECOND_NODE_MM and i in held and second_slot(i, j)}
