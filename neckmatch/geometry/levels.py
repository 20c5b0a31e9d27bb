"""Neck levels from landmarks: the ``som1999`` rule set of ``shared/spec/levels.md``, vectorised over points.

:func:`assign_levels` evaluates the spec's rules for N points at once (RAS mm): side from the midline,
the level, ``boundary_mm`` (the smallest absolute boundary term of the assigned level) and ``runner_up`` (the
level named with that term). :func:`levels_table` applies it to a case (node centroids, plus every node voxel
for ``level_fractions``) and :func:`level_graph` gives the spec's level adjacency.

Conventions and choices the spec leaves open
--------------------------------------------
- Every comparison is the spec's (strict ``>`` / ``<``, ``sd >= 0``); curves and the midline are interpolated
  linearly in z and clamped beyond their end control points (``Curve.at``, ``Landmarks.x_mid``).
- Ties between boundary terms of equal absolute value go to the term listed first in the spec's table.
- ``sd``: signed distance from (x, y) to the line through ``SCM_posterior(z)`` and ``scalene_anterior(z)``,
  positive on the side of ``carotid_medial(z)``. If the carotid point lies exactly on that line its side counts
  as positive; if the two curve points coincide (no line) ``sd`` is NaN, so ``sd >= 0`` is false (VB / outside)
  and the ``sd`` term is ignored for ``boundary_mm``.
- Outside points (level ``""``): ``runner_up`` is ``""``; ``boundary_mm`` is the distance term of the rule that
  put the point outside: ``z - z_sb`` above the skull base, ``ant(trapezius) - y`` behind the trapezius.
  ``borderline`` is ``boundary_mm < tolerance_mm`` for every point, outside ones included.

Tilted acquisitions
-------------------
The rules are evaluated per *patient-axial* plane: "axial" means constant RAS z, whatever the orientation of
the MR slices. Curves are interpolated in RAS z, and the point landmarks' heights are RAS z. For an acquisition
tilted by an angle a (e.g. slices angled along the hard palate or the mandible), a level boundary drawn on the
tilted slice through a landmark (hyoid, cricoid) is a tilted plane, while these rules use the horizontal plane
through the landmark's point: the two differ by ``r * tan(a)`` at distance ``r`` (mm) from the landmark, e.g.
1.8 mm at 20 mm for a = 5 degrees. Results do not depend on the voxel grid at all (reorienting or resampling
the label map changes no level) but a reader who assigns levels on tilted slices can disagree near the
horizontal boundaries; ``boundary_mm`` and ``borderline`` flag exactly those nodes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from neckmatch.errors import InputError
from neckmatch.model import REQUIRED_LANDMARKS, Case, Landmarks, Level, Side

if TYPE_CHECKING:
    import networkx as nx

__all__ = ["LevelAssignment", "assign_levels", "level_graph", "adjacent_level_pairs", "levels_table",
           "require_landmarks", "SYSTEM"]

SYSTEM = "som1999"

# Level codes: 0 = outside (""), then the Level enum in its declared order.
_NAMES: tuple[str, ...] = ("",) + tuple(lv.value for lv in Level)
_CODE = {name: i for i, name in enumerate(_NAMES)}
_NAME_ARRAY = np.array(_NAMES)

# Spec adjacency (same side), plus IA, VI, VII across sides.
_ADJACENT = ("IA-IB IA-VI IB-IIA IB-III IIA-IIB IIA-III IIA-RP IIB-III IIB-VA III-IV III-VA III-VI IV-VB "
             "IV-VI IV-SC VA-VB VB-SC VI-VII VII-SC").split()
_ACROSS = ("IA", "VI", "VII")


@dataclass(frozen=True, eq=False)
class LevelAssignment:
    """Per-point result of :func:`assign_levels`; every array has shape (N,).

    Attributes
    ----------
    side : ndarray of str ``"R"`` / ``"L"``
    level : ndarray of str, ``som1999`` level code, ``""`` outside the neck
    boundary_mm : ndarray of float, mm; smallest absolute boundary term of the assigned level
    runner_up : ndarray of str; level beyond that nearest boundary (``""`` where outside)
    borderline : ndarray of bool; ``boundary_mm < tolerance_mm``
    """

    side: NDArray[np.str_]
    level: NDArray[np.str_]
    boundary_mm: NDArray[np.float64]
    runner_up: NDArray[np.str_]
    borderline: NDArray[np.bool_]

    def __len__(self) -> int:
        return len(self.level)

    def to_frame(self) -> pd.DataFrame:
        """The arrays as a DataFrame with columns ``side, level, boundary_mm, runner_up, borderline``."""
        return pd.DataFrame({
            "side": self.side.astype(object),
            "level": self.level.astype(object),
            "boundary_mm": self.boundary_mm,
            "runner_up": self.runner_up.astype(object),
            "borderline": self.borderline,
        })


def _check_points(points: ArrayLike) -> NDArray[np.float64]:
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim == 1 and pts.shape == (3,):
        pts = pts[None, :]
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise InputError("points", "shape", f"expected an array of shape (N, 3), got {np.shape(points)}")
    if not np.all(np.isfinite(pts)):
        raise InputError("points", "coordinates", "must be finite, got NaN or inf")
    return pts


def require_landmarks(landmarks: Landmarks | None, where: str = "landmarks") -> Landmarks:
    """``landmarks`` if it holds every name of ``model.REQUIRED_LANDMARKS``, else raise InputError.

    ``where`` names the source in the error (a case folder, a file). The field is the first missing
    landmark; the message lists them all.

    Examples
    --------
    >>> require_landmarks(Landmarks(), "P1")
    Traceback (most recent call last):
    ...
    neckmatch.errors.InputError: P1: landmark 'skull_base': required for the som1999 rules, missing (20 missing: ...
    """
    if landmarks is None:
        raise InputError(where, "mri.landmarks", "the case has no landmarks; levels need them")
    missing = landmarks.missing(REQUIRED_LANDMARKS)
    if missing:
        raise InputError(where, f"landmark '{missing[0]}'",
                         f"required for the som1999 rules, missing ({len(missing)} missing: {', '.join(missing)})")
    return landmarks


def _signed_line_distance(p: NDArray, s: NDArray, a: NDArray, c: NDArray) -> NDArray[np.float64]:
    """Signed distance (mm) of 2-D points ``p`` to the line through ``s`` and ``a``, positive on ``c``'s side.

    All inputs are ndarray of shape (n, 2), float, mm (RAS x, y). NaN where ``s == a``.
    """
    d = a - s
    norm = np.hypot(d[:, 0], d[:, 1])
    cross_p = d[:, 0] * (p[:, 1] - s[:, 1]) - d[:, 1] * (p[:, 0] - s[:, 0])
    cross_c = d[:, 0] * (c[:, 1] - s[:, 1]) - d[:, 1] * (c[:, 0] - s[:, 0])
    sign = np.where(cross_c < 0, -1.0, 1.0)
    out = np.full(len(p), np.nan)
    np.divide(cross_p * sign, norm, out=out, where=norm > 0)
    return out


def _quantities(pts: NDArray[np.float64], lm: Landmarks) -> dict[str, NDArray]:
    """Every per-point quantity the rules use (arrays of shape (N,), mm), curves taken on the point's side."""
    x, y, z = pts[:, 0], pts[:, 1], pts[:, 2]
    xm = lm.x_mid(z)
    right = x > xm
    n = len(pts)
    q: dict[str, Any] = {k: np.empty(n) for k in ("dcar", "lat_dig", "smg", "scm", "ijv", "trap", "sd", "z_cl")}
    for side, mask in (("R", right), ("L", ~right)):
        idx = np.flatnonzero(mask)
        zz, xmid = z[idx], xm[idx]

        def at(stem: str, zz=zz, side=side) -> NDArray[np.float64]:  # (n, 2) curve (x, y) at the points' z
            return lm.curve(f"{stem}_{side}").at(zz)

        car, scm, sca = at("carotid_medial"), at("SCM_posterior"), at("scalene_anterior")
        q["dcar"][idx] = np.abs(car[:, 0] - xmid)
        q["lat_dig"][idx] = np.abs(at("digastric_anterior")[:, 0] - xmid)
        q["smg"][idx] = at("SMG_posterior")[:, 1]
        q["scm"][idx] = scm[:, 1]
        q["ijv"][idx] = at("IJV_posterior")[:, 1]
        q["trap"][idx] = at("trapezius_anterior")[:, 1]
        q["sd"][idx] = _signed_line_distance(pts[idx, :2], scm, sca, car)
        q["z_cl"][idx] = lm.point(f"clavicle_superior_{side}")[2]
    q.update(x=x, y=y, z=z, right=right, dlat=np.abs(x - xm))
    for key, name in (("z_sb", "skull_base"), ("z_hy", "hyoid_body_inferior"), ("z_cr", "cricoid_arch_inferior"),
                      ("z_mn", "manubrium_superior")):
        q[key] = float(lm.point(name)[2])
    return q


def _rule_levels(q: dict[str, NDArray]) -> NDArray[np.int8]:
    """The spec's decision list, in order (first true condition wins): level codes of shape (N,)."""
    y, z, dlat = q["y"], q["z"], q["dlat"]
    above = z > q["z_sb"]
    supra = z > q["z_hy"]
    medial = dlat < q["dcar"]
    ant_smg, ant_scm, ant_trap = y > q["smg"], y > q["scm"], y > q["trap"]
    mid, low = z > q["z_cr"], z > q["z_cl"]
    rules = [
        (above, ""),
        (supra & ant_smg & (dlat < q["lat_dig"]), "IA"),
        (supra & ant_smg, "IB"),
        (supra & medial, "RP"),
        (supra & ant_scm & (y < q["ijv"]), "IIB"),
        (supra & ant_scm, "IIA"),
        (supra & ant_trap, "VA"),
        (supra, ""),
        (medial & (z > q["z_mn"]), "VI"),
        (medial, "VII"),
        (mid & ant_scm, "III"),
        (mid & ant_trap, "VA"),
        (mid, ""),
        (low & (q["sd"] >= 0), "IV"),
        (low & ant_trap, "VB"),
        (low, ""),
    ]
    return np.select([c for c, _ in rules], [_CODE[n] for _, n in rules], default=_CODE["SC"]).astype(np.int8)


def _va_beyond(q: dict) -> NDArray:
    return np.where(q["z"] > q["z_hy"], _CODE["IIB"], _CODE["III"])


def _vi_beyond(q: dict) -> NDArray:
    return np.where(q["z"] > q["z_cr"], _CODE["III"], _CODE["IV"])


# The spec's table: per level, (term value of q, level beyond: a name or a function of q), in table order.
# Outside (""): the distance term of the rule that put the point outside.
_TERMS: dict[str, list] = {
    "": [(lambda q: np.where(q["z"] > q["z_sb"], q["z"] - q["z_sb"], q["trap"] - q["y"]), "")],
    "IA": [(lambda q: q["z"] - q["z_hy"], "VI"), (lambda q: q["lat_dig"] - q["dlat"], "IB")],
    "IB": [(lambda q: q["z"] - q["z_hy"], "III"), (lambda q: q["y"] - q["smg"], "IIA"),
           (lambda q: q["dlat"] - q["lat_dig"], "IA")],
    "RP": [(lambda q: q["z"] - q["z_hy"], "VI"), (lambda q: q["dcar"] - q["dlat"], "IIA"),
           (lambda q: q["smg"] - q["y"], "IB")],
    "IIA": [(lambda q: q["z"] - q["z_hy"], "III"), (lambda q: q["smg"] - q["y"], "IB"),
            (lambda q: q["dlat"] - q["dcar"], "RP"), (lambda q: q["y"] - q["ijv"], "IIB")],
    "IIB": [(lambda q: q["z"] - q["z_hy"], "III"), (lambda q: q["ijv"] - q["y"], "IIA"),
            (lambda q: q["y"] - q["scm"], "VA"), (lambda q: q["dlat"] - q["dcar"], "RP")],
    "VA": [(lambda q: q["scm"] - q["y"], _va_beyond), (lambda q: q["y"] - q["trap"], ""),
           (lambda q: q["z"] - q["z_cr"], "VB")],
    "III": [(lambda q: q["z_hy"] - q["z"], "IIA"), (lambda q: q["z"] - q["z_cr"], "IV"),
            (lambda q: q["dlat"] - q["dcar"], "VI"), (lambda q: q["y"] - q["scm"], "VA")],
    "IV": [(lambda q: q["z_cr"] - q["z"], "III"), (lambda q: q["z"] - q["z_cl"], "SC"),
           (lambda q: q["dlat"] - q["dcar"], "VI"), (lambda q: q["sd"], "VB")],
    "VB": [(lambda q: q["z_cr"] - q["z"], "VA"), (lambda q: -q["sd"], "IV"), (lambda q: q["y"] - q["trap"], ""),
           (lambda q: q["z"] - q["z_cl"], "SC")],
    "VI": [(lambda q: q["z_hy"] - q["z"], "IA"), (lambda q: q["z"] - q["z_mn"], "VII"),
           (lambda q: q["dcar"] - q["dlat"], _vi_beyond)],
    "VII": [(lambda q: q["z_mn"] - q["z"], "VI"), (lambda q: q["dcar"] - q["dlat"], "SC")],
    "SC": [(lambda q: q["z_cl"] - q["z"], "IV"), (lambda q: q["dlat"] - q["dcar"], "VII")],
}


def _boundaries(codes: NDArray[np.int8], q: dict[str, NDArray]) -> tuple[NDArray[np.float64], NDArray[np.int8]]:
    """``boundary_mm`` (min |term|, first in table order on ties; NaN terms ignored) and the runner-up code.

    Each level's terms are evaluated on that level's points only.
    """
    dist = np.full(len(codes), np.nan)
    beyond = np.zeros(len(codes), dtype=np.int8)
    for name, terms in _TERMS.items():
        rows = np.flatnonzero(codes == _CODE[name])
        if rows.size == 0:
            continue
        sub = {k: (v[rows] if isinstance(v, np.ndarray) else v) for k, v in q.items()}
        values = np.abs(np.column_stack([fn(sub) for fn, _ in terms]))
        values[np.isnan(values)] = np.inf
        col = np.argmin(values, axis=1)
        best = values[np.arange(len(rows)), col]
        dist[rows] = np.where(np.isfinite(best), best, np.nan)
        lv = np.column_stack([np.broadcast_to(b(sub) if callable(b) else _CODE[b], len(rows)) for _, b in terms])
        beyond[rows] = lv[np.arange(len(rows)), col]
    return dist, beyond


def assign_levels(points: ArrayLike, landmarks: Landmarks, tolerance_mm: float = 3.0) -> LevelAssignment:
    """Assign each point its side and ``som1999`` neck level (``shared/spec/levels.md``), vectorised.

    Parameters
    ----------
    points : array_like of shape (N, 3) or (3,), float, mm, RAS
        Positions to classify (node centroids or voxel centres).
    landmarks : Landmarks
        Every name of ``model.REQUIRED_LANDMARKS`` (points and ``_L`` / ``_R`` curves), RAS mm.
    tolerance_mm : float, default 3.0
        ``borderline`` is ``boundary_mm < tolerance_mm``.

    Returns
    -------
    LevelAssignment
        Arrays of shape (N,): side, level, boundary_mm, runner_up, borderline.

    Raises
    ------
    InputError
        Points not of shape (N, 3) or not finite, a landmark missing, or a negative tolerance.

    Examples
    --------
    >>> from neckmatch.geometry.levels import assign_levels, _demo_landmarks
    >>> res = assign_levels([[18.0, 0.0, -20.0], [2.0, 20.0, -60.0]], _demo_landmarks())
    >>> res.side.tolist(), res.level.tolist(), res.runner_up.tolist()
    (['R', 'R'], ['III', 'VI'], ['VI', 'VII'])
    >>> res.boundary_mm.tolist()
    [8.0, 5.0]
    """
    tol = float(tolerance_mm)
    if not np.isfinite(tol) or tol < 0:
        raise InputError("options", "tolerance_mm", f"must be a finite number >= 0, got {tolerance_mm}")
    pts = _check_points(points)
    require_landmarks(landmarks)
    q = _quantities(pts, landmarks)
    codes = _rule_levels(q)
    dist, beyond = _boundaries(codes, q)
    return LevelAssignment(
        side=np.where(q["right"], Side.R.value, Side.L.value),
        level=_NAME_ARRAY[codes],
        boundary_mm=dist,
        runner_up=_NAME_ARRAY[beyond],
        borderline=np.nan_to_num(dist, nan=np.inf) < tol,
    )


def adjacent_level_pairs() -> list[tuple[str, str]]:
    """The spec's same-side level adjacency as pairs of level names (the same-side edges of :func:`level_graph`).

    Examples
    --------
    >>> adjacent_level_pairs()[:3]
    [('IA', 'IB'), ('IA', 'VI'), ('IB', 'IIA')]
    """
    return [(a, b) for a, b in (e.split("-") for e in _ADJACENT)]


def level_graph() -> nx.Graph:
    """The spec's level adjacency as an undirected graph on nodes ``(side, level)`` (plain strings).

    Same-side edges follow the spec's list; IA, VI and VII are also joined to the same level of the other side.

    Examples
    --------
    >>> g = level_graph()
    >>> g.number_of_nodes(), g.has_edge(("R", "IIA"), ("R", "III")), g.has_edge(("R", "VI"), ("L", "VI"))
    (24, True, True)
    """
    import networkx as nx  # here, not at the top: networkx costs every process that reads a case ~0.2 s

    g = nx.Graph()
    for side in (Side.R.value, Side.L.value):
        g.add_nodes_from((side, lv.value) for lv in Level)
        g.add_edges_from(((side, a), (side, b)) for a, b in adjacent_level_pairs())
    g.add_edges_from(((Side.R.value, lv), (Side.L.value, lv)) for lv in _ACROSS)
    return g


def _format_fractions(node_index: NDArray[np.int64], codes: NDArray, n_nodes: int) -> list[str]:
    """``"IIA:0.82;III:0.18"`` per node from voxel level codes; largest first; outside voxels as ``outside``."""
    counts = np.bincount(node_index * len(_NAMES) + codes, minlength=n_nodes * len(_NAMES))
    counts = counts.reshape(n_nodes, len(_NAMES))
    totals = counts.sum(axis=1)
    out = []
    for row, total in zip(counts, totals, strict=True):
        order = [i for i in np.argsort(-row, kind="stable") if row[i] > 0]
        out.append(";".join(f"{_NAMES[i] or 'outside'}:{row[i] / total:.3g}" for i in order))
    return out


def levels_table(case: Case, tolerance_mm: float = 3.0) -> pd.DataFrame:
    """One row per MR node of ``case``: the ``levels.csv`` columns of ``docs/outputs.md``.

    The node's level is that of its centroid; ``level_fractions`` assigns every voxel of every node at once and
    lists ``level:fraction`` largest first (3 significant digits), voxels outside the neck as ``outside``.

    Raises
    ------
    InputError
        The case has no landmarks, or a required landmark is missing.
    """
    from neckmatch.geometry.measure import measure_nodes, node_voxel_centres

    landmarks = require_landmarks(case.landmarks, str(case.root) if case.root is not None else case.case_id)
    labels, starts, ras = centres = node_voxel_centres(case.label_map)
    nodes = measure_nodes(case.label_map, centres)
    res = assign_levels(nodes[["x", "y", "z"]].to_numpy(), landmarks, tolerance_mm)
    voxel_codes = _rule_levels(_quantities(ras, landmarks))
    node_index = np.repeat(np.arange(len(labels)), np.diff(np.append(starts, len(ras))))
    fractions = _format_fractions(node_index, voxel_codes, len(labels))
    frame = pd.DataFrame({"case_id": case.case_id, "node": nodes["node"].to_numpy()})
    frame = pd.concat([frame, res.to_frame()], axis=1)
    for col in ("x", "y", "z", "volume_mm3", "short_axis_mm", "long_axis_mm", "axial_long_mm"):
        frame[col] = nodes[col].to_numpy()
    frame["level_fractions"] = fractions
    frame["system"] = SYSTEM
    return frame


def _demo_landmarks() -> Landmarks:
    """A small symmetric landmark set for docstring examples and tests (RAS mm, midline x = 0).

    z: skull base 40, hyoid 0, cricoid -30, clavicles -55, manubrium -65. Right-side curves are vertical lines
    at the x and y below; the left side mirrors them (x -> -x).
    """
    right = {"carotid_medial": (10.0, 0.0), "SMG_posterior": (30.0, 10.0), "SCM_posterior": (40.0, -10.0),
             "IJV_posterior": (25.0, -5.0), "digastric_anterior": (8.0, 30.0),
             "scalene_anterior": (30.0, -20.0), "trapezius_anterior": (50.0, -40.0)}
    curves = {}
    for stem, (x, y) in right.items():
        for side, sx in (("R", x), ("L", -x)):
            curves[f"{stem}_{side}"] = np.array([[sx, y, -100.0], [sx, y, 60.0]])
    from neckmatch.model import Curve

    return Landmarks(
        points={k: np.array(v) for k, v in {
            "skull_base": [0.0, 0.0, 40.0], "hyoid_body_inferior": [0.0, 20.0, 0.0],
            "cricoid_arch_inferior": [0.0, 20.0, -30.0], "manubrium_superior": [0.0, 20.0, -65.0],
            "clavicle_superior_R": [60.0, 0.0, -55.0], "clavicle_superior_L": [-60.0, 0.0, -55.0]}.items()},
        curves={k: Curve(k, v) for k, v in curves.items()},
    )
