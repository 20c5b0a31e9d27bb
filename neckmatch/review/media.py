"""What the browser displays of a case (display only, no science): the MR node label map with the item's nodes
marked, and a 3-D map without outcomes.

:func:`highlight_labels` recodes the label map for the item in hand: 1 = the node under review, 2-10 = its
candidate MR nodes (a pathology item's candidates, in the list's order), 11 = every other MR node, 0 =
background. :func:`blind_map_glb` is the 3-D map of :mod:`neckmatch.viz` with nodes coloured by level (never by
outcome) and no pathology markers, so neither the MR reading nor the pathology status shows.
"""

from __future__ import annotations

import gzip
import hashlib
import tempfile
import threading
from pathlib import Path

import numpy as np

from neckmatch.review.solve import case_inputs

__all__ = ["HIGHLIGHT", "OTHER", "blind_map_glb", "highlight_labels"]

HIGHLIGHT = 1
OTHER = 11
_glb_lock = threading.Lock()


def highlight_labels(case_dir: str, tolerance_mm: float, node: int | None, candidates: list[int]) -> bytes:
    """The case's label map as gzipped NIfTI with the item's nodes recoded (see the module docstring).

    Parameters
    ----------
    node : int or None
        The MR node under review (None for a pathology item).
    candidates : list of int
        Candidate MR nodes in display order (the first 9 get values 2-10).
    """
    import nibabel as nib

    lm = case_inputs(case_dir, tolerance_mm).case.label_map
    data = np.asarray(lm.data)
    out = np.where(data > 0, OTHER, 0).astype(np.uint8)
    for k, label in enumerate(candidates[:9]):
        out[data == label] = 2 + k
    if node is not None:
        out[data == node] = HIGHLIGHT
    img = nib.Nifti1Image(out, np.asarray(lm.affine, dtype=float))
    img.header.set_xyzt_units("mm")
    return gzip.compress(img.to_bytes(), compresslevel=1)


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
