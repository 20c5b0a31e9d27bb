"""What was read from a case, as a JSON-able dict (``neckmatch inspect --json``) and as text (``inspect``).

Examples
--------
>>> from pathlib import Path
>>> from neckmatch.io.case import read_case
>>> s = case_summary(read_case(Path(__file__).resolve().parents[2] / "examples" / "minimal_case"))
>>> s["nodes"]["count"], s["nodes"]["orientation"], s["landmarks"]["missing"]
(4, 'RAS', [])
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import nibabel as nib
from rich.markup import escape

from neckmatch.model import REQUIRED_LANDMARKS, SUTURE_LABELS, Case

__all__ = ["case_summary", "format_case_summary"]


def _nodes(case: Case) -> dict[str, Any]:
    lm = case.label_map
    labels = lm.labels()
    return {
        "count": int(labels.size),
        "labels": [int(v) for v in labels],
        "names": {str(k): v for k, v in sorted(lm.names.items())},
        "shape": [int(v) for v in lm.data.shape],
        "voxel_size_mm": [round(float(v), 6) for v in lm.spacing],
        "orientation": "".join(nib.aff2axcodes(lm.affine)),
        "origin_mm": [round(float(v), 3) for v in lm.affine[:3, 3]],
    }


def _landmarks(case: Case) -> dict[str, Any]:
    lm = case.landmarks
    if lm is None:
        return {"given": False, "points": [], "curves": {}, "missing": list(REQUIRED_LANDMARKS)}
    return {
        "given": True,
        "points": sorted(lm.points),
        "curves": {k: int(len(c.points)) for k, c in sorted(lm.curves.items())},
        "missing": lm.missing(REQUIRED_LANDMARKS),
    }


def _containers(case: Case) -> list[dict[str, Any]]:
    rows = Counter(n.container for n in case.path_nodes)
    return [
        {
            "container": c.container, "side": c.side.value, "level": str(c.level),
            "nodes_examined": c.nodes_examined, "nodes_positive": c.nodes_positive,
            "node_rows": rows.get(c.container, 0),
        }
        for c in case.containers
    ]


def _reads(case: Case) -> dict[str, Any]:
    per_reader = Counter(r.reader for r in case.reads)
    return {
        "count": len(case.reads),
        "readers": dict(sorted(per_reader.items())),
        "nodes_read": len({r.node for r in case.reads}),
        "called_malignant": sum(bool(r.malignant) for r in case.reads),
    }


def _specimen(case: Case) -> dict[str, Any] | None:
    """The ``specimen`` block: each piece (side, containers, specimen nodes, grid, sutures) and the links."""
    spec = case.specimen
    if spec is None:
        return None
    pieces = [{"id": p.id, "side": p.side.value, "containers": list(p.containers),
               "specimen_nodes": int(p.label_map.labels().size),
               "voxel_size_mm": [round(float(v), 6) for v in p.label_map.spacing],
               "sutures": [name for name in SUTURE_LABELS if name in p.sutures]} for p in spec.pieces]
    certainty = Counter(lk.certainty or "unrated" for lk in spec.links)
    return {"pieces": pieces, "links": {
        "count": len(spec.links), "sure": certainty["sure"], "probable": certainty["probable"],
        "unrated": certainty["unrated"],
        "specimen_nodes_linked": len({(lk.image, lk.specimen_node) for lk in spec.links})}}


def case_summary(case: Case) -> dict[str, Any]:
    """A JSON-able summary of ``case``: ids, MR nodes and grid, landmarks, pathology, reads.

    Keys: ``case_id, primary_side, dissected, nodes, landmarks, pathology, containers, reads, image`` (the MR
    image, ``mri.image``: its file relative to the case folder and its grid from the header, or None),
    ``specimen`` (the ex vivo specimen MRI block's pieces and links, or None).
    """
    pn = case.path_nodes
    return {
        "case_id": case.case_id,
        "primary_side": case.primary_side,
        "dissected": {s.value: sorted(v.value for v in lv) for s, lv in sorted(case.dissected.items())},
        "nodes": _nodes(case),
        "landmarks": _landmarks(case),
        "pathology": {
            "node_rows": len(pn),
            "positive": sum(n.positive for n in pn),
            "with_size": sum(n.size_mm is not None for n in pn),
            "with_position": sum(n.cc is not None or n.ap is not None for n in pn),
            "fragments": sum(n.fragment_of is not None for n in pn),
            "nodes_examined": sum(c.nodes_examined for c in case.containers),
            "nodes_positive": sum(c.nodes_positive for c in case.containers),
        },
        "containers": _containers(case),
        "reads": _reads(case),
        "image": _image(case),
        "specimen": _specimen(case),
    }


def _image(case: Case) -> dict[str, Any] | None:
    """The MR image's file and, for NIfTI, its grid (header only; the voxels are not read)."""
    if case.image_path is None:
        return None
    path = Path(case.image_path)
    name = path.relative_to(case.root).as_posix() if case.root is not None and path.is_relative_to(case.root) \
        else path.name
    out: dict[str, Any] = {"file": name, "shape": None, "voxel_size_mm": None}
    if path.name.lower().endswith((".nii", ".nii.gz")):
        try:
            header: Any = nib.load(path).header
            out["shape"] = [int(v) for v in header.get_data_shape()[:3]]
            out["voxel_size_mm"] = [round(float(v), 3) for v in header.get_zooms()[:3]]
        except (OSError, EOFError, ValueError, nib.filebasedimages.ImageFileError):
            pass  # display only: an unreadable header leaves the grid unknown
    return out


def _fmt(values: Any) -> str:
    return " x ".join(f"{v:g}" for v in values)


def _count(n: int, noun: str, plural: str | None = None) -> str:
    """``n`` and the noun in the right number.

    Examples
    --------
    >>> _count(1, "node"), _count(0, "node"), _count(2, "node row"), _count(3, "match", "matches")
    ('1 node', '0 nodes', '2 node rows', '3 matches')
    """
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


def format_case_summary(summary: dict[str, Any]) -> str:
    """Human-readable text of :func:`case_summary` (rich markup escaped, safe for ``Console.print``)."""
    n, lm, p, r = summary["nodes"], summary["landmarks"], summary["pathology"], summary["reads"]
    dissected = "; ".join(f"{s}: {', '.join(v)}" for s, v in summary["dissected"].items()) or "none"
    labels = ", ".join(str(v) for v in n["labels"][:30]) + (" ..." if n["count"] > 30 else "")
    lines = [
        f"case {summary['case_id']}  primary side {summary['primary_side']}  dissected {dissected}",
        f"MR nodes: {n['count']} (labels {labels or 'none'})",
        f"  grid {_fmt(n['shape'])} voxels of {_fmt(n['voxel_size_mm'])} mm, orientation {n['orientation']}, "
        f"origin ({', '.join(f'{v:g}' for v in n['origin_mm'])}) mm RAS",
    ]
    if lm["given"]:
        lines.append(f"landmarks: {_count(len(lm['points']), 'point')}, {_count(len(lm['curves']), 'curve')}; "
                     f"missing {', '.join(lm['missing']) if lm['missing'] else 'none'}")
    else:
        lines.append("landmarks: none given")
    lines.append(f"pathology: {_count(p['node_rows'], 'node row')} ({p['positive']} positive, {p['with_size']} with "
                 f"size, {p['with_position']} with position); {p['nodes_examined']} examined, "
                 f"{p['nodes_positive']} positive")
    for c in summary["containers"]:
        lines.append(f"  {c['container']:<12} {c['side']} {c['level']:<8} {c['nodes_examined']:>3} "
                     f"{'node, ' if c['nodes_examined'] == 1 else 'nodes,'} {c['nodes_positive']:>2} positive")
    readers = ", ".join(f"{k} ({v})" for k, v in r["readers"].items()) or "none"
    lines.append(f"reads: {r['count']} on {_count(r['nodes_read'], 'node')}; readers {readers}; "
                 f"{_count(r['called_malignant'], 'malignant call')}")
    im = summary.get("image")
    if im is not None:
        grid = f", grid {_fmt(im['shape'])} voxels of {_fmt(im['voxel_size_mm'])} mm" if im["shape"] else ""
        lines.append(f"MR image: {im['file']}{grid} (display only)")
    sp = summary.get("specimen")
    if sp is not None:
        lk = sp["links"]
        lines.append(f"specimen MRI: {_count(len(sp['pieces']), 'piece')}; {lk['count']} of "
                     f"{_count(p['node_rows'], 'pathology node')} linked ({lk['sure']} sure, {lk['probable']} "
                     f"probable, {lk['unrated']} unrated) to {_count(lk['specimen_nodes_linked'], 'specimen node')}")
        for piece in sp["pieces"]:
            lines.append(f"  {piece['id']:<8} side {piece['side']}  {', '.join(piece['containers'])}: "
                         f"{_count(piece['specimen_nodes'], 'specimen node')}, voxels {_fmt(piece['voxel_size_mm'])} "
                         f"mm, sutures {', '.join(piece['sutures'])}")
    return escape("\n".join(lines))
