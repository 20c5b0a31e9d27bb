"""Read the optional ``specimen`` block of ``case.json`` (ex vivo specimen MRI, shared/spec/specimen-imaging.md).

One entry per scanned piece (``id``, ``side``, ``containers``, ``nodes`` label map, ``orientation`` sutures) and
an optional ``links`` CSV (``path_node,image,specimen_node[,certainty]``). Label maps are read with
:func:`neckmatch.io.labelmap.read_label_map` (NIfTI, NRRD, ``.seg.nrrd``, DICOM SEG) and stay in the ex vivo
scanner's frame; sutures are a 3D Slicer ``Fiducial`` list. Every bad value raises
:class:`neckmatch.errors.InputError` naming the file, the field and the value.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from neckmatch.errors import InputError
from neckmatch.io.ids import check_inside
from neckmatch.io.labelmap import read_label_map
from neckmatch.io.markups import read_markups
from neckmatch.io.pathology import read_table
from neckmatch.io.sanity import check_sutures
from neckmatch.model import (
    REQUIRED_SUTURES,
    SUTURE_LABELS,
    Container,
    PathNode,
    Side,
    SpecimenLink,
    SpecimenPiece,
    SpecimenScan,
)

__all__ = ["read_specimen", "read_links", "block_files", "LINK_COLUMNS", "CERTAINTIES"]

LINK_COLUMNS = ("path_node", "image", "specimen_node")
CERTAINTIES = ("sure", "probable")


def _file(manifest: Path, case_dir: Path, field: str, value: Any, folder_ok: bool = False,
          external: bool = False) -> Path:
    if not isinstance(value, str) or not value.strip():
        raise InputError(manifest, field, f"must be a file path relative to the case folder, got {value!r}")
    if not external:
        check_inside(manifest, field, case_dir, value)
    target = case_dir / value
    if not (target.is_file() or (folder_ok and target.is_dir())):
        raise InputError(manifest, field, f"names '{value}', which does not exist in {case_dir}")
    return target


def _containers(manifest: Path, field: str, value: Any, side: Side, containers: Sequence[Container]
                ) -> tuple[str, ...]:
    known = {c.container: c for c in containers}
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise InputError(manifest, field, f"must be a non-empty list of container ids, got {value!r}")
    for v in value:
        if v not in known:
            raise InputError(manifest, field, f"'{v}' is not a pathology container of the case ({', '.join(known)})")
        if known[v].side is not side:
            msg = f"container '{v}' is on side {known[v].side.value}, the image on {side.value}"
            raise InputError(manifest, field, msg)
    return tuple(value)


def _sutures(path: Path) -> dict[str, Any]:
    marks = read_markups(path, required=REQUIRED_SUTURES)
    if marks.curves:
        raise InputError(path, "markups", f"expected one Fiducial list, got curve(s) {sorted(marks.curves)}")
    bad = sorted(set(marks.points) - set(SUTURE_LABELS))
    if bad:
        raise InputError(path, "controlPoints.label", f"'{bad[0]}' is not a suture label ({', '.join(SUTURE_LABELS)})")
    return dict(marks.points)


def _piece(manifest: Path, case_dir: Path, k: int, entry: Any, containers: Sequence[Container],
           external: bool = False) -> SpecimenPiece:
    field = f"specimen.images[{k}]"
    if not isinstance(entry, dict):
        raise InputError(manifest, field, f"must be an object, got {entry!r}")
    pid = entry.get("id")
    if not isinstance(pid, str) or not pid.strip():
        raise InputError(manifest, f"{field}.id", f"must be a non-empty string, got {pid!r}")
    try:
        side = Side(str(entry.get("side")))
    except ValueError:
        raise InputError(manifest, f"{field}.side", f"must be R or L, got {entry.get('side')!r}") from None
    conts = _containers(manifest, f"{field}.containers", entry.get("containers"), side, containers)
    label_map = read_label_map(_file(manifest, case_dir, f"{field}.nodes", entry.get("nodes"), True, external))
    suture_file = _file(manifest, case_dir, f"{field}.orientation", entry.get("orientation"), False, external)
    sutures = _sutures(suture_file)
    check_sutures(suture_file, sutures, label_map)
    return SpecimenPiece(pid.strip(), side, conts, label_map, sutures)


def read_links(path: str | Path, pieces: Sequence[SpecimenPiece], path_nodes: Sequence[PathNode]) -> list[SpecimenLink]:
    """Read ``links.csv``: one :class:`SpecimenLink` per row, every id checked against the case.

    ``path_node`` must be a pathology node (linked at most once), ``image`` a specimen image id, ``specimen_node``
    a label present in that image; ``certainty`` (optional column) is ``sure``, ``probable`` or empty.
    """
    path = Path(path)
    frame = read_table(path, LINK_COLUMNS)
    nodes = {p.node for p in path_nodes}
    labels = {p.id: set(p.label_map.labels().tolist()) for p in pieces}
    out: list[SpecimenLink] = []
    seen: dict[str, int] = {}
    for row, rec in enumerate(frame.to_dict("records"), start=1):
        node, image, raw = rec["path_node"], rec["image"], rec["specimen_node"]
        if node not in nodes:
            raise InputError(path, f"row {row}: path_node", f"'{node}' is not a pathology node of the case")
        if node in seen:
            raise InputError(path, f"row {row}: path_node", f"'{node}' is linked twice (first in row {seen[node]})")
        if image not in labels:
            raise InputError(path, f"row {row}: image", f"'{image}' is not a specimen image id ({', '.join(labels)})")
        try:
            label = int(raw)
        except ValueError:
            raise InputError(path, f"row {row}: specimen_node", f"must be an integer label, got '{raw}'") from None
        if label not in labels[image]:
            raise InputError(path, f"row {row}: specimen_node", f"label {label} is not in image '{image}'")
        cert = rec.get("certainty", "").lower() or None
        if cert is not None and cert not in CERTAINTIES:
            raise InputError(path, f"row {row}: certainty", f"must be sure or probable, got '{rec['certainty']}'")
        seen[node] = row
        out.append(SpecimenLink(node, image, label, cert))
    return out


def read_specimen(case_dir: str | Path, block: Any, path_nodes: Sequence[PathNode],
                  containers: Sequence[Container], allow_external_files: bool = False) -> SpecimenScan:
    """Read and validate the ``specimen`` block of ``case_dir/case.json``.

    Parameters
    ----------
    case_dir : str or Path
        The case folder (file names in the block are relative to it).
    block : object
        The parsed ``specimen`` value of ``case.json``.
    path_nodes, containers : sequence
        The case's pathology nodes and containers (links and containers are checked against them).
    allow_external_files : bool
        Let the block name files outside the case folder (``--allow-external-files``); else InputError.

    Returns
    -------
    SpecimenScan
        Pieces in block order (label maps and sutures in the ex vivo scanner's RAS mm) and the links.

    Raises
    ------
    InputError
        A malformed block, a duplicate image id, a side other than R / L, an unknown container or one of the
        other side, a missing file, a bad label map or markups file (or a required suture missing), a bad link.
    """
    case_dir = Path(case_dir)
    manifest = case_dir / "case.json"
    if not isinstance(block, dict):
        raise InputError(manifest, "specimen", f"must be an object with 'images', got {block!r}")
    unknown = sorted(set(block) - {"images", "links"})
    if unknown:
        raise InputError(manifest, "specimen", f"unknown key '{unknown[0]}' (images, links)")
    images = block.get("images")
    if not isinstance(images, list) or not images:
        raise InputError(manifest, "specimen.images", f"must be a non-empty list of images, got {images!r}")
    pieces: list[SpecimenPiece] = []
    for k, entry in enumerate(images):
        piece = _piece(manifest, case_dir, k, entry, containers, allow_external_files)
        if any(p.id == piece.id for p in pieces):
            raise InputError(manifest, f"specimen.images[{k}].id", f"'{piece.id}' is given twice")
        pieces.append(piece)
    links: list[SpecimenLink] = []
    if block.get("links") is not None:
        links_file = _file(manifest, case_dir, "specimen.links", block["links"], False, allow_external_files)
        links = read_links(links_file, pieces, path_nodes)
    return SpecimenScan(tuple(pieces), tuple(links))


def block_files(block: Any) -> dict[str, str]:
    """The files a ``specimen`` block names, by field (``specimen.images[0].nodes`` -> relative path).

    Reads nothing and validates nothing (:func:`read_specimen` does): what is not a path is left out.

    Examples
    --------
    >>> block_files({"images": [{"id": "R", "nodes": "ex/r.nii.gz", "orientation": "ex/r.mrk.json"}],
    ...              "links": "ex/links.csv"})  # doctest: +NORMALIZE_WHITESPACE
    {'specimen.images[0].nodes': 'ex/r.nii.gz', 'specimen.images[0].orientation': 'ex/r.mrk.json',
     'specimen.links': 'ex/links.csv'}
    """
    if not isinstance(block, dict):
        return {}
    named: list[tuple[str, Any]] = []
    images = block.get("images")
    for k, entry in enumerate(images if isinstance(images, list) else []):
        if isinstance(entry, dict):
            named += [(f"specimen.images[{k}].{key}", entry.get(key)) for key in ("nodes", "orientation")]
    named.append(("specimen.links", block.get("links")))
    return {field: value for field, value in named if isinstance(value, str) and value.strip()}
