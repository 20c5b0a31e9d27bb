"""Level regions: a level label map on a grid, per-level surface meshes, and atlas-mode level assignment.

:func:`level_label_map` evaluates the ``som1999`` rules (:func:`neckmatch.geometry.levels.assign_levels`) at every
voxel centre of a grid inside a plausible neck envelope; :func:`level_meshes` turns the regions into surfaces
(RAS mm). Where a user has a level label map from an auto-contouring tool instead of landmarks,
:func:`assign_levels_atlas` gives each MR node the majority level of its voxels, with the level names parsed
by :func:`parse_level_name`.

Label values (:data:`LEVEL_LABELS`): right side 1-12, left side 13-24, each in the order of
:class:`~neckmatch.model.Level` (IA, IB, IIA, IIB, III, IV, VA, VB, VI, VII, RP, SC); 0 = background. Names are
TG-263 style, ``LN_Neck_<level>_<side>`` (``LN_Neck_IIA_R``, ``LN_Neck_RP_L``, ``LN_Neck_SC_R``).

Neck envelope (:func:`in_neck_envelope`): the rules classify all of space, so the regions are clipped to where
the neck is; with ``m = margin_mm`` and curves of the point's side (midline rule), a voxel centre is kept if

- ``z <= z_sb`` (skull base) and ``z >= min(z_clavicle_L, z_clavicle_R, z_manubrium) - m``;
- ``y >= ant(trapezius_anterior)`` (posterior limit: nothing behind the trapezius);
- ``dlat <= max(lat(SCM_posterior), lat(trapezius_anterior), lat(SMG_posterior), lat(scalene_anterior)) + m``
  (lateral limit);
- ``y <= max(ant(digastric_anterior), ant(SMG_posterior) of both sides, y_mid(z)) + m`` (anterior limit), where
  ``y_mid`` interpolates y over the three midline points like ``x_mid``.

Neck shape (:func:`in_neck`, used for the level regions): the envelope above confined to the neck as the
landmarks draw it, so that the regions look like a neck and not like a stack of boxes, with the structures that
bound the levels in the atlases (Som 1999; Grégoire 2014) standing in for the infinite planes of the rules:

- body contour: inside the superellipse ``|dlat / W|^2.2 + |(y - y_c) / H|^2.2 <= 1`` with ``W`` the envelope's
  lateral limit of the point's side, front ``F = max(ant(digastric_anterior), ant(SMG_posterior), y_mid) + m``,
  back ``B = min(ant(trapezius_anterior)) - m`` of both sides, ``y_c = (F + B) / 2``, ``H = (F - B) / 2``;
- airway (pharynx, larynx, trachea): outside the ellipse centred at ``(x_mid, (y_mid + y_car) / 2)``, ``y_car``
  the mean ``ant(carotid_medial)`` of both sides, half-axes ``0.5 * lat(carotid_medial)`` (mean of both sides,
  lateral) and ``0.3 * max(y_mid - y_car, 10)`` (antero-posterior);
- spine and prevertebral muscles: medial (``dlat < lat(carotid_medial)``) and ``y < ant(carotid_medial) - 6`` is
  outside (the carotid sheath's medial edge bounds levels II-IV, VI and RP from behind the pharynx);
- mandible and floor of mouth: above ``z_md = z_hy + 0.5 (z_sb - z_hy)`` and anterior to ``ant(SMG_posterior)``
  is outside (level I ends at the mylohyoid and the mandible, not at the skull base).

Every voxel the shape keeps still gets exactly the level of :func:`~neckmatch.geometry.levels.assign_levels`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import trimesh
from numpy.typing import NDArray

from neckmatch.errors import InputError
from neckmatch.geometry.levels import assign_levels, require_landmarks
from neckmatch.model import LabelMap, Landmarks, Level, Side, SurgicalLevel

__all__ = [
    "LEVEL_LABELS",
    "LEVEL_NAMES",
    "level_name",
    "in_neck_envelope",
    "in_neck",
    "axial_fill_ratio",
    "level_label_map",
    "level_meshes",
    "write_level_regions",
    "parse_level_name",
    "assign_levels_atlas",
]

FloatArray = NDArray[np.float64]

#: (side, level) -> label value in level maps: right 1-12, left 13-24, in Level order.
LEVEL_LABELS: dict[tuple[Side, Level], int] = {
    (side, lv): i + 1 + 12 * k for k, side in enumerate((Side.R, Side.L)) for i, lv in enumerate(Level)
}


def level_name(side: Side | str, level: Level | str) -> str:
    """TG-263 style structure name of a level region.

    Examples
    --------
    >>> level_name("R", "IIA"), level_name(Side.L, Level.SC)
    ('LN_Neck_IIA_R', 'LN_Neck_SC_L')
    """
    return f"LN_Neck_{Level(level).value}_{Side(side).value}"


#: label value -> TG-263 style name, e.g. ``{3: "LN_Neck_IIA_R", ...}``.
LEVEL_NAMES: dict[int, str] = {v: level_name(s, lv) for (s, lv), v in LEVEL_LABELS.items()}


class _AtHeights:
    """Landmark curves at the heights of many points: once per distinct height where the points share few (an axial
    grid), then gathered; directly per point otherwise (an oblique grid). Each curve is evaluated once."""

    def __init__(self, landmarks: Landmarks, z: FloatArray) -> None:
        self.lm = landmarks
        z = np.asarray(z, dtype=np.float64)
        self.n = len(z)
        sample = z[:: max(1, self.n // 512)]
        self.inv: NDArray[np.intp] | None = None
        self.zs = z
        if len(np.unique(sample)) * 4 < len(sample):
            self.zs, self.inv = np.unique(z, return_inverse=True)
        self._raw: dict[str, FloatArray] = {}
        self._cache: dict[str, FloatArray] = {}
        mids = landmarks.midline_points()
        self.x_mid = self._gather(np.interp(self.zs, mids[:, 2], mids[:, 0]))
        self.y_mid = self._gather(np.interp(self.zs, mids[:, 2], mids[:, 1]))

    def _gather(self, values: FloatArray) -> FloatArray:
        if self.inv is None:
            return values
        if len(values) == 1:  # one axial slice: a read-only broadcast, no copy
            return np.broadcast_to(values[0], (self.n, *values.shape[1:]))
        return values[self.inv]

    def _at(self, name: str) -> FloatArray:
        """(x, y) of a curve at each of :attr:`zs`: ndarray of shape (len(zs), 2)."""
        if name not in self._raw:
            self._raw[name] = self.lm.curve(name).at(self.zs)
        return self._raw[name]

    def curve(self, name: str) -> FloatArray:
        """(x, y) of a curve at each point's height: ndarray of shape (N, 2), float, mm."""
        if name not in self._cache:
            self._cache[name] = self._gather(self._at(name))
        return self._cache[name]

    def sides(self, stem: str, right: NDArray[np.bool_]) -> FloatArray:
        """(x, y) of the curve of each point's side: ndarray of shape (N, 2), float, mm."""
        r, left = self._at(f"{stem}_R"), self._at(f"{stem}_L")
        if self.inv is None or len(r) == 1:
            return np.where(right[:, None], self.curve(f"{stem}_R"), self.curve(f"{stem}_L"))
        return np.concatenate([r, left])[self.inv + len(r) * ~right]  # one gather from both sides' heights


