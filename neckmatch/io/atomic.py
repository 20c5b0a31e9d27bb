"""Atomic file output: write to a temporary name beside the target, then rename, so no reader ever sees a
half-written file and a killed run leaves no partial output."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from neckmatch.errors import InputError

__all__ = ["atomic_path", "atomic_dir", "replace_dir", "atomic_files", "write_csv", "write_text",
           "neutralise_cell"]

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _publish_mode(path: Path, directory: bool) -> None:
    """Give a temporary file or folder the mode a plain ``open`` / ``mkdir`` would (mkstemp / mkdtemp make them
    private to the owner)."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``, on failure delete it.

    The temporary name keeps the target's suffixes (``.nii.gz``, ``.seg.nrrd`` ...) so that writers that pick a
    format by suffix still work.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        _publish_mode(tmp_path, directory=False)
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def replace_dir(src: str | Path, dst: str | Path) -> None:
    """Put the finished folder ``src`` in place of ``dst`` by renames only: an older ``dst`` is renamed aside
    (a name unique to this process) before ``src`` takes its name, then removed, so ``dst`` is never seen
    half-written or half-deleted."""
    src, dst = Path(src), Path(dst)
    if not dst.exists():
        os.replace(src, dst)
        return
    old = dst.with_name(f".{dst.name}.old.{os.getpid()}")
    shutil.rmtree(old, ignore_errors=True)
    os.replace(dst, old)
    os.replace(src, dst)
    shutil.rmtree(old, ignore_errors=True)


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; on success it replaces ``path`` whole, on failure it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        _publish_mode(tmp, directory=True)
        replace_dir(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextmanager
def atomic_files(out_dir: str | Path) -> Iterator[Path]:
    """Yield a staging folder beside ``out_dir``; on success move every entry of it into ``out_dir`` (created if
    needed; same-named entries replaced, others kept), on failure delete it, so a failed command writes nothing.

    For commands that add several files to a folder the user may share with other outputs (``neckmatch
    levels``, ``render``, ``stats``): folders are moved in before files (a ``.vtm`` appears after its parts).
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(out, "", "output folder is an existing file")
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        yield stage
        out.mkdir(exist_ok=True)
        for entry in sorted(stage.iterdir(), key=lambda p: (not p.is_dir(), p.name)):
            target = out / entry.name
            if entry.is_dir():
                replace_dir(entry, target)
            else:
                os.replace(entry, target)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def neutralise_cell(value: object) -> object:
    """A text cell a spreadsheet would run as a formula (starting with ``=``, ``+``, ``-``, ``@``, tab or CR)
    gets a leading ``'`` (OWASP's CSV-injection advice); numbers, numeric text and other values are unchanged.

    >>> [neutralise_cell(v) for v in ("=HYPERLINK(1)", "+1+cmd", "@SUM(A1)", "-2+3", "-2.5", "R-II", 3, None)]
    ["'=HYPERLINK(1)", "'+1+cmd", "'@SUM(A1)", "'-2+3", '-2.5', 'R-II', 3, None]
    """
    if not isinstance(value, str) or not value.startswith(_FORMULA_START):
        return value
    try:
        float(value)
        return value
    except ValueError:
        return "'" + value


def write_csv(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write ``frame`` as CSV atomically (no index; booleans, nullable ones too, as ``true`` / ``false``; missing
    values empty; text that a spreadsheet would run as a formula neutralised, see :func:`neutralise_cell`)."""
    out = frame.copy()
    out.columns = [neutralise_cell(str(c)) for c in out.columns]
    for col in out.columns:
        if out[col].dtype == object or isinstance(out[col].dtype, pd.StringDtype):
            out[col] = out[col].map(neutralise_cell)
        if out[col].dtype == bool or isinstance(out[col].dtype, pd.BooleanDtype):
            out[col] = out[col].astype(object).map({True: "true", False: "false"})
        elif out[col].dtype == object:  # booleans among other values (a column built row by row)
            is_bool = out[col].map(lambda v: isinstance(v, (bool, np.bool_)))
            if is_bool.any():
                out.loc[is_bool, col] = out.loc[is_bool, col].map(lambda v: "true" if v else "false")
    with atomic_path(path) as tmp:
        out.to_csv(tmp, index=False, float_format="%.6g")
    return Path(path)


def write_text(text: str, path: str | Path) -> Path:
    """Write ``text`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)
