"""Register an ex vivo specimen piece to the in vivo MR nodes: suture frame, then coherent point drift (CPD).

The specimen was cut free, flattened on a board (medio-lateral depth 40-70 %), stretched, bent and shrunk a
little, and scanned in a frame unrelated to the patient (shared/spec/specimen-imaging.md). The registration maps
the specimen node centroids ``Y`` (M, 3) onto the MR node centroids ``X`` (N, 3) of the piece's side and levels:

1. **Frames** (:func:`suture_rotation`): cranial - caudal gives the patient's +z, anterior (against posterior, else
   the cranio-caudal mid-point) +y, and x = y cross z; medial / lateral sutures, where given, detect a mirrored
   image. The **board frame** (:func:`board_rotation`) turns it about z until x is the node cloud's thinnest
   direction (the specimen lies flat on a board). Alternative poses (each frame turned 180 degrees about each axis,
   and mirrored) are tried too and chosen by likelihood with a prior for the unturned frames (a piece scanned upside
   down, sutures read from the wrong end).
2. **Normalisation**: both sets centred; ``X`` scaled by its RMS radius, ``Y`` per frame axis to ``X``'s spread
   (CPD with an outlier weight diverges on raw millimetres).
3. **Affine CPD** (Myronenko & Song 2010) with a **bend** (a term quadratic in the cranio-caudal coordinate) and
   an outlier weight ``w`` (MR nodes outside the piece), then **non-rigid CPD** (Gaussian kernel width ``beta``,
   smoothness ``lam``) for the rest. Correspondences are **one-to-one** (the E-step normalised by rows and columns
   with slack on both sides, as in robust point matching): specimen nodes without an MR partner (ex vivo MRI sees
   more nodes) and MR nodes without a specimen node go to the slack. The E-step kernel is multiplied by a node-size
   compatibility (equivalent diameters: a log-normal core and a wider tail).

Only centroids and sizes are used: never the MR reading, the image signal or the pathology status.
Coordinates: specimen points in the ex vivo scanner's RAS mm, patient points in patient RAS mm.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from neckmatch.model import LabelMap

__all__ = ["specimen_nodes", "suture_rotation", "cpd_affine", "cpd_nonrigid", "PieceRegistration", "register_piece",
           "POSES"]

FloatArray = NDArray[np.float64]
_D = 3


def specimen_nodes(label_map: LabelMap) -> pd.DataFrame:
    """Centroid, volume and long axis of every specimen node (a fast, moment-based measure for fine ex vivo grids).

    Returns
    -------
    pandas.DataFrame
        Sorted by ``node``: ``node, x, y, z`` (centroid, scanner RAS mm), ``volume_mm3``, ``long_axis_mm``
        (``2 sqrt(5 l1)`` with ``l1`` the largest eigenvalue of the voxel covariance: exact for a solid ellipsoid).

    Examples
    --------
    >>> data = np.zeros((9, 5, 5), np.uint8); data[1:8, 2, 2] = 3
    >>> row = specimen_nodes(LabelMap(data, np.eye(4))).iloc[0]
    >>> int(row.node), float(row.x), float(row.volume_mm3), round(float(row.long_axis_mm), 2)
    (3, 4.0, 7.0, 8.94)
    """
    data = label_map.data
    order: Literal["C", "F"] = "F" if data.flags.f_contiguous and not data.flags.c_contiguous else "C"
    flat = data.ravel(order=order)  # a view for a contiguous map: one pass over it
    idx = np.flatnonzero(flat)
    lab = flat[idx].astype(np.int64)
    ijk = np.column_stack(np.unravel_index(idx, data.shape, order=order)).astype(np.float64)
    pts = ijk @ label_map.affine[:3, :3].T + label_map.affine[:3, 3]
    labels, inv, count = np.unique(lab, return_inverse=True, return_counts=True)
    cen = np.column_stack([np.bincount(inv, pts[:, a]) for a in range(3)]) / count[:, None]
    d = pts - cen[inv]
    cov = np.stack([np.column_stack([np.bincount(inv, d[:, a] * d[:, b], len(labels)) for b in range(3)])
                    for a in range(3)], axis=1) / count[:, None, None]
    lam = np.linalg.eigvalsh(cov)[:, -1] if len(labels) else np.zeros(0)
    return pd.DataFrame({"node": labels, "x": cen[:, 0], "y": cen[:, 1], "z": cen[:, 2],
                         "volume_mm3": count * label_map.voxel_volume,
                         "long_axis_mm": 2.0 * np.sqrt(5.0 * np.maximum(lam, 0.0))})


def _unit(v: FloatArray) -> FloatArray:
    n = float(np.linalg.norm(v))
    return v / n if n > 1e-9 else v


def suture_rotation(sutures: dict[str, FloatArray], side: str) -> FloatArray:
    """Rotation (3, 3) taking specimen-frame directions to patient RAS directions from the sutures.

    Rows are the specimen-frame directions of patient +x, +y (anterior), +z (cranial). With ``medial`` and
    ``lateral`` sutures a mirrored image (lateral on the wrong side for ``side``) gets its x row negated.

    Examples
    --------
    >>> s = {"cranial": np.array([0., 0, 50]), "caudal": np.array([0., 0, -50]), "anterior": np.array([0., 30, 0])}
    >>> suture_rotation(s, "R").round(3).tolist()
    [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    """
    uz = _unit(np.asarray(sutures["cranial"], float) - np.asarray(sutures["caudal"], float))
    ref = sutures.get("posterior")
    if ref is None:
        ref = 0.5 * (np.asarray(sutures["cranial"], float) + np.asarray(sutures["caudal"], float))
    d = np.asarray(sutures["anterior"], float) - np.asarray(ref, float)
    uy = _unit(d - float(d @ uz) * uz)
    rot = np.vstack([np.cross(uy, uz), uy, uz])
    if "medial" in sutures and "lateral" in sutures:
        lat = rot @ (np.asarray(sutures["lateral"], float) - np.asarray(sutures["medial"], float))
        if lat[0] * (1.0 if side == "R" else -1.0) < 0:
            rot[0] *= -1.0
    return rot


def board_rotation(Y_spec: FloatArray, rot: FloatArray) -> FloatArray:
    """The suture frame ``rot`` turned so that its x row (medio-lateral) is the specimen's thinnest direction."""
    c = Y_spec - Y_spec.mean(axis=0)
    _, vecs = np.linalg.eigh(c.T @ c)
    nx = vecs[:, 0] * (1.0 if vecs[:, 0] @ rot[0] >= 0 else -1.0)
    uz = _unit(rot[2] - float(rot[2] @ nx) * nx)
    return np.vstack([nx, np.cross(uz, nx), uz])


#: Poses tried on top of the suture frame (name -> diagonal sign matrix); "sutures" is the frame as given.
POSES: dict[str, tuple[float, float, float]] = {
    "sutures": (1, 1, 1), "turned-x": (1, -1, -1), "turned-y": (-1, 1, -1), "turned-z": (-1, -1, 1),
    "mirrored": (-1, 1, 1), "mirrored-y": (1, -1, 1), "mirrored-z": (1, 1, -1), "inverted": (-1, -1, -1),
}


def _e_step(X: FloatArray, TY: FloatArray, sigma2: float, w: float, feat: FloatArray | None,
            wy: float | None = None) -> tuple[FloatArray, float]:
    """Posterior P (M, N) of component m for point n (outlier mass left out) and the log-likelihood of X.

    With ``wy`` (the share of specimen nodes without an MR partner) P is made one-to-one instead (each specimen
    node and each MR node carries at most unit mass, the rest in slack: :func:`_sinkhorn`, as in robust point
    matching); the log-likelihood stays CPD's."""
    M, N = len(TY), len(X)
    d2 = (TY * TY).sum(axis=1)[:, None] + (X * X).sum(axis=1)[None, :] - 2.0 * TY @ X.T
    K = np.exp(-np.maximum(d2, 0.0) / (2.0 * sigma2))
    if feat is not None:
        K *= feat
    norm = (2.0 * np.pi * sigma2) ** (_D / 2)
    col = K.sum(axis=0)
    c = norm * w / (1.0 - w) * M / N
    ll = float(np.sum(np.log((1.0 - w) / M * col / norm + w / N)))
    P = K / (col + c) if wy is None else _sinkhorn(K, c, norm * wy / (1.0 - wy) * N / M)
    return P, ll


def _sinkhorn(K: FloatArray, cx: float, cy: float, n_iter: int = 10) -> FloatArray:
    """One-to-one soft correspondences: ``K`` (M, N) with a slack column (specimen node unexplained, weight
    ``cy``) and a slack row (MR node unexplained, ``cx``), normalised alternately by columns and rows (rows
    last: no specimen node carries more than one MR node's mass; MR nodes approximately so).

    Examples
    --------
    >>> _sinkhorn(np.array([[1.0, 1.0]]), 1e-3, 1e-3).round(2).tolist()  # one specimen node, two MR nodes
    [[0.5, 0.5]]
    """
    M, N = K.shape
    A = np.zeros((M + 1, N + 1))
    A[:M, :N] = K
    A[M, :N] = cx
    A[:M, N] = cy
    for _ in range(n_iter):
        A[:, :N] /= np.maximum(A[:, :N].sum(axis=0, keepdims=True), 1e-300)
        A[:M] /= np.maximum(A[:M].sum(axis=1, keepdims=True), 1e-300)
    return A[:M, :N]


def _init_sigma2(X: FloatArray, Y: FloatArray) -> float:
    return float(np.sum((X[None, :, :] - Y[:, None, :]) ** 2) / (_D * len(X) * len(Y)))


def cpd_affine(X: FloatArray, Y: FloatArray, w: float = 0.2, feat: FloatArray | None = None, max_iter: int = 100,
               tol: float = 1e-6, min_sigma2: float = 1e-8, ridge: float = 0.0, quad: FloatArray | None = None,
               wy: float | None = None) -> tuple[FloatArray, FloatArray, float, float]:
    """Affine CPD of ``Y`` (M, 3) onto ``X`` (N, 3) (normalised coordinates): ``B`` (3, 3), ``t`` (3,), sigma^2,
    log-likelihood. ``feat`` (M, N) multiplies the E-step kernel (feature compatibility); ``ridge`` pulls ``B``
    towards the identity (the start: suture frame and expected flattening) with the weight of that many
    unit-distance points. ``quad`` (M, k): extra design columns (e.g. the squared long-axis coordinate, a bend):
    the model is then ``T(y) = B [y, quad] + t`` with ``B`` (3, 3 + k), its extra columns pulled towards 0.
    ``wy``: one-to-one correspondences with that share of specimen-only nodes (:func:`_e_step`).

    Examples
    --------
    >>> rng = np.random.default_rng(0); Y = rng.normal(size=(30, 3)); A = np.diag([0.5, 1.3, 1.2])
    >>> B, t, s2, _ = cpd_affine(Y @ A.T + 0.1, Y)
    >>> bool(np.allclose(B, A, atol=1e-3) and np.allclose(t, 0.1, atol=1e-3))
    True
    """
    Phi = Y if quad is None else np.column_stack([Y, quad])
    k = Phi.shape[1]
    target = np.eye(_D, k)
    B, t = target.copy(), np.zeros(_D)
    sigma2 = _init_sigma2(X, Y)
    ll_prev = -np.inf
    ll = ll_prev
    for _ in range(max_iter):
        TY = Phi @ B.T + t
        P, ll = _e_step(X, TY, sigma2, w, feat, wy)
        Pt1, P1 = P.sum(axis=0), P.sum(axis=1)
        Np = float(P1.sum())
        if Np < 1e-9:
            break
        mu_x, mu_y = Pt1 @ X / Np, P1 @ Phi / Np
        Xh, Yh = X - mu_x, Phi - mu_y
        A = Xh.T @ P.T @ Yh
        YPY = (Yh * P1[:, None]).T @ Yh
        B = np.linalg.solve(YPY + (ridge + 1e-9) * np.eye(k), (A + ridge * target).T).T  # YPY symmetric
        t = mu_x - B @ mu_y
        TY = Phi @ B.T + t
        d2 = (TY * TY).sum(axis=1)[:, None] + (X * X).sum(axis=1)[None, :] - 2.0 * TY @ X.T
        sigma2 = max(float(np.sum(P * np.maximum(d2, 0.0))) / (Np * _D), min_sigma2)
        if abs(ll - ll_prev) < tol * max(abs(ll), 1.0):
            break
        ll_prev = ll
    return B, t, sigma2, ll


def _gauss_kernel(A: FloatArray, B: FloatArray, beta: float) -> FloatArray:
    return np.exp(-np.sum((A[:, None, :] - B[None, :, :]) ** 2, axis=2) / (2.0 * beta**2))


def cpd_nonrigid(X: FloatArray, Y: FloatArray, w: float = 0.2, beta: float = 1.0, lam: float = 2.0,
                 feat: FloatArray | None = None, sigma2: float | None = None, max_iter: int = 100,
                 tol: float = 1e-6, min_sigma2: float = 1e-8, wy: float | None = None
                 ) -> tuple[FloatArray, float, FloatArray, float]:
    """Non-rigid CPD of ``Y`` (M, 3) onto ``X`` (N, 3): ``T(Y) = Y + G W`` with ``G`` the Gaussian kernel (width
    ``beta``) on ``Y``. Returns ``W`` (M, 3), sigma^2, the posterior P (M, N) and the log-likelihood. ``wy``: as
    for :func:`cpd_affine`.

    Examples
    --------
    >>> rng = np.random.default_rng(1); Y = rng.normal(size=(40, 3))
    >>> X = Y + 0.2 * np.sin(Y[:, [2]])  # a smooth bend
    >>> W, s2, P, _ = cpd_nonrigid(X, Y, w=0.0, lam=0.5)
    >>> bool(np.abs(Y + _gauss_kernel(Y, Y, 1.0) @ W - X).max() < 0.05)
    True
    """
    M = len(Y)
    G = _gauss_kernel(Y, Y, beta)
    W = np.zeros((M, _D))
    sigma2 = _init_sigma2(X, Y) if sigma2 is None else sigma2
    ll_prev, ll, P = -np.inf, -np.inf, np.zeros((M, len(X)))
    for _ in range(max_iter):
        TY = Y + G @ W
        P, ll = _e_step(X, TY, sigma2, w, feat, wy)
        P1, Np = P.sum(axis=1), float(P.sum())
        if Np < 1e-9:
            break
        A = G * P1[:, None] + lam * sigma2 * np.eye(M)
        W = np.linalg.solve(A, P @ X - P1[:, None] * Y)
        TY = Y + G @ W
        xpx = float(np.sum(P.sum(axis=0) * np.sum(X**2, axis=1)))
        ypy = float(np.sum(P1 * np.sum(TY**2, axis=1)))
        sigma2 = max((xpx - 2.0 * float(np.sum((P @ X) * TY)) + ypy) / (Np * _D), min_sigma2)
        if abs(ll - ll_prev) < tol * max(abs(ll), 1.0):
            break
        ll_prev = ll
    return W, sigma2, P, ll


@dataclass(frozen=True)
class PieceRegistration:
    """The estimated transform of one specimen piece (ex vivo scanner RAS mm -> patient RAS mm) and its pairs.

    ``map_points`` applies it to any points: ``q = ((p - spec_centre) @ rotation.T) / spec_scale`` (suture frame and
    pose, per-axis normalisation), ``q = q @ affine.T + bend * q_z ** 2 + shift`` (affine CPD with a bend along the
    long axis, ``q_z`` the normalised cranio-caudal coordinate before the affine), ``q += G(q, ctrl) @ coef``
    (non-rigid CPD, Gaussian kernel of width ``beta`` on the control points ``ctrl``), ``x = q * pat_scale +
    pat_centre``.
    ``P`` (M, N): posterior that MR node n (``mr_nodes``) is specimen node m (``specimen_nodes``).
    """

    image: str
    pose: str
    rotation: FloatArray
    spec_centre: FloatArray
    spec_scale: FloatArray
    affine: FloatArray
    shift: FloatArray
    bend: FloatArray
    ctrl: FloatArray
    coef: FloatArray
    beta: float
    pat_centre: FloatArray
    pat_scale: float
    specimen_nodes: NDArray[np.int64]
    mr_nodes: NDArray[np.int64]
    P: FloatArray
    registered: FloatArray  # (M, 3) specimen centroids in patient RAS mm
    log_lik: float
    pose_log_lik: dict[str, float] = field(default_factory=dict)
    feat: FloatArray | None = None  # (M, N) size and link compatibility that weighed the E-step

    def correspondence(self, mr_pos: FloatArray, sigma_mm: float, w: float, wy: float | None) -> FloatArray:
        """One-to-one soft correspondences (M, N) of the registered specimen nodes and the MR candidates
        ``mr_pos`` (N, 3, patient mm) at noise sd ``sigma_mm`` (:func:`_e_step` with slack on both sides)."""
        if len(self.registered) == 0 or len(mr_pos) == 0:
            return np.zeros((len(self.registered), len(mr_pos)))
        P, _ = _e_step(np.asarray(mr_pos, float), self.registered, sigma_mm**2, w, self.feat, wy)
        return P

    def map_points(self, points: Any) -> FloatArray:
        """Specimen-frame points (K, 3), mm -> patient RAS mm (K, 3)."""
        p = np.atleast_2d(np.asarray(points, dtype=np.float64))
        q = ((p - self.spec_centre) @ self.rotation.T) / self.spec_scale
        q = q @ self.affine.T + self.bend * q[:, 2:3] ** 2 + self.shift
        if len(self.ctrl):
            q = q + _gauss_kernel(q, self.ctrl, self.beta) @ self.coef
        return q * self.pat_scale + self.pat_centre

    def warp_mm(self) -> FloatArray:
        """Length (M,) of the non-rigid part of each specimen node's mapping (mm; 0 without one): how far the
        smooth warp moved the node from where the affine with its bend put it."""
        if len(self.ctrl) == 0:
            return np.zeros(len(self.registered))
        disp = _gauss_kernel(self.ctrl, self.ctrl, self.beta) @ self.coef
        return np.asarray(np.linalg.norm(disp, axis=1) * self.pat_scale, dtype=np.float64)

    def pose_key(self) -> str:
        """The chosen pose's key in ``pose_log_lik`` (``pose`` or ``pose@board``: the frame it was found in)."""
        keys = [k for k in self.pose_log_lik if k.split("@")[0] == self.pose]
        return max(keys, key=lambda k: self.pose_log_lik[k]) if keys else self.pose

    def pose_gap(self, cap: float = 50.0) -> float:
        """Log-likelihood margin of the chosen pose over the best other pose (either frame; at most ``cap``):
        small where the piece's orientation is ambiguous."""
        chosen = self.pose_log_lik.get(self.pose)
        best = max((v for k, v in self.pose_log_lik.items() if k.split("@")[0] == self.pose), default=chosen)
        other = [v for k, v in self.pose_log_lik.items() if k.split("@")[0] != self.pose]
        if best is None or not other:
            return cap
        return float(min(best - max(other), cap))

    def pairs(self, min_p: float = 0.5) -> list[tuple[int, int, float]]:
        """Mutual-best (specimen row, MR column, posterior) pairs with posterior >= ``min_p``."""
        out: list[tuple[int, int, float]] = []
        if self.P.size == 0:
            return out
        best_n = self.P.argmax(axis=1)
        best_m = self.P.argmax(axis=0)
        for m, n in enumerate(best_n):
            if best_m[n] == m and self.P[m, n] >= min_p:
                out.append((m, int(n), float(self.P[m, n])))
        return out

    def residual_sd_mm(self, mr_pos: FloatArray, floor: float = 1.5, cap: float = 8.0, params: int = 15) -> float:
        """Per-axis sd (mm) of the pairs' residuals: median distance / 1.538 (3-D Gaussian), corrected for the
        ``params`` parameters the fit spent on them (affine 12 + bend 3: ``sqrt(3K / (3K - params))`` for K pairs;
        an in-sample residual is too small, and 0 for an exact fit), within [floor, cap]; ``cap`` with fewer
        than ``params / 3 + 1`` pairs."""
        pr = self.pairs()
        dof = 3 * len(pr) - params
        if len(pr) < 3 or dof < 3:
            return cap
        d = [float(np.linalg.norm(self.registered[m] - mr_pos[n])) for m, n, _ in pr]
        return float(np.clip(np.median(d) / 1.538 * np.sqrt(3 * len(pr) / dof), floor, cap))


#: Expected log ratio of a specimen node's equivalent diameter to its in vivo node's (fixation shrinks 0-10 %).
SIZE_MU = -0.05


def size_deviation(d_spec: Any, d_mr: Any, mu: float = SIZE_MU) -> FloatArray:
    """log(specimen / MR equivalent diameter) - ``mu``, elementwise over broadcastable diameters (mm, floored at
    0.1); NaN where a size is missing.

    Examples
    --------
    >>> round(float(size_deviation(5.0, 5.0)), 3), bool(np.isnan(size_deviation(np.nan, 5.0)))
    (0.05, True)
    """
    return np.asarray(np.log(np.maximum(d_spec, 0.1)) - np.log(np.maximum(d_mr, 0.1)) - mu, dtype=np.float64)


def _size_feature(d_spec: FloatArray | None, d_mr: FloatArray | None, sd: float, mu: float,
                  tail: float = 0.0, tail_sd: float = 0.4) -> FloatArray | None:
    """Size compatibility (M, N) of specimen and MR equivalent diameters (mm): the log ratio's density under
    ``(1 - tail) N(mu, sd) + tail N(mu, tail_sd)`` relative to its peak (1 for a perfect fit; the tail keeps
    a badly segmented node from vetoing its partner). NaN sizes give 1.

    Examples
    --------
    >>> _size_feature(np.array([5.0]), np.array([5.0, 10.0]), 0.1, 0.0, 0.2, 0.4).round(3).tolist()
    [[1.0, 0.013]]
    """
    if d_spec is None or d_mr is None:
        return None
    r = size_deviation(d_spec[:, None], d_mr[None, :], mu)
    dens = ((1.0 - tail) / sd * np.exp(-0.5 * np.minimum((r / sd) ** 2, 50.0))
            + tail / tail_sd * np.exp(-0.5 * np.minimum((r / tail_sd) ** 2, 50.0)))
    return np.where(np.isfinite(r), dens / ((1.0 - tail) / sd + tail / tail_sd), 1.0)


#: Expected specimen / patient extent per patient axis (x medio-lateral flattened to ~55 %, y and z stretched).
PRIOR_STRETCH = np.array([0.55, 1.2, 1.2])


def _start(Y_spec: FloatArray, rot: FloatArray, Xn: FloatArray, pat_scale: float, measured: bool
           ) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Specimen points in the rotated frame, centred and scaled per axis: by the ratio of the two sets' spreads
    (``measured``, within 0.5-2x the expected), else by the expected flattening and stretch."""
    q = Y_spec @ rot.T
    centre_rot = q.mean(axis=0)
    scale = PRIOR_STRETCH * pat_scale
    if measured:
        ratio = np.maximum(q.std(axis=0), 1e-6) / np.maximum(Xn.std(axis=0) * pat_scale, 1e-6)
        scale = np.clip(ratio, 0.5 * PRIOR_STRETCH, 2.0 * PRIOR_STRETCH) * pat_scale
    return (q - centre_rot) / scale, centre_rot @ rot, scale


def register_piece(image: str, Y_spec: FloatArray, X_mr: FloatArray, side: str, sutures: dict[str, FloatArray],
                   specimen_nodes: Any, mr_nodes: Any, d_spec: FloatArray | None = None,
                   d_mr: FloatArray | None = None, w: float = 0.2, beta_mm: float = 30.0, lam: float = 3.0,
                   size_sd: float = 0.15, size_mu: float = SIZE_MU, size_tail: float = 0.15, pose_prior: float = 6.0,
                   ridge: float = 0.08,
                   min_sigma_mm: float = 2.0, core: NDArray[np.bool_] | None = None,
                   prior: FloatArray | None = None, small: int = 10,
                   start_sigma_mm: float = 10.0,
                   anchors: tuple[FloatArray, FloatArray, FloatArray] | None = None, search_iter: int = 15,
                   bend: bool = True, board: bool = True, spec_outlier: float | None = 0.3,
                   poses: Collection[str] | None = None) -> PieceRegistration:
    """Register specimen centroids ``Y_spec`` (M, 3, scanner mm) to MR centroids ``X_mr`` (N, 3, patient RAS mm).

    Parameters
    ----------
    d_spec, d_mr : ndarray (M,) / (N,), optional
        Equivalent diameters (mm) of the nodes; their log ratio ~ (1 - ``size_tail``) N(``size_mu``, ``size_sd``)
        + ``size_tail`` N(``size_mu``, 0.4) weighs the E-step (fixation shrinks a node by 0-10 %; segmentation
        noise of small in vivo nodes gives the tail).
    w : float
        CPD outlier weight (MR nodes with no specimen node).
    beta_mm, lam : float
        Non-rigid kernel width (mm) and smoothness.
    pose_prior : float
        Log-likelihood a pose other than the suture frame must gain to be chosen (twice that for a mirror).
    ridge : float
        Pull of the affine part towards the start (suture frame, expected flattening), per specimen node.
    min_sigma_mm : float
        Floor of the CPD noise sd, mm (centroid noise; keeps the non-rigid part from snapping onto points).
    core : ndarray (N,) of bool, optional
        MR nodes surely in the piece (their level in its containers): the start centres on them.
    prior : ndarray (M, N), optional
        Correspondence prior multiplying the E-step kernel (e.g. a linked specimen node's container levels).
    small : int
        Pieces with fewer specimen nodes also try start shifts along y and z (0.7 RMS radii) in the suture frame.
    start_sigma_mm : float
        Smallest noise sd (mm) the non-rigid stage starts from (annealing from there).
    anchors : (ndarray (K, 3), ndarray (K, 3), ndarray (K,)), optional
        Corresponding points (specimen scanner mm, patient mm) and weights, e.g. the centroids of the specimen
        nodes linked into one container and of the MR nodes of its levels: one more start per pose (a
        translation from 1-3 anchors, an affine fit from 4 or more).
    search_iter : int
        Affine CPD iterations per pose and start while searching; the chosen one is then run to convergence.
    bend : bool
        The affine stage also fits a bend: a term quadratic in the specimen's cranio-caudal coordinate (a strip of
        tissue pinned on a board curves along its length), pulled towards 0 like the affine part.
    spec_outlier : float or None
        Share of specimen nodes without an MR partner (ex vivo MRI sees more nodes): correspondences are then
        one-to-one with slack on both sides (robust point matching's normalisation) instead of CPD's, where
        several specimen nodes may share one MR node. None: classic CPD.
    board : bool
        Also try every pose in the **board frame** (:func:`board_rotation`: the suture frame turned about the
        cranio-caudal axis so that its medio-lateral axis is the node cloud's thinnest direction, the board's
        normal); the better likelihood wins. For small pieces the anterior suture fixes that turn poorly.
    poses : collection of str, optional
        Only these pose keys (``pose`` in the suture frame, ``pose@board`` in the board frame; the keys of
        ``pose_log_lik``), e.g. a second pass that keeps the first pass's pose.

    Returns
    -------
    PieceRegistration
    """
    Y_spec = np.asarray(Y_spec, float).reshape(-1, 3)
    X_mr = np.asarray(X_mr, float).reshape(-1, 3)
    core_x = X_mr[core] if core is not None and np.count_nonzero(core) >= 3 else X_mr
    pat_centre = core_x.mean(axis=0) if len(core_x) else np.zeros(3)
    pat_scale = float(np.sqrt(np.mean(np.sum((X_mr - pat_centre) ** 2, axis=1)))) if len(X_mr) > 1 else 1.0
    pat_scale = max(pat_scale, 1.0)
    Xn = (X_mr - pat_centre) / pat_scale
    feat = _size_feature(d_spec, d_mr, size_sd, size_mu, size_tail)
    if prior is not None:
        feat = prior if feat is None else feat * prior
    min_s2 = (min_sigma_mm / pat_scale) ** 2
    base = suture_rotation(sutures, side)
    spec_nodes, mr_ids = np.asarray(specimen_nodes, np.int64), np.asarray(mr_nodes, np.int64)
    if len(Y_spec) < 3 or len(X_mr) < 3:
        return _identity_result(image, base, Y_spec, X_mr, pat_centre, pat_scale, spec_nodes, mr_ids, 1.0)
    beta = beta_mm / pat_scale
    search = _Search(Xn, w, feat, min_s2, ridge * len(Y_spec), search_iter, pat_centre, pat_scale, bend,
                     spec_outlier)
    frames = {"sutures": base}
    if board and len(Y_spec) >= 4:
        frames["board"] = board_rotation(Y_spec, base)
    tried = _search_poses(search, Y_spec, frames, anchors, small, pose_prior, poses)
    pose = max(tried, key=lambda k: tried[k][0])
    rot, Yn, centre, scale, B, c, t, s2 = tried[pose][1]
    B, c, t, s2 = search.polish(Yn, B, c, t)
    Y0 = Yn @ B.T + quad_term(Yn, c) + t
    s2 = max(s2, (start_sigma_mm / pat_scale) ** 2)  # re-opens correspondences the affine fit left wrong
    W, s2, P, ll = cpd_nonrigid(Xn, Y0, w, beta, lam, feat, sigma2=s2, min_sigma2=min_s2, wy=spec_outlier)
    reg = (Y0 + _gauss_kernel(Y0, Y0, beta) @ W) * pat_scale + pat_centre
    return PieceRegistration(image, pose.split("@")[0], rot, centre, scale, B, t, c, Y0, W, beta, pat_centre,
                             pat_scale, spec_nodes, mr_ids, P, reg, ll, {k: round(v[0], 3) for k, v in tried.items()},
                             feat)


def quad_term(Yn: FloatArray, bend: FloatArray) -> FloatArray:
    """The bend's displacement (M, 3) of normalised points ``Yn`` (M, 3): ``bend`` (3,) times their squared
    cranio-caudal coordinate."""
    return np.asarray(Yn[:, 2:3] ** 2 * bend, dtype=np.float64)


def _search_poses(search: _Search, Y_spec: FloatArray, frames: dict[str, FloatArray],
                  anchors: tuple[FloatArray, FloatArray, FloatArray] | None, small: int, pose_prior: float,
                  only: Collection[str] | None = None) -> dict[str, tuple[float, tuple[Any, ...]]]:
    """Every pose of :data:`POSES` in every frame (``only``: those keys): key ``pose`` (suture frame) or
    ``pose@frame``, value (log-likelihood - the pose's penalty, fit). Small pieces also try shifted starts in the
    unturned pose."""
    many = [np.zeros(3), *(0.7 * np.eye(3)[1:]), *(-0.7 * np.eye(3)[1:])]
    offsets = [np.zeros(3)] if len(Y_spec) >= small else many
    tried = {}
    for frame, base in frames.items():
        for name, signs in POSES.items():
            penalty = 0.0 if name == "sutures" else pose_prior * (1.0 if np.prod(signs) > 0 else 2.0)
            key = name if frame == "sutures" else f"{name}@{frame}"
            if only is not None and key not in only:
                continue
            tried[key] = search.pose(Y_spec, np.diag(signs) @ base, offsets if name == "sutures" else offsets[:1],
                                     anchors, len(Y_spec) >= 2 * small, penalty)
    return tried


@dataclass(frozen=True)
class _Search:
    """Affine CPD starts of one piece (normalised MR points ``Xn`` and the CPD settings)."""

    Xn: FloatArray
    w: float
    feat: FloatArray | None
    min_s2: float
    ridge: float
    max_iter: int
    pat_centre: FloatArray
    pat_scale: float
    bend: bool
    wy: float | None

    def polish(self, Yn: FloatArray, B: FloatArray, c: FloatArray, t: FloatArray
               ) -> tuple[FloatArray, FloatArray, FloatArray, float]:
        """The chosen start's affine + bend (``B``, ``c``, ``t``) run to convergence: (B, bend, t, sigma^2)."""
        quad = Yn[:, 2:3] ** 2 if self.bend else None
        B1, t1, s2, _ = cpd_affine(self.Xn, Yn @ B.T + quad_term(Yn, c) + t, self.w, self.feat,
                                   min_sigma2=self.min_s2, ridge=self.ridge, quad=quad, wy=self.wy)
        A = B1[:, :3]
        return A @ B, A @ c + (B1[:, 3] if self.bend else 0.0), A @ t + t1, s2

    def pose(self, Y_spec: FloatArray, rot: FloatArray, offsets: list[FloatArray],
             anchors: tuple[FloatArray, FloatArray, FloatArray] | None, measured: bool, penalty: float
             ) -> tuple[float, tuple[Any, ...]]:
        """Best (log-likelihood - penalty, (rot, Yn, centre, scale, B, bend, t, sigma2)) over the starts of one
        pose."""
        Yn, centre, scale = _start(Y_spec, rot, self.Xn, self.pat_scale, measured)
        starts = [(np.eye(3), off) for off in offsets]
        if anchors is not None:
            a_y = ((anchors[0] - centre) @ rot.T) / scale
            starts.append(_anchor_start(a_y, (anchors[1] - self.pat_centre) / self.pat_scale, anchors[2]))
        best: tuple[float, tuple[Any, ...]] = (-np.inf, ())
        quad = Yn[:, 2:3] ** 2 if self.bend else None
        for B0, t0 in starts:
            B, t, s2, ll = cpd_affine(self.Xn, Yn @ B0.T + t0, self.w, self.feat, max_iter=self.max_iter,
                                      min_sigma2=self.min_s2, ridge=self.ridge, quad=quad, wy=self.wy)
            if ll - penalty > best[0]:
                c = B[:, 3] if self.bend else np.zeros(3)
                best = (ll - penalty, (rot, Yn, centre, scale, B[:, :3] @ B0, c, B[:, :3] @ t0 + t, s2))
        return best


def _anchor_start(a_y: FloatArray, a_x: FloatArray, wt: FloatArray, ridge: float = 0.5
                  ) -> tuple[FloatArray, FloatArray]:
    """Affine (B, t) taking anchors ``a_y`` to ``a_x`` (normalised), weighted, ridge towards the identity;
    a translation alone with fewer than 4 anchors."""
    wt = np.asarray(wt, float) / max(float(np.sum(wt)), 1e-9)
    my, mx = wt @ a_y, wt @ a_x
    if len(a_y) < 4:
        return np.eye(3), mx - my
    Yc, Xc = a_y - my, a_x - mx
    A = (Xc * wt[:, None]).T @ Yc + ridge * np.eye(3)
    B = A @ np.linalg.inv((Yc * wt[:, None]).T @ Yc + ridge * np.eye(3))
    return B, mx - B @ my


def _identity_result(image: str, rot: FloatArray, Y_spec: FloatArray, X_mr: FloatArray, pat_centre: FloatArray,
                     pat_scale: float, spec_nodes: NDArray[np.int64], mr_ids: NDArray[np.int64],
                     beta: float) -> PieceRegistration:
    """Too few points to register: the suture frame, centred on the MR nodes, no pairs."""
    centre = Y_spec.mean(axis=0) if len(Y_spec) else np.zeros(3)
    scale = np.full(3, pat_scale)
    reg = (Y_spec - centre) @ rot.T + pat_centre
    return PieceRegistration(image, "sutures", rot, centre, scale, np.eye(3), np.zeros(3), np.zeros(3),
                             np.zeros((0, 3)), np.zeros((0, 3)), beta, pat_centre, pat_scale, spec_nodes, mr_ids,
                             np.zeros((len(Y_spec), len(X_mr))), reg, float("nan"))
