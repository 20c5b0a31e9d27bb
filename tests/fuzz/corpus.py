"""The hostile-input corpus: 200+ inputs a new user or an attacker may hand the ``neckmatch`` command line.

Every entry is generated (no committed binaries): a mutation of ``examples/minimal_case`` (or an argv alone) and
the command line to run on it. :func:`run_entry` runs one entry through :func:`neckmatch.cli.main` in-process and
classifies what happened:

- ``clean``: the expected outcome (bad input: exit code 2, one line on stderr (usage errors: at most three),
  no traceback, nothing written; good input: exit code 0);
- ``traceback``: a Python traceback reached the user (or an exception escaped ``main``);
- ``multi-line``: an error of several lines;
- ``exit-code``: one line, but an exit code other than the documented one;
- ``partial``: a failed command left output behind, or deleted a file it did not write;
- ``accepted``: bad input succeeded (exit 0), or wrote outside ``--out`` / leaked a name or raw markup;
- ``hang``: did not finish within the measuring script's time limit (``tests/fuzz/measure.py`` only).

``tests/fuzz/test_corpus.py`` asserts ``clean`` for every entry; ``tests/fuzz/measure.py`` prints the counts.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import shutil
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "minimal_case"

Mutator = Callable[[Path], None]


@dataclass(frozen=True)
class Entry:
    """One hostile input.

    ``argv`` may contain ``{case}``, ``{out}``, ``{tmp}`` placeholders; ``mutate`` changes the copied case
    folder (``{case}``) before the run; ``expect`` is ``"error"`` or ``"ok"``; ``check`` inspects ``tmp`` after
    the run and returns a reason the outcome is wrong (``""`` if fine).
    """

    name: str
    klass: str
    argv: tuple[str, ...]
    mutate: Mutator | None = None
    expect: str = "error"
    check: Callable[[Path], str] | None = None
    prepare: Mutator | None = None  # runs on tmp (e.g. a user's file in --out) after the case is copied
    slow: bool = False  # too slow before the fixes to run in-process (measure.py runs it in a subprocess)
    max_lines: int = 1
    code: int = 2  # the exit code an expected failure must give
    tags: tuple[str, ...] = field(default_factory=tuple)


# ----------------------------------------------------------------------------------------------- helpers


def _json_edit(rel: str, edit: Callable[[dict], object]) -> Mutator:
    def mutate(case: Path) -> None:
        path = case / rel
        doc = json.loads(path.read_text(encoding="utf-8"))
        result = edit(doc)
        path.write_text(json.dumps(doc if result is None else result), encoding="utf-8")

    return mutate


def _set(keys: str, value: object) -> Callable[[dict], None]:
    def edit(doc: dict) -> None:
        *head, last = keys.split(".")
        node = doc
        for k in head:
            node = node[k]
        node[last] = value

    return edit


def _delete(keys: str) -> Callable[[dict], None]:
    def edit(doc: dict) -> None:
        *head, last = keys.split(".")
        node = doc
        for k in head:
            node = node[k]
        del node[last]

    return edit


def _write_bytes(rel: str, data: bytes) -> Mutator:
    def mutate(case: Path) -> None:
        (case / rel).parent.mkdir(parents=True, exist_ok=True)
        (case / rel).write_bytes(data)

    return mutate


def _truncate(rel: str, fraction: float) -> Mutator:
    def mutate(case: Path) -> None:
        data = (case / rel).read_bytes()
        (case / rel).write_bytes(data[: int(len(data) * fraction)])

    return mutate


def _csv_cell(rel: str, row: int, column: str, value: str) -> Mutator:
    """Set one cell (data row ``row``, 1-based) of a CSV file to ``value`` (raw text, no quoting)."""

    def mutate(case: Path) -> None:
        lines = (case / rel).read_text(encoding="utf-8").splitlines()
        header = lines[0].split(",")
        cells = lines[row].split(",")
        cells[header.index(column)] = value
        lines[row] = ",".join(cells)
        (case / rel).write_text("\n".join(lines) + "\n", encoding="utf-8")

    return mutate


def _csv_text(rel: str, edit: Callable[[str], str]) -> Mutator:
    def mutate(case: Path) -> None:
        (case / rel).write_text(edit((case / rel).read_text(encoding="utf-8")), encoding="utf-8")

    return mutate


def _landmarks(edit: Callable[[dict[str, np.ndarray], dict[str, np.ndarray]], None]) -> Mutator:
    """Edit the landmarks as RAS arrays (points by name, curves by name) and write them back (RAS)."""

    def mutate(case: Path) -> None:
        from neckmatch.io.markups import read_markups, write_markups
        from neckmatch.model import Curve, Landmarks

        path = case / "mri" / "landmarks.mrk.json"
        lms = read_markups(path, required=())
        points = {k: np.array(v, dtype=float) for k, v in lms.points.items()}
        curves = {k: np.array(c.points, dtype=float) for k, c in lms.curves.items()}
        edit(points, curves)
        write_markups(path, Landmarks(points, {k: Curve(k, v) for k, v in curves.items()}), coordinate_system="RAS")

    return mutate


def _markups_raw(edit: Callable[[dict], object]) -> Mutator:
    return _json_edit("mri/landmarks.mrk.json", edit)


def _label_map(make: Callable[[], tuple[np.ndarray, np.ndarray]], name: str = "mri/nodes.nii.gz") -> Mutator:
    """Replace the label map by ``make() -> (data, affine)`` written raw with nibabel (no neckmatch checks)."""

    def mutate(case: Path) -> None:
        import nibabel as nib

        data, affine = make()
        (case / "mri" / "nodes.nii.gz").unlink()
        hdr = nib.Nifti1Header()
        hdr.set_data_dtype(data.dtype)
        hdr.set_data_shape(data.shape)
        hdr["sform_code"], hdr["qform_code"] = 1, 0
        hdr["srow_x"], hdr["srow_y"], hdr["srow_z"] = affine[0], affine[1], affine[2]
        nib.save(nib.Nifti1Image(data, None, header=hdr), str(case / name))
        if name != "mri/nodes.nii.gz":
            _set("mri.nodes", name)(doc := json.loads((case / "case.json").read_text()))
            (case / "case.json").write_text(json.dumps(doc))

    return mutate


def _nifti_header_only(shape: tuple[int, ...], dtype: str = "int16") -> Mutator:
    """A .nii.gz whose header claims ``shape`` but whose data is a few bytes (a huge file, as far as the
    header tells)."""

    def mutate(case: Path) -> None:
        import nibabel as nib

        hdr = nib.Nifti1Header()
        hdr.set_data_dtype(np.dtype(dtype))
        hdr.set_data_shape(shape)
        hdr.set_sform(np.diag([1.0, 1.0, 1.0, 1.0]), code=1)
        raw = hdr.binaryblock + b"\0" * 4 + b"\0" * 1024
        (case / "mri" / "nodes.nii.gz").write_bytes(gzip.compress(raw))

    return mutate


def _many_labels(n: int) -> Mutator:
    """A label map of ``n`` one-voxel nodes spread over the neck (landmarks unchanged)."""

    def make() -> tuple[np.ndarray, np.ndarray]:
        import nibabel as nib

        img = nib.load(str(EXAMPLE / "mri" / "nodes.nii.gz"))
        shape = img.shape
        data = np.zeros(shape, dtype=np.int32)
        rng = np.random.default_rng(0)
        flat = rng.choice(data.size, size=n, replace=False)
        data.reshape(-1)[flat] = np.arange(1, n + 1)
        return data, img.affine

    return _label_map(make)


def _symlink_outside(field_: str, target_name: str) -> Mutator:
    """``case.json`` names a symlink inside the case folder that points outside it."""

    def mutate(case: Path) -> None:
        outside = case.parent / "outside"
        outside.mkdir(exist_ok=True)
        section, key = field_.split(".")
        src = case / json.loads((case / "case.json").read_text())[section][key]
        shutil.copy(src, outside / target_name)
        link = case / section / f"link_{target_name}"
        link.symlink_to(outside / target_name)
        doc = json.loads((case / "case.json").read_text())
        doc[section][key] = f"{section}/link_{target_name}"
        (case / "case.json").write_text(json.dumps(doc))

    return mutate


def _outside_file(field_: str, how: str) -> Mutator:
    """``case.json`` names a file outside the case folder, by an absolute path or by ``..``."""

    def mutate(case: Path) -> None:
        outside = case.parent / "outside"
        outside.mkdir(exist_ok=True)
        section, key = field_.split(".")
        doc = json.loads((case / "case.json").read_text())
        src = case / doc[section][key]
        shutil.copy(src, outside / src.name)
        doc[section][key] = str(outside / src.name) if how == "absolute" else f"../outside/{src.name}"
        (case / "case.json").write_text(json.dumps(doc))

    return mutate


def _no_files_outside(tmp: Path) -> str:
    """Nothing was written beside the case and the output folder."""
    extra = sorted(p.name for p in tmp.iterdir() if p.name not in {"case", "out", "outside", "other", "keep"})
    return f"wrote outside --out: {extra}" if extra else ""


# ----------------------------------------------------------------------------------------------- entries

COMMANDS: dict[str, tuple[str, ...]] = {
    "inspect": ("inspect", "{case}"),
    "levels": ("levels", "{case}", "--out", "{out}"),
    "landmarks": ("landmarks", "{case}", "--out", "{out}/lm.mrk.json"),
    "match": ("match", "{case}", "--out", "{out}"),
    "render": ("render", "{case}", "--out", "{out}"),
    "synth": ("synth", "--cases", "1", "--seed", "1", "--out", "{out}"),
    "demo": ("demo", "--out", "{out}"),
    "stats": ("stats", "{case}", "--out", "{out}"),
    "stats lydata": ("stats", "lydata", "{case}/x.csv", "--out", "{out}"),
    "run": ("run", "{case}", "--out", "{out}"),
}


def _usage_entries() -> list[Entry]:
    out: list[Entry] = []
    for name, argv in COMMANDS.items():
        out.append(Entry(f"usage-unknown-option-{name}", "usage", (*argv, "--bogus"), max_lines=3))
        out.append(Entry(f"usage-missing-{name}", "usage", tuple(name.split()), max_lines=3)
                   if name not in ("demo", "stats") else
                   Entry(f"usage-extra-arg-{name}", "usage", (*argv, "extra", "more"), max_lines=3))
    bad_numbers = [
        ("levels", "--tolerance", "abc"), ("levels", "--tolerance", "nan"), ("levels", "--tolerance", "-1"),
        ("match", "--tolerance", "x"), ("match", "--auto-threshold", "2"), ("match", "--auto-threshold", "inf"),
        ("synth", "--cases", "x"), ("synth", "--cases", "-3"), ("synth", "--seed", "1.5"),
        ("demo", "--cases", "0"), ("demo", "--workers", "-1"), ("run", "--workers", "0"),
        ("run", "--tolerance", "inf"), ("stats", "--n-boot", "x"), ("stats", "--n-boot", "-5"),
        ("stats lydata", "--seed", "x"), ("synth", "--positions-fraction", "2"),
    ]
    for name, opt, value in bad_numbers:
        argv = COMMANDS[name]
        out.append(Entry(f"usage-bad-number-{name}-{opt}={value}", "usage", (*argv, opt, value), max_lines=3))
    for typo in ("mtach", "inspekt", "rnu", "stat", "levles", "--out"):
        out.append(Entry(f"usage-typo-{typo}", "usage", (typo, "x"), max_lines=3))
    out.append(Entry("usage-option-needs-value", "usage", ("match", "{case}", "--out"), max_lines=3))
    out.append(Entry("usage-stats-sub-typo", "usage", ("stats", "lydta", "x.csv"), max_lines=3))
    for argv in (("-h",), ("--help",), ("-V",), ("--version",), ("match", "-h"), ("stats", "lydata", "-h"),
                 ("run", "--help"), ("match", "-V"), ("stats", "--version")):
        out.append(Entry(f"help-{'_'.join(argv)}", "help", argv, expect="ok"))
    return out


def _manifest_entries() -> list[Entry]:
    insp = COMMANDS["inspect"]
    cj = "case.json"
    raw = [
        ("garbage", bytes(range(256))), ("empty", b""), ("list", b"[]"),
        ("null", b"null"), ("string", b'"case"'), ("number", b"42"), ("deep-nesting", b"[" * 100000),
        ("utf16", json.dumps({"format": "neckmatch-case/1"}).encode("utf-16")), ("nul-bytes", b"{\0\0\0}"),
        ("huge", b"{" + b" " * (3 << 20) + b'"format": "neckmatch-case/1"}'),
        ("latin1", "{\"format\": \"neckmatch-case/1\", \"case_id\": \"Müller\"}".encode("latin-1")),
    ]
    out = [Entry(f"manifest-{n}", "case.json", insp, _write_bytes(cj, b)) for n, b in raw]
    out.append(Entry("manifest-truncated", "case.json", insp, _truncate(cj, 0.5)))
    edits: list[tuple[str, Callable[[dict], object]]] = [
        ("format-wrong", _set("format", "neckmatch-case/9")), ("format-missing", _delete("format")),
        ("case_id-missing", _delete("case_id")), ("case_id-int", _set("case_id", 17)),
        ("case_id-empty", _set("case_id", "")), ("case_id-nan", _set("case_id", float("nan"))),
        ("primary_side-X", _set("primary_side", "X")), ("primary_side-list", _set("primary_side", ["R"])),
        ("dissected-string", _set("dissected", "all")), ("dissected-side", _set("dissected", {"Q": ["II"]})),
        ("dissected-level", _set("dissected", {"R": ["IIc"]})),
        ("dissected-nan", _set("dissected", {"R": [float("nan")]})),
        ("dissected-number", _set("dissected", {"R": 2})), ("mri-list", _set("mri", [])),
        ("mri-nodes-missing", _delete("mri.nodes")), ("mri-nodes-int", _set("mri.nodes", 3)),
        ("mri-nodes-nonexistent", _set("mri.nodes", "mri/none.nii.gz")), ("mri-nodes-dir", _set("mri.nodes", "mri")),
        ("mri-nodes-empty", _set("mri.nodes", "")), ("mri-landmarks-list", _set("mri.landmarks", ["a"])),
        ("pathology-none", _set("pathology", {})), ("pathology-null", _set("pathology", None)),
        ("pathology-nodes-nul", _set("pathology.nodes", "pathology/\0nodes.csv")),
        ("inf-value", _set("extra_number", float("inf"))),
        ("case_id-dotdot", _set("case_id", "..")), ("case_id-dot", _set("case_id", ".")),
        ("case_id-traversal", _set("case_id", "../../escape")), ("case_id-slash", _set("case_id", "a/b")),
        ("case_id-absolute", _set("case_id", "/tmp/x")),
        ("case_id-script", _set("case_id", "<script>alert(1)</script>")),
        ("case_id-long", _set("case_id", "A" * 65)), ("case_id-space", _set("case_id", "P 17")),
        ("case_id-formula", _set("case_id", "=HYPERLINK(\"http://x\")")),
        ("case_id-newline", _set("case_id", "P1\nP2")),
        ("case_id-backslash", _set("case_id", "..\\..\\x")), ("case_id-nonascii", _set("case_id", "Müller")),
    ]
    out += [Entry(f"manifest-{n}", "case.json", insp, _json_edit(cj, e)) for n, e in edits]
    for fld in ("mri.nodes", "mri.landmarks", "pathology.nodes", "mri.reads"):
        for how in ("absolute", "dotdot"):
            out.append(Entry(f"containment-{fld}-{how}", "containment", insp, _outside_file(fld, how)))
        out.append(Entry(f"containment-{fld}-symlink", "containment", insp, _symlink_outside(fld, "x" + fld[-6:])))
    # a case id that would build paths outside --out when the maps are written
    out.append(Entry("containment-render-traversal-id", "containment", COMMANDS["render"],
                     _json_edit(cj, _set("case_id", "../../escape")), check=_no_files_outside))
    out.append(Entry("containment-match-traversal-id", "containment", COMMANDS["match"],
                     _json_edit(cj, _set("case_id", "../../escape")), check=_no_files_outside))
    return out


def _nodes_entries() -> list[Entry]:
    insp, rel = COMMANDS["inspect"], "pathology/nodes.csv"
    cells = [
        ("size-nan", 1, "size_mm", "nan"), ("size-inf", 1, "size_mm", "inf"), ("size-negative", 1, "size_mm", "-3"),
        ("size-zero", 1, "size_mm", "0"), ("size-text", 1, "size_mm", "big"), ("size-overflow", 1, "size_mm", "1e309"),
        ("size-huge", 1, "size_mm", "1e12"), ("side-X", 2, "side", "X"), ("level-IIc", 2, "level", "IIc"),
        ("status-maybe", 3, "status", "maybe"), ("node-empty", 1, "node", ""), ("container-empty", 1, "container", ""),
        ("duplicate-id", 2, "node", "R-II-01"), ("cc-outside", 1, "cc", "7"), ("cc-nan", 1, "cc", "nan"),
        ("ap-negative", 1, "ap", "-0.5"), ("ap-inf", 1, "ap", "-inf"), ("container-side-disagrees", 2, "side", "L"),
    ]
    out = [Entry(f"nodes-{n}", "pathology", insp, _csv_cell(rel, r, c, v)) for n, r, c, v in cells]
    raw = [
        ("garbage", bytes(range(256)) * 4), ("empty", b""), ("utf16", "node,container\nA,B\n".encode("utf-16")),
        ("latin1-bytes", "node,container,side,level,size_mm,status\nMü,R-II,R,II,3,negative\n".encode("latin-1")),
        ("nul", b"node,container,side,level,size_mm,status\n\0\0\0,R-II,R,II,3,negative\n"),
        ("missing-column", b"node,container,side,level,size_mm\nA,R-II,R,II,3\n"),
        ("unbalanced-quote", b'node,container,side,level,size_mm,status\n"A,R-II,R,II,3,negative\n'),
        ("too-many-fields", b"node,container,side,level,size_mm,status\nA,R-II,R,II,3,negative,1,2,3,4,5,6\n"),
    ]
    out += [Entry(f"nodes-{n}", "pathology", insp, _write_bytes(rel, b)) for n, b in raw]
    out.append(Entry("nodes-truncated", "pathology", insp, _truncate(rel, 0.55)))
    out.append(Entry("nodes-fragment-unknown", "pathology", insp, _csv_text(
        rel, lambda t: t.replace("slide\n", "slide,fragment_of\n", 1).replace("A4\n", "A4,R-IX-99\n"))))
    return out


def _containers_entries() -> list[Entry]:
    insp = COMMANDS["inspect"]
    header = "container,side,level,nodes_examined,nodes_positive\n"
    good = {"R-II": "R-II,R,II,2,0", "R-III": "R-III,R,III,1,1", "R-IV": "R-IV,R,IV,1,0"}

    def with_rows(rows: dict[str, str]) -> Mutator:
        def mutate(case: Path) -> None:
            (case / "pathology" / "containers.csv").write_text(header + "\n".join(rows.values()) + "\n")
            _json_edit("case.json", _set("pathology.containers", "pathology/containers.csv"))(case)

        return mutate

    nodes = (EXAMPLE / "pathology" / "nodes.csv").read_text().splitlines()[1:]
    from collections import Counter

    counts = Counter(line.split(",")[1] for line in nodes)
    base = {c: f"{c},{c[0]},{c.split('-', 1)[1]},{n},{'1' if c == 'R-III' else '0'}" for c, n in counts.items()}
    variants = {
        "count-disagrees": {**base, "R-II": "R-II,R,II,7,0"},
        "negative-examined": {**base, "R-II": "R-II,R,II,-2,0"},
        "positive-exceeds": {**base, "R-II": "R-II,R,II,2,5"},
        "count-text": {**base, "R-II": "R-II,R,II,two,0"},
        "count-nan": {**base, "R-II": "R-II,R,II,nan,0"},
        "duplicate-container": {**base, "dup": base["R-II"]},
        "unknown-side": {**base, "R-II": "R-II,Q,II,2,0"},
        "unlisted-container": {k: v for k, v in base.items() if k != "R-II"},
        "count-float": {**base, "R-II": "R-II,R,II,2.5,0"},
        "count-huge": {**base, "R-II": "R-II,R,II,1e30,0"},
    }
    del good
    return [Entry(f"containers-{n}", "pathology", insp, with_rows(rows)) for n, rows in variants.items()]


def _reads_entries() -> list[Entry]:
    insp, rel = COMMANDS["inspect"], "mri/reads.csv"
    cells = [("score-nan", 1, "score", "nan"), ("score-inf", 1, "score", "inf"), ("score-text", 1, "score", "high"),
             ("node-unknown", 1, "node", "99"), ("node-text", 1, "node", "one"), ("node-negative", 1, "node", "-1"),
             ("malignant-maybe", 1, "malignant", "maybe"), ("reader-empty", 1, "reader", "")]
    out = [Entry(f"reads-{n}", "reads", insp, _csv_cell(rel, r, c, v)) for n, r, c, v in cells]
    out.append(Entry("reads-garbage", "reads", insp, _write_bytes(rel, bytes(range(256)))))
    out.append(Entry("reads-missing-column", "reads", insp, _write_bytes(rel, b"node,reader\n1,R1\n")))
    out.append(Entry("reads-duplicate", "reads", insp, _csv_text(rel, lambda t: t + t.splitlines()[1] + "\n")))
    return out


def _swap_lr(points: dict[str, np.ndarray], curves: dict[str, np.ndarray]) -> None:
    for store in (points, curves):
        for name in [k for k in store if k.endswith("_R")]:
            other = name[:-2] + "_L"
            store[name], store[other] = store[other], store[name]


def _shift(name: str, dz: float = 0.0, dx: float = 0.0) -> Callable[[dict, dict], None]:
    def edit(points: dict[str, np.ndarray], curves: dict[str, np.ndarray]) -> None:
        store = points if name in points else curves
        store[name] = store[name] + np.array([dx, 0.0, dz])

    return edit


def _landmark_entries() -> list[Entry]:
    insp, rel = COMMANDS["inspect"], "mri/landmarks.mrk.json"

    def set_point(name: str, value: object) -> Callable[[dict], None]:
        def edit(doc: dict) -> None:
            for mk in doc["markups"]:
                for cp in mk["controlPoints"]:
                    if cp.get("label") == name or (mk.get("name") == name):
                        cp["position"] = value
                        return

        return edit

    def hyoid_above_skull(p: dict, c: dict) -> None:
        p["hyoid_body_inferior"] = p["skull_base"] + np.array([0.0, 0.0, 20.0])

    def cricoid_above_hyoid(p: dict, c: dict) -> None:
        p["cricoid_arch_inferior"], p["hyoid_body_inferior"] = p["hyoid_body_inferior"], p["cricoid_arch_inferior"]

    def manubrium_above_cricoid(p: dict, c: dict) -> None:
        p["manubrium_superior"] = p["cricoid_arch_inferior"] + np.array([0.0, 0.0, 5.0])

    def clavicles_swapped(p: dict, c: dict) -> None:
        p["clavicle_superior_L"], p["clavicle_superior_R"] = p["clavicle_superior_R"], p["clavicle_superior_L"]

    semantic = [
        ("lower-above-upper-hyoid", hyoid_above_skull), ("lower-above-upper-cricoid", cricoid_above_hyoid),
        ("lower-above-upper-manubrium", manubrium_above_cricoid), ("left-right-swapped", _swap_lr),
        ("clavicles-swapped", clavicles_swapped), ("point-metres-away", _shift("skull_base", dz=5000.0)),
        ("point-outside-image", _shift("manubrium_superior", dz=-400.0)),
        ("curve-metres-away", _shift("SCM_posterior_R", dx=3000.0)),
        ("curve-far-left", _shift("carotid_medial_L", dx=-900.0)),
    ]
    out = [Entry(f"landmarks-{n}", "landmarks", insp, _landmarks(e)) for n, e in semantic]
    raw = [("garbage", bytes(range(256))), ("empty", b""), ("list", b"[]"), ("object", b"{}"),
           ("markups-string", b'{"markups": "x"}'), ("markups-null-items", b'{"markups": [null, 3]}'),
           ("utf16", json.dumps({"markups": []}).encode("utf-16")), ("deep", b'{"markups": ' + b"[" * 50000)]
    out += [Entry(f"landmarks-{n}", "landmarks", insp, _write_bytes(rel, b)) for n, b in raw]
    out.append(Entry("landmarks-truncated", "landmarks", insp, _truncate(rel, 0.6)))
    json_edits: list[tuple[str, Callable[[dict], object]]] = [
        ("position-nan", set_point("skull_base", [float("nan"), 0, 0])),
        ("position-inf", set_point("skull_base", [float("inf"), 0, 0])),
        ("position-text", set_point("skull_base", ["a", "b", "c"])),
        ("position-short", set_point("skull_base", [1.0, 2.0])),
        ("position-null", set_point("skull_base", None)),
        ("position-huge", set_point("skull_base", [1e308, 1e308, 1e308])),
        ("coordinate-system", lambda d: [mk.__setitem__("coordinateSystem", "XYZ") for mk in d["markups"]]),
        ("control-points-dict", lambda d: d["markups"][0].__setitem__("controlPoints", {"a": 1})),
        ("missing-landmark", lambda d: d["markups"][0]["controlPoints"].pop(0)),
        ("curve-one-point",
         lambda d: d["markups"][1].__setitem__("controlPoints", d["markups"][1]["controlPoints"][:1])),
        ("duplicate-point",
         lambda d: d["markups"][0]["controlPoints"].append(dict(d["markups"][0]["controlPoints"][0]))),
        ("type-unknown", lambda d: d["markups"][0].__setitem__("type", 17)),
    ]
    out += [Entry(f"landmarks-{n}", "landmarks", insp, _markups_raw(e)) for n, e in json_edits]
    return out


def _labelmap_entries() -> list[Entry]:
    insp, rel = COMMANDS["inspect"], "mri/nodes.nii.gz"
    eye = np.eye(4)
    raw = [("garbage", bytes(range(256)) * 8), ("empty", b""), ("text", b"hello"),
           ("gzip-of-garbage", gzip.compress(bytes(range(256)) * 4))]
    out = [Entry(f"labelmap-{n}", "labelmap", insp, _write_bytes(rel, b)) for n, b in raw]
    out.append(Entry("labelmap-truncated", "labelmap", insp, _truncate(rel, 0.5)))
    made: list[tuple[str, Callable[[], tuple[np.ndarray, np.ndarray]]]] = [
        ("4d", lambda: (np.ones((4, 4, 4, 3), np.uint8), eye)),
        ("2d", lambda: (np.ones((4, 4), np.uint8), eye)),
        ("float-fractional", lambda: (np.full((4, 4, 4), 1.5, np.float32), eye)),
        ("float-nan", lambda: (np.full((4, 4, 4), np.nan, np.float32), eye)),
        ("negative-labels", lambda: (np.full((4, 4, 4), -2, np.int16), eye)),
        ("zero-affine", lambda: (np.ones((4, 4, 4), np.uint8), np.diag([0.0, 0.0, 0.0, 1.0]))),
        ("nan-affine", lambda: (np.ones((4, 4, 4), np.uint8), np.full((4, 4), np.nan))),
        ("huge-label", lambda: (np.full((4, 4, 4), 2**40, np.int64), eye)),
        ("all-background", lambda: (np.zeros((8, 8, 8), np.uint8), eye)),
        ("complex", lambda: (np.ones((4, 4, 4), np.complex64), eye)),
    ]
    out += [Entry(f"labelmap-{n}", "labelmap", insp, _label_map(m)) for n, m in made]
    out.append(Entry("labelmap-nrrd-garbage", "labelmap", insp, _label_map_file("mri/nodes.nrrd", b"NRRD0004\nxx\n")))
    out.append(Entry("labelmap-nrrd-huge-header", "labelmap", insp, _label_map_file(
        "mri/nodes.nrrd", b"NRRD0004\ntype: short\ndimension: 3\nsizes: 4000 4000 4000\nencoding: raw\nendian: little\n"
        b"space: RAS\nspace directions: (1,0,0) (0,1,0) (0,0,1)\nspace origin: (0,0,0)\n\n\0\0\0\0")))
    out.append(Entry("labelmap-dcm-garbage", "labelmap", insp, _label_map_file("mri/nodes.dcm", b"DICM" * 40)))
    out.append(Entry("labelmap-unsupported-ext", "labelmap", insp, _label_map_file("mri/nodes.png", b"\x89PNG")))
    out.append(Entry("labelmap-empty-dicom-folder", "labelmap", insp, _label_map_dir("mri/seg")))
    out.append(Entry("labelmap-2GB-by-header", "huge", insp, _nifti_header_only((1200, 1200, 800))))
    out.append(Entry("labelmap-2GB-by-header-int64", "huge", insp, _nifti_header_only((800, 800, 400), "int64")))
    out.append(Entry("labelmap-10000-labels", "huge", COMMANDS["match"], _many_labels(10000), slow=True))
    return out


def _specimen(edit: Callable[[dict], object] | None = None, sutures: dict[str, list[float]] | None = None,
              links: str | bytes | None = None, after: Mutator | None = None) -> Mutator:
    """Give the case the valid specimen block of ``tests/io/test_specimen.py`` (one piece of the right side,
    containers R-II and R-III, specimen nodes 1, 2 and 5, two links), then change its ``case.json`` block
    (``edit``), its sutures, its ``links.csv`` text or bytes, or anything else (``after``, on the case folder)."""

    def mutate(case: Path) -> None:
        from tests.io.test_specimen import _write

        _write(case, sutures=sutures, links=links if isinstance(links, str) else None)
        if isinstance(links, bytes):
            (case / "specimen" / "links.csv").write_bytes(links)
        if edit is not None:
            doc = json.loads((case / "case.json").read_text(encoding="utf-8"))
            result = edit(doc["specimen"])
            if result is not None:
                doc["specimen"] = result
            (case / "case.json").write_text(json.dumps(doc), encoding="utf-8")
        if after is not None:
            after(case)

    return mutate


def _image(key: str, value: object) -> Callable[[dict], None]:
    def edit(block: dict) -> None:
        block["images"][0][key] = value

    return edit


def _specimen_entries() -> list[Entry]:
    from tests.io.test_specimen import SUTURES

    insp, rel = COMMANDS["inspect"], "specimen/R.nii.gz"
    s = {**SUTURES, "medial": [-8.0, 0.0, 0.0]}

    def moved(name: str, to: list[float]) -> dict[str, list[float]]:
        return {**s, name: to}

    def without(name: str) -> dict[str, list[float]]:
        return {k: v for k, v in s.items() if k != name}

    block: list[tuple[str, Callable[[dict], object]]] = [
        ("block-list", lambda b: [b]), ("block-string", lambda b: "specimen/R.nii.gz"),
        ("images-empty", lambda b: b.__setitem__("images", [])), ("images-missing", lambda b: b.pop("images")),
        ("images-null-entry", lambda b: b.__setitem__("images", [None])),
        ("unknown-key", lambda b: b.__setitem__("scanner", "7T")),
        ("id-empty", _image("id", " ")), ("id-number", _image("id", 7)),
        ("id-twice", lambda b: b["images"].append(dict(b["images"][0]))),
        ("side-unknown", _image("side", "X")), ("side-missing", lambda b: b["images"][0].pop("side")),
        ("container-unknown", _image("containers", ["R-XX"])), ("container-other-side", _image("containers", ["L-II"])),
        ("containers-string", _image("containers", "R-II")), ("containers-empty", _image("containers", [])),
        ("nodes-missing-file", _image("nodes", "specimen/none.nii.gz")), ("nodes-null", _image("nodes", None)),
        ("nodes-dotdot", _image("nodes", "../outside/R.nii.gz")), ("nodes-absolute", _image("nodes", "/etc/passwd")),
        ("nodes-folder", _image("nodes", "specimen")),
        ("orientation-missing-file", _image("orientation", "specimen/none.mrk.json")),
        ("orientation-missing", lambda b: b["images"][0].pop("orientation")),
        ("links-missing-file", lambda b: b.__setitem__("links", "specimen/none.csv")),
        ("links-number", lambda b: b.__setitem__("links", 3)),
    ]
    out = [Entry(f"specimen-{n}", "specimen", insp, _specimen(edit=e)) for n, e in block]
    out.append(Entry("specimen-valid", "specimen", insp, _specimen(), expect="ok"))
    out.append(Entry("specimen-valid-match", "specimen", COMMANDS["match"], _specimen(), expect="ok"))
    raw = [("garbage", bytes(range(256)) * 8), ("empty", b""), ("gzip-of-garbage", gzip.compress(b"\1" * 900))]
    out += [Entry(f"specimen-labelmap-{n}", "specimen", insp, _specimen(after=_write_bytes(rel, b))) for n, b in raw]
    out.append(Entry("specimen-labelmap-truncated", "specimen", insp, _specimen(after=_truncate(rel, 0.5))))
    out.append(Entry("specimen-labelmap-no-nodes-is-matched", "specimen", COMMANDS["match"], _specimen(
        links="path_node,image,specimen_node\n", after=_specimen_map(np.zeros((6, 6, 6), np.uint8))), expect="ok"))
    out.append(Entry("specimen-labelmap-1001-labels", "huge", insp, _specimen(
        after=_specimen_map(np.arange(1, 1002, dtype=np.uint16).reshape(7, 11, 13)))))
    out.append(Entry("specimen-labelmap-fractional", "specimen", insp,
                     _specimen(after=_specimen_map(np.full((6, 6, 6), 2.5, np.float32)))))
    sutures = [
        ("anterior-missing", without("anterior")), ("cranial-missing", without("cranial")),
        ("label-unknown", {**s, "superior": [0.0, 0.0, 50.0]}),
        ("cranial-on-caudal", moved("caudal", s["cranial"])),
        ("cranial-within-half-mm-of-caudal", moved("caudal", [0.3, 0.0, 40.2])),
        ("anterior-on-the-cranio-caudal-line", moved("anterior", [0.0, 0.0, 12.0])),
        ("anterior-on-posterior", {**s, "posterior": [0.0, 20.0, 5.0]}),
        ("medial-on-lateral", moved("medial", s["lateral"])),
        ("metres-away", moved("anterior", [0.0, 20000.0, 0.0])), ("nan", moved("cranial", [float("nan"), 0.0, 0.0])),
        ("inf", moved("caudal", [0.0, 0.0, float("-inf")])),
    ]
    out += [Entry(f"specimen-sutures-{n}", "specimen", insp, _specimen(sutures=v)) for n, v in sutures]
    out.append(Entry("specimen-sutures-garbage", "specimen", insp,
                     _specimen(after=_write_bytes("specimen/R.mrk.json", bytes(range(256))))))
    out.append(Entry("specimen-sutures-curve", "specimen", insp, _specimen(after=_json_edit(
        "specimen/R.mrk.json", lambda d: d["markups"][0].__setitem__("type", "Curve")))))
    head = "path_node,image,specimen_node,certainty\n"
    links: list[tuple[str, str | bytes]] = [
        ("node-unknown", head + "R-IX-99,R,2,sure\n"), ("image-unknown", head + "R-II-01,Q,2,sure\n"),
        ("label-absent", head + "R-II-01,R,9,sure\n"), ("label-fraction", head + "R-II-01,R,2.5,sure\n"),
        ("label-negative", head + "R-II-01,R,-2,sure\n"), ("label-huge", head + "R-II-01,R,99999999999999999999,\n"),
        ("certainty-unknown", head + "R-II-01,R,2,maybe\n"), ("node-twice", head + "R-II-01,R,2,\nR-II-01,R,3,\n"),
        ("column-missing", "path_node,image\nR-II-01,R\n"), ("empty-file", b""), ("binary", bytes(range(256))),
        ("latin1", "path_node,image,specimen_node\nR-II-01,R,2\n# f\xfchrt\n".encode("latin-1")),
        ("quote-unclosed", head + '"R-II-01,R,2,sure\n'),
    ]
    out += [Entry(f"specimen-links-{n}", "specimen", insp, _specimen(links=t)) for n, t in links]
    out.append(Entry("specimen-nodes-symlink-outside", "containment", insp, _specimen(after=_symlink_specimen)))
    return out


def _specimen_map(data: np.ndarray) -> Mutator:
    """Replace the specimen piece's label map by ``data`` (0.5 mm voxels) written raw with nibabel."""

    def mutate(case: Path) -> None:
        import nibabel as nib

        hdr = nib.Nifti1Header()
        hdr.set_data_dtype(data.dtype)
        hdr.set_sform(np.diag([0.5, 0.5, 0.5, 1.0]), code=1)
        nib.save(nib.Nifti1Image(data, None, header=hdr), str(case / "specimen" / "R.nii.gz"))

    return mutate


