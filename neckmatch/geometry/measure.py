"""Node measurements from an MR label map, in one vectorised pass over the map.

:func:`measure_nodes` returns one row per label: voxel count, volume, centroid, the 3-D long axis, the
radiologist's axial short and long axes, and the principal-axis extents. :func:`label_voxels` gives every
label's voxel centres.

One pass: the map is scanned once (``np.flatnonzero`` over its memory order); only the node voxels are then
sorted by label, so the cost is one read of the volume plus work proportional to the node voxels.

Estimators (all distances in RAS mm; voxel centres from the label map's affine, so any orientation, spacing
or oblique grid is honoured):

``long_axis_mm``
    The maximum Feret diameter of the voxel centres (largest distance between two centres, found among the
    vertices of their convex hull) plus half the voxel size along that direction (``|A^T u|``, the spacing on
    an isotropic grid): the Feret pair is the one closest to the surface, so less than the half voxel per end
    of a single row is lost. On rasterised ellipsoids with every diameter >= 5 mm at 0.5-1 mm voxels (any
    orientation, oblique grids) it lies within 5 % of the analytic long diameter, mean error ~ +1 %;
    ``tests/geometry/test_measure.py`` checks this. (docs/outputs.md says "plus one voxel": that adds ~ +2-9 %.)
``short_axis_mm`` and ``axial_long_mm``
    On the patient-axial slab (constant RAS z, slab thickness = the grid's largest z step, so exactly the
    acquired slices for an axial grid) holding the most voxels of the node: ``axial_long_mm`` is the 2-D Feret
    diameter of the slab's centres (x, y) plus half an in-plane voxel; ``short_axis_mm`` is the largest
    extent perpendicular to that long axis, taken over strips one voxel wide along the long axis (the largest
    perpendicular diameter), plus 3/4 of an in-plane voxel (the calibrated mean gap), and never more than
    ``axial_long_mm`` (so a round node has short = long axis). Both lie within one voxel
    of the analytic diameters of an ellipsoid's central axial section. For an oblique grid the slab is a slice
    of the node one z step thick, projected onto the axial plane.
``pa1_mm``, ``pa2_mm``, ``pa3_mm``
    Full principal-axis extents ``2 * sqrt(5 * eigval)`` of the covariance of the node as a solid (centres'
    covariance plus one voxel's own ``A A^T / 12``): exact for a solid ellipsoid; largest first.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy.spatial import ConvexHull, QhullError
from scipy.spatial.distance import pdist

from neckmatch.errors import InputError
from neckmatch.model import LabelMap

__all__ = ["measure_nodes", "label_voxels", "node_voxel_centres"]

# Voxel-size fractions added to centre-to-centre extents (calibrated on rasterised ellipsoids, see module docstring).
_FERET_PAD = 0.5
_SHORT_PAD = 0.75

COLUMNS = ["node", "n_voxels", "volume_mm3", "x", "y", "z", "long_axis_mm", "short_axis_mm", "axial_long_mm",
           "pa1_mm", "pa2_mm", "pa3_mm"]


def node_voxel_centres(label_map: LabelMap) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]:
    """All node voxel centres, grouped by label, from one scan of the map.

    Returns
    -------
    labels : ndarray of shape (L,), int64
        Label values present (> 0), ascending.
    starts : ndarray of shape (L,), int64
        Row in ``ras`` where each label's voxels start (they run to the next start).
    ras : ndarray of shape (M, 3), float64, mm, RAS
        Voxel centres of every node voxel, sorted by label.

    Raises
    ------
    InputError
        The map holds negative labels.
    """
    data = label_map.data
    order: Literal["C", "F"] = "F" if data.flags.f_contiguous and not data.flags.c_contiguous else "C"
    flat = data.ravel(order=order)
    idx = np.flatnonzero(flat != 0)  # a boolean mask: ~10x faster than nonzero() on the integer labels
    lab = flat[idx]
    if lab.size and lab.min() < 0:
        raise InputError("label map", "labels", f"must be >= 0 (0 = background), got {int(lab.min())}")
    srt = np.argsort(lab, kind="stable")
    idx, lab = idx[srt], lab[srt]
    labels, starts = np.unique(lab, return_index=True)
    ijk = np.stack(np.unravel_index(idx, data.shape, order=order), axis=1)
    return labels.astype(np.int64), starts.astype(np.int64), label_map.to_ras(ijk)


def label_voxels(label_map: LabelMap) -> dict[int, NDArray[np.float64]]:
    """Voxel centres per label: ``{label: ndarray of shape (n, 3), float, mm, RAS}``, labels > 0 ascending.

    Examples
    --------
    >>> import numpy as np
    >>> from neckmatch.model import LabelMap
    >>> data = np.zeros((3, 3, 3), dtype=np.int16); data[0, 0, 0] = 2; data[2, 1, 0] = 2
    >>> label_voxels(LabelMap(data, np.diag([2.0, 1.0, 1.0, 1.0])))[2].tolist()
    [[0.0, 0.0, 0.0], [4.0, 1.0, 0.0]]
    """
    labels, starts, ras = node_voxel_centres(label_map)
    return {int(k): part for k, part in zip(labels, np.split(ras, starts[1:]), strict=True)}


def _voxel_size(axes: NDArray[np.float64], u: NDArray[np.float64]) -> float:
    """Voxel size (mm) along unit direction ``u``: ``|A^T u|`` (the spacing s for any ``u`` on an isotropic grid).

    ``axes`` holds the voxel's edge vectors as columns (the affine's 3x3 part, or its in-plane 2x2 part).
    """
    return float(np.linalg.norm(axes.T @ u))


def _feret(points: NDArray[np.float64], axes: NDArray[np.float64], pad: float,
           sv: NDArray[np.float64] | None = None) -> tuple[float, NDArray[np.float64]]:
    """Padded Feret diameter of ``points`` (n, d): max over pairs of ``distance + pad * voxel size along the pair``.

    Taking the maximum of the padded lengths (not padding the longest pair afterwards) keeps the result a
    continuous function of the points: nearly tied longest pairs in different directions (float32 rounding of an
    affine is enough to reorder them) cannot make it jump by a fraction of a voxel. Returns (length, unit direction).

    Exact, but only pairs that can win are padded: the voxel size along any direction lies between the smallest
    and largest singular value of ``axes`` (s_min, s_max; ``sv`` when known), so a pair shorter than the longest
    distance minus ``|pad| * (s_max - s_min)`` cannot have the largest padded length. Ties go to the first pair
    (i < j) in hull-vertex order, as an argmax over all pairs would.
    """
    dim = points.shape[1]
    cand = points
    if len(points) > 4 * dim:
        try:
            cand = points[ConvexHull(points).vertices]
        except QhullError:  # flat or collinear: joggle (vertices stay a subset of the input points)
            cand = points[ConvexHull(points, qhull_options="QJ").vertices]
    if len(cand) < 2:
        unit = np.zeros(dim)
        unit[0] = 1.0
        return pad * _voxel_size(axes, unit), unit
    length, unit, _, _ = _best_pair(cand, axes, pad, sv)
    return length, unit


def _candidate_pairs(cand: NDArray[np.float64], slack: float,
                     tol: float) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Pairs (i < j, row by row) of ``cand`` at least as long as the longest minus ``slack + tol * longest``."""
    if len(cand) <= 48:  # a small square matrix is cheaper than pdist's call overhead
        diff = cand[:, None, :] - cand[None, :, :]
        dist = np.sqrt(np.einsum("ijk,ijk->ij", diff, diff))
        dmax = float(dist.max())
        i, j = np.nonzero(np.triu(dist >= dmax - slack - tol * dmax, 1))
        return i, j
    dist = pdist(cand)  # condensed: pairs (i, j), i < j, row by row
    dmax = float(dist.max())
    return _condensed_pairs(np.flatnonzero(dist >= dmax - slack - tol * dmax), len(cand))


