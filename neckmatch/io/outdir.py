"""Output folders neckmatch may write into, and the marker that says which files in them are its own.

A command that writes a case's outputs (``neckmatch match``) writes into ``--out`` only when that folder

- does not exist or is empty, or
- holds the marker :data:`MARKER` (a folder neckmatch wrote before; legacy: a ``summary.json`` of neckmatch), or
- the user passed ``--force`` (then only the files neckmatch writes are replaced; nothing else is touched).

It never deletes a file it did not write: the outputs are made in a staging folder beside ``--out`` and moved in
file by file; files of an earlier run that the new run no longer writes are removed only if the marker lists
them. The marker, written last, records the command, the case id, a fingerprint of the case's input files and
the files written, so that ``render --results`` can refuse the results of another case (or of changed inputs).

Examples
--------
>>> import tempfile
>>> from pathlib import Path
>>> with tempfile.TemporaryDirectory() as d:
...     out = Path(d) / "out"
...     with write_into(out, {"command": "match", "case_id": "P1"}) as stage:
...         _ = (stage / "levels.csv").write_text("x")
...     _ = (out / "notes.txt").write_text("mine")
...     with write_into(out, {"command": "match", "case_id": "P1"}) as stage:
...         _ = (stage / "matches.csv").write_text("y")
...     sorted(p.name for p in out.iterdir()), read_marker(out)["files"]
(['matches.csv', 'neckmatch-output.json', 'notes.txt'], ['matches.csv'])
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from neckmatch.errors import InputError
from neckmatch.io.atomic import _publish_mode, replace_dir, write_text

__all__ = ["MARKER", "Legacy", "older_output", "read_marker", "check_out_dir", "write_into", "write_marker",
           "inputs_fingerprint",
           "check_results_for_case"]

MARKER = "neckmatch-output.json"
_FORMAT = "neckmatch-output/1"


#: The files an older neckmatch wrote into a folder without a marker (None: not such a folder).
Legacy = Callable[[Path], list[str] | None]


def older_output(names: Iterable[str]) -> Legacy:
    """The :data:`Legacy` of a case output folder: one with an older neckmatch's ``summary.json`` holds those of
    ``names`` that exist."""
    names = tuple(names)

    def files(folder: Path) -> list[str] | None:
        try:
            summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(summary, dict) or "neckmatch" not in summary:
            return None
        return [n for n in names if (folder / n).exists()]

    return files


def read_marker(folder: str | Path, legacy: Legacy | None = None) -> dict[str, Any] | None:
    """The folder's marker as a dict, or None if it has none.

    ``legacy``: for a folder without a marker, the files an older neckmatch wrote there (e.g. :func:`older_output`);
    returned as a marker listing them, without a command or fingerprint.
    """
    folder = Path(folder)
    try:
        doc = json.loads((folder / MARKER).read_text(encoding="utf-8"))
        if isinstance(doc, dict) and doc.get("format") == _FORMAT and isinstance(doc.get("files"), list):
            return doc
    except (OSError, ValueError):
        pass
    names = legacy(folder) if legacy is not None else None
    return None if names is None else {"format": _FORMAT, "files": sorted(names)}


def check_out_dir(out_dir: str | Path, force: bool = False, legacy: Legacy | None = None) -> dict[str, Any] | None:
    """Refuse an output folder neckmatch may not write into (module docstring); return its marker, if any.

    Raises
    ------
    InputError
        ``out_dir`` is a file, or a non-empty folder without a marker (and ``force`` is false).
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(out, "", "output folder is an existing file")
    marker = read_marker(out, legacy) if out.is_dir() else None
    if out.is_dir() and marker is None and not force and any(out.iterdir()):
        raise InputError(out, "", "output folder is not empty and holds no earlier neckmatch output; refusing to "
                         "write into it (choose an empty folder, or --force to replace only neckmatch's own files)")
    return marker


def _move_in(stage: Path, out: Path, names: list[str]) -> None:
    for name in sorted(names, key=lambda n: (not (stage / n).is_dir(), n)):  # folders first
        entry, target = stage / name, out / name
        if entry.is_dir():
            replace_dir(entry, target)
        else:
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(entry, target)


def _remove(out: Path, names: Iterable[str]) -> None:
    for name in names:
        target = out / name
        if Path(name).name != name or name in ("", ".", ".."):
            continue  # a marker edited by hand: never follow a path out of the folder
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target, ignore_errors=True)
        else:
            target.unlink(missing_ok=True)


