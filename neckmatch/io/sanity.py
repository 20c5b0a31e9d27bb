"""Semantic checks of what the readers return: values that parse but cannot be anatomy.

Landmarks (RAS mm, +x = patient's right, +z = superior) are refused when

- a landmark lies more than :data:`MAX_OUTSIDE_MM` outside the label map's field of view (a typo, a point in
  metres, a point of another scan);
- the craniocaudal order of the midline landmarks is impossible: ``skull_base`` above ``hyoid_body_inferior``
  above ``cricoid_arch_inferior`` above ``manubrium_superior`` (those present);
- left and right are swapped: a ``*_R`` landmark (point, or a curve's mean) lies left of its ``*_L`` partner.

Orientation sutures of an ex vivo specimen piece (:func:`check_sutures`) are refused when a suture lies more than
:data:`MAX_OUTSIDE_MM` outside the piece's label map, or when they cannot give the specimen's orientation: the
cranial and caudal sutures (or medial and lateral) less than :data:`MIN_SUTURE_GAP_MM` apart, or the anterior suture
that close to the cranio-caudal line (measured across that line from the posterior suture where there is one).

Every error names the file, the landmark and the value.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from neckmatch.errors import InputError
from neckmatch.model import LabelMap, Landmarks

__all__ = ["MAX_OUTSIDE_MM", "MIN_SUTURE_GAP_MM", "CRANIOCAUDAL", "check_landmarks", "check_sutures", "field_of_view"]

MAX_OUTSIDE_MM = 250.0  # a neck is about 250 mm tall; a DICOM SEG grid may cover only the segmented slices
#: Opposite sutures closer than this cannot give a direction (a suture knot alone is about 2 mm; the generator's
#: closest cranial / caudal pair in 220 pieces was 5.7 mm apart, its closest anterior suture 4.5 mm off the line).
MIN_SUTURE_GAP_MM = 1.0
CRANIOCAUDAL = ("skull_base", "hyoid_body_inferior", "cricoid_arch_inferior", "manubrium_superior")


def field_of_view(label_map: LabelMap) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """RAS bounding box (low (3,), high (3,), mm) of the label map's voxel grid (its eight corner voxels)."""
    shape = np.asarray(label_map.data.shape[:3], dtype=np.float64) - 1.0
    corners = np.array([[i, j, k, 1.0] for i in (0, shape[0]) for j in (0, shape[1]) for k in (0, shape[2])])
    ras = corners @ np.asarray(label_map.affine, dtype=np.float64).T
    return ras[:, :3].min(axis=0), ras[:, :3].max(axis=0)


def _fmt(p: NDArray[np.float64]) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in p) + ")"


def _check_inside(path: Path, landmarks: Landmarks, label_map: LabelMap) -> None:
    low, high = field_of_view(label_map)
    named = [(n, np.asarray(p)[None, :]) for n, p in landmarks.points.items()]
    named += [(n, np.asarray(c.points)) for n, c in landmarks.curves.items()]
    for name, pts in named:
        with np.errstate(over="ignore", invalid="ignore"):
            excess = np.maximum(low - pts, 0.0) + np.maximum(pts - high, 0.0)
            norms = np.linalg.norm(excess, axis=1)
        worst = int(np.argmax(np.where(np.isfinite(norms), norms, np.inf)))
        dist = float(norms[worst])
        if not np.isfinite(dist) or dist > MAX_OUTSIDE_MM:
            raise InputError(path, name, f"RAS {_fmt(pts[worst])} mm lies {dist:.4g} mm outside the label map's "
                             f"field of view {_fmt(low)}-{_fmt(high)} (limit {MAX_OUTSIDE_MM:g} mm)")


def _check_order(path: Path, landmarks: Landmarks) -> None:
    present = [(n, float(landmarks.points[n][2])) for n in CRANIOCAUDAL if n in landmarks.points]
    for (upper, z_up), (lower, z_lo) in zip(present, present[1:], strict=False):
        if not z_lo < z_up:
            raise InputError(path, lower, f"z = {z_lo:.4g} mm is not below {upper} (z = {z_up:.4g} mm); "
                             f"craniocaudal order must be {' > '.join(CRANIOCAUDAL)}")