def in_neck_envelope(points: FloatArray, landmarks: Landmarks, margin_mm: float = 10.0) -> NDArray[np.bool_]:
    """True where points lie inside the plausible neck envelope of the module docstring.

    Parameters
    ----------
    points : ndarray of shape (N, 3), float, mm, RAS
    landmarks : Landmarks
        Every required landmark of shared/spec/levels.md.
    margin_mm : float
        Margin (mm) beyond the lateral, anterior and caudal landmarks.

    Returns
    -------
    ndarray of shape (N,), bool
    """
    lm = require_landmarks(landmarks)
    return _envelope(points, lm, margin_mm, _AtHeights(lm, points[:, 2]))


def _envelope(points: FloatArray, lm: Landmarks, margin_mm: float, at: _AtHeights) -> NDArray[np.bool_]:
    x, y, z = points[:, 0], points[:, 1], points[:, 2]
    right = x > at.x_mid
    dlat = np.abs(x - at.x_mid)
    z_low = min(lm.point("clavicle_superior_L")[2], lm.point("clavicle_superior_R")[2])
    z_low = min(z_low, lm.point("manubrium_superior")[2]) - margin_mm
    keep = (z <= lm.point("skull_base")[2]) & (z >= z_low)
    keep &= y >= at.sides("trapezius_anterior", right)[:, 1]
    lateral = np.max(
        [
            np.abs(at.sides(s, right)[:, 0] - at.x_mid)
            for s in ("SCM_posterior", "trapezius_anterior", "SMG_posterior", "scalene_anterior")
        ],
        axis=0,
    )
    keep &= dlat <= lateral + margin_mm
    fronts = [at.y_mid] + [at.curve(f"{s}_{sd}")[:, 1] for s in ("digastric_anterior", "SMG_posterior") for sd in "LR"]
    keep &= y <= np.max(fronts, axis=0) + margin_mm
    return keep


