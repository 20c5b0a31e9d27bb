"""The maps of one case from in-memory inputs: the scene, then every file (PNG, GLB, VTK, Slicer, viewer page).

:func:`case_scene` builds the scene (geometry only: level regions confined to the neck, MR node surfaces,
reference structures, pathology containers and markers); :func:`render_maps` writes the files of
``docs/outputs.md`` (*Maps*). Nothing here reads a file: the tables and the specimen come in memory (from the
pipeline, or from :func:`neckmatch.io.results.read_results` for ``neckmatch render --results``).
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from neckmatch.errors import InputError
from neckmatch.io.atomic import atomic_files
from neckmatch.model import Case, LabelMap
from neckmatch.viz.scene import (
    PathMarker,
    Scene,
    SpecimenMarker,
    build_scene,
    label_surfaces,
    specimen_markers,
    unmatched_path_markers,
)

__all__ = ["CaseScene", "node_table", "specimen_containers", "path_markers", "registered_specimen_nodes", "node_boxes",
           "case_scene", "render_maps"]

_LEVEL_COLUMNS = ["node", "side", "level", "x", "y", "z", "volume_mm3", "short_axis_mm", "long_axis_mm",
                  "boundary_mm", "runner_up", "borderline"]
_TRUTH_COLUMNS = ["path_node", "container", "path_size_mm", "mr_call", "mr_score", "path_status", "outcome",
                  "match_kind", "confidence", "decision"]


@dataclass(frozen=True)
class CaseScene:
    """The scene of one case and the grids behind it.

    scene : Scene. level_map : LabelMap or None (the level regions, None without landmarks). names : label value
    -> region name ``LN_Neck_<level>_<side>``. nodes : the node table the scene was coloured from. boxes : each
    node's voxel bounding box in the MR label map (:func:`node_boxes`).
    """

    scene: Scene
    level_map: LabelMap | None
    names: dict[int, str]
    nodes: pd.DataFrame
    boxes: dict[int, tuple[slice, ...]]


def node_table(case: Case, tables: Mapping[str, pd.DataFrame] | None = None) -> pd.DataFrame:
    """One row per MR node: the ``levels`` table (computed from the case without one) joined with ``truth_nodes``.

    Parameters
    ----------
    case : Case
    tables : dict of str to pandas.DataFrame, optional
        Output tables by file stem (``levels``, ``truth_nodes`` ...), as the pipeline makes them.

    Returns
    -------
    pandas.DataFrame
        ``node`` and the level columns (side, level, x, y, z in mm RAS, sizes ...); with ``truth_nodes`` also
        ``outcome``, ``match_kind``, ``path_node`` ... (nodes are then coloured by outcome).

    Raises
    ------
    InputError
        A table without the columns it needs (named).
    """
    tables = tables or {}
    levels = tables.get("levels")
    if levels is None:
        from neckmatch.geometry.levels import levels_table

        levels = levels_table(case)
    for col in ("node", "side", "level"):
        if col not in levels.columns:
            raise InputError("levels", col, f"missing column (got {list(levels)})")
    table = levels[[c for c in _LEVEL_COLUMNS if c in levels.columns]].copy()
    table["node"] = table["node"].astype(np.int64)
    truth = tables.get("truth_nodes")
    if truth is None:
        return table
    if "mr_node" not in truth.columns or "outcome" not in truth.columns:
        raise InputError("truth_nodes", "header", f"needs mr_node and outcome columns (got {list(truth)})")
    truth = truth[truth["mr_node"].notna()]
    truth = truth.assign(node=truth["mr_node"].astype(float).astype(np.int64))
    keep = ["node", *[c for c in _TRUTH_COLUMNS if c in truth.columns]]
    return table.merge(truth[keep], on="node", how="left")


def specimen_containers(specimen: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The reconstructed containers of a ``specimen.json`` document that have a profile to draw."""
    conts = specimen.get("containers", []) if isinstance(specimen, Mapping) else []
    return [c for c in conts if isinstance(c, dict) and isinstance(c.get("profile"), dict) and "container" in c]


def path_markers(truth: pd.DataFrame | None, containers: list[dict[str, Any]]) -> list[PathMarker]:
    """The pathology nodes of ``truth_nodes`` without an MR partner (none without the table or its path_node).

    Raises
    ------
    InputError
        A truth table with ``path_node`` but no ``mr_node`` column.
    """
    if truth is None or "path_node" not in truth.columns:
        return []
    if "mr_node" not in truth.columns:
        raise InputError("truth_nodes", "mr_node", f"missing column (got {list(truth)})")
    return unmatched_path_markers(truth, containers)


_REGISTRATION_COLUMNS = ("image", "specimen_node", "mr_node", "x", "y", "z")