def _check_sides(path: Path, landmarks: Landmarks) -> None:
    def x_of(name: str) -> float | None:
        if name in landmarks.points:
            return float(landmarks.points[name][0])
        if name in landmarks.curves:
            return float(np.mean(np.asarray(landmarks.curves[name].points)[:, 0]))
        return None

    for name in sorted({*landmarks.points, *landmarks.curves}):
        if not name.endswith("_R"):
            continue
        x_r, x_l = x_of(name), x_of(name[:-2] + "_L")
        if x_r is not None and x_l is not None and not x_r > x_l:
            raise InputError(path, name, f"x = {x_r:.4g} mm is not right of {name[:-2]}_L (x = {x_l:.4g} mm); "
                             "left and right swapped? (RAS: +x is the patient's right)")


def check_landmarks(path: str | Path, landmarks: Landmarks, label_map: LabelMap) -> None:
    """Raise :class:`InputError` for impossible landmarks (module docstring); return None when plausible.

    Examples
    --------
    >>> import numpy as np
    >>> from neckmatch.model import LabelMap, Landmarks
    >>> lm = LabelMap(np.zeros((10, 10, 10), np.uint8), np.eye(4))
    >>> check_landmarks("lm.mrk.json", Landmarks({"skull_base": [5, 5, 9], "hyoid_body_inferior": [5, 5, 2]}), lm)
    >>> check_landmarks("lm.mrk.json", Landmarks({"skull_base": [5, 5, 2], "hyoid_body_inferior": [5, 5, 9]}),
    ...                 lm)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    neckmatch.errors.InputError: lm.mrk.json: hyoid_body_inferior: z = 9 mm is not below skull_base (z = 2 mm); ...
    """
    path = Path(path)
    _check_inside(path, landmarks, label_map)
    _check_order(path, landmarks)
    _check_sides(path, landmarks)


def _check_suture_frame(path: Path, sutures: dict[str, NDArray[np.float64]]) -> None:
    def gap(a: str, b: str) -> None:
        if a in sutures and b in sutures:
            dist = float(np.linalg.norm(sutures[a] - sutures[b]))
            if dist < MIN_SUTURE_GAP_MM:
                raise InputError(path, b, f"RAS {_fmt(sutures[b])} mm is {dist:.2g} mm from the {a} suture: they "
                                 f"must mark opposite sides of the piece (at least {MIN_SUTURE_GAP_MM:g} mm apart)")

    gap("cranial", "caudal")
    axis = sutures["cranial"] - sutures["caudal"]
    axis = axis / np.linalg.norm(axis)
    base = "posterior" if "posterior" in sutures else "caudal"  # the line through it along the cranio-caudal axis
    line = "the posterior suture's cranio-caudal line" if base == "posterior" else "the cranio-caudal line"
    d = sutures["anterior"] - sutures[base]
    off = float(np.linalg.norm(d - float(d @ axis) * axis))
    if off < MIN_SUTURE_GAP_MM:
        raise InputError(path, "anterior", f"RAS {_fmt(sutures['anterior'])} mm lies {off:.2g} mm off {line}: it "
                         f"gives no anterior direction (at least {MIN_SUTURE_GAP_MM:g} mm off)")
    gap("medial", "lateral")


def check_sutures(path: str | Path, sutures: dict[str, NDArray[np.float64]], label_map: LabelMap) -> None:
    """Raise :class:`InputError` for orientation sutures that cannot orient their piece (module docstring).

    ``sutures`` maps suture labels (cranial, caudal and anterior at least) to RAS points (3,) of the ex vivo
    scanner; ``label_map`` is the piece's.

    Examples
    --------
    >>> import numpy as np
    >>> from neckmatch.model import LabelMap
    >>> lm = LabelMap(np.zeros((10, 10, 10), np.uint8), np.eye(4))
    >>> s = {"cranial": np.array([5., 5, 40]), "caudal": np.array([5., 5, -30]), "anterior": np.array([5., 20, 5])}
    >>> check_sutures("R.mrk.json", s, lm)
    >>> check_sutures("R.mrk.json", {**s, "caudal": s["cranial"]}, lm)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    neckmatch.errors.InputError: R.mrk.json: caudal: RAS (5, 5, 40) mm is 0 mm from the cranial suture: ...
    """
    path = Path(path)
    points = {name: np.asarray(p, dtype=np.float64) for name, p in sutures.items()}
    for name, p in points.items():
        if p.shape != (3,) or not np.all(np.isfinite(p)):
            raise InputError(path, name, f"need 3 finite numbers, got {p.tolist()}")
    _check_inside(path, Landmarks(points), label_map)
    _check_suture_frame(path, points)
