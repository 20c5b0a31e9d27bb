"""Specimen reconstruction: each pathology container as a region in patient space, and its nodes placed in it.

A container (one side, one surgical level or several merged) is the union of its imaging levels' regions on that
side. For matching only two coordinates of that region matter, the ones a pathologist can report on the oriented
specimen: the relative cranio-caudal position ``cc`` (0 = most cranial, 1 = most caudal) and the relative
antero-posterior position ``ap`` (0 = most anterior, 1 = most posterior). A region is therefore stored as
its cranio-caudal extent (``z_top`` > ``z_bottom``, mm) and, sampled on a z grid, its anterior and posterior
limits ``y_ant(z)`` > ``y_post(z)`` (mm) and a lateral centre ``x(z)`` (mm), all patient RAS.

The limits come from the ``som1999`` landmarks (shared/spec/levels.md): the point landmarks bound each level in z
and the landmark curves bound it antero-posteriorly. Where the rules give no limit (level I has no anterior
curve, level III/IV no anterior one) a fixed offset from the nearest curve is used; the per-container warp
estimated during matching (:class:`Warp`, stretch and shift per axis) absorbs what such fixed choices get wrong.
Without landmarks the region is the bounding box of the MR nodes of those levels on that side, with a margin.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from neckmatch.model import MIDLINE_LEVELS, Case, ContainerLevel, Landmarks, Level, PathNode, Side

__all__ = ["Warp", "ContainerRegion", "Specimen", "reconstruct_specimen", "container_regions"]

FloatArray = NDArray[np.float64]

_N_SAMPLES = 9  # z samples per region
_MARGIN_MM = 5.0  # margin around MR nodes for regions without landmarks
_MIN_EXTENT_MM = 10.0

# Per imaging level: cranial limit, caudal limit (point landmark names or (name, offset mm)), and the anterior /
# posterior limits as (curve stem, y offset mm). "mid" is the midline.
_Z_LIMITS: dict[Level, tuple[tuple[str, float], tuple[str, float]]] = {
    Level.IA: (("hyoid_body_inferior", 35.0), ("hyoid_body_inferior", 0.0)),
    Level.IB: (("hyoid_body_inferior", 35.0), ("hyoid_body_inferior", 0.0)),
    Level.IIA: (("skull_base", 0.0), ("hyoid_body_inferior", 0.0)),
    Level.IIB: (("skull_base", 0.0), ("hyoid_body_inferior", 0.0)),
    Level.RP: (("skull_base", 0.0), ("hyoid_body_inferior", 0.0)),
    Level.VA: (("skull_base", 0.0), ("cricoid_arch_inferior", 0.0)),
    Level.III: (("hyoid_body_inferior", 0.0), ("cricoid_arch_inferior", 0.0)),
    Level.IV: (("cricoid_arch_inferior", 0.0), ("clavicle_superior", 0.0)),
    Level.VB: (("cricoid_arch_inferior", 0.0), ("clavicle_superior", 0.0)),
    Level.VI: (("hyoid_body_inferior", 0.0), ("manubrium_superior", 0.0)),
    Level.VII: (("manubrium_superior", 0.0), ("manubrium_superior", -25.0)),
    Level.SC: (("clavicle_superior", 0.0), ("clavicle_superior", -15.0)),
}
_AP_LIMITS: dict[Level, tuple[tuple[str, float], tuple[str, float]]] = {
    Level.IA: (("SMG_posterior", 40.0), ("SMG_posterior", 0.0)),
    Level.IB: (("SMG_posterior", 35.0), ("SMG_posterior", 0.0)),
    Level.IIA: (("SMG_posterior", 0.0), ("IJV_posterior", 0.0)),
    Level.IIB: (("IJV_posterior", 0.0), ("SCM_posterior", 0.0)),
    Level.RP: (("carotid_medial", 5.0), ("carotid_medial", -15.0)),
    Level.VA: (("SCM_posterior", 0.0), ("trapezius_anterior", 0.0)),
    Level.III: (("carotid_medial", 15.0), ("SCM_posterior", 0.0)),
    Level.IV: (("carotid_medial", 15.0), ("SCM_posterior", 0.0)),
    Level.VB: (("SCM_posterior", 0.0), ("trapezius_anterior", 0.0)),
    Level.VI: (("carotid_medial", 25.0), ("carotid_medial", -10.0)),
    Level.VII: (("carotid_medial", 25.0), ("carotid_medial", -10.0)),
    Level.SC: (("carotid_medial", 10.0), ("trapezius_anterior", 0.0)),
}


@dataclass(frozen=True)
class Warp:
    """Affine map from MR-relative to pathology-relative position, per axis, about the container centre:
    ``path = 0.5 + stretch * (mr - 0.5) + shift`` (a layout stretched or compressed as a whole, and moved).

    Examples
    --------
    >>> Warp(1.2, 0.1, 1.0, 0.0).apply(np.array([1.0]), np.array([0.5]))[0].round(3).tolist()
    [1.2]
    """

    stretch_cc: float = 1.0
    shift_cc: float = 0.0
    stretch_ap: float = 1.0
    shift_ap: float = 0.0

    def apply(self, cc: ArrayLike, ap: ArrayLike) -> tuple[FloatArray, FloatArray]:
        """MR-relative (cc, ap) -> expected pathology-relative (cc, ap); arrays of any equal shape, unitless."""
        cc, ap = np.asarray(cc, dtype=np.float64), np.asarray(ap, dtype=np.float64)
        return (0.5 + self.stretch_cc * (cc - 0.5) + self.shift_cc, 0.5 + self.stretch_ap * (ap - 0.5) + self.shift_ap)

    def invert(self, cc: ArrayLike, ap: ArrayLike) -> tuple[FloatArray, FloatArray]:
        """Pathology-relative (cc, ap) -> MR-relative (cc, ap)."""
        cc, ap = np.asarray(cc, dtype=np.float64), np.asarray(ap, dtype=np.float64)
        return (0.5 + (cc - 0.5 - self.shift_cc) / self.stretch_cc, 0.5 + (ap - 0.5 - self.shift_ap) / self.stretch_ap)


@dataclass(frozen=True)
class ContainerRegion:
    """One container's region in patient space.

    ``z`` is ndarray of shape (K,), float, mm, descending from ``z_top`` (cranial) to ``z_bottom`` (caudal);
    ``y_ant``, ``y_post``, ``x`` are ndarrays of shape (K,), float, mm, RAS: anterior and posterior limit and
    lateral centre at each z. ``source`` is ``landmarks`` or ``mr-nodes``.
    """

    container: str
    side: Side
    level: ContainerLevel
    z: FloatArray
    y_ant: FloatArray
    y_post: FloatArray
    x: FloatArray
    source: str = "landmarks"

    @property
    def z_top(self) -> float:
        return float(self.z[0])

    @property
    def z_bottom(self) -> float:
        return float(self.z[-1])

    def relative(self, points: Any) -> FloatArray:
        """Relative (cc, ap) of points: ndarray (N, 3) float mm RAS -> ndarray (N, 2), unitless (0-1 inside)."""
        p = np.atleast_2d(np.asarray(points, dtype=np.float64))
        zi = p[:, 2]
        cc = (self.z_top - zi) / (self.z_top - self.z_bottom)
        zz, ya, yp = self.z[::-1], self.y_ant[::-1], self.y_post[::-1]
        ant, post = np.interp(zi, zz, ya), np.interp(zi, zz, yp)
        ap = (ant - p[:, 1]) / (ant - post)
        return np.column_stack([cc, ap])

    def absolute(self, cc: Any, ap: Any) -> FloatArray:
        """Points from relative (cc, ap), arrays of shape (N,): ndarray (N, 3), float, mm, RAS."""
        cc = np.asarray(cc, dtype=np.float64)
        z = self.z_top - cc * (self.z_top - self.z_bottom)
        zz = self.z[::-1]
        ant, post = np.interp(z, zz, self.y_ant[::-1]), np.interp(z, zz, self.y_post[::-1])
        y = ant - np.asarray(ap, dtype=np.float64) * (ant - post)
        return np.column_stack([np.interp(z, zz, self.x[::-1]), y, z])

    def extents_mm(self) -> tuple[float, float]:
        """(cranio-caudal extent, mean antero-posterior extent), mm."""
        return self.z_top - self.z_bottom, float(np.mean(self.y_ant - self.y_post))

    def to_json(self) -> dict[str, Any]:
        return {
            "container": self.container,
            "side": self.side.value,
            "level": str(self.level),
            "source": self.source,
            "bounds_ras_mm": {
                "x": [float(self.x.min()), float(self.x.max())],
                "y": [float(self.y_post.min()), float(self.y_ant.max())],
                "z": [self.z_bottom, self.z_top],
            },
            "cc_axis": [0.0, 0.0, -1.0],
            "ap_axis": [0.0, -1.0, 0.0],
            "profile": {k: np.round(getattr(self, k), 3).tolist() for k in ("z", "y_ant", "y_post", "x")},
        }


def _z_of(lm: Landmarks, spec: tuple[str, float], side: Side) -> float:
    name, off = spec
    if name == "clavicle_superior":
        name = f"clavicle_superior_{side.value}"
    return float(lm.point(name)[2]) + off


def _curve_at(lm: Landmarks, stem: str, side: Side, z: FloatArray) -> FloatArray:
    return lm.curve(f"{stem}_{side.value}").at(z)


def _level_profile(lm: Landmarks, level: Level, side: Side, z: FloatArray) -> tuple[FloatArray, ...]:
    """Anterior limit, posterior limit and lateral centre of an imaging level at heights z (mm, RAS)."""
    (a_stem, a_off), (p_stem, p_off) = _AP_LIMITS[level]
    a, p = _curve_at(lm, a_stem, side, z), _curve_at(lm, p_stem, side, z)
    ant, post = a[:, 1] + a_off, p[:, 1] + p_off
    lo, hi = np.minimum(ant, post), np.maximum(ant, post)
    hi = np.maximum(hi, lo + _MIN_EXTENT_MM)
    x = 0.5 * (a[:, 0] + p[:, 0])
    if level in MIDLINE_LEVELS:
        mid = lm.x_mid(z)
        x = mid + np.sign(x - mid) * 5.0
    return hi, lo, x


def _landmark_region(lm: Landmarks, container: str, side: Side, level: ContainerLevel) -> ContainerRegion | None:
    members = [lv for lv in level.imaging_levels() if lv in _Z_LIMITS]
    spans = {}
    for lv in members:
        hi, lo = (_z_of(lm, s, side) for s in _Z_LIMITS[lv])
        spans[lv] = (max(hi, lo), min(hi, lo))
    if not spans:
        return None
    top = max(s[0] for s in spans.values())
    bottom = min(s[1] for s in spans.values())
    bottom = min(bottom, top - _MIN_EXTENT_MM)
    z = np.linspace(top, bottom, _N_SAMPLES)
    ant = np.full(z.shape, -np.inf)
    post = np.full(z.shape, np.inf)
    xs = np.zeros(z.shape)
    count = np.zeros(z.shape)
    for lv, (hi, lo) in spans.items():
        a, p, x = _level_profile(lm, lv, side, z)
        inside = (z <= hi + 1e-6) & (z >= lo - 1e-6)
        if not inside.any():  # a thin level between samples still counts at its nearest sample
            inside = np.abs(z - 0.5 * (hi + lo)) == np.abs(z - 0.5 * (hi + lo)).min()
        ant = np.where(inside, np.maximum(ant, a), ant)
        post = np.where(inside, np.minimum(post, p), post)
        xs += np.where(inside, x, 0.0)
        count += inside
    ok = count > 0
    z, ant, post, xs = z[ok], ant[ok], post[ok], xs[ok] / count[ok]
    if len(z) < 2:
        return None
    return ContainerRegion(container, side, level, z, ant, post, xs, "landmarks")


def _node_region(levels: pd.DataFrame, container: str, side: Side, level: ContainerLevel,
                 min_nodes: int = 1) -> ContainerRegion | None:
    names = {lv.value for lv in level.imaging_levels()}
    rows = levels[(levels["side"].astype(str) == side.value) & levels["level"].astype(str).isin(names)]
    if len(rows) < min_nodes:
        return None
    pts = rows[["x", "y", "z"]].to_numpy(dtype=np.float64)
    top, bottom = pts[:, 2].max() + _MARGIN_MM, pts[:, 2].min() - _MARGIN_MM
    bottom = min(bottom, top - _MIN_EXTENT_MM)
    ant, post = pts[:, 1].max() + _MARGIN_MM, pts[:, 1].min() - _MARGIN_MM
    post = min(post, ant - _MIN_EXTENT_MM)
    z = np.linspace(top, bottom, _N_SAMPLES)
    one = np.ones_like(z)
    return ContainerRegion(container, side, level, z, ant * one, post * one, pts[:, 0].mean() * one, "mr-nodes")


def container_regions(case: Case, levels: pd.DataFrame, frame: str = "nodes") -> dict[str, ContainerRegion]:
    """Region of every container of ``case`` that can be located.

    Parameters
    ----------
    case : Case
    levels : pandas.DataFrame
        The levels.csv table (columns ``side, level, x, y, z`` used).
    frame : {"nodes", "landmarks"}
        ``nodes`` (default): the container's layout extent is that of the MR nodes of its imaging levels on its
        side, padded by 5 mm (the tissue a pathologist lays out is where the nodes are), wherever there are at
        least two such nodes; otherwise, and with ``landmarks``, the landmark region of its levels (MR-node
        bounding box where there are no landmarks).

    Returns
    -------
    dict of str to ContainerRegion
        Keyed by container id; containers that cannot be located are absent.
    """
    out: dict[str, ContainerRegion] = {}
    specs = {c.container: (c.side, c.level) for c in case.containers}
    for p in case.path_nodes:
        specs.setdefault(p.container, (p.side, p.level))
    for name, (side, level) in specs.items():
        region = None
        if frame == "nodes":
            region = _node_region(levels, name, side, level, min_nodes=2)
        if region is None and case.landmarks is not None:
            try:
                region = _landmark_region(case.landmarks, name, side, level)
            except KeyError:
                region = None
        if region is None:
            region = _node_region(levels, name, side, level)
        if region is not None:
            out[name] = region
    return out


@dataclass
class Specimen:
    """The reconstructed specimen: container regions, their estimated warps and the placed pathology nodes.

    ``warps`` maps container id to the :class:`Warp` estimated by matching (identity before matching).
    ``placed`` is a DataFrame with one row per pathology node: ``node, container, x, y, z`` (mm, RAS),
    ``sd_cc_mm, sd_ap_mm`` (1-sigma placement uncertainty along the cranio-caudal and antero-posterior axes)
    and ``positioned`` (True where cc/ap were reported, else the node is spread over the region: centre and
    uniform-distribution sd). Nodes of containers without a region are absent.
    """

    case_id: str
    regions: dict[str, ContainerRegion]
    warps: dict[str, Warp] = field(default_factory=dict)
    placed: pd.DataFrame = field(default_factory=pd.DataFrame)

    def warp(self, container: str) -> Warp:
        return self.warps.get(container, Warp())

    def with_warps(self, warps: dict[str, Warp], path_nodes: tuple[PathNode, ...], sd_rel: float = 0.1) -> Specimen:
        """A copy with new warps and the pathology nodes re-placed through them."""
        new = replace(self, warps=dict(warps))
        new.placed = place_nodes(new, path_nodes, sd_rel)
        return new

    def to_json(self) -> dict[str, Any]:
        """JSON-able dict for ``specimen.json`` (docs/outputs.md)."""
        containers = []
        for name, reg in self.regions.items():
            d = reg.to_json()
            d["warp"] = vars(self.warp(name)).copy() if name in self.warps else vars(Warp()).copy()
            rows = self.placed[self.placed["container"] == name] if len(self.placed) else self.placed
            d["nodes"] = [
                {
                    "node": r.node,
                    "position_ras_mm": [round(float(r.x), 2), round(float(r.y), 2), round(float(r.z), 2)],
                    "sd_cc_mm": round(float(r.sd_cc_mm), 2),
                    "sd_ap_mm": round(float(r.sd_ap_mm), 2),
                    "positioned": bool(r.positioned),
                }
                for r in rows.itertuples()
            ]
            containers.append(d)
        return {"case_id": self.case_id, "coordinates": "RAS mm", "containers": containers}


def place_nodes(specimen: Specimen, path_nodes: tuple[PathNode, ...], sd_rel: float = 0.1) -> pd.DataFrame:
    """Place pathology nodes in their container regions through the container warps.

    Nodes with ``cc``/``ap`` go to the warped position with ``sd_rel`` (relative units) uncertainty scaled by the
    region extent; a missing coordinate puts the node at the region centre on that axis with the sd of a uniform
    distribution over the region (extent / sqrt(12)).
    """
    rows = []
    for p in path_nodes:
        reg = specimen.regions.get(p.container)
        if reg is None:
            continue
        w = specimen.warp(p.container)
        inv_cc, inv_ap = w.invert(0.5 if p.cc is None else p.cc, 0.5 if p.ap is None else p.ap)
        cc_mr = 0.5 if p.cc is None else float(inv_cc)
        ap_mr = 0.5 if p.ap is None else float(inv_ap)
        (x, y, z), (ecc, eap) = reg.absolute([cc_mr], [ap_mr])[0], reg.extents_mm()
        sd_cc = ecc / np.sqrt(12.0) if p.cc is None else sd_rel * ecc / abs(w.stretch_cc)
        sd_ap = eap / np.sqrt(12.0) if p.ap is None else sd_rel * eap / abs(w.stretch_ap)
        rows.append((p.node, p.container, x, y, z, sd_cc, sd_ap, p.cc is not None and p.ap is not None))
    cols = ["node", "container", "x", "y", "z", "sd_cc_mm", "sd_ap_mm", "positioned"]
    return pd.DataFrame(rows, columns=cols)


def reconstruct_specimen(case: Case, levels: pd.DataFrame) -> Specimen:
    """Reconstruct the specimen of ``case``: container regions and pathology nodes placed with identity warps.

    Parameters
    ----------
    case : Case
    levels : pandas.DataFrame
        The levels.csv table of the case (``node, side, level, x, y, z`` ...).

    Returns
    -------
    Specimen
        Matching (:func:`neckmatch.correlation.matching.match_case`) returns a copy with estimated warps.
    """
    spec = Specimen(case.case_id, container_regions(case, levels))
    spec.placed = place_nodes(spec, case.path_nodes)
    return spec