def _best_pair(cand: NDArray[np.float64], axes: NDArray[np.float64], pad: float,
               sv: NDArray[np.float64] | None = None) -> tuple[float, NDArray[np.float64], int, int]:
    """(padded length, unit direction from ``cand[i]`` to ``cand[j]``, i, j) of the best pair (i < j) of ``cand``."""
    sv = np.asarray(np.linalg.svd(axes, compute_uv=False), dtype=np.float64) if sv is None else sv
    # Candidates: the bound |pad| (s_max - s_min), plus room for the rounding of the distances and the bounds.
    i, j = _candidate_pairs(cand, abs(pad) * float(sv[0] - sv[-1]) + 1e-9 * float(sv[0]), 1e-9)
    diff = cand[i] - cand[j]
    d = np.sqrt(np.einsum("ij,ij->i", diff, diff))
    with np.errstate(invalid="ignore", divide="ignore"):
        units = diff / d[:, None]
    # numpy multiplies a single row by another path (rounding the last bit differently): keep >= 2 rows, so the
    # lengths are bit for bit those of the all-pairs matrix product.
    rows = np.nan_to_num(units) if len(units) > 1 else np.repeat(np.nan_to_num(units), 2, axis=0)
    vox = np.linalg.norm(rows @ axes, axis=-1)[: len(units)]
    padded = np.where(d > 0, d + pad * vox, 0.0)
    best = int(np.argmax(padded))
    return float(padded[best]), -units[best], int(i[best]), int(j[best])