def _symlink_specimen(case: Path) -> None:
    """The piece's label map is a symlink inside the case folder to a file outside it."""
    outside = case.parent / "outside"
    outside.mkdir(exist_ok=True)
    shutil.move(str(case / "specimen" / "R.nii.gz"), outside / "R.nii.gz")
    (case / "specimen" / "R.nii.gz").symlink_to(outside / "R.nii.gz")


def _label_map_file(rel: str, data: bytes) -> Mutator:
    def mutate(case: Path) -> None:
        (case / "mri" / "nodes.nii.gz").unlink()
        (case / rel).write_bytes(data)
        _json_edit("case.json", _set("mri.nodes", rel))(case)

    return mutate


def _label_map_dir(rel: str) -> Mutator:
    def mutate(case: Path) -> None:
        (case / rel).mkdir()
        _json_edit("case.json", _set("mri.nodes", rel))(case)

    return mutate


def _constraints(text: str | bytes) -> Mutator:
    def mutate(case: Path) -> None:
        data = text.encode() if isinstance(text, str) else text
        (case.parent / "keep").mkdir(exist_ok=True)
        (case.parent / "keep" / "constraints.csv").write_bytes(data)

    return mutate


def _constraint_entries() -> list[Entry]:
    argv = (*COMMANDS["match"], "--constraints", "{tmp}/keep/constraints.csv")
    h = "mr_node,path_node,action\n"
    texts: list[tuple[str, str | bytes]] = [
        ("forced-and-forbidden", h + "1,R-II-01,must_link\n1,R-II-01,cannot_link\n"),
        ("path-node-two-partners", h + "1,R-II-01,must_link\n2,R-II-01,must_link\n"),
        ("mr-node-three-partners", h + "1,R-II-01,must_link\n1,R-II-02,must_link\n1,R-IV-01,must_link\n"),
        ("across-sides", h + "1,L-II-01,must_link\n"),
        ("linked-and-unmatched", h + "1,R-II-01,must_link\n1,,unmatched\n"),
        ("unknown-mr", h + "99,R-II-01,must_link\n"), ("unknown-path", h + "1,X-1,must_link\n"),
        ("bad-action", h + "1,R-II-01,merge\n"), ("missing-column", "mr_node,action\n1,unmatched\n"),
        ("garbage", bytes(range(256))), ("utf16", (h + "1,R-II-01,must_link\n").encode("utf-16")),
        ("mr-nan", h + "nan,R-II-01,must_link\n"), ("unmatched-both", h + "1,R-II-01,unmatched\n"),
    ]
    return [Entry(f"constraints-{n}", "constraints", argv, _constraints(t)) for n, t in texts]