def _marker_doc(info: dict[str, Any], files: Iterable[str], complete: bool) -> str:
    doc = {"format": _FORMAT, **info, "files": sorted(set(files)), "complete": complete}
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def write_marker(folder: str | Path, info: dict[str, Any]) -> Path:
    """Write the marker into a finished output ``folder`` (e.g. a cohort run's staging folder of one case), listing
    every entry in it as neckmatch's own; ``info`` as for :func:`write_into`."""
    folder = Path(folder)
    names = sorted(p.name for p in folder.iterdir() if p.name != MARKER)
    return write_text(_marker_doc(info, names, True), folder / MARKER)


@contextmanager
def write_into(out_dir: str | Path, info: dict[str, Any], force: bool = False, legacy: Legacy | None = None
               ) -> Iterator[Path]:
    """Yield an empty staging folder; on success move its entries into ``out_dir`` and write the marker.

    A new ``out_dir`` is the staging folder renamed (all or nothing). Into an existing one (checked with
    :func:`check_out_dir`) entries are moved one by one under a marker that lists old and new files (so a run
    killed midway leaves a folder a rerun may write into); the files of the previous marker that this run did
    not write are then removed, and the final marker lists this run's files. On failure nothing in ``out_dir``
    changes. ``info`` (JSON-able) is stored in the marker (``command``, ``case_id``, ``inputs_sha256`` ...); a
    folder whose marker names another command is refused (even with ``force``).
    """
    out = Path(out_dir)
    marker = check_out_dir(out, force, legacy)
    theirs, mine = (marker or {}).get("command"), info.get("command")
    if theirs and mine and theirs != mine:  # e.g. match into a synthetic cohort: it would remove the cases
        raise InputError(out, "", f"holds the output of 'neckmatch {theirs}'; refusing to write the output of "
                         f"'neckmatch {mine}' into it (choose another folder)")
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        yield stage
        _publish_mode(stage, directory=True)
        names = sorted(p.name for p in stage.iterdir() if p.name != MARKER)
        if not out.exists():
            write_text(_marker_doc(info, names, True), stage / MARKER)
            os.replace(stage, out)
            return
        previous = set(marker["files"]) if marker else set()
        clash = [n for n in names if (out / n).exists() and n not in previous]
        if clash and not force:
            raise InputError(out / clash[0], "", "exists and was not written by neckmatch; refusing to replace it "
                             "(--force replaces it)")
        write_text(_marker_doc(info, previous | set(names), False), out / MARKER)
        _move_in(stage, out, names)
        _remove(out, sorted(previous - set(names)))
        write_text(_marker_doc(info, names, True), out / MARKER)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def inputs_fingerprint(case_dir: str | Path) -> str:
    """SHA-256 over ``case.json`` and every input file it names (a DICOM folder: its files; the ``specimen``
    block's scans, sutures and links included), names and bytes."""
    from neckmatch.io.case import read_manifest
    from neckmatch.io.specimen import block_files

    root = Path(case_dir)
    doc = read_manifest(root)
    files = dict(doc["files"])
    files.update({field: root / rel for field, rel in block_files(doc.get("specimen")).items()})
    h = hashlib.sha256()
    paths = [("case.json", root / "case.json")]
    for field, path in sorted(files.items()):
        path = Path(path)
        members = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        paths += [(f"{field}:{p.name}", p) for p in members]
    for name, path in paths:
        h.update(name.encode() + b"\0")
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def check_results_for_case(results_dir: str | Path, case_dir: str | Path) -> None:
    """Refuse results (``neckmatch match`` output) made from another case or from other inputs than ``case_dir``.

    Raises
    ------
    InputError
        The results folder has no marker, or its case id or input fingerprint differs from the case's.
    """
    from neckmatch.io.case import read_manifest

    results = Path(results_dir)
    marker = read_marker(results)
    if marker is None or "inputs_sha256" not in marker:
        raise InputError(results, "", "holds no neckmatch match output (run `neckmatch match` first)")
    case_id = str(read_manifest(case_dir)["case_id"]).strip()
    if marker.get("case_id") != case_id:
        raise InputError(results / MARKER, "case_id", f"results of case '{marker.get('case_id')}', not of "
                         f"'{case_id}'; refusing to draw another patient's results")
    if marker["inputs_sha256"] != inputs_fingerprint(case_dir):
        raise InputError(results / MARKER, "inputs_sha256", f"results of case '{case_id}' were made from other "
                         "input files than the case folder holds now; run `neckmatch match` again")
