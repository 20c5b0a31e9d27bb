"""The 3-D scene of one case: level regions, MR node surfaces and pathology containers, with colours.

One :class:`Scene` feeds every view of a case (the PNG, the GLB, the ``.vtm`` multiblock), so colours, names and
attributes agree across them. Every vertex is patient RAS millimetres.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import trimesh
from numpy.typing import NDArray
from scipy import ndimage
from vtkmodules.util.numpy_support import numpy_to_vtk, vtk_to_numpy
from vtkmodules.vtkCommonCore import VTK_ID_TYPE, vtkPoints
from vtkmodules.vtkCommonDataModel import vtkCellArray, vtkImageData, vtkPolyData
from vtkmodules.vtkFiltersCore import vtkQuadricDecimation, vtkTriangleFilter, vtkWindowedSincPolyDataFilter
from vtkmodules.vtkFiltersGeneral import vtkDiscreteFlyingEdges3D

from neckmatch.model import LabelMap
from neckmatch.viz.colors import (
    ANATOMY_COLORS,
    CONTAINER_COLOR,
    LEVEL_COLORS,
    NODE_LEVEL_COLORS,
    OUTCOME_COLORS,
    OUTCOME_LABELS,
    RGB,
    SPECIMEN_COLOR,
)

__all__ = [
    "LEVEL_COLORS",
    "OUTCOME_COLORS",
    "OUTCOME_LABELS",
    "NODE_LEVEL_COLORS",
    "CONTAINER_COLOR",
    "SceneMesh",
    "Scene",
    "label_surfaces",
    "parse_level_name",
    "node_category",
    "container_outline",
    "mesh_polydata",
    "PATH_STATUS_COLORS",
    "PathMarker",
    "unmatched_path_markers",
    "SpecimenMarker",
    "specimen_markers",
    "build_scene",
]

# Pathology nodes without an MR partner (hollow markers): a positive one must stand out from the MR nodes.
PATH_STATUS_COLORS: dict[str, RGB] = {
    "positive": (1.0, 0.27, 0.0),  # vivid orange-red, not an outcome colour
    "negative": (0.1, 0.1, 0.1),
    "unknown": (0.55, 0.55, 0.55),
}

_LEVEL_NAME = re.compile(r"^(?:LN_Neck_)?(?P<level>[A-Z]+)_(?P<side>[RL])$", re.IGNORECASE)


@dataclass
class SceneMesh:
    """One named surface of the scene.

    vertices : ndarray of shape (V, 3), float, mm, RAS. faces : ndarray of shape (F, 3), int, outward winding.
    color : RGBA floats in [0, 1]. kind : ``"level"``, ``"node"``, ``"anatomy"`` (a reference structure,
    :mod:`neckmatch.viz.anatomy`) or ``"container"`` (containers are outlines:
    ``faces`` is empty and ``lines`` holds vertex index pairs). attrs : JSON-able attributes (level, outcome ...).
    """

    name: str
    kind: str
    vertices: NDArray[np.float64]
    faces: NDArray[np.int64]
    color: tuple[float, float, float, float]
    attrs: dict[str, Any] = field(default_factory=dict)
    lines: NDArray[np.int64] = field(default_factory=lambda: np.zeros((0, 2), dtype=np.int64))

    @property
    def side(self) -> str:
        """Patient side ``R`` / ``L`` of this object, ``""`` where unknown."""
        return str(self.attrs.get("side", "") or "")

    def anchor(self) -> NDArray[np.float64]:
        """Label anchor: the mean vertex, ndarray of shape (3,), float, mm, RAS."""
        return self.vertices.mean(axis=0)


@dataclass(frozen=True)
class PathMarker:
    """A pathology node that no MR node was matched to, drawn as a hollow marker where the specimen placed it.

    node : pathology node id. side : ``R`` / ``L``. status : ``positive`` / ``negative`` / ``unknown``.
    container : its container id. position : ndarray of shape (3,), float, mm, RAS, or None where not placed.
    """

    node: str
    side: str
    status: str
    container: str
    position: NDArray[np.float64] | None


@dataclass(frozen=True)
class SpecimenMarker:
    """A node of an ex vivo specimen scan, registered into the patient (a ``specimen_registration`` row).

    image : the specimen scan (piece) id. node : its label in that scan. position : ndarray of shape (3,), float,
    mm, RAS: where the registration maps it. mr_node : the MR node it is paired with, or None. partner : ndarray
    of shape (3,), float, mm, RAS: that MR node's centroid, or None. side : ``R`` / ``L`` (the paired MR node's,
    else by the position: x > 0 is the right).
    """

    image: str
    node: int
    position: NDArray[np.float64]
    mr_node: int | None
    partner: NDArray[np.float64] | None
    side: str


@dataclass
class Scene:
    """Everything drawn for one case, plus the title and the legends."""

    case_id: str
    meshes: list[SceneMesh]
    title: str
    level_legend: dict[str, RGB]
    node_legend: dict[str, RGB]
    node_coloring: str  # "outcome" or "level"
    path_markers: list[PathMarker] = field(default_factory=list)
    specimen_markers: list[SpecimenMarker] = field(default_factory=list)
    _bounds: NDArray[np.float64] | None = field(default=None, init=False, repr=False, compare=False)

    def of_kind(self, kind: str) -> list[SceneMesh]:
        """The meshes of one kind, in scene order."""
        return [m for m in self.meshes if m.kind == kind]

    def bounds(self) -> NDArray[np.float64]:
        """Axis-aligned bounds of all vertices, ndarray of shape (2, 3): min and max, float, mm, RAS.

        Computed once (a scene's meshes are not changed after it is built).
        """
        if self._bounds is not None:
            return self._bounds
        placed = [p.position.reshape(1, 3) for p in self.path_markers if p.position is not None]
        ends = [np.stack([m.vertices.min(axis=0), m.vertices.max(axis=0)]) for m in self.meshes if len(m.vertices)]
        allv = np.concatenate(ends + placed) if ends or placed else np.zeros((1, 3))
        self._bounds = np.stack([allv.min(axis=0), allv.max(axis=0)])
        return self._bounds


def mesh_polydata(mesh: SceneMesh) -> vtkPolyData:
    """The mesh as vtkPolyData (triangles, or lines for outlines), points in RAS mm."""
    poly = vtkPolyData()
    pts = vtkPoints()
    pts.SetData(numpy_to_vtk(np.ascontiguousarray(mesh.vertices, dtype=np.float64), deep=True))
    poly.SetPoints(pts)
    cells = mesh.faces if len(mesh.faces) else mesh.lines
    arr = vtkCellArray()
    n = cells.shape[1]
    offsets = np.arange(0, (len(cells) + 1) * n, n, dtype=np.int64)
    arr.SetData(numpy_to_vtk(offsets, deep=True, array_type=VTK_ID_TYPE),
                numpy_to_vtk(cells.ravel().astype(np.int64), deep=True, array_type=VTK_ID_TYPE))
    if len(mesh.faces):
        poly.SetPolys(arr)
    else:
        poly.SetLines(arr)
    return poly


def parse_level_name(name: str) -> tuple[str, str]:
    """Level and side of a region name such as ``LN_Neck_IIA_R``.

    Examples
    --------
    >>> parse_level_name("LN_Neck_IIA_R"), parse_level_name("VI_L")
    (('IIA', 'R'), ('VI', 'L'))
    """
    m = _LEVEL_NAME.match(name.strip())
    if not m or m["level"].upper() not in LEVEL_COLORS:
        raise ValueError(f"'{name}' is not a level region name like 'LN_Neck_IIA_R'")
    return m["level"].upper(), m["side"].upper()


def _surface_of_mask(mask: NDArray[np.bool_], smooth_iterations: int, keep: float = 1.0) -> tuple[NDArray, NDArray]:
    """Surface of a binary mask in (padded) voxel index space: vertices (V, 3) float, faces (F, 3) int."""
    padded = np.pad(mask.astype(np.uint8), 1)
    img = vtkImageData()
    img.SetDimensions(*padded.shape)
    img.GetPointData().SetScalars(numpy_to_vtk(padded.ravel(order="F"), deep=True))
    fe = vtkDiscreteFlyingEdges3D()
    fe.SetInputData(img)
    fe.SetValue(0, 1)
    fe.ComputeNormalsOff()
    fe.ComputeGradientsOff()
    fe.ComputeScalarsOff()
    out = fe.GetOutputPort()
    if smooth_iterations > 0:
        sm = vtkWindowedSincPolyDataFilter()
        sm.SetInputConnection(out)
        sm.SetNumberOfIterations(smooth_iterations)
        sm.SetPassBand(0.1)
        sm.NormalizeCoordinatesOn()
        sm.BoundarySmoothingOff()
        sm.NonManifoldSmoothingOn()
        out = sm.GetOutputPort()
    tri = vtkTriangleFilter()
    tri.SetInputConnection(out)
    if keep < 1.0:  # quadric decimation to about ``keep`` of the triangles
        dec = vtkQuadricDecimation()
        dec.SetInputConnection(tri.GetOutputPort())
        dec.SetTargetReduction(1.0 - keep)
        tri = vtkTriangleFilter()
        tri.SetInputConnection(dec.GetOutputPort())
    tri.Update()
    poly = tri.GetOutput()
    verts = vtk_to_numpy(poly.GetPoints().GetData()).astype(np.float64) - 1.0
    faces = vtk_to_numpy(poly.GetPolys().GetConnectivityArray()).reshape(-1, 3).astype(np.int64)
    return verts, faces


def label_surfaces(
    label_map: LabelMap, labels: Any = None, smooth_iterations: int = 10,
    boxes: Mapping[int, tuple[slice, ...]] | None = None, keep: float = 1.0, resolution_mm: float | None = None,
) -> dict[int, trimesh.Trimesh]:
    """Closed surface of each label (VTK discrete flying edges, windowed-sinc smoothing), in RAS mm.

    Parameters
    ----------
    label_map : LabelMap
        Integer labels and their voxel -> RAS affine (any orientation; a mirroring affine is handled).
    labels : iterable of int, optional
        Labels to extract; default every label present.
    smooth_iterations : int
        Windowed-sinc iterations (0 = the raw voxel-faithful surface).
    boxes : dict of int to tuple of slice, optional
        Each label's voxel bounding box (e.g. :func:`neckmatch.viz.maps.node_boxes`): the surfaces are then made
        from these crops alone, without a pass over the whole map.
    keep : float
        Share of the triangles kept by quadric decimation (1 = none removed).
    resolution_mm : float, optional
        Make each surface from every ``round(resolution_mm / spacing)``-th voxel along each axis (a label keeping at
        least 64 voxels so): a finer grid than this gives no visibly better surface, only more triangles.

    Returns
    -------
    dict of int to trimesh.Trimesh
        Vertices ndarray of shape (V, 3), float, mm, RAS; faces wound outward. Absent labels are left out.
    """
    data = np.asarray(label_map.data)
    wanted = label_map.labels() if labels is None else np.asarray(sorted({int(x) for x in labels}), dtype=np.int64)
    if wanted.size == 0:
        return {}
    if boxes is None:
        slices = ndimage.find_objects(np.where(np.isin(data, wanted), data, 0))
        boxes = {int(lab): slices[lab - 1] for lab in wanted if lab - 1 < len(slices) and slices[lab - 1]}
    flip = np.linalg.det(label_map.affine[:3, :3]) < 0
    step = np.ones(3, dtype=np.int64)
    if resolution_mm is not None:
        step = np.maximum(np.rint(resolution_mm / label_map.spacing), 1).astype(np.int64)
    out: dict[int, trimesh.Trimesh] = {}
    for lab in wanted:
        sl = boxes.get(int(lab))
        if sl is None:
            continue
        mask = data[sl] == lab
        if mask[::step[0], ::step[1], ::step[2]].sum() >= 64:  # enough voxels left to keep the node's shape
            verts, faces = _surface_of_mask(mask[::step[0], ::step[1], ::step[2]], smooth_iterations, keep)
            verts = verts * step
        else:
            verts, faces = _surface_of_mask(mask, smooth_iterations, keep)
        if len(faces) == 0:
            continue
        ijk = verts + np.array([s.start for s in sl], dtype=np.float64)
        if flip:
            faces = faces[:, ::-1]
        out[int(lab)] = trimesh.Trimesh(label_map.to_ras(ijk), faces, process=False)
    return out


def node_category(outcome: Any, match_kind: Any = None, decision: Any = None) -> str:
    """Colour category of an MR node: its outcome ``TP/FN/FP/TN``; ``review`` for a proposed match awaiting a
    decision (``match_kind`` ``undecided`` or ``decision`` ``review``, no outcome yet); else ``unmatched``.

    Examples
    --------
    >>> node_category("TP"), node_category(float("nan")), node_category("", "matched")
    ('TP', 'unmatched', 'unmatched')
    >>> node_category(None, "undecided"), node_category(float("nan"), "matched", "review")
    ('review', 'review')
    """
    text = "" if outcome is None or (isinstance(outcome, float) and np.isnan(outcome)) else str(outcome).strip()
    if text in OUTCOME_COLORS and text not in ("unmatched", "review"):
        return text
    return "review" if str(match_kind).strip() == "undecided" or str(decision).strip() == "review" else "unmatched"


def _jsonable(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return None if np.isnan(value) else round(float(value), 4)
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if value is None or (isinstance(value, str) and value == ""):
        return None
    return str(value) if not isinstance(value, (int, str)) else value


def _volume_mm3(mesh: trimesh.Trimesh) -> float:
    """Enclosed volume (mm^3) of a closed surface: the divergence-theorem sum of signed tetrahedra (10x faster
    than trimesh's full mass properties)."""
    tri = np.asarray(mesh.vertices, dtype=np.float64)[np.asarray(mesh.faces)]
    return abs(float(np.einsum("ij,ij->", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])))) / 6.0


