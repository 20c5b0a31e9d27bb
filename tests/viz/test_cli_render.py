"""`neckmatch render` on a synthetic case folder: every file written and read back by the programs that open it."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from xml.etree import ElementTree as ET

import nrrd
import numpy as np
import pandas as pd
import pytest
import slicerio
import trimesh
import vtk

from neckmatch.geometry.regions import axial_fill_ratio, level_label_map
from neckmatch.io.case import read_case
from neckmatch.synth import generate_cohort
from tests.cli_helpers import run_main as _run


@pytest.fixture(scope="module")
def case_dir(tmp_path_factory):
    return generate_cohort(1, 5, tmp_path_factory.mktemp("cohort"))[0]


@pytest.fixture(scope="module")
def rendered(case_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("maps")
    mp = pytest.MonkeyPatch()
    try:
        assert _run(mp, "match", str(case_dir), "--out", str(out)) == 0
        assert _run(mp, "render", str(case_dir), "--out", str(out)) == 0
    finally:
        mp.undo()
    return out


def test_render_reuses_match_outputs_and_writes_every_map(case_dir, rendered):
    cid = case_dir.name
    names = sorted(p.name for p in rendered.iterdir() if p.is_file() and p.name.startswith(cid))
    assert names == sorted([f"{cid}_map.png", f"{cid}_scene.glb", f"{cid}_viewer.html", f"{cid}_scene.vtm",
                            f"{cid}_levels.seg.nrrd", f"{cid}_nodes.seg.nrrd", f"{cid}_nodes.mrk.json",
                            f"{cid}_landmarks.mrk.json", f"{cid}_scene.mrml"])
    glb = trimesh.load(rendered / f"{cid}_scene.glb", file_type="glb")
    assert glb.metadata["node_coloring"] == "outcome"  # truth_nodes.csv in --out was reused
    nodes = [g for name, g in glb.geometry.items() if name.startswith("node_")]
    kinds = ("matched", "undecided", "level-only", "unmatched")
    assert nodes and all(g.metadata.get("match_kind") in kinds for g in nodes)
    anatomy = {g.metadata["structure"] for g in glb.geometry.values() if g.metadata.get("kind") == "anatomy"}
    assert {"mandible", "hyoid", "cricoid_cartilage", "carotid_R", "jugular_L", "SCM_R", "clavicle_L"} <= anatomy


def test_node_segmentation_is_on_the_mr_grid_with_one_named_segment_per_node(case_dir, rendered):
    case = read_case(case_dir)
    path = rendered / f"{case_dir.name}_nodes.seg.nrrd"
    data, header = nrrd.read(str(path), index_order="F")
    offset = np.array([int(v) for v in header["Segmentation_ReferenceImageExtentOffset"].split()])
    lps = np.diag([-1.0, -1.0, 1.0])
    np.testing.assert_allclose(header["space directions"], (lps @ case.label_map.affine[:3, :3]).T, atol=1e-6)
    np.testing.assert_allclose(header["space origin"], lps @ case.label_map.to_ras(offset[None])[0], atol=1e-6)
    crop = case.label_map.data[tuple(slice(o, o + n) for o, n in zip(offset, data.shape, strict=True))]
    np.testing.assert_array_equal(data, crop)  # every node voxel, nothing else (the crop holds all nodes)
    assert np.count_nonzero(data) == np.count_nonzero(case.label_map.data)
    seg = slicerio.read_segmentation(str(path), skip_voxels=True)
    segments = {s["labelValue"]: s for s in seg["segments"]}
    assert sorted(segments) == case.label_map.labels().tolist()
    table = pd.read_csv(rendered / "levels.csv", dtype={"level": str})
    levels = dict(zip(table["node"], table["level"], strict=True))
    for label, s in segments.items():
        node, side, level, status = s["name"].split(" ")
        assert node == f"node_{label}" and level == levels[label] and side in ("R", "L")
        assert status in ("TP", "FN", "FP", "TN", "review", "unmatched")


def test_mrml_scene_names_files_that_exist_and_models_in_ras(case_dir, rendered):
    root = ET.parse(rendered / f"{case_dir.name}_scene.mrml").getroot()
    storages = {el.get("id"): el for el in root if el.tag.endswith("Storage")}
    files = {el.get("fileName") for el in storages.values()}
    assert all((rendered / f).is_file() for f in files), [f for f in files if not (rendered / f).is_file()]
    kinds = [el.tag for el in root]
    assert kinds.count("Segmentation") == 2 and kinds.count("MarkupsCurve") == 14 and "MarkupsFiducial" in kinds
    models = [el for el in root if el.tag == "Model"]
    assert any(m.get("name") == "LN_Neck_III_R" for m in models) and any(m.get("name") == "mandible" for m in models)
    for model in models[:3] + models[-3:]:  # each model's file is the surface named after it, in RAS
        sid = re.search(r"storage:([^;]+);", model.get("references")).group(1)
        assert storages[sid].get("coordinateSystem") == "RAS"
        reader = vtk.vtkXMLPolyDataReader()
        reader.SetFileName(str(rendered / storages[sid].get("fileName")))
        reader.Update()
        fd = reader.GetOutput().GetFieldData()
        assert fd.GetAbstractArray("name").GetValue(0) == model.get("name")
        assert fd.GetAbstractArray("SPACE").GetValue(0) == "RAS"
    marks = json.loads((rendered / f"{case_dir.name}_landmarks.mrk.json").read_text())["markups"]
    assert [m["type"] for m in marks] == ["Fiducial"] and len(marks[0]["controlPoints"]) == 6


def test_viewer_page_is_self_contained_and_holds_the_glb(case_dir, rendered):
    page = (rendered / f"{case_dir.name}_viewer.html").read_text(encoding="utf-8")
    assert not re.search(r"<(script|link|img)[^>]*\b(src|href)=", page)  # no CDN: nothing loaded from elsewhere
    blob = re.search(r'<script type="application/octet-stream" id="glb">(.*?)</script>', page, re.S).group(1)
    assert base64.b64decode(blob) == (rendered / f"{case_dir.name}_scene.glb").read_bytes()
    assert "GLTFLoader" in page and "OrbitControls" in page and "REVISION" in page
    meta = json.loads(re.search(r'<script type="application/json" id="meta">(.*?)</script>', page).group(1))
    assert "level IIA" in meta["order"] and "node" in meta["fields"] and "match_kind" in meta["fields"]


@pytest.mark.parametrize("source", ["synthetic", "minimal_case"])
def test_level_union_is_not_a_box_at_mid_neck(case_dir, source):
    folder = case_dir if source == "synthetic" else Path(__file__).parents[2] / "examples" / "minimal_case"
    lm = read_case(folder).landmarks
    level_map, _ = level_label_map(lm, spacing_mm=2.5)
    mid = (lm.point("hyoid_body_inferior")[2] + lm.point("cricoid_arch_inferior")[2]) / 2.0
    assert 0.3 < axial_fill_ratio(level_map, mid) < 0.90


def test_render_of_a_missing_case_is_one_line_exit_2(tmp_path, monkeypatch, capsys):
    assert _run(monkeypatch, "render", str(tmp_path / "nope"), "--out", str(tmp_path / "o")) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err
