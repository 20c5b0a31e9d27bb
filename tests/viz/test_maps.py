"""The maps of whole cases: the registered specimen layer (only for cases with specimen scans) and review nodes."""

from __future__ import annotations

import json
from pathlib import Path
from xml.etree import ElementTree as ET

import numpy as np
import pandas as pd
import pytest
import trimesh

from neckmatch.errors import InputError
from neckmatch.io.case import read_case
from neckmatch.pipeline import compute_case
from neckmatch.synth import SynthParams, generate_cohort
from neckmatch.viz.colors import OUTCOME_COLORS, OUTCOME_LABELS, SPECIMEN_COLOR
from neckmatch.viz.maps import case_scene, registered_specimen_nodes, render_maps
from neckmatch.viz.png import scene_figure
from neckmatch.viz.scene import build_scene, label_surfaces

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "minimal_case"


@pytest.fixture(scope="module")
def specimen_case(tmp_path_factory):
    """A synthetic case with ex vivo specimen scans, run in memory, and its maps."""
    root = tmp_path_factory.mktemp("spec")
    d = generate_cohort(1, 31, root / "c", SynthParams(specimen_fraction=1.0))[0]
    case, result = read_case(d), compute_case(d)
    paths = render_maps(case, root / "maps", result.tables, result.specimen)
    return case, result, paths


def test_specimen_layer_sits_at_the_registered_positions(specimen_case):
    case, result, _ = specimen_case
    reg = result.tables["specimen_registration"]
    scene = case_scene(case, result.tables, result.specimen).scene
    marks = scene.specimen_markers
    assert len(marks) == len(reg) > 0
    np.testing.assert_allclose([m.position for m in marks], reg[["x", "y", "z"]].to_numpy(float))
    paired = reg["mr_node"].notna().to_numpy()
    assert [m.mr_node for m in marks] == [int(v) if ok else None for v, ok in zip(reg["mr_node"], paired,
                                                                                   strict=True)]
    levels = result.levels.set_index("node")
    for m in marks:
        if m.mr_node is not None:  # the line ends at the paired MR node's centroid
            np.testing.assert_allclose(m.partner, levels.loc[m.mr_node, ["x", "y", "z"]].to_numpy(float))
            assert m.side == levels.loc[m.mr_node, "side"]
    octahedra = scene.of_kind("specimen")
    assert len(octahedra) == len(reg)
    np.testing.assert_allclose([o.vertices.mean(axis=0) for o in octahedra], reg[["x", "y", "z"]].to_numpy(float),
                               atol=1e-9)
    links = scene.of_kind("specimen_link")
    assert len(links) == 1 and len(links[0].lines) == int(paired.sum())


def test_specimen_layer_is_in_every_file(specimen_case):
    _, result, paths = specimen_case
    reg = result.tables["specimen_registration"]
    glb = trimesh.load(paths["glb"], file_type="glb")
    spec = {n: g for n, g in glb.geometry.items() if g.metadata.get("kind") == "specimen"}
    assert len(spec) == len(reg)
    assert all(g.metadata["color_rgba"][:3] == [round(c, 4) for c in SPECIMEN_COLOR] for g in spec.values())
    points = json.loads(paths["specimen_markups"].read_text())["markups"][0]["controlPoints"]
    assert len(points) == len(reg)
    root = ET.parse(paths["mrml"]).getroot()
    stored = {e.get("fileName") for e in root.iter() if e.get("fileName")}
    assert paths["specimen_markups"].name in stored
    assert "registered specimen nodes" in paths["viewer"].read_text()


def test_no_specimen_layer_without_specimen_scans():
    case = read_case(EXAMPLE)
    result = compute_case(EXAMPLE)
    scene = case_scene(case, result.tables, result.specimen).scene
    assert "specimen_registration" not in result.tables
    assert scene.specimen_markers == [] and not scene.of_kind("specimen") and not scene.of_kind("specimen_link")
    fig, _ = scene_figure(scene)
    labels = [t.get_text() for leg in fig.legends for t in leg.get_texts()]
    assert not any("specimen node" in t for t in labels)


