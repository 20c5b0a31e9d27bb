"""Read and write MR node label maps: NIfTI (nibabel), NRRD / 3D Slicer ``.seg.nrrd`` (pynrrd); read DICOM SEG.

Every reader returns a :class:`neckmatch.model.LabelMap` whose affine maps voxel indices to patient **RAS mm**,
whatever the file's orientation, spacing, axis order or anatomical space (NRRD ``left-posterior-superior``,
``right-anterior-superior``, ``left-anterior-superior`` and their abbreviations; DICOM SEG in LPS via highdicom).
Bad files raise :class:`neckmatch.errors.InputError` naming the file, the field and the value.

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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import nrrd
import numpy as np
from nibabel.openers import ImageOpener
from numpy.typing import NDArray
from scipy import ndimage

from neckmatch.errors import InputError
from neckmatch.io.atomic import atomic_path
from neckmatch.model import LabelMap, present_labels

__all__ = ["read_label_map", "read_image", "write_label_map", "label_map_format", "Segment", "segment_fields",
           "nrrd_space_fields",
           "NRRD_SPACES", "MAX_VOXELS", "MAX_BYTES", "MAX_LABELS"]

# Bounded cost: a label map is refused by its header, before its voxels are read, when larger than these
# (a 512 x 512 x 400 neck MRI at 16 bits is 0.2 GB); and when it holds more nodes than the matching handles.
MAX_VOXELS = 1 << 28
MAX_BYTES = 1 << 30
MAX_LABELS = 1000

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
_READ_ERRORS = (OSError, EOFError, ValueError, TypeError, KeyError, IndexError, StopIteration, zlib.error,
                gzip.BadGzipFile)


def label_map_format(path: str | Path) -> str:
    """``"nifti"``, ``"nrrd"`` or ``"dicom"`` (a ``.dcm`` file or an existing folder) from the name, else InputError.

    >>> label_map_format("mri/nodes.nii.gz"), label_map_format("seg/Segmentation.seg.nrrd")
    ('nifti', 'nrrd')
    >>> label_map_format("mri/nodes_seg.dcm")
    'dicom'
    """
    name = Path(path).name.lower()
    if name.endswith((".nii", ".nii.gz")):
        return "nifti"
    if name.endswith((".nrrd", ".nhdr")):
        return "nrrd"
    if name.endswith(".dcm") or Path(path).is_dir():
        return "dicom"
    raise InputError(
        path, "", f"unsupported label map format '{Path(path).name}' (use .nii, .nii.gz, .nrrd, .seg.nrrd, "
        "a DICOM SEG .dcm or a folder holding one)"
    )


def read_label_map(path: str | Path) -> LabelMap:
    """Read an integer label map (label k = MR node k, 0 = background) as a LabelMap in RAS mm.

    Parameters
    ----------
    path : str or Path
        ``.nii`` / ``.nii.gz`` (the NIfTI affine, sform or qform, as nibabel resolves it) or ``.nrrd`` /
        ``.seg.nrrd`` / ``.nhdr`` (``space``, ``space directions`` and ``space origin`` honoured exactly), or a
        DICOM SEG: a ``.dcm`` file or a folder holding exactly one SEG file (geometry from its functional groups,
        LPS -> RAS; label value = ``SegmentNumber``; a FRACTIONAL segment counts where its fraction is >= 0.5).

    Returns
    -------
    LabelMap
        ``data`` ndarray of shape (I, J, K), integer; ``affine`` (4, 4) voxel -> RAS mm; ``names`` from the
        ``SegmentN_Name`` / ``SegmentN_LabelValue`` fields of a 3D Slicer segmentation, or the ``SegmentLabel``
        of each DICOM SEG segment (else empty).

    Raises
    ------
    InputError
        Missing, corrupt or truncated file; not 3-D; no voxels; non-integer values; negative labels;
        non-invertible affine; unknown NRRD space; a multi-layer (4-D) segmentation; a DICOM file that is not a
        SEG (names the Modality); DICOM segments that overlap (names the two segments); not a regularly spaced
        volume.
    """
    path = Path(path)
    if not (path.is_file() or (path.is_dir() and label_map_format(path) == "dicom")):
        raise InputError(path, "", "file does not exist")
    fmt = label_map_format(path)
    if fmt == "nifti":
        data, affine, names = _read_nifti(path)
    elif fmt == "nrrd":
        data, affine, names = _read_nrrd(path)
    else:
        data, affine, names = _read_dicom_seg(_dicom_seg_file(path))
    if data.size == 0:
        raise InputError(path, "shape", f"label map has no voxels: shape {list(data.shape)}")
    labels = _as_labels(path, data)
    n_labels = len(present_labels(labels))
    if n_labels > MAX_LABELS:
        raise InputError(path, "data", f"{n_labels} labels (nodes); at most {MAX_LABELS} are accepted")
    det = float(np.linalg.det(affine[:3, :3])) if np.all(np.isfinite(affine)) else float("nan")
    if not np.isfinite(det) or abs(det) < 1e-9:
        raise InputError(path, "affine", f"not invertible (determinant {det:.3g}): {np.round(affine, 4).tolist()}")
    try:
        return LabelMap(labels, affine, names)
    except (ValueError, TypeError) as exc:  # pragma: no cover - the checks above catch these first
        raise InputError(path, "data", str(exc)) from None


def _check_size(path: Path, shape: Any, itemsize: int, field: str) -> None:
    """InputError when a header announces more than :data:`MAX_VOXELS` voxels or :data:`MAX_BYTES` bytes."""
    try:
        dims = [int(d) for d in shape]
    except (TypeError, ValueError):
        raise InputError(path, field, f"not a list of whole numbers: {shape!r}") from None
    if any(d < 0 for d in dims):
        raise InputError(path, field, f"negative size in {dims}")
    voxels = int(np.prod(dims, dtype=object)) if dims else 0
    if voxels > MAX_VOXELS or voxels * max(itemsize, 1) > MAX_BYTES:
        raise InputError(path, field, f"{dims} is {voxels} voxels ({voxels * max(itemsize, 1) / 2**30:.3g} GiB); "
                         f"at most {MAX_VOXELS} voxels and {MAX_BYTES / 2**30:g} GiB are read")


def read_image(path: str | Path) -> tuple[NDArray[Any], NDArray[np.float64]]:
    """Read an MR image volume (``mri.image``; display only) as its voxel array (I, J, K) and voxel -> RAS mm
    affine (4, 4): NIfTI or NRRD as :func:`read_label_map` reads them, any voxel type; InputError otherwise (a
    DICOM image series is not read)."""
    path = Path(path)
    fmt = label_map_format(path)
    if fmt == "dicom" or not path.is_file():
        raise InputError(path, "", "the MR image must be a NIfTI or NRRD file to be displayed")
    data, affine, _ = _read_nifti(path) if fmt == "nifti" else _read_nrrd(path)
    return data, affine


def _read_nifti(path: Path) -> tuple[NDArray[Any], NDArray[np.float64], dict[int, str]]:
    try:
        img: Any = nib.load(path)  # a SpatialImage (FileBasedImage in the stubs, without dataobj / affine)
        _check_size(path, img.header.get_data_shape(), img.header.get_data_dtype().itemsize, "dim")
        data = _nifti_voxels(path, img.dataobj)
        affine = np.asarray(img.affine, dtype=np.float64)
    except InputError:
        raise
    except (nib.filebasedimages.ImageFileError, *_READ_ERRORS) as exc:
        raise InputError(path, "", f"cannot read NIfTI (corrupt or truncated?): {type(exc).__name__}: {exc}") from None
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise InputError(path, "shape", f"label map must be 3-D, got shape {data.shape}")
    return data, affine, {}


def _nifti_voxels(path: Path, proxy: Any, chunk: int = 1 << 20) -> NDArray[Any]:
    """The voxels of a NIfTI image as nibabel reads them (``np.asanyarray(proxy)``), but a compressed file is
    decompressed ``chunk`` bytes at a time straight into the array: nibabel's own read of a ``.nii.gz`` holds the
    decompressed bytes two or three times over at its peak (one more full copy of the label map per copy).

    Uncompressed files (memory-mapped by nibabel) and scaled data (``scl_slope`` / ``scl_inter``: nibabel returns
    floats) are left to nibabel. Raises EOFError for a file that ends before its voxels do.
    """
    if not str(proxy.file_like).lower().endswith(".gz") or (float(proxy.slope), float(proxy.inter)) != (1.0, 0.0):
        return np.asanyarray(proxy)
    data = np.empty(proxy.shape, dtype=proxy.dtype, order="F")
    raw = data.reshape(-1, order="F").view(np.uint8).data  # the array's own bytes (a memoryview), in file order
    with ImageOpener(proxy.file_like, "rb") as fh:
        fh.seek(proxy.offset)
        done = 0
        while done < len(raw):
            got = fh.readinto(raw[done:done + chunk])
            if not got:
                raise EOFError(f"expected {len(raw)} bytes of voxels, the file ends after {done}")
            done += got
    return data


def _read_nrrd(path: Path) -> tuple[NDArray[Any], NDArray[np.float64], dict[int, str]]:
    try:
        head = nrrd.read_header(str(path))
        _check_size(path, head.get("sizes", ()), np.dtype(nrrd.reader._determine_datatype(head)).itemsize, "sizes")
        data, header = nrrd.read(str(path), index_order="F")
    except InputError:
        raise
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


def _dicom_seg_file(path: Path) -> Path:
    """``path`` itself, or the one DICOM SEG file in folder ``path`` (other DICOM files there are ignored)."""
    if path.is_file():
        return path
    import pydicom  # here, not at the top: pydicom / highdicom cost ~0.7 s on every CLI start

    segs = []
    for f in sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")):
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=True, specific_tags=["Modality"])
        except (pydicom.errors.InvalidDicomError, *_READ_ERRORS):
            continue
        if str(ds.get("Modality", "")).upper() == "SEG":
            segs.append(f)
    if len(segs) != 1:
        raise InputError(path, "", f"need exactly one DICOM SEG file in the folder, found {len(segs)}: "
                         f"{[p.name for p in segs]}")
    return segs[0]


def _read_dicom_seg(path: Path) -> tuple[NDArray[Any], NDArray[np.float64], dict[int, str]]:
    """A DICOM SEG as (labels (I, J, K) = (slice, row, column), voxel -> RAS affine, {SegmentNumber: label})."""
    import highdicom as hd  # here, not at the top: pydicom / highdicom cost ~0.7 s on every CLI start
    import pydicom

    try:
        header = pydicom.dcmread(path, stop_before_pixels=True)
    except (pydicom.errors.InvalidDicomError, *_READ_ERRORS) as exc:
        raise InputError(path, "", f"cannot read DICOM (corrupt or truncated?): {type(exc).__name__}: {exc}") from None
    modality = str(header.get("Modality", ""))
    if modality.upper() != "SEG":
        raise InputError(path, "Modality", f"not a DICOM SEG: Modality is '{modality}', need 'SEG'")
    frames = header.get("NumberOfFrames", 1) or 1
    _check_size(path, (header.get("Rows", 0) or 0, header.get("Columns", 0) or 0, frames), 1, "Rows x Columns x frames")
    try:
        seg = hd.seg.segread(path)
        numbers = [int(n) for n in seg.segment_numbers]
        volume = seg.get_volume(segment_numbers=numbers, combine_segments=False, skip_overlap_checks=True)
    except (RuntimeError, AttributeError, *_READ_ERRORS) as exc:
        message = f"cannot read DICOM SEG as a regular 3-D volume: {type(exc).__name__}: {exc}"
        raise InputError(path, "", message) from None
    masks = np.asarray(volume.array).reshape(*volume.spatial_shape, len(numbers)) >= 0.5  # (I, J, K, S)
    _check_overlap(path, masks, numbers)
    labels = np.zeros(volume.spatial_shape, dtype=np.int32)
    for s, number in enumerate(numbers):
        labels[masks[..., s]] = number
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ np.asarray(volume.affine, dtype=np.float64)  # LPS -> RAS
    names = {n: str(seg.get_segment_description(n).segment_label) for n in numbers}
    return labels, affine, names


def _check_overlap(path: Path, masks: NDArray[np.bool_], numbers: list[int]) -> None:
    """InputError naming two segments that share a voxel (masks of shape (I, J, K, S), segment s = numbers[s])."""
    shared = masks.sum(axis=-1) > 1
    if not shared.any():
        return
    voxel = np.argwhere(shared)[0]
    a, b = (numbers[s] for s in np.flatnonzero(masks[tuple(voxel)])[:2])
    raise InputError(
        path, "SegmentSequence", f"segments {a} and {b} overlap ({int(shared.sum())} voxels, e.g. voxel "
        f"{voxel.tolist()}); every voxel may belong to one node only"
    )


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


def write_label_map(path: str | Path, label_map: LabelMap, names: Mapping[int, str] | None = None,
                    colors: Mapping[int, Sequence[float]] | None = None, compression_level: int = 9) -> Path:
    """Write ``label_map`` atomically as NIfTI (``.nii``, ``.nii.gz``) or NRRD (``.nrrd``, ``.seg.nrrd``).

    NIfTI stores the RAS affine as sform and qform (code 1, scanner). NRRD is written in
    ``left-posterior-superior`` space, gzip at ``compression_level``; ``.seg.nrrd`` adds 3D Slicer's
    ``SegmentN_*`` fields, one segment per label, named from ``names`` (default ``label_map.names``, else
    ``node_<k>``) and coloured from ``colors`` (label -> RGB in 0-1; default: random, marked auto-generated).

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    fmt = label_map_format(path)
    if fmt == "dicom":
        raise InputError(path, "", "writing DICOM SEG is not supported (use .nii, .nii.gz, .nrrd or .seg.nrrd)")
    data = _compact(label_map.data)
    with atomic_path(path) as tmp:
        if fmt == "nifti":
            img = nib.Nifti1Image(data, label_map.affine)
            img.set_sform(label_map.affine, code=1)
            img.set_qform(label_map.affine, code=1)
            img.header.set_xyzt_units("mm")
            nib.save(img, tmp)
        else:
            header = nrrd_space_fields(label_map.affine)
            if path.name.lower().endswith(".seg.nrrd"):
                header.update(_segment_fields(label_map, dict(names if names is not None else label_map.names),
                                              colors or {}))
            nrrd.write(str(tmp), data, header, index_order="F", compression_level=compression_level)
    return path