def _level_meshes(level_meshes: Mapping[str, trimesh.Trimesh], alpha: float) -> list[SceneMesh]:
    order = list(LEVEL_COLORS)

    def key(name: str) -> tuple[str, int]:
        level, side = parse_level_name(name)
        return side, order.index(level)

    out = []
    for name in sorted(level_meshes, key=key):
        level, side = parse_level_name(name)
        m = level_meshes[name]
        attrs = {"kind": "level", "level": level, "side": side, "volume_ml": round(_volume_mm3(m) / 1000.0, 2)}
        out.append(SceneMesh(name, "level", np.asarray(m.vertices, float), np.asarray(m.faces, np.int64),
                             (*LEVEL_COLORS[level], alpha), attrs))
    return out


def _node_meshes(surfaces: Mapping[int, trimesh.Trimesh], nodes: pd.DataFrame, coloring: str) -> list[SceneMesh]:
    table = nodes.set_index("node") if "node" in nodes.columns else nodes
    out = []
    for lab, m in sorted(surfaces.items()):
        row = table.loc[lab] if lab in table.index else pd.Series(dtype=object)
        attrs = {"kind": "node", "node": int(lab)}
        attrs.update({str(k): _jsonable(v) for k, v in row.items() if k != "case_id"})
        if coloring == "outcome":
            cat = node_category(row.get("outcome"), row.get("match_kind"), row.get("decision"))
            attrs["category"] = cat
            rgb = OUTCOME_COLORS[cat]
        else:
            lv = str(row.get("level", "") or "")
            rgb = NODE_LEVEL_COLORS.get(lv, OUTCOME_COLORS["unmatched"])
        out.append(SceneMesh(f"node_{lab}", "node", np.asarray(m.vertices, float), np.asarray(m.faces, np.int64),
                             (*rgb, 1.0), attrs))
    return out


