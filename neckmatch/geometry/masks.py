"""Landmarks from per-structure segmentation masks (TotalSegmentator, 3D Slicer or simple file names).

A folder holds one binary mask per structure (NIfTI ``.nii`` / ``.nii.gz`` or NRRD ``.nrrd``), for example
``sternocleidomastoid_right.nii.gz`` as TotalSegmentator writes it, ``Submandibular-Rt.nrrd`` as 3D Slicer or
the DeepMind TCIA masks name it, or ``SCM_R.nii.gz``. :func:`landmarks_from_masks` derives the landmarks of
shared/spec/levels.md from them, slice by slice on axial planes of constant RAS z:

=========================  ==============================================================================
landmark                   derivation (voxel centres, RAS mm)
=========================  ==============================================================================
``SCM_posterior_X``        per slice the most posterior voxel (min y) of ``sternocleidomastoid_X``
``IJV_posterior_X``        per slice the most posterior voxel of ``internal_jugular_vein_X``
``SMG_posterior_X``        per slice the most posterior voxel of ``submandibular_gland_X``
``trapezius_anterior_X``   per slice the most anterior voxel (max y) of ``trapezius_X``
``carotid_medial_X``       per slice the most medial voxel (towards x = 0 side: min x on R, max x on L) of
                           ``internal_carotid_artery_X`` above the bifurcation (the top of
                           ``common_carotid_artery_X``), of ``common_carotid_artery_X`` at and below it;
                           either artery alone where the other mask is absent
``digastric_anterior_X``   per slice the most medial voxel of the anterior belly of ``digastric_X`` (the
                           voxels anterior to the mask's mid-y, which excludes the posterior belly)
``scalene_anterior_X``     per slice the most postero-lateral voxel (max of lateral - y) of
                           ``anterior_scalene_X``
``hyoid_body_inferior``    lowest voxel of the hyoid's midline part (within ``midline_mm`` of the mask's mean
                           x, anterior to its mean y: the body, not the horns); x = the mask's mean x
``cricoid_arch_inferior``  the same on ``cricoid_cartilage`` (anterior midline part = the arch)
``manubrium_superior``     top voxel of ``sternum`` (or ``manubrium``); x = the mask's mean x
``clavicle_superior_X``    top voxel of ``clavicula_X``
``skull_base``             top of the internal jugular veins (they leave the neck through the jugular foramen):
                           mean of the tops of ``internal_jugular_vein_left`` / ``_right`` (either alone if only
                           one exists)
=========================  ==============================================================================

"Medial" and "lateral" use the sign of RAS x (patient right = +x) and need no midline. A slice is a slab of
constant RAS z: for an axial grid exactly one voxel layer; for an oblique (tilted) grid a slab as thick as the
largest z-step of one voxel index, each control point placed at the slab's centre z. Points are voxel centres,
so an edge lies half a voxel beyond its landmark. Where several voxels tie for an extreme, their x and y are
averaged. These TotalSegmentator tasks are trained on CT: on MRI bring masks from a registered CT or place the
landmarks by hand and check these (write them with :func:`neckmatch.io.markups.write_markups`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from neckmatch.errors import InputError
from neckmatch.io.labelmap import read_label_map
from neckmatch.model import REQUIRED_LANDMARKS, Curve, Landmarks

__all__ = ["STRUCTURE_SYNONYMS", "LANDMARK_SOURCES", "find_masks", "read_mask", "landmarks_from_masks"]

FloatArray = NDArray[np.float64]

#: Canonical structure (TotalSegmentator stem, side suffix removed) -> accepted file-name stems (lower case,
#: separators as ``_``). A side is given by a trailing ``left``/``right``/``l``/``r``/``lt``/``rt`` token.
STRUCTURE_SYNONYMS: dict[str, tuple[str, ...]] = {
    "hyoid": ("hyoid", "hyoid_bone", "bone_hyoid"),
    "cricoid_cartilage": ("cricoid_cartilage", "cricoid", "cartlg_cricoid"),
    "sternum": ("sternum", "manubrium", "bone_sternum", "manubrium_sterni", "sternum_manubrium"),
    "sternocleidomastoid": ("sternocleidomastoid", "scm", "musc_sternocleidomastoid", "musc_sclmast"),
    "trapezius": ("trapezius", "musc_trapezius"),
    "anterior_scalene": (
        "anterior_scalene",
        "scalenus_anterior",
        "scalene_anterior",
        "anterior_scalenus",
        "musc_scalene_ant",
    ),
    "submandibular_gland": ("submandibular_gland", "submandibular", "glnd_submand", "smg"),
    "internal_carotid_artery": ("internal_carotid_artery", "internal_carotid", "ica", "a_carotid_int"),
    "common_carotid_artery": ("common_carotid_artery", "common_carotid", "cca", "a_carotid", "a_carotid_common"),
    "internal_jugular_vein": ("internal_jugular_vein", "internal_jugular", "ijv", "v_jugular_int"),
    "digastric": ("digastric", "digastric_muscle", "musc_digastric"),
    "clavicula": ("clavicula", "clavicle", "bone_clavicle"),
}
_SIDED = {
    "sternocleidomastoid",
    "trapezius",
    "anterior_scalene",
    "submandibular_gland",
    "internal_carotid_artery",
    "common_carotid_artery",
    "internal_jugular_vein",
    "digastric",
    "clavicula",
}
_SIDE_TOKENS = {"left": "L", "l": "L", "lt": "L", "right": "R", "r": "R", "rt": "R"}
_TS_SIDE = {"L": "left", "R": "right"}
_STEM_TO_CANON = {syn: canon for canon, syns in STRUCTURE_SYNONYMS.items() for syn in syns}
_SUFFIXES = (".nii.gz", ".nii", ".nrrd")

_CURVE_RULES: dict[str, tuple[str, str]] = {
    # curve stem -> (structure, extreme)
    "SCM_posterior": ("sternocleidomastoid", "posterior"),
    "IJV_posterior": ("internal_jugular_vein", "posterior"),
    "SMG_posterior": ("submandibular_gland", "posterior"),
    "trapezius_anterior": ("trapezius", "anterior"),
    "digastric_anterior": ("digastric", "medial"),
    "scalene_anterior": ("anterior_scalene", "posterolateral"),
}


def _key(name: str, side: str | None) -> str:
    """TotalSegmentator-style file stem of a structure, e.g. ``sternocleidomastoid_right``."""
    return name if side is None else f"{name}_{_TS_SIDE[side]}"


#: Landmark -> the mask(s) it is derived from (TotalSegmentator stems); for error messages and documentation.
LANDMARK_SOURCES: dict[str, tuple[str, ...]] = {
    "skull_base": ("internal_jugular_vein_left", "internal_jugular_vein_right"),
    "hyoid_body_inferior": ("hyoid",),
    "cricoid_arch_inferior": ("cricoid_cartilage",),
    "manubrium_superior": ("sternum",),
    **{f"clavicle_superior_{s}": (_key("clavicula", s),) for s in "LR"},
    **{f"{stem}_{s}": (_key(struct, s),) for stem, (struct, _) in _CURVE_RULES.items() for s in "LR"},
    **{f"carotid_medial_{s}": (_key("internal_carotid_artery", s), _key("common_carotid_artery", s)) for s in "LR"},
}


def _parse_stem(filename: str) -> str | None:
    """Canonical key (``sternocleidomastoid_right``, ``hyoid``) of a mask file name, or None if unknown."""
    low = filename.lower()
    suffix = next((s for s in _SUFFIXES if low.endswith(s)), None)
    if suffix is None or low.endswith(".seg.nrrd"):
        return None
    tokens = [t for t in re.split(r"[\s_\-.]+", low[: -len(suffix)]) if t]
    side = None
    if len(tokens) > 1 and tokens[-1] in _SIDE_TOKENS:
        side = _SIDE_TOKENS[tokens.pop()]
    elif len(tokens) > 1 and tokens[0] in _SIDE_TOKENS:
        side = _SIDE_TOKENS[tokens.pop(0)]
    canon = _STEM_TO_CANON.get("_".join(tokens))
    if canon is None or (canon in _SIDED) != (side is not None):
        return None
    return _key(canon, side)


def find_masks(masks_dir: str | Path) -> dict[str, Path]:
    """Map canonical structure keys (TotalSegmentator stems) to the mask files of a folder.

    Parameters
    ----------
    masks_dir : str or Path
        Folder of per-structure masks; unrecognised files are ignored.

    Returns
    -------
    dict of str to Path
        e.g. ``{"sternocleidomastoid_right": Path(".../SCM_R.nii.gz"), "hyoid": ...}``.

    Examples
    --------
    >>> _parse_stem("Submandibular-Lt.nrrd"), _parse_stem("scalenus_anterior_right.nii.gz"), _parse_stem("x.nii")
    ('submandibular_gland_left', 'anterior_scalene_right', None)
    """
    folder = Path(masks_dir)
    if not folder.is_dir():
        raise InputError(folder, "", f"is not a folder of masks (got '{masks_dir}')")
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        key = _parse_stem(path.name)
        if key is None or not path.is_file():
            continue
        if key in found:
            raise InputError(folder, key, f"two masks for one structure: '{found[key].name}' and '{path.name}'")
        found[key] = path
    return found


def read_mask(path: str | Path) -> tuple[NDArray[np.bool_], FloatArray]:
    """Read one binary mask (NIfTI or NRRD): (mask of shape (I, J, K), bool; affine (4, 4) voxel -> RAS mm).

    Any non-zero voxel is part of the structure; NRRD in LPS is converted to RAS (:func:`read_label_map`).
    """
    lm = read_label_map(path)
    return lm.data != 0, lm.affine


def _voxels(mask: NDArray[np.bool_], affine: FloatArray) -> tuple[FloatArray, float]:
    """Voxel centres (n, 3) RAS mm of a mask, and its axial slab thickness (mm)."""
    ijk = np.argwhere(mask).astype(np.float64)
    step = float(np.max(np.abs(affine[2, :3])))
    return ijk @ affine[:3, :3].T + affine[:3, 3], step


def _slab_extremes(pts: FloatArray, step: float, score: FloatArray) -> FloatArray:
    """Per axial slab the (x, y) of the voxel(s) maximising ``score``, at the slab's z: (S, 3) RAS mm.

    Ties (within 1e-6) are averaged. Slab s holds z in [z0 + (s - 1/2) step, z0 + (s + 1/2) step).
    """
    z0 = pts[:, 2].min()
    slab = np.floor((pts[:, 2] - z0) / step + 0.5).astype(np.int64)
    n = int(slab.max()) + 1
    best = np.full(n, -np.inf)
    np.maximum.at(best, slab, score)
    tie = score >= best[slab] - 1e-6
    cnt = np.bincount(slab[tie], minlength=n)
    sx = np.bincount(slab[tie], weights=pts[tie, 0], minlength=n)
    sy = np.bincount(slab[tie], weights=pts[tie, 1], minlength=n)
    have = cnt > 0
    return np.column_stack([sx[have] / cnt[have], sy[have] / cnt[have], z0 + step * np.nonzero(have)[0]])


def _score(pts: FloatArray, extreme: str, side: str) -> FloatArray:
    lateral = pts[:, 0] if side == "R" else -pts[:, 0]
    return {
        "posterior": -pts[:, 1],
        "anterior": pts[:, 1],
        "medial": -lateral,
        "posterolateral": lateral - pts[:, 1],
    }[extreme]


class _MaskSet:
    """Lazy access to a folder's masks as voxel-centre clouds, with landmark-naming errors."""

    def __init__(self, masks_dir: Path) -> None:
        self.dir = masks_dir
        self.files = find_masks(masks_dir)
        self._cache: dict[str, tuple[FloatArray, float]] = {}

    def has(self, key: str) -> bool:
        return key in self.files

    def get(self, key: str, landmark: str) -> tuple[FloatArray, float]:
        if key not in self.files:
            raise InputError(
                self.dir, landmark, f"cannot derive '{landmark}': mask '{key}.nii.gz' (or a synonym) not found"
            )
        if key not in self._cache:
            pts, step = _voxels(*read_mask(self.files[key]))
            if len(pts) == 0:
                raise InputError(self.files[key], landmark, f"cannot derive '{landmark}': the mask '{key}' is empty")
            self._cache[key] = (pts, step)
        return self._cache[key]


