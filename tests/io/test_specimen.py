"""The optional specimen block (shared/spec/specimen-imaging.md): reading, formats and one-line errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from neckmatch.errors import InputError
from neckmatch.io.case import read_case
from neckmatch.io.labelmap import write_label_map
from neckmatch.io.markups import write_point_list
from neckmatch.model import LabelMap, Side

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "minimal_case"
SUTURES = {"cranial": [0.0, 0.0, 40.0], "caudal": [0.0, 0.0, -40.0], "anterior": [0.0, 20.0, 0.0],
           "lateral": [8.0, 0.0, 0.0]}


def _label_map() -> LabelMap:
    data = np.zeros((10, 10, 10), dtype=np.uint8)
    data[1:3, 1:3, 1:3] = 1
    data[6:9, 6:9, 6:9] = 2
    data[1:3, 6:8, 6:8] = 5
    return LabelMap(data, np.diag([0.5, 0.5, 0.5, 1.0]))


def _write(case_dir: Path, block: dict[str, Any] | None = None, links: str | None = None,
           sutures: dict[str, list[float]] | None = None, ext: str = ".nii.gz") -> None:
    spec = case_dir / "specimen"
    spec.mkdir(exist_ok=True)
    write_label_map(spec / f"R{ext}", _label_map())
    sut = SUTURES if sutures is None else sutures
    write_point_list(spec / "R.mrk.json", "sutures", list(sut), np.array(list(sut.values())))
    (spec / "links.csv").write_text(links if links is not None else
                                    "path_node,image,specimen_node,certainty\nR-II-01,R,2,sure\nR-III-01,R,5,\n")
    doc = json.loads((case_dir / "case.json").read_text())
    doc["specimen"] = block if block is not None else {
        "images": [{"id": "R", "side": "R", "containers": ["R-II", "R-III"], "nodes": f"specimen/R{ext}",
                    "orientation": "specimen/R.mrk.json"}], "links": "specimen/links.csv"}
    (case_dir / "case.json").write_text(json.dumps(doc))


@pytest.fixture
def case_dir(tmp_path: Path) -> Path:
    return Path(shutil.copytree(EXAMPLE, tmp_path / "MIN01", ignore=shutil.ignore_patterns("*.py")))


@pytest.mark.parametrize("ext", [".nii.gz", ".nrrd", ".seg.nrrd"])
def test_specimen_block_is_read_in_every_label_format(case_dir: Path, ext: str) -> None:
    _write(case_dir, ext=ext)
    spec = read_case(case_dir).specimen
    assert spec is not None
    piece = spec.pieces[0]
    assert (piece.id, piece.side, piece.containers) == ("R", Side.R, ("R-II", "R-III"))
    assert piece.label_map.labels().tolist() == [1, 2, 5]
    assert sorted(piece.sutures) == ["anterior", "caudal", "cranial", "lateral"]
    assert piece.sutures["cranial"].tolist() == [0.0, 0.0, 40.0]  # written in LPS, read back in RAS
    assert [(lk.path_node, lk.image, lk.specimen_node, lk.certainty) for lk in spec.links] == [
        ("R-II-01", "R", 2, "sure"), ("R-III-01", "R", 5, None)]


def test_case_without_block_has_no_specimen(case_dir: Path) -> None:
    assert read_case(case_dir).specimen is None


def test_links_are_optional(case_dir: Path) -> None:
    _write(case_dir, block={"images": [{"id": "R", "side": "R", "containers": ["R-II"], "nodes": "specimen/R.nii.gz",
                                        "orientation": "specimen/R.mrk.json"}]})
    spec = read_case(case_dir).specimen
    assert spec is not None and spec.links == ()


def _image(**changes: Any) -> dict[str, Any]:
    img = {"id": "R", "side": "R", "containers": ["R-II"], "nodes": "specimen/R.nii.gz",
           "orientation": "specimen/R.mrk.json"}
    img.update(changes)
    return img


@pytest.mark.parametrize(("block", "match"), [
    ({"images": []}, r"case.json: specimen.images: must be a non-empty list"),
    ({"images": [_image()], "extra": 1}, r"specimen: unknown key 'extra'"),
    ({"images": [_image(side="X")]}, r"specimen.images\[0\].side: must be R or L, got 'X'"),
    ({"images": [_image(containers=["R-VII"])]}, r"containers: 'R-VII' is not a pathology container"),
    ({"images": [_image(containers=["L-II"])]}, r"containers: container 'L-II' is on side L, the image on R"),
    ({"images": [_image(nodes="specimen/none.nii.gz")]}, r"specimen.images\[0\].nodes: names 'specimen/none.nii.gz'"),
    ({"images": [_image(), _image()]}, r"specimen.images\[1\].id: 'R' is given twice"),
    ({"images": [_image(id="")]}, r"specimen.images\[0\].id: must be a non-empty string"),
])
def test_bad_block_is_one_line_error(case_dir: Path, block: dict[str, Any], match: str) -> None:
    _write(case_dir, block=block)
    with pytest.raises(InputError, match=match):
        read_case(case_dir)


@pytest.mark.parametrize(("links", "match"), [
    ("path_node,image,specimen_node\nR-II-99,R,2\n", r"links.csv: row 1: path_node: 'R-II-99' is not a pathology node"),
    ("path_node,image,specimen_node\nR-II-01,L,2\n", r"row 1: image: 'L' is not a specimen image id"),
    ("path_node,image,specimen_node\nR-II-01,R,3\n", r"row 1: specimen_node: label 3 is not in image 'R'"),
    ("path_node,image,specimen_node\nR-II-01,R,x\n", r"row 1: specimen_node: must be an integer label, got 'x'"),
    ("path_node,image,specimen_node,certainty\nR-II-01,R,2,maybe\n", r"row 1: certainty: must be sure or probable"),
    ("path_node,image,specimen_node\nR-II-01,R,2\nR-II-01,R,1\n", r"row 2: path_node: 'R-II-01' is linked twice"),
    ("path_node,image\nR-II-01,R\n", r"links.csv: header: missing required column 'specimen_node'"),
])
def test_bad_link_is_one_line_error(case_dir: Path, links: str, match: str) -> None:
    _write(case_dir, links=links)
    with pytest.raises(InputError, match=match):
        read_case(case_dir)


def test_missing_required_suture_and_unknown_label_are_refused(case_dir: Path) -> None:
    _write(case_dir, sutures={"cranial": [0, 0, 1], "caudal": [0, 0, -1]})
    with pytest.raises(InputError, match=r"R.mrk.json: .*anterior"):
        read_case(case_dir)
    _write(case_dir, sutures={**SUTURES, "superior": [0, 0, 2]})
    with pytest.raises(InputError, match=r"controlPoints.label: 'superior' is not a suture label"):
        read_case(case_dir)


@pytest.mark.parametrize("where", ["dotdot", "absolute"])
def test_specimen_files_must_lie_inside_the_case_folder(case_dir: Path, where: str) -> None:
    _write(case_dir)
    outside = case_dir.parent / "elsewhere"
    shutil.copytree(case_dir / "specimen", outside)
    name = "../elsewhere/links.csv" if where == "dotdot" else str(outside / "links.csv")
    doc = json.loads((case_dir / "case.json").read_text())
    doc["specimen"]["links"] = name
    (case_dir / "case.json").write_text(json.dumps(doc))
    with pytest.raises(InputError, match=r"case\.json: specimen\.links: must lie inside the case folder"):
        read_case(case_dir)
    spec = read_case(case_dir, allow_external_files=True).specimen  # the explicit option
    assert spec is not None and len(spec.links) == 2
