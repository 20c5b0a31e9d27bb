"""Files other programs open: GLB for a browser, ``.vtm`` for ParaView, ``.seg.nrrd`` and markups for 3D Slicer.

Every writer takes the :class:`~neckmatch.viz.scene.Scene` (or the level map) of a case and writes atomically.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import trimesh
from numpy.typing import NDArray
from trimesh.visual.material import PBRMaterial
from vtkmodules.vtkCommonCore import vtkFloatArray, vtkStringArray
from vtkmodules.vtkCommonDataModel import vtkCompositeDataSet, vtkMultiBlockDataSet, vtkPolyData
from vtkmodules.vtkIOXML import vtkXMLMultiBlockDataWriter

from neckmatch.io.atomic import atomic_dir, atomic_path
from neckmatch.io.labelmap import write_label_map
from neckmatch.io.markups import write_point_list
from neckmatch.model import LabelMap
from neckmatch.viz.scene import LEVEL_COLORS, Scene, SceneMesh, mesh_polydata, parse_level_name

__all__ = ["RAS_TO_GLTF", "glb_bytes", "write_glb", "write_vtm", "vtm_parts", "write_level_segmentation",
           "write_node_markups", "write_specimen_markups"]

# glTF is Y-up, metres, viewer looking down -Z: a patient facing the viewer is 0.001 * (-x, z, y) of RAS mm.
RAS_TO_GLTF: NDArray[np.float64] = 0.001 * np.array([[-1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])


def _rgba8(color: tuple[float, ...]) -> list[int]:
    return [int(round(255 * c)) for c in color]


def _gltf_mesh(m: SceneMesh) -> trimesh.Trimesh | trimesh.path.Path3D:
    verts = m.vertices @ RAS_TO_GLTF.T
    meta = {"name": m.name, **m.attrs, "color_rgba": [round(c, 4) for c in m.color]}
    if not len(m.faces):  # outlines (containers, specimen links) as line paths
        path = trimesh.load_path(verts[m.lines])
        path.metadata.update(meta)
        path.colors = np.tile(_rgba8(m.color), (len(path.entities), 1))
        return path
    mesh = trimesh.Trimesh(verts, m.faces, process=False)
    blend = m.color[3] < 1.0
    mesh.visual = trimesh.visual.TextureVisuals(material=PBRMaterial(
        name=m.name, baseColorFactor=_rgba8(m.color), alphaMode="BLEND" if blend else "OPAQUE",
        doubleSided=blend, metallicFactor=0.0, roughnessFactor=0.8))
    mesh.metadata.update(meta)
    return mesh


def glb_bytes(scene: Scene) -> bytes:
    """``scene`` as binary glTF bytes (see :func:`write_glb`)."""
    out = trimesh.Scene()
    for m in scene.meshes:
        out.add_geometry(_gltf_mesh(m), node_name=m.name, geom_name=m.name)
    out.metadata.update({
        "case_id": scene.case_id, "title": scene.title, "node_coloring": scene.node_coloring,
        "level_colors": {k: [round(c, 4) for c in v] for k, v in scene.level_legend.items()},
        "node_colors": {k: [round(c, 4) for c in v] for k, v in scene.node_legend.items()},
        "axes": "glTF: +X patient left, +Y superior, +Z anterior; metres",
    })
    return bytes(out.export(file_type="glb"))


def write_glb(scene: Scene, path: str | Path, data: bytes | None = None) -> Path:
    """Write ``scene`` as binary glTF: one named mesh per level region, reference structure and MR node
    (containers as lines); ``data`` = :func:`glb_bytes` of the scene where already made.

    Vertices go to glTF axes (Y up, metres; see :data:`RAS_TO_GLTF`); colours are PBR base colours (levels and
    reference structures translucent with ``alphaMode=BLEND``); each mesh's attributes (level, side, outcome,
    match ...) are its ``extras``; the scene ``extras`` hold the case id, title and legends. No Draco compression.
    """
    with atomic_path(path) as tmp:
        tmp.write_bytes(glb_bytes(scene) if data is None else data)
    return Path(path)


def _field_data(poly: vtkPolyData, m: SceneMesh) -> None:
    fd = poly.GetFieldData()
    color = vtkFloatArray()
    color.SetName("color_rgba")
    color.SetNumberOfComponents(4)
    color.InsertNextTuple(m.color)
    fd.AddArray(color)
    for key, value in {"name": m.name, **m.attrs, "SPACE": "RAS"}.items():
        if value is None:
            continue
        arr = vtkStringArray()
        arr.SetName(str(key))
        arr.InsertNextValue(str(value))
        fd.AddArray(arr)


_VTM_GROUPS = (("levels", "level"), ("nodes", "node"), ("containers", "container"), ("anatomy", "anatomy"))
_SPECIMEN_GROUPS = (("specimen", "specimen"), ("specimen links", "specimen_link"))


def _groups(scene: Scene) -> tuple[tuple[str, str], ...]:
    """The multiblock's groups (name, mesh kind): the specimen ones only where the scene has registered nodes."""
    return _VTM_GROUPS + (_SPECIMEN_GROUPS if scene.of_kind("specimen") else ())