def _carotid(ms: _MaskSet, side: str) -> FloatArray:
    """carotid_medial control points: internal carotid above the common carotid's top, common carotid below.

    Either artery alone is used over its own extent where the other mask is absent.
    """
    name, cca_key, ica_key = (
        f"carotid_medial_{side}",
        _key("common_carotid_artery", side),
        _key("internal_carotid_artery", side),
    )
    if not ms.has(cca_key) and not ms.has(ica_key):
        raise InputError(
            ms.dir,
            name,
            f"cannot derive '{name}': neither '{ica_key}.nii.gz' nor '{cca_key}.nii.gz' (or a synonym) found",
        )
    parts, top = [], -np.inf
    if ms.has(cca_key):
        pts, step = ms.get(cca_key, name)
        parts.append(_slab_extremes(pts, step, _score(pts, "medial", side)))
        top = pts[:, 2].max() + step / 2
    if ms.has(ica_key):
        pts, step = ms.get(ica_key, name)
        pts = pts[pts[:, 2] > top]
        if len(pts):
            parts.append(_slab_extremes(pts, step, _score(pts, "medial", side)))
    return np.vstack(parts)


def _curve(ms: _MaskSet, stem: str, side: str) -> Curve:
    name = f"{stem}_{side}"
    if stem == "carotid_medial":
        ctrl = _carotid(ms, side)
    else:
        struct, extreme = _CURVE_RULES[stem]
        pts, step = ms.get(_key(struct, side), name)
        if stem == "digastric_anterior":
            pts = pts[pts[:, 1] >= 0.5 * (pts[:, 1].min() + pts[:, 1].max())]
        ctrl = _slab_extremes(pts, step, _score(pts, extreme, side))
    if len(ctrl) < 2:
        raise InputError(ms.dir, name, f"cannot derive '{name}': its mask spans {len(ctrl)} slice")
    return Curve(name, ctrl)


