"""3D Slicer in one click: the MR node segmentation on the MR grid, the landmarks and a scene file (``.mrml``).

:func:`write_node_segmentation` writes one segment per MR node (named ``node_<k> <level> <status>``, coloured by
outcome or level, with Slicer's segment metadata) as a ``.seg.nrrd`` on the MR grid: the voxels of the nodes'
bounding box, placed on the MR grid by its origin and ``Segmentation_ReferenceImageExtentOffset``.
:func:`write_mrml` writes a scene that loads the MR volume (where given), both segmentations, the landmarks and the
surface models together, every file by a path relative to the scene.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from xml.etree import ElementTree as ET

import nrrd
import numpy as np

from neckmatch.io.atomic import atomic_path, write_text
from neckmatch.io.labelmap import Segment, nrrd_space_fields, segment_fields
from neckmatch.io.markups import write_markups
from neckmatch.model import LabelMap, Landmarks
from neckmatch.viz.scene import Scene

__all__ = ["node_segment_name", "write_node_segmentation", "write_landmark_markups", "write_mrml"]

_TAGS = ("Segmentation.Status:completed|TerminologyEntry:Segmentation category and type - 3D Slicer General "
         "Anatomy list~SCT^91723000^Anatomical Structure~SCT^59441001^Lymph node~^^~Anatomic codes - DICOM master "
         "list~^^~^^|")


def node_segment_name(label: int, attrs: Mapping[str, object]) -> str:
    """Segment name of an MR node: id, level and status (outcome, else match kind, else ``no result``).

    Examples
    --------
    >>> node_segment_name(7, {"side": "R", "level": "IIA", "category": "TP"})
    'node_7 R IIA TP'
    >>> node_segment_name(3, {"side": "L", "level": "IV"})
    'node_3 L IV no result'
    """
    status = attrs.get("category") or attrs.get("match_kind") or "no result"
    return f"node_{label} {attrs.get('side') or ''} {attrs.get('level') or ''} {status}".replace("  ", " ")


def _union_box(boxes: Mapping[int, tuple[slice, ...]], shape: tuple[int, ...]) -> tuple[slice, ...]:
    if not boxes:
        return tuple(slice(0, 1) for _ in shape)
    lo = np.min([[s.start for s in b] for b in boxes.values()], axis=0)
    hi = np.max([[s.stop for s in b] for b in boxes.values()], axis=0)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))


def write_node_segmentation(
    label_map: LabelMap, scene: Scene, boxes: Mapping[int, tuple[slice, ...]], path: str | Path
) -> Path:
    """Write the MR nodes as a 3D Slicer segmentation on the MR grid: one segment per node.

    Parameters
    ----------
    label_map : LabelMap
        The MR node label map (its grid is kept: same spacing and directions, origin on one of its voxels).
    scene : Scene
        Its ``node_<k>`` meshes give each segment's name (:func:`node_segment_name`) and colour.
    boxes : dict of int to tuple of slice
        Each node's voxel bounding box in ``label_map`` (:func:`neckmatch.viz.maps.node_boxes`); the file holds
        their union, ``Segmentation_ReferenceImageExtentOffset`` = its first voxel.
    path : str or Path
        Output ``.seg.nrrd`` (gzip, LPS space as Slicer writes it), written atomically.
    """
    box = _union_box(boxes, label_map.data.shape)
    offset = np.array([s.start for s in box])
    labels = np.array(sorted(boxes), dtype=np.int64)
    crop = label_map.data[box]
    dtype = np.uint8 if labels.max(initial=0) < 256 else np.uint16
    top = int(crop.max(initial=0))
    if np.array_equal(labels, np.arange(1, top + 1)):  # labels 1..n, every one a segment: the voxels as they are
        data = crop.astype(dtype, copy=False)
    else:
        lut = np.zeros(max(int(labels.max(initial=0)), top) + 1, dtype=dtype)
        lut[labels] = labels  # labels of nodes not in ``boxes`` become 0
        data = lut[crop]
    affine = label_map.affine.copy()  # of the crop: its first voxel is the origin
    affine[:3, 3] = label_map.affine[:3, :3] @ offset + label_map.affine[:3, 3]
    meshes = {int(m.attrs["node"]): m for m in scene.of_kind("node")}
    segments = []
    for lab in sorted(boxes):
        mesh = meshes.get(lab)
        segments.append(Segment(
            lab, f"node_{lab}", node_segment_name(lab, mesh.attrs if mesh is not None else {}),
            mesh.color[:3] if mesh is not None else (0.5, 0.5, 0.5),
            [(int(s.start - o), int(s.stop - 1 - o)) for s, o in zip(boxes[lab], offset, strict=True)], _TAGS))
    header = {**nrrd_space_fields(affine), **segment_fields(segments, offset.tolist())}
    with atomic_path(path) as tmp:
        nrrd.write(str(tmp), data, header, index_order="F", compression_level=1)
    return Path(path)


def write_landmark_markups(landmarks: Landmarks, folder: str | Path, stem: str) -> list[Path]:
    """The landmarks as one markups file per markup (Slicer loads one markup per file in a scene).

    Writes ``<stem>_landmarks.mrk.json`` (the point landmarks) and ``<stem>_landmarks/<curve>.mrk.json`` per curve.
    """
    folder = Path(folder)
    out = [write_markups(folder / f"{stem}_landmarks.mrk.json", Landmarks(points=landmarks.points), indent=None)]
    for name, curve in landmarks.curves.items():
        out.append(write_markups(folder / f"{stem}_landmarks" / f"{name}.mrk.json", Landmarks(curves={name: curve}),
                                 indent=None))
    return out


class _Mrml:
    """A scene document: data nodes with their display and storage nodes, ids numbered per class."""

    def __init__(self, folder: Path) -> None:
        self.root = ET.Element("MRML", version="Slicer4.4.0", userTags="")
        self.folder = folder
        self.count: dict[str, int] = {}

    def _id(self, cls: str) -> str:
        self.count[cls] = self.count.get(cls, 0) + 1
        return f"vtkMRML{cls}{self.count[cls]}"

    def add(self, tag: str, cls: str, name: str, file: str | Path, display: tuple[str, str, dict[str, str]],
            storage: tuple[str, str, dict[str, str]]) -> None:
        did, sid = self._id(display[1]), self._id(storage[1])
        rel = os.path.relpath(Path(file), self.folder) if Path(file).is_absolute() else str(file)
        ET.SubElement(self.root, tag, id=self._id(cls), name=name,
                      references=f"display:{did};storage:{sid};")
        ET.SubElement(self.root, display[0], {"id": did, "name": display[0], "visibility": "true", **display[2]})
        ET.SubElement(self.root, storage[0], {"id": sid, "name": storage[0], "fileName": rel.replace(os.sep, "/"),
                                              **storage[2]})


def write_mrml(
    path: str | Path,
    segmentations: Sequence[tuple[str, str | Path]],
    markups: Sequence[tuple[str, str, str | Path]],
    models: Sequence[tuple[str, str | Path, tuple[float, ...]]],
    volume: str | Path | None = None,
) -> Path:
    """Write a 3D Slicer scene that loads everything of one case's maps at once.

    Parameters
    ----------
    path : str or Path
        Output ``.mrml``; the files it names are referenced relative to its folder.
    segmentations : list of (name, file)
        ``.seg.nrrd`` files (the level and the node segmentations).
    markups : list of (name, kind, file)
        Markups JSON files; kind ``Fiducial`` or ``Curve``.
    models : list of (name, file, rgba)
        Surface files (``.vtp`` in RAS, as :func:`neckmatch.viz.export.write_vtm` writes them) with their colour.
    volume : str or Path, optional
        The MR image (display only).
    """
    folder = Path(path).parent.resolve()
    doc = _Mrml(folder)
    if volume is not None:
        doc.add("Volume", "ScalarVolumeNode", "MR image", Path(volume).resolve(),
                ("VolumeDisplay", "ScalarVolumeDisplayNode", {"autoWindowLevel": "1"}),
                ("VolumeArchetypeStorage", "VolumeArchetypeStorageNode", {}))
    for name, file in segmentations:
        doc.add("Segmentation", "SegmentationNode", name, file,
                ("SegmentationDisplay", "SegmentationDisplayNode", {"opacity": "1"}),
                ("SegmentationStorage", "SegmentationStorageNode", {}))
    for name, kind, file in markups:
        doc.add(f"Markups{kind}", f"Markups{kind}Node", name, file, ("MarkupsDisplay", "MarkupsDisplayNode", {}),
                ("MarkupsJsonStorage", "MarkupsJsonStorageNode", {}))
    for name, file, rgba in models:
        display = {"color": " ".join(f"{c:.4f}" for c in rgba[:3]), "opacity": f"{rgba[3]:.3f}",
                   "scalarVisibility": "false", "backfaceCulling": "false"}
        doc.add("Model", "ModelNode", name, file, ("ModelDisplay", "ModelDisplayNode", display),
                ("ModelStorage", "ModelStorageNode", {"coordinateSystem": "RAS"}))
    ET.indent(doc.root)
    return write_text(ET.tostring(doc.root, encoding="unicode") + "\n", path)
