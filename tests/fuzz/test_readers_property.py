"""Property-based fuzzing (Hypothesis) of every reader: each either returns valid values or raises
``InputError`` with a one-line message, and the CLI on a fuzzed case exits 0 or 2 with at most one error line.

The examples are derandomised and bounded (tests/fuzz/conftest.py: profile ``ci``), so CI is reproducible.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from neckmatch.errors import InputError
from tests.cli_helpers import run_main
from tests.fuzz.corpus import EXAMPLE

pytestmark = pytest.mark.filterwarnings("ignore")  # library warnings on garbage are not the contract here

HOSTILE = ["", " ", "nan", "NaN", "inf", "-inf", "1e309", "-1", "0", "1e12", "=cmd", "\0", "\n", "'", '"', ",",
           "../x", "<script>", "R", "L", "II", "IIc", "positive", "negative", "yes", "maybe", "R-II", "R-II-01",
           "2.5", "0.5", "7", "é", "\ufeff", "A" * 300]
cells = st.one_of(st.sampled_from(HOSTILE), st.text(max_size=12))
floats = st.floats(allow_nan=True, allow_infinity=True)


def _one_line_or_value(read: Callable[[], Any]) -> Any:
    """The reader's value, or None after an InputError whose message is one line."""
    try:
        return read()
    except InputError as exc:
        assert "\n" not in str(exc) and str(exc).strip(), repr(str(exc))
        return None


def _csv(header: list[str], rows: list[list[str]]) -> str:
    import csv
    import io

    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def _write(text: str | bytes, name: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix="nm-fuzz-")) / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
    return path


NODE_HEADER = ["node", "container", "side", "level", "size_mm", "status", "cc", "ap", "fragment_of", "slide"]


@given(st.lists(st.lists(cells, min_size=len(NODE_HEADER), max_size=len(NODE_HEADER)), max_size=6))
def test_path_nodes_reader(rows: list[list[str]]) -> None:
    from neckmatch.io.pathology import MAX_SIZE_MM, read_path_nodes

    nodes = _one_line_or_value(lambda: read_path_nodes(_write(_csv(NODE_HEADER, rows), "nodes.csv")))
    if nodes is not None:
        assert len({n.node for n in nodes}) == len(nodes)
        for n in nodes:
            assert n.node and n.container and n.side.value in ("R", "L")
            assert n.size_mm is None or 0 < n.size_mm <= MAX_SIZE_MM
            assert all(v is None or 0.0 <= v <= 1.0 for v in (n.cc, n.ap))


CONTAINER_HEADER = ["container", "side", "level", "nodes_examined", "nodes_positive", "largest_deposit_mm", "ene"]


@given(st.lists(st.lists(cells, min_size=7, max_size=7), max_size=5))
def test_containers_reader(rows: list[list[str]]) -> None:
    from neckmatch.io.pathology import read_containers

    out = _one_line_or_value(lambda: read_containers(_write(_csv(CONTAINER_HEADER, rows), "containers.csv")))
    if out is not None:
        assert len({c.container for c in out}) == len(out)
        assert all(0 <= c.nodes_positive <= c.nodes_examined for c in out)


@given(st.lists(st.lists(cells, min_size=4, max_size=4), max_size=6))
def test_reads_reader(rows: list[list[str]]) -> None:
    from neckmatch.io.reads import read_reads

    out = _one_line_or_value(lambda: read_reads(_write(_csv(["node", "reader", "score", "malignant"], rows),
                                                       "reads.csv"), [1, 2, 3]))
    if out is not None:
        assert all(r.node in (1, 2, 3) for r in out)
        assert all(r.score is None or math.isfinite(r.score) for r in out)


json_values = st.recursive(st.none() | st.booleans() | floats | st.sampled_from(HOSTILE),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                       max_size=3), max_leaves=8)


def _point(label: Any, pos: Any) -> dict[str, Any]:
    return {"label": label, "position": pos, "positionStatus": "defined"}


markups_doc = st.fixed_dictionaries({"markups": st.lists(st.fixed_dictionaries({
    "type": st.sampled_from(["Fiducial", "Curve", "Line", 3]),
    "name": st.sampled_from(["SCM_posterior_R", "skull_base", "", "x"]),
    "coordinateSystem": st.sampled_from(["LPS", "RAS", "XYZ", None]),
    "controlPoints": st.lists(st.builds(_point, st.sampled_from(["skull_base", "hyoid_body_inferior", "", None]),
                                        st.lists(floats, min_size=2, max_size=4) | json_values), max_size=4),
}), max_size=3)})