def _midline_inferior(ms: _MaskSet, key: str, name: str, midline_mm: float) -> FloatArray:
    pts, _ = ms.get(key, name)
    xc, yc = pts[:, 0].mean(), pts[:, 1].mean()
    part = pts[(np.abs(pts[:, 0] - xc) <= midline_mm) & (pts[:, 1] >= yc)]
    if len(part) == 0:
        part = pts
    low = part[part[:, 2] <= part[:, 2].min() + 1e-6]
    return np.array([xc, low[:, 1].mean(), low[0, 2]])


def _top(ms: _MaskSet, key: str, name: str, x_mean: bool = False) -> FloatArray:
    pts, _ = ms.get(key, name)
    top = pts[pts[:, 2] >= pts[:, 2].max() - 1e-6]
    return np.array([pts[:, 0].mean() if x_mean else top[:, 0].mean(), top[:, 1].mean(), top[0, 2]])


def _point(ms: _MaskSet, name: str, midline_mm: float) -> FloatArray:
    if name == "hyoid_body_inferior":
        return _midline_inferior(ms, "hyoid", name, midline_mm)
    if name == "cricoid_arch_inferior":
        return _midline_inferior(ms, "cricoid_cartilage", name, midline_mm)
    if name == "manubrium_superior":
        return _top(ms, "sternum", name, x_mean=True)
    if name.startswith("clavicle_superior_"):
        return _top(ms, _key("clavicula", name[-1]), name)
    # skull_base: the tops of the internal jugular veins (jugular foramina)
    keys = [k for k in LANDMARK_SOURCES[name] if ms.has(k)] or [LANDMARK_SOURCES[name][1]]
    return np.mean([_top(ms, k, name) for k in keys], axis=0)


