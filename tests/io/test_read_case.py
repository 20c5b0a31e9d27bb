"""read_case on the shipped example case and variants of it; case.json validation; the inspect summary."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest

from neckmatch.errors import InputError
from neckmatch.io.case import read_case
from neckmatch.io.labelmap import read_label_map, write_label_map
from neckmatch.io.summary import case_summary, format_case_summary
from neckmatch.model import POINT_LANDMARKS, LabelMap, Side, SurgicalLevel

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "minimal_case"


@pytest.fixture
def case_dir(tmp_path: Path) -> Path:
    """A private copy of the example case, free to edit."""
    return Path(shutil.copytree(EXAMPLE, tmp_path / "MIN01", ignore=shutil.ignore_patterns("*.py")))


def _manifest(case_dir: Path, **changes: Any) -> None:
    doc = json.loads((case_dir / "case.json").read_text())
    for key, value in changes.items():
        if value is None:
            doc.pop(key, None)
        else:
            doc[key] = value
    (case_dir / "case.json").write_text(json.dumps(doc))


def test_example_case_is_read_whole() -> None:
    case = read_case(EXAMPLE)
    assert (case.case_id, case.primary_side, case.root) == ("MIN01", "R", EXAMPLE)
    assert case.dissected[Side.L] == frozenset({SurgicalLevel.II, SurgicalLevel.III, SurgicalLevel.IV})
    assert list(case.label_map.labels()) == [1, 2, 3, 4]
    assert case.landmarks is not None and case.landmarks.missing() == []
    assert len(case.reads) == 8 and {r.reader for r in case.reads} == {"R1", "R2"}
    assert [n.node for n in case.path_nodes][:2] == ["R-II-01", "R-II-02"]
    assert [(c.container, c.nodes_examined, c.nodes_positive) for c in case.containers] == [
        ("R-II", 2, 0), ("R-III", 1, 1), ("R-IV", 1, 0), ("L-II", 1, 0), ("L-III+IV", 1, 0)
    ]
    # the generator put node 1 (semi-axes 6, 4, 5 mm) at RAS (30, 8, 25); the LPS markups put skull_base at z 55
    ras = case.label_map.to_ras(np.argwhere(case.label_map.data == 1)).mean(axis=0)
    np.testing.assert_allclose(ras, [30.0, 8.0, 25.0], atol=0.2)  # centre off the 1.5 mm grid: rasterisation shift
    np.testing.assert_allclose(case.landmarks.point("skull_base"), [0.0, -5.0, 55.0])


def test_containers_file_is_used_and_checked(case_dir: Path) -> None:
    (case_dir / "pathology" / "containers.csv").write_text(
        "container,side,level,nodes_examined,nodes_positive,ene\n"
        "R-II,R,II,2,0,\nR-III,R,III,1,1,no\nR-IV,R,IV,1,0,\nL-II,L,II,1,0,\nL-III+IV,L,III+IV,1,0,\n"
    )
    _manifest(case_dir, pathology={"nodes": "pathology/nodes.csv", "containers": "pathology/containers.csv"})
    case = read_case(case_dir)
    assert case.containers[1].ene is False and len(case.path_nodes) == 6


def test_count_only_case(case_dir: Path) -> None:
    (case_dir / "pathology" / "containers.csv").write_text(
        "container,side,level,nodes_examined,nodes_positive\nR-II,R,II,14,2\n"
    )
    _manifest(case_dir, pathology={"containers": "pathology/containers.csv"})
    case = read_case(case_dir)
    assert case.path_nodes == () and (case.containers[0].nodes_examined, case.containers[0].positive) == (14, True)


def test_case_without_landmarks_or_reads(case_dir: Path) -> None:
    _manifest(case_dir, mri={"nodes": "mri/nodes.nii.gz"})
    case = read_case(case_dir)
    assert case.landmarks is None and case.reads == ()


def test_partial_landmarks_with_required_parameter(case_dir: Path) -> None:
    doc = json.loads((case_dir / "mri" / "landmarks.mrk.json").read_text())
    doc["markups"] = doc["markups"][:1]
    (case_dir / "mri" / "landmarks.mrk.json").write_text(json.dumps(doc))
    case = read_case(case_dir, required_landmarks=POINT_LANDMARKS)
    assert case.landmarks is not None and case.landmarks.curves == {}


# ---- case.json validation ------------------------------------------------------------------------------------
def test_missing_case_json(case_dir: Path) -> None:
    (case_dir / "case.json").unlink()
    with pytest.raises(InputError, match=r"MIN01/case\.json: missing: a case folder needs a case\.json manifest"):
        read_case(case_dir)


def test_malformed_case_json(case_dir: Path) -> None:
    (case_dir / "case.json").write_text('{"format": "neckmatch-case/1", ')
    with pytest.raises(InputError, match=r"case\.json: not valid JSON \(UTF-8\): .*line 1"):
        read_case(case_dir)


def test_missing_case_folder(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nowhere: case folder does not exist"):
        read_case(tmp_path / "nowhere")


@pytest.mark.parametrize(("changes", "message"), [
    ({"format": "neckmatch-case/2"}, r"case\.json: format: must be 'neckmatch-case/1', got 'neckmatch-case/2'"),
    ({"format": None}, r"case\.json: format: must be 'neckmatch-case/1', got None"),
    ({"case_id": None}, r"case\.json: case_id: must be a non-empty string, got None"),
    ({"case_id": 17}, r"case\.json: case_id: must be a non-empty string, got 17"),
    ({"primary_side": "left"}, r"case\.json: primary_side: must be R, L or midline, got 'left'"),
    ({"dissected": ["R"]}, r"case\.json: dissected: must be an object .*got \['R'\]"),
    ({"dissected": {"X": ["II"]}}, r"case\.json: dissected: side must be R or L, got 'X'"),
    ({"dissected": {"R": ["II", "IIc"]}}, r"case\.json: dissected\.R: 'IIc' is not a surgical level"),
    ({"mri": None}, r"case\.json: mri: must be an object naming its files, got None"),
    ({"mri": {"landmarks": "mri/landmarks.mrk.json"}}, r"case\.json: mri\.nodes: must be a file path .*got None"),
    ({"mri": {"nodes": "mri/gone.nii.gz"}}, r"case\.json: mri\.nodes: names 'mri/gone\.nii\.gz', which does not exist"),
    ({"pathology": {"nodes": "pathology/x.csv"}}, r"case\.json: pathology\.nodes: names 'pathology/x\.csv', which"),
    ({"pathology": {}}, r"case\.json: pathology: must name 'nodes' and/or 'containers', got neither"),
    ({"mri": {"nodes": "mri/nodes.nii.gz", "image": "mri/gone.nii.gz"}},
     r"case\.json: mri\.image: names 'mri/gone\.nii\.gz', which does not exist"),
    ({"mri": {"nodes": "mri/nodes.nii.gz", "image": 3}}, r"case\.json: mri\.image: must be a file path .*got 3"),
    ({"mri": {"nodes": "mri/nodes.nii.gz", "image": "../x.nii.gz"}},
     r"case\.json: mri\.image: must lie inside the case folder"),
    ({"pN": "N2x"}, r"case\.json: pN: not a pathological N category .*got|case\.json: pN: .*'N2x'"),
])
def test_bad_manifest(case_dir: Path, changes: dict[str, Any], message: str) -> None:
    _manifest(case_dir, **changes)
    with pytest.raises(InputError, match=message):
        read_case(case_dir)


def test_the_mr_image_is_a_checked_path_whose_voxels_are_not_read(case_dir: Path) -> None:
    assert read_case(case_dir).image_path is None
    (case_dir / "mri" / "image.nii.gz").write_bytes(b"not a NIfTI: display only, read by the viewer later")
    _manifest(case_dir, mri={"nodes": "mri/nodes.nii.gz", "landmarks": "mri/landmarks.mrk.json",
                             "reads": "mri/reads.csv", "image": "mri/image.nii.gz"})
    case = read_case(case_dir)  # would fail if read_case loaded the voxels
    assert case.image_path == case_dir / "mri" / "image.nii.gz"
    assert "image" not in case.extra and len(case.label_map.labels()) == 4
    assert case_summary(case)["image"] == {"file": "mri/image.nii.gz", "shape": None, "voxel_size_mm": None}
    lm = case.label_map
    nib.save(nib.Nifti1Image(np.zeros(lm.data.shape, np.int16), lm.affine), case_dir / "mri" / "image.nii.gz")
    s = case_summary(read_case(case_dir))
    assert s["image"] == {"file": "mri/image.nii.gz", "shape": [100, 80, 80], "voxel_size_mm": [1.5, 1.5, 1.5]}
    assert "MR image: mri/image.nii.gz, grid 100 x 80 x 80 voxels of 1.5 x 1.5 x 1.5 mm (display only)" in \
        format_case_summary(s)


def test_reads_of_labels_not_in_the_map(case_dir: Path) -> None:
    with (case_dir / "mri" / "reads.csv").open("a") as f:
        f.write("5,R1,3,no\n")
    msg = r"reads\.csv: row 9: node: label 5 does not exist in the label map \(labels: 1, 2, 3, 4\)"
    with pytest.raises(InputError, match=msg):
        read_case(case_dir)


# ---- summary ---------------------------------------------------------------------------------------------------
def test_summary_known_values() -> None:
    s = case_summary(read_case(EXAMPLE))
    json.dumps(s)  # JSON-able
    assert s["nodes"] | {"names": {}} == {
        "count": 4, "labels": [1, 2, 3, 4], "names": {}, "shape": [100, 80, 80], "voxel_size_mm": [1.5, 1.5, 1.5],
        "orientation": "RAS", "origin_mm": [-74.25, -59.25, -59.25],
    }
    assert (len(s["landmarks"]["points"]), len(s["landmarks"]["curves"]), s["landmarks"]["missing"]) == (6, 14, [])
    assert s["pathology"] | {} == {"node_rows": 6, "positive": 1, "with_size": 6, "with_position": 4, "fragments": 0,
                                  "nodes_examined": 6, "nodes_positive": 1}
    assert s["containers"][2] == {"container": "R-IV", "side": "R", "level": "IV", "nodes_examined": 1,
                                  "nodes_positive": 0, "node_rows": 1}
    assert s["reads"] == {"count": 8, "readers": {"R1": 4, "R2": 4}, "nodes_read": 4, "called_malignant": 2}
    assert s["image"] is None
    text = format_case_summary(s)
    assert "MR image" not in text
    assert "MR nodes: 4 (labels 1, 2, 3, 4)" in text and "L-III+IV" in text and "orientation RAS" in text


def test_summary_orientation_of_an_lps_map(case_dir: Path) -> None:
    lm = read_label_map(case_dir / "mri" / "nodes.nii.gz")
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    flip[:2, 3] = np.array(lm.data.shape[:2]) - 1
    write_label_map(case_dir / "mri" / "nodes.nii.gz", LabelMap(lm.data[::-1, ::-1].copy(), lm.affine @ flip))
    s = case_summary(read_case(case_dir))
    assert s["nodes"]["orientation"] == "LPS" == "".join(nib.aff2axcodes(read_case(case_dir).label_map.affine))
    assert s["nodes"]["origin_mm"] == [74.25, 59.25, -59.25]


@pytest.mark.parametrize("pn", ["pN0", "pN2b", "pNX", "ypN1"])
def test_pn_is_kept_for_the_patient_reference(case_dir: Path, pn: str) -> None:
    _manifest(case_dir, pN=pn)
    assert read_case(case_dir).extra["pN"] == pn


# ---- containment and case ids (issue 12) ----------------------------------------------------------------------
@pytest.mark.parametrize("how", ["absolute", "dotdot", "symlink"])
def test_input_files_must_lie_inside_the_case_folder(case_dir: Path, how: str) -> None:
    outside = case_dir.parent / "elsewhere"
    outside.mkdir()
    shutil.copy(case_dir / "pathology" / "nodes.csv", outside / "nodes.csv")
    if how == "absolute":
        name = str(outside / "nodes.csv")
    elif how == "dotdot":
        name = "../elsewhere/nodes.csv"
    else:
        (case_dir / "pathology" / "link.csv").symlink_to(outside / "nodes.csv")
        name = "pathology/link.csv"
    _manifest(case_dir, pathology={"nodes": name})
    with pytest.raises(InputError, match=r"case\.json: pathology\.nodes: must lie inside the case folder"):
        read_case(case_dir)
    assert len(read_case(case_dir, allow_external_files=True).path_nodes) == 6  # the explicit option


def test_external_files_are_allowed_by_the_environment_the_cli_option_sets(case_dir, monkeypatch) -> None:
    (case_dir.parent / "elsewhere").mkdir()
    shutil.move(case_dir / "mri" / "reads.csv", case_dir.parent / "elsewhere" / "reads.csv")
    _manifest(case_dir, mri={"nodes": "mri/nodes.nii.gz", "landmarks": "mri/landmarks.mrk.json",
                             "reads": "../elsewhere/reads.csv"})
    with pytest.raises(InputError, match="mri.reads"):
        read_case(case_dir)
    monkeypatch.setenv("NECKMATCH_ALLOW_EXTERNAL_FILES", "1")
    assert len(read_case(case_dir).reads) == 8


@pytest.mark.parametrize("cid", ["..", ".", "../x", "a/b", "<script>", "P 1", "A" * 65, "Müller"])
def test_a_case_id_that_is_no_safe_folder_name_is_refused(case_dir: Path, cid: str) -> None:
    _manifest(case_dir, case_id=cid)
    with pytest.raises(InputError, match=r"case\.json: case_id: must use letters, digits"):
        read_case(case_dir)


@pytest.mark.parametrize("text", ['{"format": NaN}', "[" * 100000, '{"a": Infinity}'])
def test_case_json_must_be_strict_json(case_dir: Path, text: str) -> None:
    (case_dir / "case.json").write_text(text)
    with pytest.raises(InputError, match=r"case\.json: not valid JSON"):
        read_case(case_dir)


def test_a_huge_case_json_is_refused_before_parsing(case_dir: Path) -> None:
    (case_dir / "case.json").write_text("{" + " " * (2 << 20) + "}")
    with pytest.raises(InputError, match="at most 1048576 bytes"):
        read_case(case_dir)