def _user_file(rel: str, text: str = "kept") -> Mutator:
    def prepare(tmp: Path) -> None:
        (tmp / "out" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp / "out" / rel).write_text(text)

    return prepare


def _kept(rel: str, text: str = "kept") -> Callable[[Path], str]:
    def check(tmp: Path) -> str:
        path = tmp / "out" / rel
        return "" if path.is_file() and path.read_text() == text else f"deleted or changed the user's {rel}"

    return check


def _earlier_output_then_user_file(tmp: Path) -> None:
    from neckmatch import cli

    _run_quiet(cli, ["match", str(tmp / "case"), "--out", str(tmp / "out")])
    (tmp / "out" / "my_constraints.csv").write_text("kept")


def _results_of_other_case(tmp: Path) -> None:
    from neckmatch import cli

    other = tmp / "other"
    shutil.copytree(EXAMPLE, other)
    doc = json.loads((other / "case.json").read_text())
    doc["case_id"] = "OTHER1"
    (other / "case.json").write_text(json.dumps(doc))
    _run_quiet(cli, ["match", str(other), "--out", str(tmp / "keep" / "results")])


def _results_of_changed_inputs(tmp: Path) -> None:
    from neckmatch import cli

    other = tmp / "other"
    shutil.copytree(tmp / "case", other)
    lines = (other / "pathology" / "nodes.csv").read_text().splitlines()
    (other / "pathology" / "nodes.csv").write_text("\n".join(lines[:-1]) + "\n")
    _run_quiet(cli, ["match", str(other), "--out", str(tmp / "keep" / "results")])