def in_neck(points: FloatArray, landmarks: Landmarks, margin_mm: float = 10.0) -> NDArray[np.bool_]:
    """True where points lie in the neck's soft tissue: the envelope, the body contour, outside airway and spine.

    See the module docstring (*Neck shape*) for every term.

    Parameters
    ----------
    points : ndarray of shape (N, 3), float, mm, RAS
    landmarks : Landmarks
        Every required landmark of shared/spec/levels.md.
    margin_mm : float
        Margin (mm) of the envelope and of the body contour beyond the outermost landmarks.

    Returns
    -------
    ndarray of shape (N,), bool
    """
    lm = require_landmarks(landmarks)
    keep = _envelope(points, lm, margin_mm, _AtHeights(lm, points[:, 2]))
    inside = points[keep]  # the shape terms only where the envelope keeps a point
    keep[keep] = _shape(inside, lm, margin_mm, _AtHeights(lm, inside[:, 2]))
    return keep


def _shape(points: FloatArray, lm: Landmarks, margin_mm: float, at: _AtHeights) -> NDArray[np.bool_]:
    """Body contour, airway, spine and floor of mouth of the module docstring (True = kept)."""
    x, y, z = points[:, 0], points[:, 1], points[:, 2]
    dlat, right = np.abs(x - at.x_mid), x > at.x_mid
    car_r, car_l = at.curve("carotid_medial_R"), at.curve("carotid_medial_L")
    dcar_r, dcar_l = np.abs(car_r[:, 0] - at.x_mid), np.abs(car_l[:, 0] - at.x_mid)
    # body contour
    lateral = np.max([np.abs(at.sides(s, right)[:, 0] - at.x_mid) for s in (
        "SCM_posterior", "trapezius_anterior", "SMG_posterior", "scalene_anterior")], axis=0) + margin_mm
    front = np.max([at.y_mid] + [at.curve(f"{s}_{sd}")[:, 1] for s in ("digastric_anterior", "SMG_posterior")
                                 for sd in "RL"], axis=0) + margin_mm
    back = np.minimum(at.curve("trapezius_anterior_R")[:, 1], at.curve("trapezius_anterior_L")[:, 1]) - margin_mm
    half = np.maximum((front - back) / 2.0, 1.0)
    keep = (dlat / lateral) ** 2.2 + (np.abs(y - (front + back) / 2.0) / half) ** 2.2 <= 1.0
    # airway
    y_car = (car_r[:, 1] + car_l[:, 1]) / 2.0
    air_lat = np.maximum(0.25 * (dcar_r + dcar_l), 1.0)
    air_ap = 0.3 * np.maximum(at.y_mid - y_car, 10.0)
    keep &= (dlat / air_lat) ** 2 + ((y - (at.y_mid + y_car) / 2.0) / air_ap) ** 2 > 1.0
    # spine and prevertebral muscles
    keep &= ~((dlat < np.where(right, dcar_r, dcar_l)) & (y < np.where(right, car_r[:, 1], car_l[:, 1]) - 6.0))
    # mandible and floor of mouth above level I
    z_hy, z_sb = lm.point("hyoid_body_inferior")[2], lm.point("skull_base")[2]
    keep &= ~((z > z_hy + 0.5 * (z_sb - z_hy)) & (y > at.sides("SMG_posterior", right)[:, 1]))
    return keep