def container_outline(container: Mapping[str, Any]) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Closed sagittal outline of a reconstructed container (one ``specimen.json`` entry).

    The container's ``profile`` (``z``, ``y_ant``, ``y_post``, ``x``: lists of K floats, mm, RAS) is traced down
    its anterior limit and back up its posterior limit at its lateral centre ``x(z)``.

    Returns
    -------
    vertices : ndarray of shape (2K, 3), float, mm, RAS
    lines : ndarray of shape (2K, 2), int, vertex index pairs of the closed loop
    """
    prof = container["profile"]
    z, ya, yp, x = (np.asarray(prof[k], dtype=np.float64) for k in ("z", "y_ant", "y_post", "x"))
    verts = np.concatenate([np.column_stack([x, ya, z]), np.column_stack([x, yp, z])[::-1]])
    idx = np.arange(len(verts))
    return verts, np.column_stack([idx, np.roll(idx, -1)]).astype(np.int64)


def _container_meshes(containers: Sequence[Mapping[str, Any]]) -> list[SceneMesh]:
    out = []
    for c in containers:
        verts, lines = container_outline(c)
        attrs = {"kind": "container", "container": str(c["container"]), "side": str(c.get("side", "")),
                 "level": str(c.get("level", "")), "source": str(c.get("source", ""))}
        out.append(SceneMesh(f"container_{c['container']}", "container", verts, np.zeros((0, 3), np.int64),
                             (*CONTAINER_COLOR, 1.0), attrs, lines))
    return out


def _anatomy_meshes(structures: Sequence[Any], alpha: float) -> list[SceneMesh]:
    out = []
    for st in structures:
        attrs = {"kind": "anatomy", "structure": st.name, "tissue": st.tissue, "side": st.side}
        out.append(SceneMesh(st.name, "anatomy", np.asarray(st.vertices, float), np.asarray(st.faces, np.int64),
                             (*ANATOMY_COLORS[st.tissue], alpha), attrs))
    return out


def unmatched_path_markers(truth: pd.DataFrame, containers: Sequence[Mapping[str, Any]]) -> list[PathMarker]:
    """The pathology nodes of ``truth_nodes.csv`` without an MR partner, placed from ``specimen.json``.

    Parameters
    ----------
    truth : pandas.DataFrame
        ``truth_nodes.csv``: the rows with an empty ``mr_node`` and a ``path_node`` are the unmatched pathology
        nodes (``path_status``, ``side``, ``container`` as there).
    containers : list of dict
        The ``containers`` of ``specimen.json``; their ``nodes`` entries give ``position_ras_mm`` (mm, RAS) of
        the nodes with ``positioned: true``.

    Returns
    -------
    list of PathMarker
        In table order; ``position`` None for a node the specimen did not place.

    Examples
    --------
    >>> truth = pd.DataFrame({"mr_node": [1.0, None], "path_node": ["R-II-01", "R-II-02"], "side": ["R", "R"],
    ...                       "container": ["R-II", "R-II"], "path_status": ["positive", "negative"]})
    >>> spec = [{"container": "R-II", "side": "R", "nodes": [
    ...     {"node": "R-II-02", "position_ras_mm": [40.0, -5.0, 20.0], "positioned": True}]}]
    >>> [(m.node, m.status, m.position.tolist()) for m in unmatched_path_markers(truth, spec)]
    [('R-II-02', 'negative', [40.0, -5.0, 20.0])]
    """
    placed: dict[str, tuple[str, NDArray[np.float64]]] = {}
    for c in containers:
        for n in c.get("nodes", []) or []:
            pos = n.get("position_ras_mm") if isinstance(n, Mapping) else None
            if n.get("positioned") is True and isinstance(pos, list) and len(pos) == 3:
                placed[str(n.get("node"))] = (str(c.get("side", "")), np.asarray(pos, dtype=np.float64))
    if truth.empty or "path_node" not in truth.columns:
        return []
    rows = truth[truth["mr_node"].isna() & truth["path_node"].notna()] if "mr_node" in truth.columns else truth
    out = []
    for _, row in rows.iterrows():
        status = str(row.get("path_status", "") or "").strip().lower()
        status = status if status in ("positive", "negative") else "unknown"
        for node in str(row["path_node"]).split(";"):
            side, pos = placed.get(node.strip(), (str(row.get("side", "") or ""), None))
            out.append(PathMarker(node.strip(), side, status, str(row.get("container", "") or ""), pos))
    return out


def specimen_markers(registration: pd.DataFrame | None, nodes: pd.DataFrame) -> list[SpecimenMarker]:
    """The registered specimen nodes of ``specimen_registration.csv`` (none without the table).

    Parameters
    ----------
    registration : pandas.DataFrame or None
        ``image``, ``specimen_node``, ``mr_node`` (empty where unpaired) and ``x, y, z``: the node's position
        mapped into the patient (mm, RAS), as :func:`neckmatch.correlation.specimen_evidence.specimen_evidence`
        writes them.
    nodes : pandas.DataFrame
        The MR node table (``node``, ``side``, ``x, y, z``): the paired node's centroid and side.

    Returns
    -------
    list of SpecimenMarker
        In table order.

    Examples
    --------
    >>> reg = pd.DataFrame({"image": ["A", "A"], "specimen_node": [1, 2], "mr_node": [7, None],
    ...                     "x": [30.0, -20.0], "y": [0.0, 5.0], "z": [10.0, 12.0]})
    >>> mr = pd.DataFrame({"node": [7], "side": ["R"], "x": [31.0], "y": [1.0], "z": [9.0]})
    >>> [(m.node, m.mr_node, m.side, m.partner is None) for m in specimen_markers(reg, mr)]
    [(1, 7, 'R', False), (2, None, 'L', True)]
    """
    if registration is None or registration.empty:
        return []
    table = nodes.set_index("node") if "node" in nodes.columns else nodes
    have_xyz = all(c in table.columns for c in "xyz")
    out = []
    for row in registration.to_dict("records"):
        pos = np.array([row["x"], row["y"], row["z"]], dtype=np.float64)
        mr = None if pd.isna(row.get("mr_node")) else int(float(row["mr_node"]))
        partner, side = None, "R" if pos[0] > 0 else "L"
        if mr is not None and mr in table.index:
            side = str(table.at[mr, "side"]) if "side" in table.columns else side
            partner = table.loc[mr, ["x", "y", "z"]].to_numpy(dtype=np.float64) if have_xyz else None
        out.append(SpecimenMarker(str(row["image"]), int(row["specimen_node"]), pos, mr, partner, side))
    return out


_OCTAHEDRON_FACES = np.array([[0, 2, 4], [2, 1, 4], [1, 3, 4], [3, 0, 4], [2, 0, 5], [1, 2, 5], [3, 1, 5],
                              [0, 3, 5]], dtype=np.int64)


def _specimen_meshes(markers: Sequence[SpecimenMarker], radius_mm: float = 1.6) -> list[SceneMesh]:
    """A small octahedron per registered specimen node and one set of lines to the paired MR nodes."""
    out = []
    corners = radius_mm * np.concatenate([np.eye(3), -np.eye(3)])[[0, 3, 1, 4, 2, 5]]
    for m in markers:
        attrs = {"kind": "specimen", "image": m.image, "specimen_node": m.node, "mr_node": m.mr_node,
                 "side": m.side, "x": round(float(m.position[0]), 3), "y": round(float(m.position[1]), 3),
                 "z": round(float(m.position[2]), 3)}
        out.append(SceneMesh(f"specimen_{m.image}_{m.node}", "specimen", m.position + corners, _OCTAHEDRON_FACES,
                             (*SPECIMEN_COLOR, 1.0), attrs))
    pairs = [(m.position, m.partner) for m in markers if m.partner is not None]
    if pairs:
        verts = np.array([p for pair in pairs for p in pair], dtype=np.float64)
        lines = np.arange(len(verts), dtype=np.int64).reshape(-1, 2)
        out.append(SceneMesh("specimen_links", "specimen_link", verts, np.zeros((0, 3), np.int64),
                             (*SPECIMEN_COLOR, 1.0), {"kind": "specimen_link", "pairs": len(pairs)}, lines))
    return out


def _title(case_id: str, nodes: pd.DataFrame, coloring: str, n_levels: int) -> str:
    n = len(nodes)
    if coloring != "outcome" or "outcome" not in nodes.columns:
        return f"Case {case_id}: {n} MR nodes in {n_levels} level regions (no match results: nodes coloured by level)"
    kinds, decisions = (nodes[c] if c in nodes.columns else [None] * n for c in ("match_kind", "decision"))
    cats = pd.Series([node_category(*row) for row in zip(nodes["outcome"], kinds, decisions, strict=True)],
                     dtype=object).value_counts()
    shown = ("TP", "FN", "FP", "TN", "review", "unmatched") if cats.get("review", 0) else \
        ("TP", "FN", "FP", "TN", "unmatched")
    parts = ", ".join(f"{k.replace('review', 'to review')} {int(cats.get(k, 0))}" for k in shown)
    return f"Case {case_id}: {n} MR nodes - {parts}"


def build_scene(
    case_id: str,
    node_surfaces: Mapping[int, trimesh.Trimesh],
    nodes: pd.DataFrame,
    level_meshes: Mapping[str, trimesh.Trimesh] | None = None,
    containers: Sequence[Mapping[str, Any]] | None = None,
    level_alpha: float = 0.3,
    path_markers: Sequence[PathMarker] | None = None,
    anatomy: Sequence[Any] | None = None,
    specimen: Sequence[SpecimenMarker] | None = None,
) -> Scene:
    """Assemble the scene of one case.

    Parameters
    ----------
    case_id : str
    node_surfaces : dict of int to trimesh.Trimesh
        MR node surfaces (RAS mm), keyed by label (see :func:`label_surfaces`).
    nodes : pandas.DataFrame
        One row per MR node with ``node`` and at least ``side``, ``level``; with ``outcome`` (and
        ``match_kind`` ...) nodes are coloured by outcome, else by level. Every column goes into the attributes.
    level_meshes : dict of str to trimesh.Trimesh, optional
        Level regions named ``LN_Neck_<level>_<side>`` (RAS mm).
    containers : list of dict, optional
        Reconstructed pathology containers, the ``containers`` entries of ``specimen.json`` (``container``,
        ``side``, ``level`` and ``profile``; see :func:`container_outline`).
    level_alpha : float
        Opacity of the level regions.
    path_markers : list of PathMarker, optional
        Pathology nodes without an MR partner (see :func:`unmatched_path_markers`); counted in the title.
    anatomy : list of neckmatch.viz.anatomy.Structure, optional
        Reference structures (mandible, hyoid, vessels ...), drawn light (opacity 0.45 in the GLB).
    specimen : list of SpecimenMarker, optional
        Registered nodes of the ex vivo specimen scans (see :func:`specimen_markers`): an octahedron each and a
        line to the paired MR node (meshes ``specimen_<image>_<node>``, ``specimen_links``); counted in the title.
    """
    coloring = "outcome" if "outcome" in nodes.columns else "level"
    levels = _level_meshes(level_meshes or {}, level_alpha)
    node_meshes = _node_meshes(node_surfaces, nodes, coloring)
    boxes = _container_meshes(containers or [])
    present = {m.attrs["level"] for m in levels}
    level_legend = {lv: rgb for lv, rgb in LEVEL_COLORS.items() if lv in present}
    if coloring == "outcome":
        node_legend = dict(OUTCOME_COLORS)
    else:
        node_legend = {f"node in {lv}": NODE_LEVEL_COLORS[lv] for lv in level_legend}
    title = _title(case_id, nodes, coloring, len(levels))
    markers = list(path_markers or [])
    if markers:
        n_pos = sum(m.status == "positive" for m in markers)
        title += f"; {len(markers)} pathology nodes without MR partner ({n_pos} positive)"
    spec = list(specimen or [])
    if spec:
        title += f"; {len(spec)} registered specimen nodes ({sum(m.mr_node is not None for m in spec)} paired)"
    meshes = levels + _anatomy_meshes(anatomy or [], 0.45) + node_meshes + boxes + _specimen_meshes(spec)
    return Scene(case_id, meshes, title, level_legend, node_legend, coloring, markers, spec)
