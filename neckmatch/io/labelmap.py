"""Read and write MR node label maps: NIfTI (nibabel) and NRRD / 3D Slicer ``.seg.nrrd`` (pynrrd).

Every reader returns a :class:`neckmatch.model.LabelMap` whose affine maps voxel indices to patient **RAS mm**,
whatever the file's orientation, spacing, axis order or anatomical space (NRRD ``left-posterior-superior``,
``right-anterior-superior``, ``left-anterior-superior`` and their abbreviations). Bad files raise
:class:`neckmatch.errors.InputError` naming the file, the field and the value.

Examples
--------
>>> import tempfile, numpy as np
>>> from pathlib import Path
>>> from neckmatch.model import LabelMap
>>> lm = LabelMap(np.arange(8, dtype=np.uint8).reshape(2, 2, 2), np.diag([0.5, 0.5, 1.0, 1.0]))
>>> with tempfile.TemporaryDirectory() as d:
...     _ = write_label_map(Path(d) / "nodes.seg.nrrd", lm, names={1: "node 1"})
...     back = read_label_map(Path(d) / "nodes.seg.nrrd")
>>> bool(np.array_equal(back.data, lm.data)), bool(np.allclose(back.affine, lm.affine)), back.names[1]
(True, True, 'node 1')
"""

from __future__ import annotations

import gzip
import re
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import nibabel as nib
import nrrd
import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from neckmatch.errors import InputError
from neckmatch.io.atomic import atomic_path
from neckmatch.model import LabelMap

__all__ = ["read_label_map", "write_label_map", "label_map_format", "NRRD_SPACES"]

# NRRD anatomical spaces -> sign flip of each world axis that turns the space into RAS.
NRRD_SPACES: dict[str, tuple[float, float, float]] = {
    "right-anterior-superior": (1.0, 1.0, 1.0),
    "ras": (1.0, 1.0, 1.0),
    "left-anterior-superior": (-1.0, 1.0, 1.0),
    "las": (-1.0, 1.0, 1.0),
    "left-posterior-superior": (-1.0, -1.0, 1.0),
    "lps": (-1.0, -1.0, 1.0),
}
_LPS_FLIP = np.diag([-1.0, -1.0, 1.0])
_READ_ERRORS = (OSError, EOFError, ValueError, TypeError, KeyError, IndexError, zlib.error, gzip.BadGzipFile)


def label_map_format(path: str | Path) -> str:
    """``"nifti"`` or ``"nrrd"`` from the file name, else raise InputError.

    >>> label_map_format("mri/nodes.nii.gz"), label_map_format("seg/Segmentation.seg.nrrd")
    ('nifti', 'nrrd')
    """
    name = Path(path).name.lower()
    if name.endswith((".nii", ".nii.gz")):
        return "nifti"
    if name.endswith((".nrrd", ".nhdr")):
        return "nrrd"
    raise InputError(
        path, "", f"unsupported label map format '{Path(path).name}' (use .nii, .nii.gz, .nrrd, .seg.nrrd)"
    )


