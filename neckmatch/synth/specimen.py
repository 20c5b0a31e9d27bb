"""Synthetic ex vivo specimen MRI (shared/spec/specimen-imaging.md): scanned pieces, sutures and links.

Each dissected side is removed en bloc (or, with ``1 - en_bloc``, one piece per container). The piece's true nodes
(whether or not MR saw them or pathology found them) are moved from the patient into the ex vivo scanner:
in the phantom's local frame about the piece's centre, the medio-lateral axis is flattened to ``flatten``
(40-70 %), the other two axes stretched (up to the volume-preserving ``flatten ** -0.5``), the piece bent
(a quadratic sag out of the board and a banana curve in it), shrunk by 0-10 %, then turned to lie on the scanner's
table at a random in-plane angle and shifted. Ex vivo MRI sees smaller nodes than in vivo MRI
(``visible_short_mm``). Sutures (cranial, caudal, anterior; sometimes posterior / medial / lateral) sit a few mm
beyond the tissue edge with placement error ``suture_sd_mm``. The pathologist links most reported nodes to their
specimen node (``link_rate``); ``wrong_link_rate`` of the links name a neighbouring node instead.

Families (:data:`FAMILIES`) break the physics on purpose: ``flat`` (flattening to 25-40 %, stronger bending),
``wrong-links`` (10 % wrong links), ``no-optional-sutures`` (only the three required sutures, 10 mm error),
``upside-down`` (the piece turned over on the table and its cranial / caudal sutures read from the wrong end);
``stress`` (held out from tuning and calibration: half the sides in per-container pieces, 10-20 mm bending, ex vivo
MRI seeing nodes from 0.8 mm, 7 mm suture error per axis, 5-15 % shrinkage, 1.5 mm jitter, 15 degree board tilt).
Six more held-out families each break one assumption far: ``sloppy-links`` (25 % wrong links), ``few-links`` (half
the nodes linked), ``far-sutures`` (sutures 15-30 mm beyond the outermost node), ``per-container`` (no piece en
bloc), ``jitter-3mm`` and ``shrink-20`` (15-25 %).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from neckmatch.model import LabelMap
from neckmatch.synth.anatomy import Phantom, rotation_matrix
from neckmatch.synth.mri import rasterise
from neckmatch.synth.nodes import TrueNodes

__all__ = ["SpecimenSynth", "FAMILIES", "HELD_OUT", "SynthPiece", "SynthSpecimen", "make_specimen", "specimen_family"]


@dataclass(frozen=True)
class SpecimenSynth:
    """Knobs of the ex vivo specimen model (ranges are uniform draws per piece)."""

    en_bloc: float = 0.8  # a side removed in one piece (else one piece per container)
    flatten: tuple[float, float] = (0.4, 0.7)  # spec: medio-lateral depth shrinks to 40-70 %
    stretch_power: tuple[float, float] = (0.3, 0.5)  # other axes x flatten ** -power (0.5 = volume kept)
    bend_mm: tuple[float, float] = (3.0, 10.0)  # sag out of the board and curve within it at the piece's ends
    shrink: tuple[float, float] = (0.0, 0.10)  # spec: 0-10 % before fixation
    jitter_mm: float = 1.0  # per-node displacement per axis that no smooth transform explains (local tissue)
    tilt_sd_deg: float = 5.0  # the board's tilt on the scanner table
    upside_down: bool = False  # one piece per case turned over on the table, its cranial / caudal sutures swapped
    voxel_mm: tuple[float, float] = (0.4, 0.5)  # spec: 0.2-0.5 mm
    visible_short_mm: float = 1.2  # ex vivo MRI sees nodes down to ~1 mm short axis
    suture_margin_mm: tuple[float, float] = (3.0, 8.0)  # suture beyond the outermost node
    suture_sd_mm: float = 4.0  # placement error per axis (5-10 mm in total)
    optional_sutures: float = 0.5  # probability of each optional pair (posterior; medial + lateral)
    link_rate: float = 0.92  # reported nodes the pathologist links to a specimen node
    wrong_link_rate: float = 0.02  # links naming a neighbouring specimen node
    probable_rate: float = 0.1  # right links marked "probable" (wrong ones: half)


FAMILIES: dict[str, dict[str, Any]] = {
    "default": {},
    "flat": {"flatten": (0.25, 0.4), "bend_mm": (8.0, 16.0)},
    "wrong-links": {"wrong_link_rate": 0.10},
    "no-optional-sutures": {"optional_sutures": 0.0, "suture_sd_mm": 6.0},
    "upside-down": {"upside_down": True},
    # held out (HELD_OUT, below): never used to tune or calibrate; breaks the spec's ranges on purpose
    "stress": {"en_bloc": 0.5, "bend_mm": (10.0, 20.0), "visible_short_mm": 0.8, "suture_sd_mm": 7.0,
               "shrink": (0.05, 0.15), "jitter_mm": 1.5, "tilt_sd_deg": 15.0},
    # held out too (HELD_OUT), each breaking one assumption well beyond the tuned families
    "sloppy-links": {"wrong_link_rate": 0.25},  # a pathologist whose links name a neighbour one time in four
    "few-links": {"link_rate": 0.5},  # half the reported nodes linked
    "far-sutures": {"suture_margin_mm": (15.0, 30.0)},  # sutures on fat far beyond the outermost node
    "per-container": {"en_bloc": 0.0},  # every container scanned as its own small piece
    "jitter-3mm": {"jitter_mm": 3.0},  # 3 mm per axis that no smooth transform explains
    "shrink-20": {"shrink": (0.15, 0.25)},  # 15-25 % shrinkage (spec: 0-10 %)
}
#: the families never used to tune or calibrate (benchmarks/specimen.py --calibrate leaves them out)
HELD_OUT = ("stress", "sloppy-links", "few-links", "far-sutures", "per-container", "jitter-3mm", "shrink-20")


def specimen_family(name: str) -> SpecimenSynth:
    """The :class:`SpecimenSynth` of a family of :data:`FAMILIES` (ValueError for an unknown name)."""
    if name not in FAMILIES:
        raise ValueError(f"'{name}' is not a specimen family ({', '.join(FAMILIES)})")
    return dataclasses.replace(SpecimenSynth(), **FAMILIES[name])


@dataclass(frozen=True)
class SynthPiece:
    """One scanned piece: id, side, containers, label map (scanner frame), sutures (label -> (3,) scanner RAS mm)
    and ``true_index`` (K,) of the true node behind each label 1..K."""

    id: str
    side: str
    containers: tuple[str, ...]
    label_map: LabelMap
    sutures: dict[str, NDArray[np.float64]]
    labels: NDArray[np.int64]
    true_index: NDArray[np.int64]


@dataclass(frozen=True)
class SynthSpecimen:
    """The pieces of a case and the links table (``path_node,image,specimen_node,certainty``)."""

    pieces: tuple[SynthPiece, ...]
    links: pd.DataFrame
    truth: pd.DataFrame  # image, specimen_node, true_id: the true node behind each specimen label


def _pieces(rng: np.random.Generator, sp: SpecimenSynth, containers: NDArray[np.str_]) -> list[tuple[str, str, list]]:
    """(id, side, containers) per piece: a whole side, or one container each."""
    out = []
    for side in ("R", "L"):
        conts = sorted({c for c in containers if c.startswith(f"{side}-")})
        if not conts:
            continue
        if rng.random() < sp.en_bloc:
            out.append((side, side, conts))
        else:
            out += [(c, side, [c]) for c in conts]
    return out


def _deform(sp: SpecimenSynth, rng: np.random.Generator, local: NDArray) -> tuple[Any, float]:
    """A function mapping local-frame points (K, 3) of one piece to its flattened, bent, shrunk board frame
    (centred), and the shrink factor."""
    centre = local.mean(axis=0)
    half = np.maximum(np.ptp(local, axis=0) / 2.0, 10.0)
    f = rng.uniform(*sp.flatten)
    s = f ** -rng.uniform(*sp.stretch_power)
    scale = np.array([f, s * np.exp(rng.normal(0, 0.05)), s * np.exp(rng.normal(0, 0.05))])
    sag, curve = rng.uniform(*sp.bend_mm) * rng.choice([-1, 1], 2)
    k = 1.0 - rng.uniform(*sp.shrink)

    def apply(p: NDArray) -> NDArray:
        r = np.atleast_2d(p) - centre
        q = r * scale
        u = r[:, 2] / half[2]
        q[:, 0] += sag * u**2
        q[:, 1] += curve * u**2
        return q * k

    return apply, k


def _sutures(rng: np.random.Generator, sp: SpecimenSynth, local: NDArray, apply: Any, side: str
             ) -> dict[str, NDArray]:
    """Suture positions on the board frame: beyond the outermost nodes, with placement error."""
    lo, hi, mid = local.min(axis=0), local.max(axis=0), local.mean(axis=0)
    m = rng.uniform(*sp.suture_margin_mm, 6)
    pts = {"cranial": [mid[0], mid[1], hi[2] + m[0]], "caudal": [mid[0], mid[1], lo[2] - m[1]],
           "anterior": [mid[0], hi[1] + m[2], mid[2]]}
    if rng.random() < sp.optional_sutures:
        pts["posterior"] = [mid[0], lo[1] - m[3], mid[2]]
    out = {k: apply(np.array(v, float))[0] for k, v in pts.items()}
    if rng.random() < sp.optional_sutures:  # on the board frame, where medial / lateral are known directly
        depth = 0.5 * float(np.ptp(apply(local)[:, 0]))
        board_mid = np.mean([out["cranial"], out["caudal"]], axis=0)
        lat = np.array([1.0 if side == "R" else -1.0, 0.0, 0.0])  # patient +x is the right side's lateral
        out["lateral"] = board_mid + (depth + m[4]) * lat
        out["medial"] = board_mid - (depth + m[5]) * lat
    return {k: v + rng.normal(0.0, sp.suture_sd_mm, 3) for k, v in out.items()}


def _scanner_pose(rng: np.random.Generator, sp: SpecimenSynth) -> tuple[NDArray, NDArray]:
    """Rotation (3, 3) and shift (3,) from the board frame to the scanner: the board lies on the table (its
    normal, the medio-lateral axis, vertical) at a random in-plane angle, tilted a little."""
    to_table = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])  # board (x, y, z) -> table
    flip = rotation_matrix(180.0, 0.0, 0.0) if sp.upside_down else np.eye(3)
    tilt = rng.normal(0.0, sp.tilt_sd_deg, 2)
    rot = rotation_matrix(float(tilt[0]), float(tilt[1]), float(rng.uniform(0.0, 360.0))) @ flip @ to_table
    return rot, rng.uniform(-40.0, 40.0, 3)


def _grid(rng: np.random.Generator, sp: SpecimenSynth, nodes: TrueNodes) -> tuple[NDArray, tuple[int, ...]]:
    """Axis-aligned scanner grid (random axis flips) covering the nodes with a 4 mm margin."""
    vox = float(np.round(rng.uniform(*sp.voxel_mm), 2))
    r = nodes.semi[:, :1] + 4.0
    lo, hi = (nodes.centres - r).min(axis=0), (nodes.centres + r).max(axis=0)
    signs = rng.choice([-1.0, 1.0], 3)
    shape = tuple(int(v) for v in np.ceil((hi - lo) / vox) + 1)
    aff = np.eye(4)
    aff[:3, :3] = np.diag(signs * vox)
    aff[:3, 3] = np.where(signs > 0, lo, lo + (np.array(shape) - 1) * vox)
    return aff, shape


def _piece(rng: np.random.Generator, sp: SpecimenSynth, phantom: Phantom, nodes: TrueNodes, pid: str, side: str,
           conts: list[str], members: NDArray[np.int64]) -> SynthPiece | None:
    """Scan one piece: deform, pose, rasterise the visible nodes (shuffled labels) and place the sutures."""
    local = (nodes.centres[members] - phantom.matrix[:3, 3]) @ phantom.matrix[:3, :3]
    apply, k = _deform(sp, rng, local)
    seen = members[rng.random(len(members)) < 1.0 / (1.0 + np.exp(-(nodes.short_mm[members] - sp.visible_short_mm)
                                                                    / 0.15))]
    if len(seen) < 1:
        return None
    rot, shift = _scanner_pose(rng, sp)
    board = apply((nodes.centres[seen] - phantom.matrix[:3, 3]) @ phantom.matrix[:3, :3])
    board = board + rng.normal(0.0, sp.jitter_mm, board.shape)
    axes = np.einsum("ij,njk->nik", rot @ phantom.matrix[:3, :3].T, nodes.axes[seen])
    moved = TrueNodes(board @ rot.T + shift, axes, nodes.semi[seen] * k, nodes.side[seen], nodes.level[seen],
                      nodes.positive[seen], nodes.micro[seen])
    aff, shape = _grid(rng, sp, moved)
    labels = (rng.permutation(len(seen)) + 1).astype(np.int64)
    data = rasterise(shape, aff, moved, labels)
    present = np.isin(labels, np.unique(data[data > 0]))
    sut = {n: p @ rot.T + shift for n, p in _sutures(rng, sp, local, apply, side).items()}
    if sp.upside_down:
        sut["cranial"], sut["caudal"] = sut["caudal"], sut["cranial"]
    return SynthPiece(pid, side, tuple(conts), LabelMap(data.astype(np.uint8 if len(seen) < 255 else np.uint16), aff),
                      sut, labels[present], seen[present])


def _links(rng: np.random.Generator, sp: SpecimenSynth, pieces: list[SynthPiece], report: pd.DataFrame,
           path_true: dict[str, int], centres: NDArray) -> pd.DataFrame:
    """Links of reported nodes to their specimen node; a few name the nearest other node of the piece."""
    where = {int(t): (p, lab) for p in pieces for lab, t in zip(p.labels, p.true_index, strict=True)}
    heads = {}
    rows = []
    for node in report["node"]:
        t = path_true[node]
        if t not in where:
            continue
        if t not in heads:  # one decision per true node: its fragments share it
            heads[t] = (rng.random() < sp.link_rate, rng.random() < sp.wrong_link_rate, rng.random())
        linked, wrong, u = heads[t]
        if not linked:
            continue
        piece, lab = where[t]
        if wrong and len(piece.labels) > 1:
            others = piece.true_index != t
            d = np.linalg.norm(centres[piece.true_index[others]] - centres[t], axis=1)
            lab = int(piece.labels[others][np.argmin(d)])
        sure = u >= (0.5 if wrong else sp.probable_rate)
        rows.append((node, piece.id, int(lab), "sure" if sure else "probable"))
    return pd.DataFrame(rows, columns=["path_node", "image", "specimen_node", "certainty"])


def make_specimen(rng: np.random.Generator, sp: SpecimenSynth, phantom: Phantom, nodes: TrueNodes,
                  container: NDArray[np.str_], report: pd.DataFrame, path_node: NDArray[np.str_],
                  path_fragments: NDArray[np.str_]) -> SynthSpecimen:
    """The specimen scans of one case: a piece per dissected side (or per container), with sutures and links.

    ``container`` (N,) is each true node's container (``""``: left in the neck); ``path_node`` /
    ``path_fragments`` map true nodes to their report rows.
    """
    pieces = []
    plan = _pieces(rng, sp, container)
    turned = int(rng.integers(len(plan))) if plan else -1
    reported = set(report["container"])
    for k, (pid, side, all_conts) in enumerate(plan):
        conts = [c for c in all_conts if c in reported]  # a container with no node reported is not in the case
        members = np.flatnonzero(np.isin(container, conts))
        spk = dataclasses.replace(sp, upside_down=sp.upside_down and k == turned)
        piece = _piece(rng, spk, phantom, nodes, pid, side, conts, members) if len(members) else None
        if piece is not None:
            pieces.append(piece)
    path_true: dict[str, int] = {}
    for t, (head, frags) in enumerate(zip(path_node, path_fragments, strict=True)):
        for n in ([head] if head else []) + (frags.split(";") if frags else []):
            path_true[n] = t
    links = _links(rng, sp, pieces, report, path_true, nodes.centres)
    spec_truth = pd.DataFrame(
        [(p.id, int(lab), f"T{int(t) + 1:03d}") for p in pieces for lab, t in zip(p.labels, p.true_index, strict=True)],
        columns=["image", "specimen_node", "true_id"])
    return SynthSpecimen(tuple(pieces), links, spec_truth)


def specimen_block(spec: SynthSpecimen) -> dict[str, Any]:
    """The ``specimen`` block of case.json for the files :func:`write_specimen` writes."""
    images = [{"id": p.id, "side": p.side, "containers": list(p.containers), "nodes": f"specimen/{p.id}.nii.gz",
               "orientation": f"specimen/{p.id}.mrk.json"} for p in spec.pieces]
    return {"images": images, "links": "specimen/links.csv"}


def write_specimen(spec: SynthSpecimen, case_dir: Path) -> list[str]:
    """Write the pieces' label maps and sutures, ``specimen/links.csv`` and ``specimen_truth.csv`` (never read by
    the engine: which true node each specimen label is) into ``case_dir``; returns the relative paths."""
    from neckmatch.io.atomic import write_csv
    from neckmatch.io.labelmap import write_label_map
    from neckmatch.io.markups import write_point_list

    rel = []
    (case_dir / "specimen").mkdir(parents=True, exist_ok=True)
    for p in spec.pieces:
        write_label_map(case_dir / f"specimen/{p.id}.nii.gz", p.label_map)
        names = list(p.sutures)
        points = np.array([p.sutures[n] for n in names])
        write_point_list(case_dir / f"specimen/{p.id}.mrk.json", "sutures", names, points)
        rel += [f"specimen/{p.id}.nii.gz", f"specimen/{p.id}.mrk.json"]
    write_csv(spec.links, case_dir / "specimen/links.csv")
    write_csv(spec.truth, case_dir / "specimen_truth.csv")
    return [*rel, "specimen/links.csv", "specimen_truth.csv"]


def synth_family(name: str) -> str:
    """``name`` if it is a family of :data:`FAMILIES`, else InputError (for the CLI's ``--specimen-family``)."""
    if name not in FAMILIES:
        from neckmatch.errors import InputError

        raise InputError("options", "--specimen-family", f"'{name}' is not a specimen family ({', '.join(FAMILIES)})")
    return name