@given(st.one_of(markups_doc, json_values))
def test_markups_reader(doc: Any) -> None:
    from neckmatch.io.markups import read_markups

    text = json.dumps(doc, allow_nan=True)
    lms = _one_line_or_value(lambda: read_markups(_write(text, "lm.mrk.json"), required=()))
    if lms is not None:
        for p in lms.points.values():
            assert np.all(np.isfinite(p)) and p.shape == (3,)
        for c in lms.curves.values():
            assert np.all(np.isfinite(c.points)) and len(c.points) >= 2


@given(st.binary(max_size=400))
def test_markups_reader_on_bytes(data: bytes) -> None:
    from neckmatch.io.markups import read_markups

    _one_line_or_value(lambda: read_markups(_write(data, "lm.mrk.json"), required=()))


@given(
    shape=st.lists(st.integers(0, 4), min_size=1, max_size=4),
    dtype=st.sampled_from(["uint8", "int16", "int32", "int64", "float32", "float64", "uint16"]),
    fill=st.sampled_from([0.0, 1.0, 2.5, -1.0, float("nan"), float("inf"), 3.0, 2.0**40]),
    affine=st.sampled_from(["eye", "zero", "nan", "huge", "flip"]),
)
def test_label_map_reader(shape: list[int], dtype: str, fill: float, affine: str) -> None:
    import nibabel as nib

    from neckmatch.io.labelmap import read_label_map

    mats = {"eye": np.eye(4), "zero": np.diag([0.0, 0.0, 0.0, 1.0]), "nan": np.full((4, 4), np.nan),
            "huge": np.diag([1e300, 1e300, 1e300, 1.0]), "flip": np.diag([-1.0, 1.0, 0.5, 1.0])}
    with np.errstate(all="ignore"):
        data = np.full(shape, fill).astype(dtype)
    if data.size:
        data.flat[0] = 0
    hdr = nib.Nifti1Header()
    hdr.set_data_dtype(data.dtype)
    hdr.set_data_shape(data.shape)
    hdr["sform_code"], hdr["qform_code"] = 1, 0
    m = mats[affine]
    hdr["srow_x"], hdr["srow_y"], hdr["srow_z"] = m[0], m[1], m[2]
    path = _write(b"", "nodes.nii.gz")
    nib.save(nib.Nifti1Image(data, None, header=hdr), str(path))
    lm = _one_line_or_value(lambda: read_label_map(path))
    if lm is not None:
        assert lm.data.ndim == 3 and np.issubdtype(lm.data.dtype, np.integer) and int(lm.data.min()) >= 0
        assert np.all(np.isfinite(lm.affine)) and abs(np.linalg.det(lm.affine[:3, :3])) > 0


@given(st.binary(max_size=600), st.sampled_from(["nodes.nii.gz", "nodes.nii", "nodes.nrrd", "nodes.dcm"]))
def test_label_map_reader_on_bytes(data: bytes, name: str) -> None:
    from neckmatch.io.labelmap import read_label_map

    _one_line_or_value(lambda: read_label_map(_write(data, name)))


@given(st.lists(st.lists(cells, min_size=3, max_size=3), max_size=5))
def test_constraints_reader(rows: list[list[str]]) -> None:
    from neckmatch.correlation.constraints import read_constraints
    from neckmatch.io.case import read_case

    case = read_case(EXAMPLE)
    cons = _one_line_or_value(lambda: read_constraints(_write(_csv(["mr_node", "path_node", "action"], rows),
                                                              "c.csv"), case))
    if cons is not None:
        labels, paths = set(case.label_map.labels()), {p.node for p in case.path_nodes}
        assert all(mr in labels and pn in paths for mr, pn in cons.must_link | cons.cannot_link)
        assert not cons.must_link & cons.cannot_link


LINK_HEADER = ["path_node", "image", "specimen_node", "certainty"]
link_cells = st.one_of(cells, st.sampled_from(["R-II-01", "R-III-01", "L-II-01", "1", "2", "3", "4", "sure",
                                               "probable", "SURE", "2.0", " 2"]))