def read_label_map(path: str | Path) -> LabelMap:
    """Read an integer label map (label k = MR node k, 0 = background) as a LabelMap in RAS mm.

    Parameters
    ----------
    path : str or Path
        ``.nii`` / ``.nii.gz`` (the NIfTI affine, sform or qform, as nibabel resolves it) or ``.nrrd`` /
        ``.seg.nrrd`` / ``.nhdr`` (``space``, ``space directions`` and ``space origin`` honoured exactly).

    Returns
    -------
    LabelMap
        ``data`` ndarray of shape (I, J, K), integer; ``affine`` (4, 4) voxel -> RAS mm; ``names`` from the
        ``SegmentN_Name`` / ``SegmentN_LabelValue`` fields of a 3D Slicer segmentation (else empty).

    Raises
    ------
    InputError
        Missing, corrupt or truncated file; not 3-D; non-integer values; negative labels; non-invertible affine;
        unknown NRRD space; a multi-layer (4-D) segmentation.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "", "file does not exist")
    if label_map_format(path) == "nifti":
        data, affine, names = _read_nifti(path)
    else:
        data, affine, names = _read_nrrd(path)
    labels = _as_labels(path, data)
    det = float(np.linalg.det(affine[:3, :3])) if np.all(np.isfinite(affine)) else float("nan")
    if not np.isfinite(det) or abs(det) < 1e-9:
        raise InputError(path, "affine", f"not invertible (determinant {det:.3g}): {np.round(affine, 4).tolist()}")
    try:
        return LabelMap(labels, affine, names)
    except (ValueError, TypeError) as exc:  # pragma: no cover - the checks above catch these first
        raise InputError(path, "data", str(exc)) from None


def _read_nifti(path: Path) -> tuple[NDArray[Any], NDArray[np.float64], dict[int, str]]:
    try:
        img: Any = nib.load(path)  # a SpatialImage (FileBasedImage in the stubs, without dataobj / affine)
        data = np.asanyarray(img.dataobj)
        affine = np.asarray(img.affine, dtype=np.float64)
    except (nib.filebasedimages.ImageFileError, *_READ_ERRORS) as exc:
        raise InputError(path, "", f"cannot read NIfTI (corrupt or truncated?): {type(exc).__name__}: {exc}") from None
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise InputError(path, "shape", f"label map must be 3-D, got shape {data.shape}")
    return data, affine, {}


def _read_nrrd(path: Path) -> tuple[NDArray[Any], NDArray[np.float64], dict[int, str]]:
    try:
        data, header = nrrd.read(str(path), index_order="F")
    except (nrrd.NRRDError, *_READ_ERRORS) as exc:
        raise InputError(path, "", f"cannot read NRRD (corrupt or truncated?): {type(exc).__name__}: {exc}") from None
    space = str(header.get("space", "")).strip().lower()
    if space not in NRRD_SPACES:
        raise InputError(
            path, "space", f"need an anatomical space (left-posterior-superior, right-anterior-superior, "
            f"left-anterior-superior or LPS/RAS/LAS), got '{header.get('space', '')}'"
        )
    if "space directions" not in header:
        raise InputError(path, "space directions", "missing: the voxel -> world mapping is unknown")
    rows = [None if d is None else np.asarray(d, dtype=np.float64) for d in header["space directions"]]
    spatial = [i for i, d in enumerate(rows) if d is not None and np.all(np.isfinite(d))]
    spatial_rows = [d for d in rows if d is not None and np.all(np.isfinite(d))]  # rows[i] for i in spatial
    other = [i for i in range(data.ndim) if i not in spatial]
    if len(spatial) != 3:
        raise InputError(
            path, "space directions", f"need 3 spatial axes, got {len(spatial)} in {header['space directions']}"
        )
    if other:
        if data.ndim != 4 or data.shape[other[0]] != 1:
            raise InputError(
                path, "sizes", f"multi-layer segmentation with {data.shape[other[0]]} layers (shape {data.shape}) "
                "is not supported; export it from 3D Slicer as a single-layer labelmap"
            )
        data = np.take(data, 0, axis=other[0])
    origin = np.asarray(header.get("space origin", np.zeros(3)), dtype=np.float64)
    if origin.shape != (3,) or not np.all(np.isfinite(origin)):
        raise InputError(path, "space origin", f"need 3 finite numbers, got {header.get('space origin')}")
    flip = np.diag(NRRD_SPACES[space])
    affine = np.eye(4)
    affine[:3, :3] = flip @ np.stack(spatial_rows, axis=1)
    affine[:3, 3] = flip @ origin
    return data, affine, _segment_names(path, header)


def _segment_names(path: Path, header: Mapping[str, Any]) -> dict[int, str]:
    """``SegmentN_Name`` / ``SegmentN_LabelValue`` fields -> {label value: name}."""
    names: dict[int, str] = {}
    for key in header:
        m = re.fullmatch(r"Segment(\d+)_Name", str(key))
        if not m:
            continue
        n = int(m.group(1))
        raw = header.get(f"Segment{n}_LabelValue", n + 1)
        try:
            label = int(str(raw).strip())
        except ValueError:
            raise InputError(path, f"Segment{n}_LabelValue", f"must be an integer, got '{raw}'") from None
        names[label] = str(header[key])
    return names


def _as_labels(path: Path, data: NDArray[Any]) -> NDArray[np.integer]:
    """Integer labels from ``data``: integers as they are, booleans as 0/1, floats only where all integral."""
    if data.dtype == bool:
        return data.astype(np.uint8)
    if np.issubdtype(data.dtype, np.floating):
        bad = ~np.isfinite(data) | (data != np.round(data))
        if bad.any():
            example = data[bad].flat[0]
            raise InputError(
                path, "data", f"label map must hold integer labels, got {data.dtype} values such as {float(example):g}"
            )
        if data.size and data.max() > np.iinfo(np.int32).max:
            raise InputError(path, "data", f"label {data.max()!r} is too large")
        data = data.astype(np.int32)
    elif not np.issubdtype(data.dtype, np.integer):
        raise InputError(path, "data", f"label map must hold integer labels, got type {data.dtype}")
    if data.size and np.issubdtype(data.dtype, np.signedinteger) and data.min() < 0:
        raise InputError(path, "data", f"labels must be >= 0, got {data.min()}")
    return data


def _compact(data: NDArray[np.integer]) -> NDArray[np.integer]:
    """The smallest unsigned/signed integer type that holds ``data`` (uint8, int16 or int32)."""
    hi = int(data.max()) if data.size else 0
    lo = int(data.min()) if data.size else 0
    for dt in (np.uint8, np.int16, np.int32):
        if np.iinfo(dt).min <= lo and hi <= np.iinfo(dt).max:
            return data.astype(dt, copy=False)
    return data.astype(np.int64, copy=False)


def write_label_map(path: str | Path, label_map: LabelMap, names: Mapping[int, str] | None = None) -> Path:
    """Write ``label_map`` atomically as NIfTI (``.nii``, ``.nii.gz``) or NRRD (``.nrrd``, ``.seg.nrrd``).

    NIfTI stores the RAS affine as sform and qform (code 1, scanner). NRRD is written in
    ``left-posterior-superior`` space; ``.seg.nrrd`` adds 3D Slicer's ``SegmentN_*`` fields, one segment per label,
    named from ``names`` (default ``label_map.names``, else ``node_<k>``).

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    fmt = label_map_format(path)
    data = _compact(label_map.data)
    with atomic_path(path) as tmp:
        if fmt == "nifti":
            img = nib.Nifti1Image(data, label_map.affine)
            img.set_sform(label_map.affine, code=1)
            img.set_qform(label_map.affine, code=1)
            img.header.set_xyzt_units("mm")
            nib.save(img, tmp)
        else:
            header = _nrrd_header(label_map)
            if path.name.lower().endswith(".seg.nrrd"):
                header.update(_segment_fields(label_map, dict(names if names is not None else label_map.names)))
            nrrd.write(str(tmp), data, header, index_order="F")
    return path


