"""What the browser displays of a case (display only, no science): the MR image (``mri.image``, where the case
has one), the MR node label map with the item's nodes marked, and a 3-D map without outcomes.

:func:`highlight_labels` recodes the label map for the item in hand: 1 = the node under review, 2-10 = its
candidate MR nodes (a pathology item's candidates, in the list's order), 11 = every other MR node, 0 =
background. :func:`blind_map_glb` is the 3-D map of :mod:`neckmatch.viz` with nodes coloured by level (never by
outcome) and no pathology markers, so neither the MR reading nor the pathology status shows.

Large volumes are served as a box of :data:`CROP_MM` around the node in hand, every axis sampled down to at most
:data:`MAX_EDGE` voxels (:func:`crop_box`); the image is windowed to 8 bits (display only, never evidence).
"""

from __future__ import annotations

import gzip
import hashlib
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from neckmatch.review.solve import case_inputs

__all__ = ["CROP_MM", "HIGHLIGHT", "MAX_EDGE", "OTHER", "blind_map_glb", "crop_box", "highlight_labels",
           "image_volume"]

HIGHLIGHT = 1
OTHER = 11
CROP_MM = 120.0  # edge of the box served around the node in hand
MAX_EDGE = 192  # at most this many voxels along every axis of a served volume
_glb_lock = threading.Lock()
_images: OrderedDict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = OrderedDict()
_images_lock = threading.Lock()


def crop_box(shape: tuple[int, ...], affine: Any, centre: Any | None) -> tuple[tuple[slice, ...], np.ndarray]:
    """The voxel slices of the box of :data:`CROP_MM` centred on ``centre`` (RAS mm; None: the whole volume),
    strided to at most :data:`MAX_EDGE` voxels per axis, and the affine (4, 4) of the cropped volume.

    Examples
    --------
    >>> sl, aff = crop_box((400, 400, 10), np.eye(4), [200.0, 0.0, 5.0])
    >>> sl, aff[:3, 3].tolist(), np.diag(aff)[:3].tolist()
    ((slice(140, 261, 1), slice(0, 61, 1), slice(0, 10, 1)), [140.0, 0.0, 0.0], [1.0, 1.0, 1.0])
    """
    aff = np.asarray(affine, dtype=float)
    n = np.asarray(shape[:3], dtype=int)
    lo, hi = np.zeros(3, int), n.copy()
    if centre is not None and len(centre) == 3:
        ijk = np.linalg.solve(aff[:3, :3], np.asarray(centre, float) - aff[:3, 3])
        half = CROP_MM / 2 / np.linalg.norm(aff[:3, :3], axis=0)
        lo = np.clip(np.floor(ijk - half).astype(int), 0, n - 1)
        hi = np.clip(np.ceil(ijk + half).astype(int) + 1, lo + 1, n)
    step = np.maximum(1, np.ceil((hi - lo) / MAX_EDGE).astype(int))
    out = aff.copy()
    out[:3, :3] = aff[:3, :3] * step
    out[:3, 3] = aff[:3, :3] @ lo + aff[:3, 3]
    return tuple(slice(int(a), int(b), int(s)) for a, b, s in zip(lo, hi, step, strict=True)), out


def _nifti_gz(data: np.ndarray, affine: np.ndarray) -> bytes:
    import nibabel as nib

    img = nib.Nifti1Image(data, np.asarray(affine, dtype=float))
    img.header.set_xyzt_units("mm")
    return gzip.compress(img.to_bytes(), compresslevel=1)


def _image(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The image's voxels and affine, read once per process (the two most recent images are kept)."""
    from neckmatch.io.labelmap import read_image

    key = (str(path.resolve()), path.stat().st_mtime_ns)
    with _images_lock:
        if key in _images:
            _images.move_to_end(key)
            return _images[key]
    data, affine = read_image(path)
    with _images_lock:
        _images[key] = (data, affine)
        while len(_images) > 2:
            _images.popitem(last=False)
    return data, affine


def image_volume(case_dir: str, tolerance_mm: float, centre: Any | None) -> bytes | None:
    """The case's MR image (``mri.image``) around ``centre`` (RAS mm) as gzipped 8-bit NIfTI (:func:`crop_box`;
    intensities windowed between their 1st and 99.5th percentiles), or None when the case has no image.

    Parameters
    ----------
    centre : sequence of 3 float or None
        Centre of the box (RAS mm); None: the whole image (strided).
    """
    path = case_inputs(case_dir, tolerance_mm).case.image_path
    if path is None:
        return None
    data, affine = _image(Path(path))
    sl, aff = crop_box(data.shape, affine, centre)
    box = np.asarray(data[sl], dtype=np.float32)
    sample = box[::2, ::2, ::2] if box.size > 1 << 20 else box  # the window from every 8th voxel of a big box
    lo, hi = np.percentile(sample, [1.0, 99.5]) if box.size else (0.0, 1.0)
    scaled = np.clip((box - lo) / max(float(hi - lo), 1e-6) * 255.0, 0, 255).astype(np.uint8)
    return _nifti_gz(scaled, aff)


def highlight_labels(case_dir: str, tolerance_mm: float, node: int | None, candidates: list[int],
                     centre: Any | None = None) -> bytes:
    """The case's label map as gzipped NIfTI with the item's nodes recoded (see the module docstring), cropped
    around ``centre`` (RAS mm; None: whole) as :func:`crop_box` says.

    Parameters
    ----------
    node : int or None
        The MR node under review (None for a pathology item).
    candidates : list of int
        Candidate MR nodes in display order (the first 9 get values 2-10).
    centre : sequence of 3 float, optional
        Centre of the box served (RAS mm).
    """
    lm = case_inputs(case_dir, tolerance_mm).case.label_map
    sl, aff = crop_box(lm.data.shape, lm.affine, centre)
    data = np.asarray(lm.data[sl])
    out = np.where(data > 0, OTHER, 0).astype(np.uint8)
    for k, label in enumerate(candidates[:9]):
        out[data == label] = 2 + k
    if node is not None:
        out[data == node] = HIGHLIGHT
    return _nifti_gz(out, aff)


def blind_map_glb(case_dir: str, tolerance_mm: float) -> Path:
    """The case's 3-D map as GLB (levels, node surfaces coloured by level), made once and cached in a temporary
    folder under a digest of the case folder's files (path, sizes, times; no identifier in the file name)."""
    from neckmatch._version import __version__
    from neckmatch.viz.export import write_glb
    from neckmatch.viz.maps import case_scene

    folder = Path(case_dir).resolve()
    stamp = [str(folder), __version__] + [f"{p.name}:{p.stat().st_mtime_ns}:{p.stat().st_size}"
                                          for p in sorted(folder.rglob("*")) if p.is_file()]
    digest = hashlib.sha256("\n".join(stamp).encode()).hexdigest()[:24]
    cache = Path(tempfile.gettempdir()) / "neckmatch-review-maps"
    path = cache / f"{digest}.glb"
    with _glb_lock:
        if not path.is_file():
            cache.mkdir(parents=True, exist_ok=True)
            write_glb(case_scene(case_inputs(case_dir, tolerance_mm).case).scene, path)
    return path