def test_the_png_legend_names_the_specimen_layer(specimen_case):
    case, result, _ = specimen_case
    fig, _ = scene_figure(case_scene(case, result.tables, result.specimen).scene)
    labels = [t.get_text() for leg in fig.legends for t in leg.get_texts()]
    assert any(t.startswith("registered specimen node") for t in labels)


def test_nodes_awaiting_review_have_their_own_colour(node_map, node_table):
    table = node_table.copy()
    table.loc[table["node"] == 5, ["match_kind", "decision"]] = ["undecided", "review"]
    table.loc[table["node"] == 6, ["outcome", "match_kind", "decision"]] = [np.nan, "matched", "review"]
    scene = build_scene("SYN1", label_surfaces(node_map), table)
    by_name = {m.name: m for m in scene.of_kind("node")}
    for name in ("node_5", "node_6"):
        assert by_name[name].attrs["category"] == "review"
        assert by_name[name].color[:3] == OUTCOME_COLORS["review"] != OUTCOME_COLORS["unmatched"]
    assert by_name["node_1"].attrs["category"] == "TP"
    assert scene.node_legend["review"] == OUTCOME_COLORS["review"]
    assert scene.title == "Case SYN1: 6 MR nodes - TP 1, FN 1, FP 1, TN 1, to review 2, unmatched 0"
    fig, _ = scene_figure(scene, (1600, 1000))
    labels = [t.get_text() for leg in fig.legends for t in leg.get_texts()]
    assert OUTCOME_LABELS["review"] in labels


def test_review_colour_in_a_real_case(specimen_case):
    case, result, _ = specimen_case
    truth = result.tables["truth_nodes"]
    undecided = set(truth.loc[truth["match_kind"] == "undecided", "mr_node"].dropna().astype(int))
    assert undecided  # the synthetic case has proposed matches awaiting review
    scene = case_scene(case, result.tables, result.specimen).scene
    cats = {int(m.attrs["node"]): m.attrs["category"] for m in scene.of_kind("node")}
    assert {n for n, c in cats.items() if c == "review"} >= undecided
    assert all(cats[n] != "unmatched" for n in undecided)


def test_a_registration_table_without_positions_is_an_input_error(node_table):
    reg = pd.DataFrame({"image": ["R"], "specimen_node": [1], "mr_node": [1], "x": [30.0], "y": [5.0]})
    with pytest.raises(InputError, match="specimen_registration.*z"):
        registered_specimen_nodes(reg, node_table)
    assert registered_specimen_nodes(None, node_table) == []


def test_the_overlapped_files_are_the_serial_files(specimen_case, tmp_path):
    """The files written in a thread beside the PNG (``overlap``, the default) are byte for byte those written one
    after the other (as a cohort worker does)."""
    case, result, paths = specimen_case
    serial = render_maps(case, tmp_path / "serial", result.tables, result.specimen, overlap=False)
    assert serial.keys() == paths.keys()
    written = sorted(p.relative_to(tmp_path / "serial") for p in (tmp_path / "serial").rglob("*") if p.is_file())
    assert len(written) > len(paths)  # the .vtm's parts are in a folder beside it
    for rel in written:
        assert _undated(paths["png"].parent / rel) == _undated(tmp_path / "serial" / rel), rel


def _undated(path: Path) -> bytes:
    """The bytes of a file, a NRRD header's comment lines (pynrrd's "written on <date>") left out."""
    data = path.read_bytes()
    if not path.name.endswith(".nrrd"):
        return data
    header, _, voxels = data.partition(b"\n\n")
    return b"\n".join(line for line in header.split(b"\n") if not line.startswith(b"#")) + b"\n\n" + voxels


def test_a_failing_png_leaves_nothing_of_the_overlapped_files(specimen_case, tmp_path, monkeypatch):
    from neckmatch.errors import RenderError
    from neckmatch.viz import png

    case, result, _ = specimen_case
    started = []

    def broken(scene, path, size=(2000, 1100)):
        started.append(path)
        raise RenderError("no OpenGL today")

    monkeypatch.setattr(png, "render_scene", broken)
    with pytest.raises(RenderError, match="no OpenGL today"):
        render_maps(case, tmp_path / "maps", result.tables, result.specimen)
    assert started and not (tmp_path / "maps").exists()
    assert list(tmp_path.iterdir()) == []  # the staging folder, where the thread wrote, is gone too