def axial_fill_ratio(level_map: LabelMap, z: float) -> float:
    """Share of the bounding box of the level union that the union fills on the axial slice nearest ``z``.

    A stack of boxes fills nearly all of it (0.99 for the old regions); a neck cross-section with its airway and
    spine left out fills far less.

    Parameters
    ----------
    level_map : LabelMap
        Level regions on an axis-aligned RAS grid (``level_label_map(..., spacing_mm=...)``).
    z : float
        Height of the slice, mm, RAS.

    Returns
    -------
    float
        Voxels of the union / voxels of its bounding rectangle on that slice; 0.0 for an empty slice.

    Examples
    --------
    >>> data = np.zeros((4, 4, 2), dtype=np.uint8); data[1:3, 0:4, 0] = 3; data[0, 0, 0] = 1
    >>> axial_fill_ratio(LabelMap(data, np.eye(4)), 0.2)
    0.75
    """
    k = int(np.rint(level_map.to_ijk(np.array([[0.0, 0.0, z]]))[0, 2]))
    if not 0 <= k < level_map.data.shape[2]:
        return 0.0
    sl = level_map.data[:, :, k] > 0
    if not sl.any():
        return 0.0
    rows, cols = np.flatnonzero(sl.any(axis=1)), np.flatnonzero(sl.any(axis=0))
    box = (rows[-1] - rows[0] + 1) * (cols[-1] - cols[0] + 1)
    return float(sl.sum() / box)


def _envelope_grid(
    landmarks: Landmarks, margin_mm: float, spacing_mm: float
) -> tuple[tuple[int, int, int], FloatArray]:
    """Shape and affine of an axis-aligned RAS grid of ``spacing_mm`` covering the envelope."""
    pts = np.vstack(
        [np.atleast_2d(p) for p in landmarks.points.values()] + [c.points for c in landmarks.curves.values()]
    )
    lo, hi = pts.min(axis=0) - margin_mm, pts.max(axis=0) + margin_mm
    lo[2] = min(landmarks.point(n)[2] for n in ("clavicle_superior_L", "clavicle_superior_R", "manubrium_superior"))
    lo[2] -= margin_mm
    hi[2] = landmarks.point("skull_base")[2]
    shape = tuple(int(n) for n in np.floor((hi - lo) / spacing_mm).astype(int) + 1)
    affine = np.eye(4)
    affine[:3, :3] *= spacing_mm
    affine[:3, 3] = lo
    return shape, affine  # type: ignore[return-value]


def _label_values(side: NDArray, level: NDArray) -> NDArray[np.uint8]:
    """Label values (LEVEL_LABELS) of side / level string arrays; 0 where the level is ``""``."""
    table = np.zeros((2, len(Level) + 1), dtype=np.uint8)
    for (s, lv), v in LEVEL_LABELS.items():
        table[0 if s is Side.R else 1, list(Level).index(lv) + 1] = v
    lv_u, lv_inv = np.unique(level, return_inverse=True)
    lv_idx = np.array([list(Level).index(Level(u)) + 1 if u else 0 for u in lv_u], dtype=np.int64)
    return table[(side == "L").astype(np.int64), lv_idx[lv_inv]]


def level_label_map(
    landmarks: Landmarks,
    reference: LabelMap | None = None,
    margin_mm: float = 10.0,
    spacing_mm: float | None = None,
    chunk_voxels: int = 1_000_000,
) -> tuple[LabelMap, dict[int, str]]:
    """Level regions on a grid: the ``som1999`` level of every voxel centre inside the neck (:func:`in_neck`).

    Parameters
    ----------
    landmarks : Landmarks
        Every required landmark (RAS mm).
    reference : LabelMap, optional
        The grid to label (the MR node map: same shape and affine). Not needed with ``spacing_mm``.
    margin_mm : float
        Envelope margin (mm), see the module docstring.
    spacing_mm : float, optional
        If given, label an axis-aligned RAS grid of this isotropic spacing covering the envelope instead.
    chunk_voxels : int
        Voxels evaluated at once (bounds memory to ~ a few hundred bytes per voxel of one chunk).

    Returns
    -------
    level_map : LabelMap
        uint8 values of :data:`LEVEL_LABELS`, 0 outside the neck or outside every level.
    names : dict of int to str
        Label value -> TG-263 style name, for the values present.

    Raises
    ------
    InputError
        A required landmark is missing (named), or neither ``reference`` nor a positive ``spacing_mm``.
    """
    require_landmarks(landmarks)
    if spacing_mm is not None:
        if not np.isfinite(spacing_mm) or spacing_mm <= 0:
            raise InputError("options", "spacing_mm", f"must be > 0, got {spacing_mm}")
        shape, affine = _envelope_grid(landmarks, margin_mm, float(spacing_mm))
    elif reference is not None:
        shape, affine = reference.data.shape, reference.affine
    else:
        raise InputError("options", "reference", "need a reference grid or spacing_mm, got neither")
    out = np.zeros(int(np.prod(shape)), dtype=np.uint8)  # voxels in Fortran order: the last axis (heights) slowest
    lin = affine[:3, :3].T
    for start in range(0, out.size, chunk_voxels):  # an axis-aligned grid's few heights: curves once per height
        flat = np.arange(start, min(start + chunk_voxels, out.size))
        ras = np.column_stack(np.unravel_index(flat, shape, order="F")).astype(np.float64) @ lin + affine[:3, 3]
        inside = in_neck(ras, landmarks, margin_mm)
        if inside.any():
            res = assign_levels(ras[inside], landmarks)
            out[flat[inside]] = _label_values(res.side, res.level)
    data = np.ascontiguousarray(out.reshape(shape, order="F"))
    present = np.unique(data)
    names = {int(v): LEVEL_NAMES[int(v)] for v in present if v}
    return LabelMap(data, affine, names), names


