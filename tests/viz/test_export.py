"""GLB, VTK multiblock, seg.nrrd and markups of a synthetic scene, each read back."""

from __future__ import annotations

import json

import nrrd
import numpy as np
import pytest
import trimesh
import vtk

from neckmatch.io.labelmap import read_label_map
from neckmatch.viz.export import RAS_TO_GLTF, write_glb, write_level_segmentation, write_node_markups, write_vtm
from neckmatch.viz.scene import LEVEL_COLORS, OUTCOME_COLORS, build_scene, label_surfaces


@pytest.fixture(scope="module")
def scene(level_map, node_map, node_table, containers):
    lm, names = level_map
    levels = {names[k]: m for k, m in label_surfaces(lm, smooth_iterations=0).items()}
    return build_scene("SYN1", label_surfaces(node_map), node_table, levels, containers)


def test_ras_to_gltf_is_a_proper_rotation_in_metres():
    assert np.linalg.det(RAS_TO_GLTF / 0.001) == pytest.approx(1.0)
    # patient's superior is glTF +Y, anterior is +Z (towards the viewer), patient's left is +X.
    assert (np.array([0, 0, 1000.0]) @ RAS_TO_GLTF.T).tolist() == [0.0, 1.0, 0.0]
    assert (np.array([0, 1000.0, 0]) @ RAS_TO_GLTF.T).tolist() == [0.0, 0.0, 1.0]
    assert (np.array([-1000.0, 0, 0]) @ RAS_TO_GLTF.T).tolist() == [1.0, 0.0, 0.0]


def test_glb_has_one_named_geometry_per_level_and_node_with_extras(scene, tmp_path):
    path = write_glb(scene, tmp_path / "syn.glb")
    back = trimesh.load(path, file_type="glb")
    names = set(back.geometry)
    assert {m.name for m in scene.of_kind("level")} <= names
    assert {f"node_{k}" for k in range(1, 7)} <= names
    assert len([n for n in names if n.startswith(("LN_Neck_", "node_"))]) == 18 + 6
    tp = back.geometry["node_1"]
    assert tp.metadata["outcome"] == "TP" and tp.metadata["level"] == "IIA" and tp.metadata["side"] == "R"
    assert tp.metadata["match_kind"] == "matched"
    assert tp.visual.material.baseColorFactor[:3].tolist() == [round(255 * c) for c in OUTCOME_COLORS["TP"]]
    lvl = back.geometry["LN_Neck_III_L"]
    assert lvl.metadata["level"] == "III" and lvl.visual.material.alphaMode == "BLEND"
    assert back.metadata["case_id"] == "SYN1"
    # glTF axes in metres: node 1 (RAS 30, 5, 25 mm) sits at (-0.030, 0.025, 0.005).
    assert np.allclose(tp.vertices.mean(axis=0), [-0.030, 0.025, 0.005], atol=5e-4)


def test_vtm_has_named_blocks_with_colours(scene, tmp_path):
    path = write_vtm(scene, tmp_path / "syn.vtm")
    reader = vtk.vtkXMLMultiBlockDataReader()
    reader.SetFileName(str(path))
    reader.Update()
    root = reader.GetOutput()
    groups = {root.GetMetaData(i).Get(vtk.vtkCompositeDataSet.NAME()): root.GetBlock(i)
              for i in range(root.GetNumberOfBlocks())}
    assert list(groups) == ["levels", "nodes", "containers", "anatomy"]
    nodes = groups["nodes"]
    names = [nodes.GetMetaData(j).Get(vtk.vtkCompositeDataSet.NAME()) for j in range(nodes.GetNumberOfBlocks())]
    assert names == [f"node_{k}" for k in range(1, 7)]
    fd = nodes.GetBlock(2).GetFieldData()
    assert fd.GetAbstractArray("outcome").GetValue(0) == "FN"
    assert fd.GetArray("color_rgba").GetTuple4(0)[:3] == pytest.approx(OUTCOME_COLORS["FN"])
    assert groups["levels"].GetNumberOfBlocks() == 18
    assert groups["containers"].GetBlock(0).GetNumberOfLines() == 10


def test_seg_nrrd_round_trip_gives_back_the_level_map(level_map, tmp_path):
    lm, names = level_map
    path = write_level_segmentation(lm, names, tmp_path / "levels.seg.nrrd")
    back = read_label_map(path)
    assert np.array_equal(back.data, lm.data)
    assert np.allclose(back.affine, lm.affine)
    assert back.names == names
    header = nrrd.read_header(str(path))
    by_name = {header[f"Segment{n}_Name"]: n for n in range(len(names))}
    n = by_name["LN_Neck_IIB_R"]
    assert [float(c) for c in header[f"Segment{n}_Color"].split()] == pytest.approx(LEVEL_COLORS["IIB"], abs=1e-4)


def test_markups_hold_centroids_with_level_and_outcome(scene, tmp_path):
    path = write_node_markups(scene, tmp_path / "nodes.mrk.json")
    doc = json.loads(path.read_text())
    (mk,) = doc["markups"]
    assert mk["coordinateSystem"] == "LPS"
    cps = {cp["label"]: cp for cp in mk["controlPoints"]}
    assert set(cps) == {f"node_{k}" for k in range(1, 7)}
    assert cps["node_4"]["position"] == pytest.approx([33.0, 0.0, -35.0])  # RAS (-33, 0, -35) in LPS
    assert "level=IV" in cps["node_4"]["description"] and "outcome=FP" in cps["node_4"]["description"]