def _run_quiet(cli: object, argv: list[str]) -> int:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        old = sys.argv
        sys.argv = ["neckmatch", *argv]
        try:
            cli.main()  # type: ignore[attr-defined]
        except SystemExit as exc:
            return int(exc.code or 0)
        finally:
            sys.argv = old
    return 0


def _report_has_no_raw_script(tmp: Path) -> str:
    report = tmp / "out" / "report.html"
    if report.is_file() and "<script>" in report.read_text(encoding="utf-8"):
        return "a <script> from a case id reached report.html raw"
    return ""


def _no_folder_name(tmp: Path) -> str:
    for path in (tmp / "out").rglob("*"):
        if path.is_file() and path.suffix in (".csv", ".html", ".json") and "Doe_John" in path.read_text("utf-8"):
            return f"the folder name of an unreadable case appears in {path.name}"
    return ""


def _cohort(mutations: dict[str, Mutator | None]) -> Mutator:
    """Turn ``{case}`` into a cohort folder of copies of the example case, each mutated."""

    def mutate(case: Path) -> None:
        tmp_cohort = case.parent / "cohort_build"
        tmp_cohort.mkdir()
        for name, mut in mutations.items():
            shutil.copytree(case, tmp_cohort / name, ignore=shutil.ignore_patterns("cohort_build"))
            _json_edit("case.json", _set("case_id", name if name.isidentifier() else "X1"))(tmp_cohort / name)
            if mut is not None:
                mut(tmp_cohort / name)
        for child in list(case.iterdir()):
            if child.is_dir():
                shutil.rmtree(child)
            else:
                child.unlink()
        for child in tmp_cohort.iterdir():
            child.rename(case / child.name)
        tmp_cohort.rmdir()

    return mutate


