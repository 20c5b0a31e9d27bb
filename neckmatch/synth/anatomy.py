"""A parametric neck phantom: every landmark of shared/spec/levels.md, with patient-to-patient variation.

The phantom is built in a *local* frame (x = patient right, y = anterior, z = superior, mm, origin at the
cricoid midline) from piecewise-linear profiles of each structure against height, then scaled (neck length and
width), made asymmetric (per-side shifts) and moved by a rigid head pose (tilt, flexion, rotation) and a
scanner offset into patient RAS. Nodes are proposed in the local frame and moved by the same transform.
Geometry (anatomy): skull base ~ C1, hyoid ~ C3 (38 mm above the cricoid), cricoid ~ C6, clavicles ~28 mm and
manubrium ~42 mm below the cricoid; carotid medial edge 14-22 mm from the midline; IJV lateral and posterior
to it; SCM posterior edge 30-58 mm lateral; trapezius anterior edge 55-70 mm lateral, 45-65 mm posterior.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from neckmatch.model import Curve, Landmarks
from neckmatch.synth.params import SynthParams

__all__ = ["Phantom", "HEIGHTS", "make_phantom", "rotation_matrix", "level_box"]

#: Canonical heights (local z, mm, cricoid = 0) of the point landmarks.
HEIGHTS: dict[str, float] = {"skull_base": 90.0, "hyoid": 38.0, "cricoid": 0.0, "clavicle": -28.0, "manubrium": -42.0}

# Profiles: structure -> (z knots, lateral distance from midline, y). Linear between knots, local mm.
_Z = (-60.0, -28.0, 0.0, 38.0, 95.0)
_PROFILES: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "carotid_medial": ((14, 15, 16, 17, 22), (2, 1, 0, -4, -10)),
    "IJV_posterior": ((27, 28, 30, 32, 36), (-4, -6, -8, -10, -16)),
    "SMG_posterior": ((35, 35, 35, 35, 33), (10, 10, 10, 10, 2)),
    "SCM_posterior": ((30, 38, 48, 55, 58), (5, -2, -18, -26, -32)),
    "scalene_anterior": ((35, 32, 28, 24, 22), (-15, -20, -22, -24, -25)),
    "trapezius_anterior": ((70, 68, 65, 60, 55), (-45, -50, -55, -60, -65)),
    "digastric_anterior": ((9, 9, 10, 10, 14), (30, 30, 30, 30, 40)),
}
_CURVE_STEP_MM = 4.0


def rotation_matrix(rx_deg: float, ry_deg: float, rz_deg: float) -> NDArray[np.float64]:
    """Rotation (3, 3) about x, then y, then z (degrees, right-handed, extrinsic).

    Examples
    --------
    >>> np.round(rotation_matrix(0, 0, 90) @ [1.0, 0.0, 0.0], 6).tolist()
    [0.0, 1.0, 0.0]
    """
    a, b, c = np.deg2rad([rx_deg, ry_deg, rz_deg])
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rz @ ry @ rx


@dataclass(frozen=True)
class Phantom:
    """One patient's neck.

    Attributes
    ----------
    landmarks : Landmarks
        All required landmarks, patient RAS mm.
    matrix : ndarray of shape (4, 4), float
        Local phantom frame -> patient RAS mm (rigid).
    z_scale, xy_scale : float
        Neck length and width factors applied in the local frame.
    shift : dict
        Per-side (``"R"``/``"L"``) local (dx, dy) asymmetry shifts, mm.
    """

    landmarks: Landmarks
    matrix: NDArray[np.float64]
    z_scale: float
    xy_scale: float
    shift: dict[str, tuple[float, float]]

    def to_ras(self, local: NDArray[np.float64]) -> NDArray[np.float64]:
        """Local points (N, 3) -> patient RAS mm (N, 3)."""
        return np.asarray(local, dtype=np.float64) @ self.matrix[:3, :3].T + self.matrix[:3, 3]

    def height(self, name: str) -> float:
        """Local z (mm) of a canonical height (``HEIGHTS`` key) after the neck-length scale."""
        return HEIGHTS[name] * self.z_scale


def _local_landmarks(z_scale: float, xy_scale: float, shift: dict[str, tuple[float, float]], cl_dz: dict) -> Landmarks:
    """Landmarks in the local frame (before the head pose)."""
    zs = np.arange(_Z[0], _Z[-1] + 1e-9, _CURVE_STEP_MM)
    curves = {}
    for stem, (lat, ant) in _PROFILES.items():
        d = np.interp(zs, _Z, lat) * xy_scale
        y = np.interp(zs, _Z, ant) * xy_scale
        for side, sign in (("R", 1.0), ("L", -1.0)):
            dx, dy = shift[side]
            pts = np.column_stack([sign * (d + dx), y + dy, zs * z_scale])
            curves[f"{stem}_{side}"] = Curve(f"{stem}_{side}", pts)
    h = {k: v * z_scale for k, v in HEIGHTS.items()}
    points = {
        "skull_base": [0.0, -15.0 * xy_scale, h["skull_base"]],
        "hyoid_body_inferior": [0.0, 30.0 * xy_scale, h["hyoid"]],
        "cricoid_arch_inferior": [0.0, 15.0 * xy_scale, h["cricoid"]],
        "manubrium_superior": [0.0, 10.0 * xy_scale, h["manubrium"]],
    }
    for side, sign in (("R", 1.0), ("L", -1.0)):
        dx, dy = shift[side]
        z_cl = h["clavicle"] + cl_dz[side]
        points[f"clavicle_superior_{side}"] = [sign * (40.0 * xy_scale + dx), 10.0 * xy_scale + dy, z_cl]
    return Landmarks(points={k: np.array(v) for k, v in points.items()}, curves=curves)


def make_phantom(rng: np.random.Generator, params: SynthParams) -> Phantom:
    """Draw one patient's neck: scales, asymmetry, head pose and scanner offset, then all landmarks (RAS mm)."""
    z_scale = float(np.clip(1.0 + rng.normal(0.0, params.neck_length_sd), 0.75, 1.25))
    xy_scale = float(np.clip(1.0 + rng.normal(0.0, params.neck_width_sd), 0.75, 1.25))
    sh = rng.normal(0.0, params.asymmetry_sd_mm, size=(2, 2))
    shift = {"R": (float(sh[0, 0]), float(sh[0, 1])), "L": (float(sh[1, 0]), float(sh[1, 1]))}
    cl = rng.normal(0.0, params.asymmetry_sd_mm, size=2)
    local = _local_landmarks(z_scale, xy_scale, shift, {"R": float(cl[0]), "L": float(cl[1])})
    rx, ry = rng.normal(0.0, params.tilt_sd_deg, size=2)
    rz = rng.normal(0.0, params.rotation_sd_deg)
    m = np.eye(4)
    m[:3, :3] = rotation_matrix(rx, ry, rz)
    m[:3, 3] = rng.normal(0.0, 15.0, size=3) + np.array([0.0, -10.0, -60.0])  # scanner offset of the cricoid
    return Phantom(landmarks=local.transformed(m), matrix=m, z_scale=z_scale, xy_scale=xy_scale, shift=shift)


