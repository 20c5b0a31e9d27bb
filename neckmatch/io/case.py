"""Read one case folder (format ``neckmatch-case/1``, shared/spec/case-format.md) into a :class:`~neckmatch.model.Case`.

``case.json`` is validated field by field; every file it names is read with the reader of its kind. Any bad
value raises :class:`neckmatch.errors.InputError` naming the file, the field and the value.

Examples
--------
>>> from pathlib import Path
>>> case = read_case(Path(__file__).resolve().parents[2] / "examples" / "minimal_case")
>>> case.case_id, len(case.label_map.labels()), len(case.path_nodes) > 0
('MIN01', 4, True)
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from neckmatch.errors import InputError
from neckmatch.io.ids import check_inside, validate_case_id
from neckmatch.io.labelmap import label_map_format, read_label_map
from neckmatch.io.markups import read_markups
from neckmatch.io.pathology import derive_containers, read_containers, read_path_nodes
from neckmatch.io.reads import read_reads
from neckmatch.io.sanity import check_landmarks
from neckmatch.io.specimen import read_specimen
from neckmatch.model import REQUIRED_LANDMARKS, Case, Side, SurgicalLevel, pn_status

__all__ = ["read_case", "read_manifest", "CASE_FORMAT", "MAX_MANIFEST_BYTES", "EXTERNAL_FILES_ENV"]

CASE_FORMAT = "neckmatch-case/1"
MAX_MANIFEST_BYTES = 1 << 20  # a case.json is a few hundred bytes; a larger one is refused before it is parsed
EXTERNAL_FILES_ENV = "NECKMATCH_ALLOW_EXTERNAL_FILES"  # "1": case.json may name files outside the case folder
_KNOWN_KEYS = {"format", "case_id", "primary_side", "dissected", "mri", "pathology", "specimen"}


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _load_manifest_json(path: Path) -> Any:
    """``case.json`` parsed: at most :data:`MAX_MANIFEST_BYTES`, UTF-8, strict JSON (no NaN / Infinity)."""
    try:
        size = path.stat().st_size
        if size > MAX_MANIFEST_BYTES:
            raise InputError(path, "", f"{size} bytes; a case.json may hold at most {MAX_MANIFEST_BYTES} bytes")
        return json.loads(path.read_bytes().decode("utf-8"), parse_constant=_no_constant)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(path, "", f"not valid JSON (UTF-8): {exc}") from None
    except RecursionError:
        raise InputError(path, "", "not valid JSON: nested too deeply") from None


def external_files_allowed(flag: bool | None) -> bool:
    """``flag``, or where None the environment's :data:`EXTERNAL_FILES_ENV` (set by ``--allow-external-files``)."""
    return flag if flag is not None else os.environ.get(EXTERNAL_FILES_ENV, "") == "1"


def read_manifest(case_dir: str | Path, allow_external_files: bool | None = None) -> dict[str, Any]:
    """Read and validate ``case_dir/case.json``; return it as a dict with absolute paths under ``"files"``.

    ``files`` maps ``mri.nodes``, ``mri.landmarks``, ``mri.reads``, ``mri.image``, ``pathology.nodes`` and
    ``pathology.containers`` (those given) to existing files. Those files must lie inside the case folder (no
    absolute path, no ``..``, symlinks resolved) unless ``allow_external_files`` (default: the environment
    variable ``NECKMATCH_ALLOW_EXTERNAL_FILES=1``, which ``neckmatch --allow-external-files`` sets).
    """
    case_dir = Path(case_dir)
    if not case_dir.is_dir():
        raise InputError(case_dir, "", f"case folder does not exist: '{case_dir}'")
    path = case_dir / "case.json"
    if not path.is_file():
        raise InputError(path, "", "missing: a case folder needs a case.json manifest")
    doc = _load_manifest_json(path)
    if not isinstance(doc, dict):
        raise InputError(path, "", f"must be a JSON object, got {type(doc).__name__}")
    if doc.get("format") != CASE_FORMAT:
        raise InputError(path, "format", f"must be '{CASE_FORMAT}', got {doc.get('format')!r}")
    for key in ("case_id", "primary_side"):
        if not isinstance(doc.get(key), str) or not doc[key].strip():
            raise InputError(path, key, f"must be a non-empty string, got {doc.get(key)!r}")
    validate_case_id(doc["case_id"].strip(), path)
    if doc["primary_side"] not in ("R", "L", "midline"):
        raise InputError(path, "primary_side", f"must be R, L or midline, got {doc['primary_side']!r}")
    doc["dissected_levels"] = _dissected(path, doc.get("dissected"))
    doc["files"] = _files(path, case_dir, doc, external_files_allowed(allow_external_files))
    return doc