# Up to this many points the 3-D Feret length first tries every pair of points (pdist: n^2 / 2 distances).
_ALL_PAIRS_MAX = 2000


def _feret_length(points: NDArray[np.float64], axes: NDArray[np.float64], pad: float,
                  sv: NDArray[np.float64] | None = None, maybe_vertex: NDArray[np.bool_] | None = None) -> float:
    """``_feret(points, axes, pad)[0]``, mostly without the convex hull.

    The best pair among the points that may be hull vertices (``maybe_vertex``: a superset of them, default all)
    is the best among the hull vertices as soon as both of its points are hull vertices; they are where each is
    the only point furthest along the pair's direction (an exposed point), so the hull is built only when that
    test fails. The length is then bit for bit the one over hull vertices.
    """
    keep = np.arange(len(points)) if maybe_vertex is None else np.flatnonzero(maybe_vertex)
    if 4 * points.shape[1] < len(points) and 2 <= len(keep) <= _ALL_PAIRS_MAX:
        length, _, i, j = _best_pair(points[keep], axes, pad, sv)
        i, j = keep[i], keep[j]
        proj = points @ (points[i] - points[j])
        if np.count_nonzero(proj >= proj[i]) == 1 and np.count_nonzero(proj <= proj[j]) == 1:
            return length
    return _feret(points, axes, pad, sv)[0]


def _line_ends(ras: NDArray[np.float64], starts: NDArray[np.int64], step: NDArray[np.float64],
               tol: float) -> NDArray[np.bool_]:
    """False for voxel centres with a neighbour ``-step`` before and ``+step`` after them in ``ras`` (same label).

    Such a centre is the midpoint of two others of its node, never a hull vertex; in memory order (as
    :func:`node_voxel_centres` gives them) these are the voxels inside a row along the fastest array axis.
    """
    gap = ras[1:] - ras[:-1] - step
    follows = np.einsum("ij,ij->i", gap, gap) < tol * tol  # centre k + 1 is centre k + step
    follows[starts[1:] - 1] = False  # never across labels
    inner = np.zeros(len(ras), dtype=bool)
    inner[1:-1] = follows[:-1] & follows[1:]
    return ~inner


def _condensed_pairs(k: NDArray[np.int64], m: int) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Row and column (i < j) of entries ``k`` of a condensed distance matrix of ``m`` points (``pdist`` order)."""
    row_start = np.arange(m) * (2 * m - np.arange(m) - 1) // 2  # index of (i, i + 1)
    i = np.searchsorted(row_start, k, side="right") - 1
    return i, k - row_start[i] + i + 1


def _principal_extents(ras: NDArray, starts: NDArray, counts: NDArray, centroid: NDArray,
                       affine: NDArray) -> NDArray[np.float64]:
    """Full principal-axis extents (L, 3), mm, largest first: 2 * sqrt(5 * eigenvalues) of the solid's covariance."""
    node_index = np.repeat(np.arange(len(starts)), counts)
    d = ras - centroid[node_index]
    outer = np.add.reduceat(d[:, :, None] * d[:, None, :], starts, axis=0) / counts[:, None, None]
    a = affine[:3, :3]
    cov = outer + (a @ a.T) / 12.0
    eig = np.clip(np.linalg.eigvalsh(cov), 0.0, None)[:, ::-1]
    return 2.0 * np.sqrt(5.0 * eig)


def _axial_slab_index(ras: NDArray[np.float64], affine: NDArray[np.float64]) -> NDArray[np.int64]:
    """Patient-axial slab of each voxel centre: slabs of constant RAS z, as thick as the grid's largest z step."""
    step = float(np.abs(affine[2, :3]).max())
    return np.floor((ras[:, 2] - affine[2, 3]) / step + 0.5).astype(np.int64)