def _output_entries() -> list[Entry]:
    m, r = COMMANDS["match"], COMMANDS["render"]
    run = ("run", "{case}", "--out", "{out}", "--workers", "1", "--no-maps")
    broken = _write_bytes("pathology/nodes.csv", b"garbage\n\0")
    out = [
        Entry("output-match-into-user-folder", "output", m, prepare=_user_file("notes.txt"), check=_kept("notes.txt")),
        Entry("output-match-force-keeps-user-files", "output", (*m, "--force"), expect="ok",
              prepare=_user_file("notes.txt"), check=_kept("notes.txt")),
        Entry("output-match-over-earlier-output-keeps-user-file", "output", m, expect="ok",
              prepare=_earlier_output_then_user_file, check=_kept("my_constraints.csv")),
        Entry("output-match-out-is-file", "output", ("match", "{case}", "--out", "{tmp}/keep/file.txt"),
              prepare=lambda t: ((t / "keep").mkdir(), (t / "keep" / "file.txt").write_text("kept"))),
        Entry("output-synth-into-user-folder", "output", COMMANDS["synth"], prepare=_user_file("patients.csv"),
              check=_kept("patients.csv")),
        Entry("output-synth-force-keeps-user-files", "output", (*COMMANDS["synth"], "--force"), expect="ok",
              prepare=_user_file("patients.csv"), check=_kept("patients.csv")),
        Entry("output-synth-too-many-cases", "output", ("synth", "--cases", "1000000000", "--seed", "1", "--out",
                                                        "{out}")),
        Entry("output-match-bad-case-no-partial", "output", m, broken),
        Entry("output-levels-bad-case-no-partial", "output", COMMANDS["levels"], broken),
        Entry("output-render-results-of-other-case", "output", (*r, "--results", "{tmp}/keep/results"),
              prepare=_results_of_other_case),
        Entry("output-render-results-of-changed-inputs", "output", (*r, "--results", "{tmp}/keep/results"),
              prepare=_results_of_changed_inputs),
        Entry("exit-run-all-cases-failed", "exit-code", run, _cohort({"A1": broken, "B1": broken}), code=1),
        Entry("exit-run-some-cases-failed-escaped-and-anonymous", "exit-code", run, _cohort({
            "A1": None, "B1": broken, "C1": _json_edit("case.json", _set("case_id", "<script>alert(1)</script>")),
            "Doe_John": _write_bytes("case.json", b"{not json")}), code=1,
            check=lambda t: _report_has_no_raw_script(t) or _no_folder_name(t)),
    ]
    return out