def vtm_parts(scene: Scene, path: str | Path) -> dict[str, Path]:
    """The ``.vtp`` file :func:`write_vtm` writes for each mesh of ``scene`` (mesh name -> path)."""
    path = Path(path)
    meshes = [m for _, kind in _groups(scene) for m in scene.of_kind(kind)]
    folder = path.with_suffix("")
    return {m.name: folder / f"{folder.name}_{i}.vtp" for i, m in enumerate(meshes)}


def write_vtm(scene: Scene, path: str | Path) -> Path:
    """Write ``scene`` as a VTK multiblock (``.vtm`` + a folder of ``.vtp``), RAS mm.

    Top-level blocks ``levels``, ``nodes``, ``containers``, ``anatomy`` (and ``specimen``, ``specimen links``
    where the case has registered specimen nodes); each child block is named after its mesh
    (``LN_Neck_IIA_R``, ``node_7``, ``container_R-II``, ``mandible``) and carries its colour and attributes as
    field data, and ``SPACE`` = ``RAS`` (3D Slicer reads the points as RAS). Binary, uncompressed.
    """
    path = Path(path)
    root = vtkMultiBlockDataSet()
    for i, (group, kind) in enumerate(_groups(scene)):
        block = vtkMultiBlockDataSet()
        for j, m in enumerate(scene.of_kind(kind)):
            poly = mesh_polydata(m)
            _field_data(poly, m)
            block.SetBlock(j, poly)
            block.GetMetaData(j).Set(vtkCompositeDataSet.NAME(), m.name)
        root.SetBlock(i, block)
        root.GetMetaData(i).Set(vtkCompositeDataSet.NAME(), group)
    with atomic_dir(path.with_name(f".{path.name}.parts")) as tmp:
        writer = vtkXMLMultiBlockDataWriter()
        writer.SetFileName(str(tmp / path.name))
        writer.SetInputData(root)
        writer.SetDataModeToAppended()
        writer.EncodeAppendedDataOff()  # raw binary, uncompressed: written 10x faster, read by ParaView and Slicer
        writer.SetCompressorTypeToNone()
        if writer.Write() != 1:
            raise OSError(f"{path}: VTK could not write the multiblock")
        parts = path.with_suffix("")
        if parts.exists():
            shutil.rmtree(parts)
        os.replace(tmp / parts.name, parts)
        os.replace(tmp / path.name, path)  # the .vtm appears last, once its parts are in place
    shutil.rmtree(path.with_name(f".{path.name}.parts"), ignore_errors=True)
    return path


def write_level_segmentation(level_map: LabelMap, names: Mapping[int, str], path: str | Path) -> Path:
    """Write the level regions as a 3D Slicer ``.seg.nrrd``: one segment per region, named, coloured by level.

    Written once by :func:`neckmatch.io.labelmap.write_label_map` with each ``SegmentN_Color`` the level's colour
    (as in the PNG and GLB, marked not auto-generated), gzip level 1 (a real-size case: 18 kB in 5 ms; level 9:
    10 kB in 14 ms).
    """
    colors = {label: LEVEL_COLORS[parse_level_name(name)[0]] for label, name in names.items()}
    return write_label_map(path, level_map, names, colors, compression_level=1)


def _describe(attrs: Mapping[str, Any]) -> str:
    keys = ("side", "level", "outcome", "match_kind", "path_node", "short_axis_mm")
    return "; ".join(f"{k}={attrs[k]}" for k in keys if attrs.get(k) not in (None, ""))


def write_node_markups(scene: Scene, path: str | Path) -> Path:
    """Write the MR node centroids as a 3D Slicer markups point list (``.mrk.json``, LPS on disk).

    Each control point is labelled ``node_<k>``; its description holds side, level, outcome and match.
    Centroids come from the node table (``x, y, z``) where present, else the mean surface vertex.
    """
    nodes = scene.of_kind("node")
    labels = [m.name for m in nodes]
    pts = np.array([
        [m.attrs[c] for c in ("x", "y", "z")] if all(m.attrs.get(c) is not None for c in ("x", "y", "z"))
        else m.anchor() for m in nodes
    ], dtype=np.float64).reshape(-1, 3)
    return write_point_list(path, f"{scene.case_id} MR nodes", labels, pts, [_describe(m.attrs) for m in nodes],
                            indent=None)


def write_specimen_markups(scene: Scene, path: str | Path) -> Path:
    """Write the registered specimen nodes as a 3D Slicer markups point list (``.mrk.json``, LPS on disk).

    Each control point is labelled ``specimen_<image>_<node>`` (as its mesh) at the node's registered position;
    its description names the paired MR node (``paired with node_<k>``) or ``unpaired``.
    """
    marks = scene.specimen_markers
    labels = [f"specimen_{m.image}_{m.node}" for m in marks]
    pts = np.array([m.position for m in marks], dtype=np.float64).reshape(-1, 3)
    notes = [f"image {m.image}, specimen node {m.node}; " + (f"paired with node_{m.mr_node}" if m.mr_node is not None
                                                              else "unpaired") for m in marks]
    return write_point_list(path, f"{scene.case_id} registered specimen nodes", labels, pts, notes, indent=None)