def registered_specimen_nodes(registration: pd.DataFrame | None, nodes: pd.DataFrame) -> list[SpecimenMarker]:
    """The registered specimen nodes of a ``specimen_registration`` table (none without it).

    Raises
    ------
    InputError
        A table without the columns it needs (named).
    """
    if registration is None:
        return []
    missing = [c for c in _REGISTRATION_COLUMNS if c not in registration.columns]
    if missing:
        raise InputError("specimen_registration", missing[0], f"missing column (got {list(registration)})")
    return specimen_markers(registration, nodes)


def node_boxes(label_map: LabelMap, nodes: pd.DataFrame, margin_mm: float = 3.0) -> dict[int, tuple[slice, ...]]:
    """Voxel bounding box of each node in the table, found from its centroid and long axis, not a full-map pass.

    Each box starts as the voxels within ``long_axis_mm / 2 + margin_mm`` of the centroid (``x, y, z``) and grows
    until no voxel of the label touches its border, so it always holds the whole label.

    Parameters
    ----------
    label_map : LabelMap
    nodes : pandas.DataFrame
        ``node``, ``x``, ``y``, ``z`` (mm, RAS) and ``long_axis_mm`` (a missing column or value: 20 mm).
    margin_mm : float

    Returns
    -------
    dict of int to tuple of slice
        Label -> index slices of ``label_map.data``; labels with no voxel in their box are left out.
    """
    data, shape = label_map.data, np.array(label_map.data.shape)
    step = label_map.spacing
    out: dict[int, tuple[slice, ...]] = {}
    long_axis = nodes["long_axis_mm"] if "long_axis_mm" in nodes.columns else pd.Series(np.nan, index=nodes.index)
    for lab, cx, cy, cz, la in zip(nodes["node"], nodes["x"], nodes["y"], nodes["z"], long_axis, strict=True):
        centre = label_map.to_ijk(np.array([[cx, cy, cz]], dtype=np.float64))[0]
        half = (float(la) / 2.0 if np.isfinite(la) else 10.0) + margin_mm
        lo = np.clip(np.floor(centre - half / step).astype(int), 0, shape)
        hi = np.clip(np.ceil(centre + half / step).astype(int) + 1, 0, shape)
        while True:
            crop = data[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] == lab
            grow = np.zeros(3, dtype=bool)
            for ax in range(3):
                first, last = np.take(crop, 0, axis=ax), np.take(crop, -1, axis=ax)
                grow[ax] = (first.any() and lo[ax] > 0) or (last.any() and hi[ax] < shape[ax])
            if not grow.any():
                break
            pad = np.ceil(half / step).astype(int)
            lo, hi = np.maximum(lo - grow * pad, 0), np.minimum(hi + grow * pad, shape)
        if crop.any():
            out[int(lab)] = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    return out


def case_scene(
    case: Case,
    tables: Mapping[str, pd.DataFrame] | None = None,
    specimen: Mapping[str, Any] | None = None,
    level_spacing_mm: float = 2.5,
) -> CaseScene:
    """The scene of ``case``: level regions confined to the neck, node surfaces, containers and match outcomes.

    Parameters
    ----------
    case : Case
    tables : dict of str to pandas.DataFrame, optional
        Output tables by file stem: ``levels`` (else computed), ``truth_nodes`` (nodes coloured by outcome; without
        it by level), ``specimen_registration`` (the registered ex vivo specimen nodes, drawn as their own layer).
    specimen : dict, optional
        The ``specimen.json`` document (containers drawn as outlines, unmatched pathology nodes placed).
    level_spacing_mm : float
        The level regions are evaluated on an axis-aligned RAS grid of this spacing (mm) covering the neck.
    """
    tables = tables or {}
    level_map, names = None, dict[int, str]()
    level_meshes, anatomy = {}, []
    if case.landmarks is not None:
        from neckmatch.geometry.regions import level_label_map
        from neckmatch.viz.anatomy import reference_structures

        anatomy = reference_structures(case.landmarks)
        level_map, names = level_label_map(case.landmarks, spacing_mm=level_spacing_mm)
        level_meshes = {names[k]: m for k, m in label_surfaces(level_map, smooth_iterations=12).items()
                        if k in names}
    nodes = node_table(case, tables)
    boxes = node_boxes(case.label_map, nodes)
    surfaces = label_surfaces(case.label_map, labels=list(boxes), boxes=boxes, resolution_mm=0.8)
    containers = specimen_containers(specimen)
    markers = path_markers(tables.get("truth_nodes"), containers)
    registered = registered_specimen_nodes(tables.get("specimen_registration"), nodes)
    scene = build_scene(case.case_id, surfaces, nodes, level_meshes, containers, path_markers=markers,
                        anatomy=anatomy, specimen=registered)
    return CaseScene(scene, level_map, names, nodes, boxes)


