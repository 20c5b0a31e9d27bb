"""Identifiers that become file or folder names: checked before any path is built from them.

A case id names the case's output folder (``OUT/<case_id>/``) and its map files (``<case_id>_map.png``), so it
is validated where it is read (``case.json``): ASCII letters, digits, ``.``, ``_`` and ``-``, 1 to 64
characters, not ``.`` or ``..``. Nothing is ever written outside ``--out`` because of a case id.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from neckmatch.errors import InputError

__all__ = ["CASE_ID_RULE", "MAX_ID_LENGTH", "is_valid_case_id", "validate_case_id", "safe_join", "check_inside"]

MAX_ID_LENGTH = 64
_CASE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
CASE_ID_RULE = "letters, digits, '.', '_' and '-' only, at most 64 characters, not '.' or '..'"


def is_valid_case_id(value: Any) -> bool:
    """True for a valid case id (module docstring).

    >>> [is_valid_case_id(v) for v in ("SYN001", "H7000", "P-17.a_b", "..", "../x", "<script>", "A" * 65, 7)]
    [True, True, True, False, False, False, False, False]
    """
    return isinstance(value, str) and _CASE_ID.fullmatch(value) is not None and value not in (".", "..")


def validate_case_id(value: Any, file: str | Path, field: str = "case_id") -> str:
    """``value`` if it is a valid case id, else :class:`InputError` naming ``file`` and ``field``.

    >>> validate_case_id("P017", "case.json")
    'P017'
    >>> validate_case_id("../x", "P1/case.json")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    neckmatch.errors.InputError: P1/case.json: case_id: must use letters, digits, '.', '_' and '-' only, ...; got '../x'
    """
    if not is_valid_case_id(value):
        shown = repr(value) if not isinstance(value, str) or len(value) <= 80 else repr(value[:80] + "...")
        raise InputError(file, field, f"must use {CASE_ID_RULE}; got {shown}")
    return str(value)


def safe_join(root: str | Path, *parts: str) -> Path:
    """``root / parts`` after checking that the result stays inside ``root`` (no ``..``, no absolute part).

    >>> safe_join("/out", "P1", "maps").as_posix()
    '/out/P1/maps'
    >>> safe_join("/out", "../etc")
    Traceback (most recent call last):
    ...
    neckmatch.errors.InputError: /out: path: '../etc' would leave the output folder
    """
    root = Path(root)
    for part in parts:
        p = Path(part)
        if p.is_absolute() or ".." in p.parts:
            raise InputError(root, "path", f"'{part}' would leave the output folder")
    return root.joinpath(*parts)


def check_inside(file: str | Path, field: str, case_dir: Path, value: str) -> None:
    """InputError (naming ``file`` and ``field``) unless ``case_dir / value`` lies inside ``case_dir``: relative,
    no ``..``, symlinks resolved."""
    rule = "must lie inside the case folder (or pass --allow-external-files)"
    if Path(value).is_absolute() or ".." in Path(value).parts or "\0" in value:
        raise InputError(file, field, f"{rule}, got '{value}'")
    try:
        (case_dir / value).resolve().relative_to(case_dir.resolve())
    except (ValueError, OSError, RuntimeError):
        raise InputError(file, field, f"{rule}; '{value}' leads outside it (a symlink?)") from None