@given(st.lists(st.lists(link_cells, min_size=4, max_size=4), max_size=5))
def test_specimen_links_reader(rows: list[list[str]]) -> None:
    from neckmatch.io.case import read_case
    from neckmatch.io.specimen import read_links
    from neckmatch.model import LabelMap, SpecimenPiece

    case = read_case(EXAMPLE)
    data = np.zeros((6, 6, 6), np.uint8)
    data[0, 0, 0], data[2, 2, 2], data[4, 4, 4] = 1, 2, 3
    piece = SpecimenPiece("R", "R", ("R-II", "R-III"), LabelMap(data, np.eye(4)),
                          {"cranial": np.zeros(3), "caudal": np.ones(3), "anterior": np.array([0.0, 5.0, 0.0])})
    links = _one_line_or_value(lambda: read_links(_write(_csv(LINK_HEADER, rows), "links.csv"), [piece],
                                                  case.path_nodes))
    if links is not None:
        nodes = {p.node for p in case.path_nodes}
        assert len({lk.path_node for lk in links}) == len(links)  # a pathology node is linked at most once
        for lk in links:
            assert lk.path_node in nodes and lk.image == "R" and lk.specimen_node in (1, 2, 3)
            assert lk.certainty in (None, "sure", "probable")


coordinate = st.one_of(st.sampled_from([0.0, 0.3, 1.0, -1.0, 20.0, -40.0, 40.0, 300.0, float("nan")]), floats)
suture = st.lists(coordinate, min_size=3, max_size=3)


@given(st.fixed_dictionaries({"cranial": suture, "caudal": suture, "anterior": suture},
                             optional={"posterior": suture, "medial": suture, "lateral": suture}),
       st.sampled_from(["R", "L"]))
def test_accepted_sutures_give_a_rotation(sutures: dict[str, list[float]], side: str) -> None:
    """Sutures the reader accepts always orient the piece: the suture frame is orthonormal (a mirror allowed);
    the others are refused in one line (coincident sutures gave a singular 'rotation' before they were checked)."""
    from neckmatch.geometry.registration import suture_rotation
    from neckmatch.io.sanity import check_sutures
    from neckmatch.model import LabelMap

    points = {k: np.array(v, dtype=np.float64) for k, v in sutures.items()}
    piece = LabelMap(np.zeros((20, 20, 20), np.uint8), np.diag([0.5, 0.5, 0.5, 1.0]))
    if _one_line_or_value(lambda: check_sutures("R.mrk.json", points, piece) or True):
        rot = suture_rotation(points, side)
        assert np.allclose(rot @ rot.T, np.eye(3), atol=1e-9)


manifest = st.fixed_dictionaries({
    "format": st.sampled_from(["neckmatch-case/1", "x", None]),
    "case_id": st.one_of(st.sampled_from(["P1", "SYN001", "..", "../x", "<script>", "", "A" * 70]),
                         st.text(max_size=8)),
    "primary_side": st.sampled_from(["R", "L", "midline", "X", 1]),
    "dissected": st.one_of(st.just({"R": ["II", "III"]}), json_values),
    "mri": st.one_of(st.just({"nodes": "mri/nodes.nii.gz", "landmarks": "mri/landmarks.mrk.json"}),
                     st.fixed_dictionaries({"nodes": st.sampled_from(["mri/nodes.nii.gz", "/etc/passwd", "../x",
                                                                      "mri", "", 3])})),
    "pathology": st.one_of(st.just({"nodes": "pathology/nodes.csv"}), json_values),
})


@given(manifest)
def test_case_manifest_reader(doc: dict[str, Any]) -> None:
    from neckmatch.io.case import read_case
    from neckmatch.io.ids import is_valid_case_id

    root = Path(tempfile.mkdtemp(prefix="nm-fuzz-")) / "case"
    shutil.copytree(EXAMPLE, root)
    (root / "case.json").write_text(json.dumps(doc, allow_nan=True), encoding="utf-8")
    case = _one_line_or_value(lambda: read_case(root))
    if case is not None:
        assert is_valid_case_id(case.case_id)
        assert all(Path(p).resolve().is_relative_to(root.resolve()) for p in [root / "case.json"])


@given(st.lists(st.lists(cells, min_size=len(NODE_HEADER), max_size=len(NODE_HEADER)), min_size=1, max_size=4))
def test_cli_inspect_on_a_fuzzed_case_exits_0_or_2_with_one_line(rows: list[list[str]]) -> None:
    import contextlib
    import io

    root = Path(tempfile.mkdtemp(prefix="nm-fuzz-")) / "case"
    shutil.copytree(EXAMPLE, root)
    (root / "pathology" / "nodes.csv").write_text(_csv(NODE_HEADER, rows), encoding="utf-8", errors="surrogatepass")
    err = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(err):
        code = run_main(mp, "inspect", str(root))
    lines = [ln for ln in err.getvalue().splitlines() if ln.strip()]
    assert (code, lines) == (0, []) or (code == 2 and len(lines) == 1 and lines[0].startswith("error: ")), \
        (code, lines)
