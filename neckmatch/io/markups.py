"""Read and write landmarks as 3D Slicer markups JSON (``markups-schema-v1.0.3``).

A landmark file holds one ``Fiducial`` markup whose control-point ``label`` s are the point landmark names and
one ``Curve`` markup per curve landmark whose markup ``name`` is the curve name (shared/spec/levels.md).
``coordinateSystem`` ``LPS`` (Slicer's default, also assumed where the field is absent) or ``RAS`` is honoured;
everything returned is RAS mm. Control points whose ``positionStatus`` is ``undefined`` or ``missing``
(not placed) are skipped.

Examples
--------
>>> import tempfile
>>> from pathlib import Path
>>> from neckmatch.model import Curve, Landmarks
>>> lm = Landmarks(points={"skull_base": [0.0, 10.0, 60.0]},
...                curves={"SCM_posterior_R": Curve("SCM_posterior_R", [[40, -20, 0], [45, -25, 30]])})
>>> with tempfile.TemporaryDirectory() as d:
...     _ = write_markups(Path(d) / "lm.mrk.json", lm, coordinate_system="LPS")
...     back = read_markups(Path(d) / "lm.mrk.json", required=())
>>> back.point("skull_base").tolist(), back.curve("SCM_posterior_R").points[1].tolist()
([0.0, 10.0, 60.0], [45.0, -25.0, 30.0])
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from neckmatch.errors import InputError
from neckmatch.io.atomic import write_text
from neckmatch.model import REQUIRED_LANDMARKS, Curve, Landmarks

__all__ = ["read_markups", "write_markups", "write_point_list", "markups_point_lists", "SCHEMA"]

SCHEMA = (
    "https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/Markups/Resources/Schema/"
    "markups-schema-v1.0.3.json#"
)
_FLIP = {"LPS": np.array([-1.0, -1.0, 1.0]), "RAS": np.array([1.0, 1.0, 1.0])}
_UNPLACED = {"undefined", "missing"}


def read_markups(path: str | Path, required: Iterable[str] | None = REQUIRED_LANDMARKS) -> Landmarks:
    """Read landmarks from a 3D Slicer markups JSON file.

    Parameters
    ----------
    path : str or Path
        The ``.mrk.json`` file.
    required : iterable of str or None
        Landmark names that must be present (points or curves); default ``model.REQUIRED_LANDMARKS``.
        Pass ``()`` or None for partial or mask-derived sets.

    Returns
    -------
    Landmarks
        Points (each ndarray (3,), float, mm, RAS) and curves (control points (N, 3), float, mm, RAS).

    Raises
    ------
    InputError
        Unreadable JSON, an unknown ``coordinateSystem``, control points that are not a list of objects, a
        curve with fewer than 2 placed points, a point landmark or a curve named twice, or a required landmark
        missing.
    """
    path = Path(path)
    points: dict[str, np.ndarray] = {}
    curves: dict[str, Curve] = {}
    for i, mk in enumerate(_load_markups(path)):
        kind = str(mk.get("type", ""))
        if kind == "Fiducial":
            for label, pos in _control_points(path, i, mk):
                if not label:
                    raise InputError(path, f"markups[{i}].controlPoints", "a Fiducial control point has no label")
                if label in points:
                    raise InputError(path, f"markups[{i}].controlPoints", f"point landmark '{label}' is given twice")
                points[label] = pos
        elif kind == "Curve":
            name = str(mk.get("name", "")).strip()
            if not name:
                raise InputError(path, f"markups[{i}].name", "a Curve markup needs a name (the curve landmark name)")
            if name in curves:
                raise InputError(path, f"markups[{i}].name", f"curve '{name}' is given twice")
            pts = np.array([p for _, p in _control_points(path, i, mk)]).reshape(-1, 3)
            try:
                curves[name] = Curve(name, pts)
            except ValueError as exc:
                raise InputError(path, f"curve '{name}'", str(exc).replace(f"curve '{name}' ", "", 1)) from None
    try:
        landmarks = Landmarks(points=points, curves=curves)
    except ValueError as exc:  # pragma: no cover - points are validated above
        raise InputError(path, "controlPoints", str(exc)) from None
    missing = landmarks.missing(tuple(required or ()))
    if missing:
        raise InputError(
            path, f"landmark '{missing[0]}'",
            f"required landmark missing ({len(missing)} missing: {', '.join(missing)})",
        )
    return landmarks


def _load_markups(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise InputError(path, "", "file does not exist")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(path, "", f"not valid markups JSON: {exc}") from None
    except RecursionError:
        raise InputError(path, "", "not valid markups JSON: nested too deeply") from None
    markups = doc.get("markups") if isinstance(doc, dict) else None
    if not isinstance(markups, list) or not all(isinstance(m, dict) for m in markups):
        raise InputError(path, "markups", f"expected a list of markup objects, got {type(markups).__name__}")
    return markups


def _control_points(path: Path, i: int, mk: dict[str, Any]) -> list[tuple[str, np.ndarray]]:
    """(label, RAS position) of each placed control point of markup ``i``."""
    system = str(mk.get("coordinateSystem", "LPS"))
    if system not in _FLIP:
        raise InputError(path, f"markups[{i}].coordinateSystem", f"must be LPS or RAS, got '{system}'")
    units = str(mk.get("coordinateUnits", "mm"))
    if units != "mm":
        raise InputError(path, f"markups[{i}].coordinateUnits", f"must be mm, got '{units}'")
    given = mk.get("controlPoints") or []
    if not isinstance(given, list) or not all(isinstance(cp, dict) for cp in given):
        msg = f"expected a list of control point objects, got {given!r}"
        raise InputError(path, f"markups[{i}].controlPoints", msg)
    placed = [(j, cp) for j, cp in enumerate(given)
              if str(cp.get("positionStatus", "defined")) not in _UNPLACED]  # fmt: skip
    try:  # all at once; the loop below finds and reports a bad point
        pos = np.array([cp["position"] for _, cp in placed], dtype=np.float64)
    except (KeyError, TypeError, ValueError):
        pos = np.empty(0)
    if placed and pos.shape == (len(placed), 3) and np.isfinite(pos).all():
        ras = pos * _FLIP[system]
        return [(str(cp.get("label", "")).strip(), ras[k]) for k, (_, cp) in enumerate(placed)]
    out = []
    for j, cp in placed:
        try:
            pos = np.asarray(cp["position"], dtype=np.float64)
        except (KeyError, TypeError, ValueError):
            pos = np.empty(0)
        if pos.shape != (3,) or not np.all(np.isfinite(pos)):
            raise InputError(
                path, f"markups[{i}].controlPoints[{j}].position", f"need 3 finite numbers, got {cp.get('position')}"
            )
        out.append((str(cp.get("label", "")).strip(), pos * _FLIP[system]))
    return out


def _control_point(j: int, label: str, ras: np.ndarray, system: str, description: str = "") -> dict[str, Any]:
    return {
        "id": str(j + 1),
        "label": label,
        "description": description,
        "associatedNodeID": "",
        "position": [float(v) for v in np.asarray(ras, dtype=np.float64) * _FLIP[system]],
        "orientation": [-1.0, -0.0, -0.0, -0.0, -1.0, -0.0, 0.0, 0.0, 1.0],
        "selected": True,
        "locked": False,
        "visibility": True,
        "positionStatus": "defined",
    }


def _markup(kind: str, name: str, control_points: list[dict[str, Any]], system: str) -> dict[str, Any]:
    return {
        "type": kind,
        "coordinateSystem": system,
        "coordinateUnits": "mm",
        "name": name,
        "locked": False,
        "fixedNumberOfControlPoints": False,
        "labelFormat": "%N-%d",
        "lastUsedControlPointNumber": len(control_points),
        "controlPoints": control_points,
        "measurements": [],
    }


def _check_system(path: str | Path, coordinate_system: str) -> str:
    if coordinate_system not in _FLIP:
        raise InputError(path, "coordinateSystem", f"must be LPS or RAS, got '{coordinate_system}'")
    return coordinate_system


def markups_point_lists(
    name: str, labels: Sequence[str], points: Any, descriptions: Sequence[str] | None = None,
    coordinate_system: str = "LPS",
) -> dict[str, Any]:
    """One ``Fiducial`` markup (a JSON-able dict) for ``points`` (ndarray (N, 3), float, mm, RAS)."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    if len(labels) != len(pts):
        raise ValueError(f"{len(labels)} labels for {len(pts)} points")
    desc = list(descriptions) if descriptions is not None else [""] * len(pts)
    cps = [
        _control_point(j, str(lab), p, coordinate_system, str(desc[j]))
        for j, (lab, p) in enumerate(zip(labels, pts, strict=True))
    ]
    return _markup("Fiducial", name, cps, coordinate_system)