def _dissected(path: Path, value: Any) -> dict[Side, frozenset[SurgicalLevel]]:
    if not isinstance(value, dict):
        raise InputError(path, "dissected", f"must be an object {{side: [levels]}}, got {value!r}")
    out: dict[Side, frozenset[SurgicalLevel]] = {}
    for side, levels in value.items():
        try:
            s = Side(side)
        except ValueError:
            raise InputError(path, "dissected", f"side must be R or L, got {side!r}") from None
        if not isinstance(levels, list):
            raise InputError(path, f"dissected.{side}", f"must be a list of surgical levels, got {levels!r}")
        try:
            out[s] = frozenset(SurgicalLevel(str(v).strip().upper()) for v in levels)
        except ValueError:
            bad = next(v for v in levels if str(v).strip().upper() not in SurgicalLevel._value2member_map_)
            names = ", ".join(x.value for x in SurgicalLevel)
            raise InputError(path, f"dissected.{side}", f"{bad!r} is not a surgical level ({names})") from None
    return out


def _files(path: Path, case_dir: Path, doc: dict[str, Any], allow_external: bool = False) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for section, keys, required in (("mri", ("nodes", "landmarks", "reads", "image"), ("nodes",)),
                                    ("pathology", ("nodes", "containers"), ())):
        block = doc.get(section)
        if not isinstance(block, dict):
            raise InputError(path, section, f"must be an object naming its files, got {block!r}")
        for key in keys:
            field = f"{section}.{key}"
            value = block.get(key)
            if value is None and key not in required:
                continue
            if not isinstance(value, str) or not value.strip():
                raise InputError(path, field, f"must be a file path relative to the case folder, got {value!r}")
            if not allow_external:
                check_inside(path, field, case_dir, value)
            elif "\0" in value:
                raise InputError(path, field, f"not a file name: {value!r}")
            target = case_dir / value
            # mri.nodes (and mri.image) may also be a folder holding one DICOM file (as PACS exports write it)
            if not (target.is_file() or (field in ("mri.nodes", "mri.image") and target.is_dir())):
                raise InputError(path, field, f"names '{value}', which does not exist in {case_dir}")
            if field == "mri.image":
                try:
                    label_map_format(target)
                except InputError:
                    raise InputError(path, field, f"unsupported image format '{value}' (NIfTI or NRRD)") from None
            files[field] = target
    if "pathology.nodes" not in files and "pathology.containers" not in files:
        raise InputError(path, "pathology", "must name 'nodes' and/or 'containers', got neither")
    return files


def read_case(case_dir: str | Path, required_landmarks: Iterable[str] | None = REQUIRED_LANDMARKS,
              allow_external_files: bool | None = None) -> Case:
    """Read a whole case folder.

    Parameters
    ----------
    case_dir : str or Path
        The folder holding ``case.json``.
    required_landmarks : iterable of str or None
        Landmark names the markups must hold (default all of ``model.REQUIRED_LANDMARKS``); ``()`` for none.
    allow_external_files : bool, optional
        Let ``case.json`` name files outside the case folder (see :func:`read_manifest`).

    Returns
    -------
    Case
        With ``containers`` from ``pathology.containers`` (checked against the node rows when both exist) or
        derived from the node rows; ``landmarks`` None where ``case.json`` names none; ``image_path`` the MR
        image (``mri.image``, display only, its voxels not read here) or None.
    """
    doc = read_manifest(case_dir, allow_external_files)
    files = doc["files"]
    manifest = Path(case_dir) / "case.json"
    try:
        pn_status(doc.get("pN"))  # optional pathological N category: the patient-level reference
    except ValueError as exc:
        raise InputError(manifest, "pN", str(exc)) from None
    label_map = read_label_map(files["mri.nodes"])
    landmarks = read_markups(files["mri.landmarks"], required_landmarks) if "mri.landmarks" in files else None
    if landmarks is not None:
        check_landmarks(files["mri.landmarks"], landmarks, label_map)
    reads = read_reads(files["mri.reads"], label_map.labels()) if "mri.reads" in files else []
    nodes = read_path_nodes(files["pathology.nodes"]) if "pathology.nodes" in files else []
    if "pathology.containers" in files:
        containers = read_containers(files["pathology.containers"], nodes if "pathology.nodes" in files else None)
    else:
        containers = derive_containers(nodes)
    specimen = None
    if "specimen" in doc:
        specimen = read_specimen(case_dir, doc["specimen"], nodes, containers,
                                 external_files_allowed(allow_external_files))
    try:
        return Case(
            case_id=doc["case_id"].strip(), primary_side=doc["primary_side"], dissected=doc["dissected_levels"],
            label_map=label_map, landmarks=landmarks, path_nodes=tuple(nodes), containers=tuple(containers),
            reads=tuple(reads), root=Path(case_dir), specimen=specimen, image_path=files.get("mri.image"),
            extra={k: v for k, v in doc.items() if k not in _KNOWN_KEYS | {"files", "dissected_levels"}},
        )
    except (ValueError, TypeError) as exc:
        raise InputError(manifest, "", str(exc)) from None