def _surface(mask: NDArray[np.bool_], smooth_iterations: int) -> tuple[FloatArray, NDArray[np.int64]]:
    """Vertices (voxel index units) and triangles of a binary mask's boundary (vtk discrete flying edges)."""
    from vtkmodules.util.numpy_support import numpy_to_vtk, vtk_to_numpy
    from vtkmodules.vtkCommonDataModel import vtkImageData
    from vtkmodules.vtkFiltersCore import vtkWindowedSincPolyDataFilter
    from vtkmodules.vtkFiltersGeneral import vtkDiscreteFlyingEdges3D

    img = vtkImageData()
    img.SetDimensions(*mask.shape)
    img.GetPointData().SetScalars(numpy_to_vtk(mask.astype(np.uint8).ravel(order="F"), deep=True))
    fe = vtkDiscreteFlyingEdges3D()
    fe.SetInputData(img)
    fe.SetValue(0, 1)
    fe.ComputeNormalsOff()
    fe.ComputeGradientsOff()
    if smooth_iterations > 0:
        sm = vtkWindowedSincPolyDataFilter()
        sm.SetInputConnection(fe.GetOutputPort())
        sm.SetNumberOfIterations(smooth_iterations)
        sm.SetPassBand(0.1)
        sm.NormalizeCoordinatesOn()
        sm.NonManifoldSmoothingOn()
        sm.BoundarySmoothingOff()
        sm.FeatureEdgeSmoothingOff()
        sm.Update()
        poly = sm.GetOutput()
    else:
        fe.Update()
        poly = fe.GetOutput()
    verts = vtk_to_numpy(poly.GetPoints().GetData()).astype(np.float64)
    faces = vtk_to_numpy(poly.GetPolys().GetConnectivityArray()).astype(np.int64).reshape(-1, 3)
    return verts, faces


def level_meshes(
    level_map: LabelMap, names: Mapping[int, str] | None = None, smooth_iterations: int = 10
) -> dict[str, trimesh.Trimesh]:
    """One closed surface mesh per level region, in RAS mm.

    Parameters
    ----------
    level_map : LabelMap
        From :func:`level_label_map` (or any label map).
    names : mapping of int to str, optional
        Label value -> mesh name (default :data:`LEVEL_NAMES`, else ``label_<v>``).
    smooth_iterations : int
        Windowed-sinc smoothing passes (0 = the voxel-face-midpoint surface of discrete flying edges).

    Returns
    -------
    dict of str to trimesh.Trimesh
        Outward-oriented triangle meshes, vertices ndarray (V, 3), float, mm, RAS.
    """
    names = dict(LEVEL_NAMES if names is None else names)
    data = level_map.data
    flip = np.linalg.det(level_map.affine[:3, :3]) < 0
    meshes = {}
    for v in level_map.labels():
        idx = np.argwhere(data == v)
        lo, hi = idx.min(axis=0), idx.max(axis=0) + 1
        crop = np.pad(data[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] == v, 1)
        verts, faces = _surface(crop, smooth_iterations)
        if len(faces) == 0:
            continue
        ras = level_map.to_ras(verts + lo - 1)
        mesh = trimesh.Trimesh(ras, faces[:, ::-1] if flip else faces, process=True)
        if mesh.volume < 0:
            mesh.invert()
        meshes[names.get(int(v), f"label_{int(v)}")] = mesh
    return meshes