def _formula_cells(tmp: Path) -> str:
    for path in (tmp / "out").glob("*.csv"):
        import csv

        with open(path, newline="", encoding="utf-8") as fh:
            for row in csv.reader(fh):
                for cell in row:
                    if cell[:1] in ("=", "+", "@", "\t", "\r") or (cell[:1] == "-" and not _is_number(cell)):
                        return f"{path.name}: cell {cell!r} would run as a spreadsheet formula"
    return ""


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _formula_entries() -> list[Entry]:
    m, rel = COMMANDS["match"], "pathology/nodes.csv"
    payloads = {"equals": "=HYPERLINK(\"http://evil\")", "plus": "+1+cmd", "at": "@SUM(A1)", "minus": "-2+3"}
    out = []
    for name, payload in payloads.items():
        out.append(Entry(f"csv-formula-slide-{name}", "escaping", m, _csv_cell(rel, 1, "slide", payload),
                         expect="ok", check=_formula_cells))
    return out


def corpus() -> list[Entry]:
    """Every hostile input (200+)."""
    return (_usage_entries() + _manifest_entries() + _nodes_entries() + _containers_entries() + _reads_entries()
            + _landmark_entries() + _labelmap_entries() + _specimen_entries() + _constraint_entries()
            + _output_entries() + _formula_entries())