def write_markups(
    path: str | Path, landmarks: Landmarks, coordinate_system: str = "LPS", indent: int | None = 2
) -> Path:
    """Write ``landmarks`` atomically: one Fiducial named ``landmarks`` plus one Curve per curve landmark.

    ``indent=None`` writes compact JSON (Python's C encoder: ~5x faster; 3D Slicer reads either).
    """
    system = _check_system(path, coordinate_system)
    names = list(landmarks.points)
    markups = []
    if names:
        markups.append(markups_point_lists("landmarks", names, [landmarks.points[n] for n in names], None, system))
    for cname, curve in landmarks.curves.items():
        cps = [_control_point(j, f"{cname}-{j + 1}", p, system) for j, p in enumerate(curve.points)]
        markups.append(_markup("Curve", cname, cps, system))
    return write_text(json.dumps({"@schema": SCHEMA, "markups": markups}, indent=indent) + "\n", path)


def write_point_list(
    path: str | Path, name: str, labels: Sequence[str], points: Any,
    descriptions: Sequence[str] | None = None, coordinate_system: str = "LPS", indent: int | None = 2,
) -> Path:
    """Write one point list (ndarray (N, 3), float, mm, RAS; one label per point) as a markups JSON file
    (``indent=None``: compact, as :func:`write_markups`)."""
    system = _check_system(path, coordinate_system)
    doc = {"@schema": SCHEMA, "markups": [markups_point_lists(name, labels, points, descriptions, system)]}
    return write_text(json.dumps(doc, indent=indent) + "\n", path)
