"""Data shipped with neckmatch: the small hand-made example case (``examples/minimal_case`` in the source tree).

Examples
--------
>>> (example_case() / "case.json").is_file()
True
"""

from __future__ import annotations

import shutil
from importlib.resources import files
from pathlib import Path

from neckmatch.errors import InputError

__all__ = ["example_case", "copy_example_case"]

_FILES = ("case.json", "mri/landmarks.mrk.json", "mri/nodes.nii.gz", "mri/reads.csv", "pathology/nodes.csv")


def example_case() -> Path:
    """The installed example case folder (read-only: copy it with :func:`copy_example_case` to change it)."""
    return Path(str(files("neckmatch") / "data" / "minimal_case"))


def copy_example_case(out: str | Path) -> Path:
    """Copy the example case's files into the new folder ``out`` (an existing ``out`` is an InputError)."""
    dst = Path(out)
    if dst.exists():
        raise InputError(dst, "", "already exists (give a new folder)")
    src = example_case()
    tmp = dst.with_name(f".{dst.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        for rel in _FILES:
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src / rel, tmp / rel)
        tmp.replace(dst)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dst
