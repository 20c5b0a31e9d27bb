"""Reference structures drawn with the levels so a viewer can orient at a glance: schematic, from the landmarks.

Every structure that defines a level boundary in the atlases (Som 1999; Grégoire 2014) is drawn as a light
surface placed by the case's landmarks (shared/spec/levels.md), RAS mm; none of them is measured from an image:

==========================  ========================================================================================
structure                   placement
==========================  ========================================================================================
``mandible``                a 4.5 mm tube: symphysis 12 mm in front of the anterior digastric bellies at
                            ``z_md = z_hy + 0.5 (z_sb - z_hy)``, body back to the angle 8 mm lateral to the SMG's
                            posterior edge, ramus up to 8 mm below the skull base
``hyoid``                   a 2.5 mm U: body at the hyoid landmark, greater horns back to the carotids
``thyroid_cartilage``       a 2 mm V-shaped shield from the hyoid down to 8 mm above the cricoid's lower border
``cricoid_cartilage``       a 2.5 mm ring around the airway just above ``cricoid_arch_inferior``
``airway``                  the larynx and trachea: a tube along the airway of ``regions.in_neck``
``carotid_R`` / ``_L``      a 3.5 mm tube 4 mm lateral to ``carotid_medial``, from the manubrium to the skull base
``jugular_R`` / ``_L``      a 5 mm tube 5 mm in front of ``IJV_posterior``, lateral to the carotid
``SCM_R`` / ``_L``          a 6 mm tube 9 mm in front of ``SCM_posterior``, ending at the sternoclavicular joint
``submandibular_gland_*``   an ellipsoid in front of ``SMG_posterior``, 12 mm above the hyoid
``clavicle_R`` / ``_L``     a 6 mm tube from the manubrium under ``clavicle_superior`` towards the trapezius
==========================  ========================================================================================
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from neckmatch.geometry.levels import require_landmarks
from neckmatch.model import Landmarks

__all__ = ["Structure", "reference_structures", "tube"]

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class Structure:
    """One reference structure: name, tissue (a key of ``colors.ANATOMY_COLORS``), side, surface (RAS mm).

    vertices : ndarray of shape (V, 3), float, mm, RAS. faces : ndarray of shape (F, 3), int, outward winding.
    """

    name: str
    tissue: str
    side: str
    vertices: FloatArray
    faces: NDArray[np.int64]


def _resample(path: FloatArray, step_mm: float = 3.0) -> FloatArray:
    """The polyline ``path`` (K, 3) resampled at about ``step_mm`` along its length, lightly smoothed."""
    seg = np.linalg.norm(np.diff(path, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    n = max(int(np.ceil(s[-1] / step_mm)) + 1, 2)
    t = np.linspace(0.0, s[-1], n)
    out = np.column_stack([np.interp(t, s, path[:, k]) for k in range(3)])
    if n > 4:
        out[1:-1] = (out[:-2] + 2 * out[1:-1] + out[2:]) / 4.0
    return out


def tube(path: FloatArray, radius: float | FloatArray, sections: int = 12,
         closed: bool = False) -> tuple[FloatArray, NDArray[np.int64]]:
    """A closed surface around a polyline: rings of ``sections`` vertices, end caps (or a ring when ``closed``).

    Parameters
    ----------
    path : ndarray of shape (K, 3), float, mm, RAS
        The centre line, K >= 2 distinct points.
    radius : float or ndarray of shape (K,), float, mm
    sections : int
        Vertices per ring.
    closed : bool
        Join the last ring to the first (a torus-like ring) instead of capping both ends.

    Returns
    -------
    vertices : ndarray of shape (V, 3), float, mm, RAS
    faces : ndarray of shape (F, 3), int, wound outward

    Examples
    --------
    >>> v, f = tube(np.array([[0.0, 0, 0], [0, 0, 10]]), 2.0, sections=8)
    >>> v.shape, f.shape, np.allclose(np.linalg.norm(v[:16, :2], axis=1), 2.0)
    ((18, 3), (32, 3), True)
    """
    path = np.asarray(path, dtype=np.float64)
    k = len(path)
    rad = np.broadcast_to(np.asarray(radius, dtype=np.float64), (k,))
    tang = np.gradient(path, axis=0) if not closed else np.roll(path, -1, axis=0) - np.roll(path, 1, axis=0)
    tang /= np.maximum(np.linalg.norm(tang, axis=1, keepdims=True), 1e-9)
    ref = np.array([0.0, 0.0, 1.0]) if abs(tang[0, 2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    normal = np.cross(tang[0], ref)
    normal /= np.linalg.norm(normal)
    angles = np.linspace(0.0, 2 * np.pi, sections, endpoint=False)
    rings = []
    for i in range(k):  # parallel transport of the normal along the path keeps the rings from twisting
        normal = normal - normal @ tang[i] * tang[i]
        normal /= max(np.linalg.norm(normal), 1e-9)
        binormal = np.cross(tang[i], normal)
        rings.append(path[i] + rad[i] * (np.outer(np.cos(angles), normal) + np.outer(np.sin(angles), binormal)))
    verts = np.concatenate(rings)
    idx = np.arange(k * sections).reshape(k, sections)
    nxt = np.roll(idx, -1, axis=1)
    pairs = range(k) if closed else range(k - 1)
    faces = []
    for i in pairs:
        j = (i + 1) % k
        faces.append(np.column_stack([idx[i], nxt[i], nxt[j]]))
        faces.append(np.column_stack([idx[i], nxt[j], idx[j]]))
    if not closed:
        start, end = len(verts), len(verts) + 1
        verts = np.vstack([verts, path[0], path[-1]])
        faces.append(np.column_stack([np.full(sections, start), nxt[0], idx[0]]))
        faces.append(np.column_stack([np.full(sections, end), idx[-1], nxt[-1]]))
    return verts, np.concatenate(faces).astype(np.int64)


def _ellipsoid(centre: FloatArray, radii: tuple[float, float, float], n: int = 10) -> tuple[FloatArray, NDArray]:
    """An ellipsoid as a tube along its z axis with elliptic radius profile."""
    t = np.linspace(-1.0, 1.0, n)
    path = np.column_stack([np.zeros(n), np.zeros(n), t * radii[2]])
    verts, faces = tube(path, np.sqrt(np.maximum(1.0 - t**2, 0.02)), sections=14)
    verts[:, 0] *= radii[0]
    verts[:, 1] *= radii[1]
    return verts + centre, faces


class _Neck:
    """The landmark quantities the structures are placed by (heights, midline, per-side curves at a height)."""

    def __init__(self, lm: Landmarks) -> None:
        self.lm = lm
        self.z_sb, self.z_hy = lm.point("skull_base")[2], lm.point("hyoid_body_inferior")[2]
        self.z_cr, self.z_mn = lm.point("cricoid_arch_inferior")[2], lm.point("manubrium_superior")[2]
        self.z_md = self.z_hy + 0.5 * (self.z_sb - self.z_hy)
        self.mids = lm.midline_points()

    def mid(self, z: float) -> tuple[float, float]:
        """(x, y) of the anterior midline at height z."""
        return (float(np.interp(z, self.mids[:, 2], self.mids[:, 0])),
                float(np.interp(z, self.mids[:, 2], self.mids[:, 1])))

    def at(self, stem: str, side: str, z: float) -> FloatArray:
        return self.lm.curve(f"{stem}_{side}").at(z)

    def airway(self, z: float) -> tuple[FloatArray, float, float]:
        """Centre (x, y) and lateral / antero-posterior half-axes of the airway at z (as ``regions.in_neck``)."""
        xm, ym = self.mid(z)
        car = [self.at("carotid_medial", sd, z) for sd in "RL"]
        y_car = (car[0][1] + car[1][1]) / 2.0
        lat = max(0.25 * (abs(car[0][0] - xm) + abs(car[1][0] - xm)), 1.0)
        return np.array([xm, (ym + y_car) / 2.0]), lat, 0.3 * max(ym - y_car, 10.0)


def _sign(side: str) -> float:
    return 1.0 if side == "R" else -1.0


def _mandible(nk: _Neck) -> FloatArray:
    z = nk.z_md
    xm, _ = nk.mid(z)
    front = max(nk.at("digastric_anterior", sd, z)[1] for sd in "RL") + 12.0
    half = []
    for sd in "R":
        s = _sign(sd)
        smg = nk.at("SMG_posterior", sd, z)
        lat = abs(smg[0] - xm) + 8.0
        angle = np.array([xm + s * lat, nk.at("IJV_posterior", sd, z)[1] + 4.0, z - 4.0])
        body = np.array([xm + s * 0.75 * lat, (front + angle[1]) / 2.0 + 6.0, z])
        ramus = angle + np.array([0.0, -4.0, max(nk.z_sb - 8.0 - angle[2], 5.0)])
        half = [ramus, angle, body, np.array([xm + s * 0.3 * lat, front - 3.0, z]), np.array([xm, front, z])]
    right = np.array(half)
    left = right[::-1].copy()
    left[:, 0] = 2 * xm - left[:, 0]
    return np.vstack([right, left[1:]])


def _u_shape(nk: _Neck, z: float, front: float, back: float, spread: float) -> FloatArray:
    """A horizontal U at height z: from the back on the right round the front midline to the back on the left."""
    xm, _ = nk.mid(z)
    t = np.linspace(-np.pi / 2, np.pi / 2, 13)
    x = xm + spread * np.sin(t)
    y = back + (front - back) * np.cos(t)
    return np.column_stack([x, y, np.full_like(x, z)])


def _midline_structures(nk: _Neck) -> list[Structure]:
    out = []
    verts, faces = tube(_resample(_mandible(nk)), 4.5)
    out.append(Structure("mandible", "bone", "", verts, faces))
    hy = nk.lm.point("hyoid_body_inferior")
    car_y = float(np.mean([nk.at("carotid_medial", sd, hy[2])[1] for sd in "RL"]))
    spread = float(np.mean([abs(nk.at("carotid_medial", sd, hy[2])[0] - hy[0]) for sd in "RL"])) + 6.0
    verts, faces = tube(_resample(_u_shape(nk, hy[2] + 2.5, hy[1] + 1.0, car_y + 4.0, spread), 2.0), 2.5)
    out.append(Structure("hyoid", "bone", "", verts, faces))
    centre, lat, ap = nk.airway(nk.z_cr + 15.0)
    z_top, z_bot = nk.z_hy - 4.0, nk.z_cr + 8.0
    if z_top > z_bot:
        rows = []
        for z in np.linspace(z_top, z_bot, 6):
            c, la, a = nk.airway(z)
            xm, ym = nk.mid(z)
            rows.append([[c[0] + la + 5.0, c[1] - a * 0.6, z], [xm, ym + 3.0, z], [c[0] - la - 5.0, c[1] - a * 0.6, z]])
        shield = np.array(rows)  # (6 heights, 3 points): a V (laminae meeting in front) at each height
        for j, sd in ((0, "R"), (2, "L")):
            lamina = np.concatenate([shield[:, j], shield[::-1, 1]])
            verts, faces = tube(_resample(lamina, 3.0), 1.5, sections=6, closed=True)
            out.append(Structure(f"thyroid_cartilage_{sd}", "cartilage", sd, verts, faces))
    t = np.linspace(0.0, 2 * np.pi, 24, endpoint=False)
    c, la, a = nk.airway(nk.z_cr + 3.0)
    ring = np.column_stack([c[0] + (la + 3.0) * np.sin(t), c[1] + (a + 3.0) * np.cos(t), np.full(24, nk.z_cr + 3.0)])
    verts, faces = tube(ring, 2.5, sections=8, closed=True)
    out.append(Structure("cricoid_cartilage", "cartilage", "", verts, faces))
    zs = np.linspace(nk.z_mn - 20.0, nk.z_hy + 20.0, 12)
    path = np.array([[*nk.airway(z)[0], z] for z in zs])
    radius = np.array([min(nk.airway(z)[1], nk.airway(z)[2]) for z in zs])
    verts, faces = tube(path, radius, sections=14)
    out.append(Structure("airway", "airway", "", verts, faces))
    return out


def _side_structures(nk: _Neck, sd: str) -> list[Structure]:
    s, out = _sign(sd), []
    zs = np.linspace(nk.z_mn - 5.0, nk.z_sb, 24)
    car = np.array([[*(nk.at("carotid_medial", sd, z) + (s * 4.0, 0.0)), z] for z in zs])
    verts, faces = tube(car, 3.5)
    out.append(Structure(f"carotid_{sd}", "artery", sd, verts, faces))
    ijv = np.array([[car[i, 0] + s * 7.0, nk.at("IJV_posterior", sd, z)[1] + 5.0, z] for i, z in enumerate(zs)])
    verts, faces = tube(ijv, 5.0)
    out.append(Structure(f"jugular_{sd}", "vein", sd, verts, faces))
    zs = np.linspace(nk.z_mn + 4.0, nk.z_sb - 5.0, 24)
    xm, ym = nk.mid(nk.z_mn)
    joint = np.array([xm + s * 14.0, ym + 4.0, nk.z_mn + 4.0])
    w = np.clip((zs - nk.z_mn) / max(nk.z_cr - nk.z_mn, 1.0), 0.0, 1.0)[:, None]  # 0 at the joint, 1 from cricoid
    muscle = np.array([[*(nk.at("SCM_posterior", sd, z) + (s * 3.0, 9.0)), z] for z in zs])
    verts, faces = tube(w * muscle + (1 - w) * joint, 6.0)
    out.append(Structure(f"SCM_{sd}", "muscle", sd, verts, faces))
    z = nk.z_hy + 12.0
    smg = nk.at("SMG_posterior", sd, z)
    verts, faces = _ellipsoid(np.array([smg[0] - s * 2.0, smg[1] + 12.0, z]), (9.0, 12.0, 10.0))
    out.append(Structure(f"submandibular_gland_{sd}", "gland", sd, verts, faces))
    top = nk.lm.point(f"clavicle_superior_{sd}")
    trap = nk.at("trapezius_anterior", sd, top[2])
    path = np.array([[xm + s * 10.0, ym - 2.0, nk.z_mn - 2.0], top - (0.0, 0.0, 6.0),
                     [trap[0] + s * 5.0, trap[1] + 12.0, top[2] - 2.0]])
    verts, faces = tube(_resample(path, 4.0), 6.0)
    out.append(Structure(f"clavicle_{sd}", "bone", sd, verts, faces))
    return out


def reference_structures(landmarks: Landmarks) -> list[Structure]:
    """The reference structures of the module docstring, placed by the landmarks (RAS mm).

    Raises
    ------
    InputError
        A required landmark is missing (named).
    """
    nk = _Neck(require_landmarks(landmarks))
    return _midline_structures(nk) + _side_structures(nk, "R") + _side_structures(nk, "L")