def write_level_regions(
    out_dir: str | Path,
    landmarks: Landmarks,
    reference: LabelMap,
    margin_mm: float = 10.0,
    meshes: bool = False,
) -> dict[str, Path]:
    """Write ``level_map.nii.gz``, ``level_map.json`` (label value -> name) and optionally ``level_meshes/*.ply``.

    Returns
    -------
    dict of str to Path
        The files written, keyed ``level_map``, ``level_map_json`` and ``mesh:<name>``.
    """
    from neckmatch.io.atomic import atomic_path, write_text
    from neckmatch.io.labelmap import write_label_map

    out = Path(out_dir)
    level_map, names = level_label_map(landmarks, reference, margin_mm=margin_mm)
    files = {"level_map": write_label_map(out / "level_map.nii.gz", level_map, names)}
    table = {str(v): n for v, n in LEVEL_NAMES.items()}
    files["level_map_json"] = write_text(
        json.dumps({"labels": table, "system": "som1999"}, indent=2) + "\n", out / "level_map.json"
    )
    if meshes:
        for name, mesh in level_meshes(level_map, names).items():
            path = out / "level_meshes" / f"{name}.ply"
            with atomic_path(path) as tmp:
                mesh.export(tmp)
            files[f"mesh:{name}"] = path
    return files


# --- atlas mode -------------------------------------------------------------------------------------------

_ROMAN = {"1": "I", "2": "II", "3": "III", "4": "IV", "5": "V", "6": "VI", "7": "VII"}
_NOISE = {"ln", "lnl", "neck", "level", "lvl", "lev", "lymph", "node", "nodes", "region", "nodal", "cervical"}
_SIDES = {"r": Side.R, "rt": Side.R, "right": Side.R, "l": Side.L, "lt": Side.L, "left": Side.L}
_SPECIAL = {
    "rp": Level.RP,
    "retropharyngeal": Level.RP,
    "sc": Level.SC,
    "supraclavicular": Level.SC,
    "supraclav": Level.SC,
    "scf": Level.SC,
}
# Gregoire 2014 sub-levels onto som1999: IVa -> IV, IVb (medial supraclavicular) and Vc (lateral supraclavicular)
# -> SC, VIa / VIb -> VI, VIIa (retropharyngeal) -> RP, VIIb (retrostyloid, cranial to II) -> IIA.
_CODES: dict[str, Level | SurgicalLevel] = {
    **{lv.value: lv for lv in Level},
    "I": SurgicalLevel.I,
    "II": SurgicalLevel.II,
    "V": SurgicalLevel.V,
    "IVA": Level.IV,
    "IVB": Level.SC,
    "VC": Level.SC,
    "VIA": Level.VI,
    "VIB": Level.VI,
    "VIIA": Level.RP,
    "VIIB": Level.IIA,
}


def parse_level_name(name: str, source: str = "level name") -> tuple[Side | None, Level | SurgicalLevel]:
    """Parse a neck-level structure name into (side, level).

    Accepts TG-263 (``LN_Neck_IIA_R``, ``LN_Neck_II_L``), prose (``Level IIa left``), arabic numerals
    (``level_2a_right``), lyDATA / short forms (``right IIa``, ``L_Ib``, ``IIa-Rt``), ``RP`` / ``SC`` and the
    Grégoire 2014 sub-levels (IVa, IVb, Vc, VIa, VIb, VIIa, VIIb, mapped as commented in the source).

    Returns
    -------
    side : Side or None
        None where the name has no side (e.g. ``LN_Neck_IA``).
    level : Level or SurgicalLevel
        An imaging :class:`Level`, or the coarse :class:`SurgicalLevel` ``I``, ``II`` or ``V`` where the name
        does not split it (``LN_Neck_II_L``).

    Raises
    ------
    InputError
        Not a neck-level name; the message shows it.

    Examples
    --------
    >>> parse_level_name("LN_Neck_IIA_R"), parse_level_name("level_2a_right"), parse_level_name("Level Ib left")
    ((<Side.R: 'R'>, <Level.IIA: 'IIA'>), (<Side.R: 'R'>, <Level.IIA: 'IIA'>), (<Side.L: 'L'>, <Level.IB: 'IB'>))
    """
    tokens = [t for t in re.split(r"[\s_\-./,:;()]+", str(name).lower()) if t]
    tokens = [re.sub(r"^(level|lvl)(?=[ivx\d])", "", t) for t in tokens]
    side: Side | None = None
    level: Level | SurgicalLevel | None = None
    for tok in tokens:
        if tok in _NOISE:
            continue
        if tok in _SIDES and side is None:
            side = _SIDES[tok]
            continue
        if tok in _SPECIAL and level is None:
            level = _SPECIAL[tok]
            continue
        m = re.fullmatch(r"(vii|vi|v|iv|iii|ii|i|[1-7])([abc]?)", tok)
        if m is None or level is not None:
            level = None
            break
        level = _CODES.get(_ROMAN.get(m.group(1), m.group(1).upper()) + m.group(2).upper())
        if level is None:
            break
    if level is None:
        raise InputError(source, "name", f"'{name}' is not a neck level name (e.g. LN_Neck_IIA_R, 'Level IIa left')")
    return side, level