# ----------------------------------------------------------------------------------------------- running


@dataclass
class Outcome:
    """What one run did: its class (see the module docstring), exit code and stderr."""

    klass: str
    code: int
    stderr: str
    detail: str = ""


def materialise(entry: Entry, tmp: Path) -> list[str]:
    """Copy the example case into ``tmp/case``, apply the entry's mutation and preparation; return the argv."""
    case = tmp / "case"
    shutil.copytree(EXAMPLE, case, ignore=shutil.ignore_patterns("make_case.py"))
    if entry.mutate is not None:
        entry.mutate(case)
    if entry.prepare is not None:
        entry.prepare(tmp)
    subs = {"{case}": str(case), "{out}": str(tmp / "out"), "{tmp}": str(tmp)}
    argv = []
    for arg in entry.argv:
        for key, value in subs.items():
            arg = arg.replace(key, value)
        argv.append(arg)
    return argv


def _snapshot(tmp: Path) -> set[str]:
    return {str(p.relative_to(tmp)) for p in tmp.rglob("*") if "case" != p.relative_to(tmp).parts[0]}


def classify(entry: Entry, tmp: Path, code: int, stderr: str, escaped: BaseException | None,
             before: set[str]) -> Outcome:
    """The class of one run's outcome (see the module docstring)."""
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    if escaped is not None or "Traceback (most recent call last)" in stderr:
        return Outcome("traceback", code, stderr, repr(escaped) if escaped else "")
    problem = entry.check(tmp) if entry.check is not None else ""
    if entry.expect == "ok":
        if code != 0:
            return Outcome("exit-code" if len(lines) <= 1 else "multi-line", code, stderr, "should succeed")
        return Outcome("accepted" if problem else "clean", code, stderr, problem)
    if code == 0:
        return Outcome("accepted", code, stderr, problem)
    if problem:
        return Outcome("accepted" if "outside" in problem or "raw" in problem or "folder name" in problem
                       else "partial", code, stderr, problem)
    after = _snapshot(tmp)
    if entry.klass not in ("exit-code", "escaping") and after - before:
        return Outcome("partial", code, stderr, f"left {sorted(after - before)[:3]}")
    if len(lines) > entry.max_lines or not lines:
        return Outcome("multi-line", code, stderr)
    if code != entry.code:
        return Outcome("exit-code", code, stderr, f"exit {code}, expected {entry.code}")
    return Outcome("clean", code, stderr)


def run_entry(entry: Entry, tmp: Path) -> Outcome:
    """Run one entry in-process through ``neckmatch.cli.main`` and classify the outcome."""
    from neckmatch import cli

    argv = materialise(entry, tmp)
    before = _snapshot(tmp)
    err, escaped, code = io.StringIO(), None, 0
    old_argv = sys.argv
    sys.argv = ["neckmatch", *argv]
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            try:
                cli.main()
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except Exception as exc:  # escaped main: the console script would print a traceback
                escaped = exc
                traceback.print_exc(file=err)
                code = 1
    finally:
        sys.argv = old_argv
    return classify(entry, tmp, code, err.getvalue(), escaped, before)