def landmarks_from_masks(
    masks_dir: str | Path, required: Iterable[str] = REQUIRED_LANDMARKS, midline_mm: float = 5.0
) -> Landmarks:
    """Derive the spec's point and curve landmarks from a folder of per-structure masks.

    Parameters
    ----------
    masks_dir : str or Path
        Folder of binary masks named as TotalSegmentator writes them (``hyoid.nii.gz``,
        ``sternocleidomastoid_right.nii.gz`` ...) or a synonym (:data:`STRUCTURE_SYNONYMS`).
    required : iterable of str
        Landmarks that must be derived (default: all of shared/spec/levels.md). Others are derived where their
        masks exist and skipped silently otherwise.
    midline_mm : float
        Half-width (mm) of the midline part of the hyoid / cricoid searched for their inferior border.

    Returns
    -------
    Landmarks
        Points (each ndarray (3,), float, mm, RAS) and curves (control points (N, 3), float, mm, RAS), one
        control point per axial slab (module docstring).

    Raises
    ------
    InputError
        A required landmark's mask is missing, empty or too short; the message names landmark and mask.
    """
    ms = _MaskSet(Path(masks_dir))
    required = tuple(required)
    unknown = [n for n in required if n not in LANDMARK_SOURCES]
    if unknown:
        raise InputError(masks_dir, "required", f"unknown landmark '{unknown[0]}'")
    points, curves = {}, {}
    for name, sources in LANDMARK_SOURCES.items():
        if name not in required and not any(ms.has(k) for k in sources):
            continue
        if name[-2:] in ("_L", "_R") and not name.startswith("clavicle"):
            curves[name] = _curve(ms, name[:-2], name[-1])
        else:
            points[name] = _point(ms, name, midline_mm)
    return Landmarks(points=points, curves=curves)