def _in_fullest_slab(slab: NDArray[np.int64], counts: NDArray[np.int64]) -> NDArray[np.bool_]:
    """Whether each voxel lies in its node's slab with the most voxels (ties: the lowest slab).

    ``slab`` (M,) holds the voxels' slab indices grouped by node, ``counts`` (L,) the voxels per node.
    """
    node = np.repeat(np.arange(len(counts)), counts)
    s0 = slab - slab.min()
    width = int(s0.max()) + 1
    key, n = np.unique(node * width + s0, return_counts=True)
    order = np.lexsort((key, -n, key // width))  # by node, most voxels first, then lowest slab
    first = np.unique(key[order] // width, return_index=True)[1]
    return s0 == (key[order][first] % width)[node]


def _axial_axes(points: NDArray[np.float64], inplane: NDArray[np.float64],
                sv: NDArray[np.float64] | None = None) -> tuple[float, float]:
    """(axial long, short) diameters, mm, of one slab's centres (n, 2) (x, y); ``inplane`` = 2x2 voxel axes."""
    long_padded, u = _feret(points, inplane, _FERET_PAD, sv)
    v = np.array([-u[1], u[0]])
    along, across = points @ u, points @ v
    step_u = _voxel_size(inplane, u)
    strip = np.floor((along - along.min()) / step_u + 0.5).astype(np.int64)
    lo = np.full(strip.max() + 1, np.inf)
    hi = np.full(strip.max() + 1, -np.inf)
    np.minimum.at(lo, strip, across)
    np.maximum.at(hi, strip, across)
    ok = np.isfinite(lo)
    short_c = float((hi[ok] - lo[ok]).max())
    # The larger pad of the short axis must not make it exceed the long axis (a round node: short = long).
    return long_padded, min(short_c + _SHORT_PAD * _voxel_size(inplane, v), long_padded)


def _inplane_axes(affine: NDArray[np.float64]) -> NDArray[np.float64]:
    """2x2 (x, y) edge vectors of a voxel's axial footprint: the two grid axes least aligned with z."""
    a = affine[:3, :3]
    keep = np.argsort(np.abs(a[2]) / np.linalg.norm(a, axis=0), kind="stable")[:2]
    return a[:2, keep]


def measure_nodes(
    label_map: LabelMap,
    centres: tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]] | None = None,
) -> pd.DataFrame:
    """Measure every labelled node: counts, volume, centroid, long / short / axial / principal axes.

    Parameters
    ----------
    label_map : LabelMap
        Integer label map (0 = background, k > 0 = node k) with its voxel -> RAS mm affine.
    centres : tuple, optional
        ``node_voxel_centres(label_map)`` when the caller has it already (saves a scan of the map).

    Returns
    -------
    pandas.DataFrame
        One row per label, sorted by ``node``, columns ``node, n_voxels, volume_mm3, x, y, z, long_axis_mm,
        short_axis_mm, axial_long_mm, pa1_mm, pa2_mm, pa3_mm`` (mm, mm3; x, y, z = centroid, RAS). The
        estimators are described in this module's docstring.

    Examples
    --------
    >>> import numpy as np
    >>> from neckmatch.model import LabelMap
    >>> data = np.zeros((8, 8, 8), dtype=np.uint8); data[1:6, 3, 3] = 1; data[3, 2:5, 3] = 1
    >>> row = measure_nodes(LabelMap(data, np.diag([1.0, 1.0, 2.0, 1.0]))).iloc[0]
    >>> int(row.n_voxels), float(row.volume_mm3), float(row.x), float(row.y), float(row.z)
    (7, 14.0, 3.0, 3.0, 6.0)
    >>> float(row.long_axis_mm), float(row.axial_long_mm), float(row.short_axis_mm)
    (4.5, 4.5, 2.75)
    """
    labels, starts, ras = node_voxel_centres(label_map) if centres is None else centres
    if len(labels) == 0:
        return pd.DataFrame({c: pd.Series(dtype=np.int64 if c in ("node", "n_voxels") else float) for c in COLUMNS})
    counts = np.diff(np.append(starts, len(ras)))
    centroid = np.add.reduceat(ras, starts, axis=0) / counts[:, None]
    pa = _principal_extents(ras, starts, counts, centroid, label_map.affine)
    axes3 = label_map.affine[:3, :3]
    inplane = _inplane_axes(label_map.affine)
    slab = _axial_slab_index(ras, label_map.affine)
    sv3, sv2 = (np.asarray(np.linalg.svd(a, compute_uv=False), dtype=np.float64) for a in (axes3, inplane))
    data = label_map.data
    fastest = 0 if data.flags.f_contiguous and not data.flags.c_contiguous else 2  # node_voxel_centres' order
    ends = _line_ends(ras, starts, axes3[:, fastest], 0.25 * float(sv3[-1]))
    long_3d = np.empty(len(labels))
    axial = np.empty((len(labels), 2))
    in_best = _in_fullest_slab(slab, counts)
    for i, part in enumerate(np.split(np.arange(len(ras)), starts[1:])):
        pts = ras[part]
        long_3d[i] = _feret_length(pts, axes3, _FERET_PAD, sv3, ends[part])
        axial[i] = _axial_axes(pts[in_best[part], :2], inplane, sv2)
    return pd.DataFrame({
        "node": labels, "n_voxels": counts, "volume_mm3": counts * label_map.voxel_volume,
        "x": centroid[:, 0], "y": centroid[:, 1], "z": centroid[:, 2],
        "long_axis_mm": long_3d, "short_axis_mm": axial[:, 1], "axial_long_mm": axial[:, 0],
        "pa1_mm": pa[:, 0], "pa2_mm": pa[:, 1], "pa3_mm": pa[:, 2],
    })