def _atlas_keys(level_map: LabelMap, names: Mapping[int, str]) -> tuple[list[tuple[str, str]], NDArray[np.int64]]:
    """Distinct (side, level) keys of the map's names and a lookup label value -> key index (-1 = none)."""
    values = level_map.labels()
    unnamed = [int(v) for v in values if int(v) not in names]
    if unnamed:
        raise InputError("level map", "names", f"label value {unnamed[0]} has no level name")
    parsed = {int(v): parse_level_name(names[int(v)], "level map") for v in values}
    keys = sorted({("" if s is None else s.value, lv.value) for s, lv in parsed.values()})
    lut = np.full(int(values.max(initial=0)) + 1, -1, dtype=np.int64)
    for v, (s, lv) in parsed.items():
        lut[v] = keys.index(("" if s is None else s.value, lv.value))
    return keys, lut


def assign_levels_atlas(node_map: LabelMap, level_map: LabelMap, names: Mapping[int, str]) -> pd.DataFrame:
    """Atlas mode: each MR node's level = the majority level of its voxels in a level label map.

    Node voxel centres are looked up in ``level_map`` by nearest voxel (any grid; outside it counts as no level).

    Parameters
    ----------
    node_map : LabelMap
        MR node labels (k > 0 = node k).
    level_map : LabelMap
        Level regions, e.g. from an auto-contouring tool.
    names : mapping of int to str
        Level map value -> level name, parsed by :func:`parse_level_name`.

    Returns
    -------
    pandas.DataFrame
        Columns ``node, side, level, fraction, level_fractions, n_voxels``, one row per node sorted by node:
        ``fraction`` is the majority level's share of the node's voxels; ``level_fractions`` lists every level
        (``IIA:0.82;III:0.18``, ``outside`` for voxels in no level; ``_R`` / ``_L`` appended where a level lies
        on another side than the majority's); side / level are ``""`` where no voxel lies in a level; ties go
        to the first of the sorted (side, level) keys.
    """
    keys, lut = _atlas_keys(level_map, names)
    ijk = np.argwhere(node_map.data > 0)
    nodes = node_map.data[tuple(ijk.T)].astype(np.int64)
    at = np.rint(level_map.to_ijk(node_map.to_ras(ijk))).astype(np.int64)
    inb = np.all((at >= 0) & (at < np.array(level_map.data.shape)), axis=1)
    vals = np.zeros(len(at), dtype=np.int64)
    vals[inb] = level_map.data[tuple(at[inb].T)]
    key = np.where(vals < len(lut), lut[np.minimum(vals, len(lut) - 1)], -1) + 1  # 0 = outside
    labels, node_idx = np.unique(nodes, return_inverse=True)
    k = len(keys) + 1
    counts = np.bincount(node_idx * k + key, minlength=len(labels) * k).reshape(len(labels), k)
    rows = []
    for label, row in zip(labels, counts, strict=True):
        total = row.sum()
        best = int(np.argmax(row[1:])) if row[1:].any() else -1
        side, level = keys[best] if best >= 0 else ("", "")
        parts = []
        for i in np.argsort(-row, kind="stable"):
            if row[i] == 0:
                continue
            text = "outside" if i == 0 else keys[i - 1][1] + ("" if keys[i - 1][0] == side else f"_{keys[i - 1][0]}")
            parts.append(f"{text}:{row[i] / total:.3g}")
        frac = row[best + 1] / total if best >= 0 else 0.0
        rows.append(
            {
                "node": int(label),
                "side": side,
                "level": level,
                "fraction": frac,
                "level_fractions": ";".join(parts),
                "n_voxels": int(total),
            }
        )
    return pd.DataFrame(rows, columns=["node", "side", "level", "fraction", "level_fractions", "n_voxels"])