def render_maps(
    case: Case,
    out_dir: str | Path,
    tables: Mapping[str, pd.DataFrame] | None = None,
    specimen: Mapping[str, Any] | None = None,
    image: str | Path | None = None,
    overlap: bool = True,
) -> dict[str, Path]:
    """Write the maps of one case into ``out_dir`` (files of ``docs/outputs.md``, *Maps*), from memory.

    Parameters
    ----------
    case : Case
    out_dir : str or Path
    tables : dict of str to pandas.DataFrame, optional
        The case's output tables by file stem (``levels``, ``truth_nodes`` ...; ``CaseResult.tables``).
    specimen : dict, optional
        The ``specimen.json`` document (``CaseResult.specimen``).
    image : str or Path, optional
        The MR image for the 3D Slicer scene; display only. Default: the case's ``mri.image`` (``case.image_path``)
        where it has one.
    overlap : bool
        Write the other files in a thread while the PNG is drawn. Both spend much of their time in code that lets
        go of the GIL (VTK, zlib, Pillow's encoder), so on two cores the maps of a case take ~0.2 s less
        (``benchmarks/maps.py``). A cohort worker passes False: the other workers use the cores already, and the
        thread would only add ~20 MB to its peak memory.

    Returns
    -------
    dict of str to Path
        The files written, keyed ``png``, ``glb``, ``viewer``, ``vtm``, ``segmentation``, ``node_segmentation``,
        ``markups``, ``landmarks``, ``mrml``; with registered specimen nodes also ``specimen_markups``.

    The files are made in a staging folder and moved into ``out_dir`` together once all are written: a failure
    writes nothing (other files in ``out_dir`` are kept).

    Raises
    ------
    RenderError
        Without a usable off-screen OpenGL context.
    InputError
        A table without the columns it needs.
    """
    from neckmatch.viz import png

    built = case_scene(case, tables, specimen)
    image = image if image is not None else case.image_path
    with atomic_files(out_dir) as stage, ThreadPoolExecutor(max_workers=1) as pool:
        others = pool.submit(_model_files, case, built, stage, image) if overlap else None
        paths = {"png": png.render_scene(built.scene, stage / f"{case.case_id}_map.png")}
        paths.update(_model_files(case, built, stage, image) if others is None else others.result())
    return {key: Path(out_dir) / path.name for key, path in paths.items()}


def _model_files(case: Case, built: CaseScene, stage: Path, image: str | Path | None) -> dict[str, Path]:
    """Write the files of :func:`render_maps` other than the PNG into ``stage``: the 3D Slicer files, GLB, viewer
    page and VTK multiblock (the Slicer scene names the multiblock's parts before they are written: all of them
    reach ``out_dir`` together)."""
    from neckmatch.viz import export, viewer

    scene, stem = built.scene, stage / case.case_id
    paths = _slicer_files(case, built, stage, image, stage / f"{case.case_id}_scene.vtm")
    glb = export.glb_bytes(scene)
    paths["glb"] = export.write_glb(scene, f"{stem}_scene.glb", glb)
    paths["viewer"] = viewer.write_viewer(scene, glb, f"{stem}_viewer.html")
    paths["vtm"] = export.write_vtm(scene, f"{stem}_scene.vtm")
    return paths


def _slicer_files(case: Case, built: CaseScene, stage: Path, image: str | Path | None, vtm: Path) -> dict[str, Path]:
    """Write the 3D Slicer files of :func:`render_maps` into ``stage``: both segmentations, the markups and the
    scene (``.mrml``) that loads them with the surface models of the multiblock ``vtm`` and the MR ``image``."""
    from neckmatch.viz import export, slicer

    scene, stem, paths = built.scene, stage / case.case_id, {}
    segs = []
    if built.level_map is not None:
        paths["segmentation"] = export.write_level_segmentation(built.level_map, built.names,
                                                                f"{stem}_levels.seg.nrrd")
        segs.append(("level regions", paths["segmentation"]))
    paths["node_segmentation"] = slicer.write_node_segmentation(case.label_map, scene, built.boxes,
                                                                f"{stem}_nodes.seg.nrrd")
    segs.append(("MR nodes", paths["node_segmentation"]))
    paths["markups"] = export.write_node_markups(scene, f"{stem}_nodes.mrk.json")
    marks = [("MR node centroids", "Fiducial", paths["markups"])]
    if scene.specimen_markers:
        paths["specimen_markups"] = export.write_specimen_markups(scene, f"{stem}_specimen_nodes.mrk.json")
        marks.append(("registered specimen nodes", "Fiducial", paths["specimen_markups"]))
    if case.landmarks is not None:
        files = slicer.write_landmark_markups(case.landmarks, stage, case.case_id)
        paths["landmarks"] = files[0]
        marks += [("landmarks", "Fiducial", files[0])] + [(f.name.removesuffix(".mrk.json"), "Curve", f)
                                                          for f in files[1:]]
    parts = export.vtm_parts(scene, vtm)
    models = [(m.name, parts[m.name], m.color) for m in scene.meshes if m.kind in ("level", "anatomy", "specimen_link")]
    paths["mrml"] = slicer.write_mrml(f"{stem}_scene.mrml", segs, marks, models, image)
    return paths