def nrrd_space_fields(affine: NDArray[np.float64]) -> dict[str, Any]:
    """NRRD header fields of a 3-D gzip volume whose voxel -> RAS ``affine`` (4 x 4) is written in LPS, as 3D Slicer
    writes it: ``space``, ``space directions`` (one row per array axis), ``space origin``, ``kinds``, ``encoding``."""
    return {
        "space": "left-posterior-superior",
        "space directions": (_LPS_FLIP @ affine[:3, :3]).T,
        "space origin": _LPS_FLIP @ affine[:3, 3],
        "kinds": ["domain", "domain", "domain"],
        "encoding": "gzip",
    }


@dataclass(frozen=True)
class Segment:
    """One segment of a 3D Slicer ``.seg.nrrd``: its label value, ID, name, colour (RGB 0-1; None = Slicer picks),
    voxel extent (first, last) per axis in the file's array and terminology tags."""

    label: int
    id: str
    name: str
    color: Sequence[float] | None
    extent: Sequence[tuple[int, int]]
    tags: str = "|"


def segment_fields(segments: Sequence[Segment], offset: Sequence[int] = (0, 0, 0)) -> dict[str, str]:
    """3D Slicer segmentation header fields (``Segmentation_*``, ``Segment<n>_*``), one single-layer binary labelmap
    segment each; ``offset`` = the file's first voxel on the reference grid (``ReferenceImageExtentOffset``). A
    segment without a colour gets a random one (the same for the same segments), marked auto-generated."""
    out = {
        "Segmentation_MasterRepresentation": "Binary labelmap",
        "Segmentation_ContainedRepresentationNames": "Binary labelmap|",
        "Segmentation_ReferenceImageExtentOffset": " ".join(str(int(v)) for v in offset),
        "Segmentation_ConversionParameters": "",
    }
    rng = np.random.default_rng(0)
    for n, seg in enumerate(segments):
        rgb = list(seg.color)[:3] if seg.color is not None else rng.uniform(0.2, 1.0, 3)
        out.update({
            f"Segment{n}_ID": seg.id,
            f"Segment{n}_Name": seg.name,
            f"Segment{n}_NameAutoGenerated": "0",
            f"Segment{n}_Color": " ".join(f"{c:.4f}" for c in rgb),
            f"Segment{n}_ColorAutoGenerated": "0" if seg.color is not None else "1",
            f"Segment{n}_LabelValue": str(int(seg.label)),
            f"Segment{n}_Layer": "0",
            f"Segment{n}_Extent": " ".join(f"{a} {b}" for a, b in seg.extent),
            f"Segment{n}_Tags": seg.tags,
        })
    return out


def _segment_fields(label_map: LabelMap, names: Mapping[int, str], colors: Mapping[int, Sequence[float]]
                    ) -> dict[str, str]:
    """3D Slicer segmentation fields: one single-layer segment per label present (``colors``: label -> RGB)."""
    labels = label_map.labels()
    boxes = ndimage.find_objects(np.asarray(label_map.data)) if labels.size else []
    return segment_fields([
        Segment(int(label), f"Segment_{label}", str(names.get(int(label), f"node_{label}")), colors.get(int(label)),
                [(s.start, s.stop - 1) for s in boxes[label - 1]])
        for label in labels])