# Proposal boxes per imaging level, canonical local units: (lateral lo, hi), (y lo, hi), (z lo, hi).
_BOXES: dict[str, tuple[tuple[float, float], tuple[float, float], tuple[float, float]]] = {
    "IA": ((0.0, 10.0), (12.0, 42.0), (39.0, 62.0)),
    "IB": ((10.0, 45.0), (12.0, 42.0), (39.0, 68.0)),
    "IIA": ((18.0, 42.0), (-12.0, 10.0), (39.0, 88.0)),
    "IIB": ((20.0, 56.0), (-32.0, -6.0), (39.0, 88.0)),
    "RP": ((4.0, 17.0), (-24.0, 0.0), (48.0, 85.0)),
    "III": ((17.0, 42.0), (-24.0, 12.0), (1.0, 37.0)),
    "IV": ((16.0, 40.0), (-16.0, 12.0), (-27.0, -1.0)),
    "VA": ((38.0, 68.0), (-60.0, -16.0), (1.0, 80.0)),
    "VB": ((32.0, 68.0), (-52.0, -10.0), (-27.0, -1.0)),
    "VI": ((1.0, 14.0), (-5.0, 22.0), (-40.0, 36.0)),
    "VII": ((1.0, 13.0), (-5.0, 18.0), (-60.0, -44.0)),
    "SC": ((18.0, 60.0), (-35.0, 12.0), (-50.0, -32.0)),
}


def level_box(phantom: Phantom, level: str) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Proposal box of a level in the local frame: (lo, hi), each ndarray (3,) of (lateral, y, z) mm.

    The box is only a proposal region; a candidate is kept where ``assign_levels`` puts it in ``level``.
    """
    lat, ant, zz = _BOXES[level]
    s, t = phantom.xy_scale, phantom.z_scale
    lo = np.array([lat[0] * s, ant[0] * s, zz[0] * t])
    hi = np.array([lat[1] * s, ant[1] * s, zz[1] * t])
    return lo, hi