def _nrrd_header(label_map: LabelMap) -> dict[str, Any]:
    lps = _LPS_FLIP @ label_map.affine[:3, :3]
    return {
        "space": "left-posterior-superior",
        "space directions": lps.T,  # one row per array axis
        "space origin": _LPS_FLIP @ label_map.affine[:3, 3],
        "kinds": ["domain", "domain", "domain"],
        "encoding": "gzip",
    }


def _segment_fields(label_map: LabelMap, names: Mapping[int, str]) -> dict[str, str]:
    """3D Slicer segmentation fields: one single-layer segment per label present."""
    labels = label_map.labels()
    boxes = ndimage.find_objects(label_map.data.astype(np.int64, copy=False)) if labels.size else []
    out = {
        "Segmentation_MasterRepresentation": "Binary labelmap",
        "Segmentation_ContainedRepresentationNames": "Binary labelmap|",
        "Segmentation_ReferenceImageExtentOffset": "0 0 0",
    }
    rng = np.random.default_rng(0)
    for n, label in enumerate(labels):
        box = boxes[label - 1]
        extent = " ".join(f"{s.start} {s.stop - 1}" for s in box)
        color = " ".join(f"{c:.3f}" for c in rng.uniform(0.2, 1.0, 3))
        out.update({
            f"Segment{n}_ID": f"Segment_{label}",
            f"Segment{n}_Name": str(names.get(int(label), f"node_{label}")),
            f"Segment{n}_NameAutoGenerated": "0",
            f"Segment{n}_Color": color,
            f"Segment{n}_ColorAutoGenerated": "1",
            f"Segment{n}_LabelValue": str(int(label)),
            f"Segment{n}_Layer": "0",
            f"Segment{n}_Extent": extent,
            f"Segment{n}_Tags": "|",
        })
    return out
