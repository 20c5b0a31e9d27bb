"""The PNG of a synthetic case: size, content, legend colours, orientation, and the case orchestration."""

from __future__ import annotations

import json

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
import trimesh

from neckmatch.errors import InputError
from neckmatch.viz.render import (
    LABEL_RADIUS_PX,
    VIEWS,
    _containers,
    case_node_table,
    place_labels,
    render_scene,
    render_views,
)
from neckmatch.viz.scene import (
    LEVEL_COLORS,
    OUTCOME_COLORS,
    _volume_mm3,
    build_scene,
    label_surfaces,
    parse_level_name,
)


@pytest.fixture(scope="module")
def scene(level_map, node_map, node_table, containers):
    lm, names = level_map
    levels = {names[k]: m for k, m in label_surfaces(lm).items()}
    return build_scene("SYN1", label_surfaces(node_map), node_table, levels, containers)


@pytest.fixture(scope="module")
def png(scene, tmp_path_factory):
    path = render_scene(scene, tmp_path_factory.mktemp("png") / "syn.png", size=(1600, 1000))
    return (mpimg.imread(path)[..., :3] * 255).round().astype(np.uint8)


def _has_color(img: np.ndarray, rgb, min_pixels: int = 20) -> bool:
    target = np.round(np.asarray(rgb) * 255).astype(int)
    return int(np.all(np.abs(img.astype(int) - target) <= 1, axis=-1).sum()) >= min_pixels


def test_png_is_large_and_not_blank(png):
    assert png.shape == (1000, 1600, 3)
    assert (png < 250).any(axis=-1).mean() > 0.05  # more than a title on white


def test_every_level_and_outcome_colour_is_in_the_legend(png):
    legend = png[:, 1250:]  # the legends sit right of the three views
    for level in ("IA", "IB", "IIA", "IIB", "III", "IV", "VA", "VB", "VI"):
        assert _has_color(legend, LEVEL_COLORS[level]), level
    for cat, rgb in OUTCOME_COLORS.items():
        assert _has_color(legend, rgb), cat
    assert not _has_color(legend, LEVEL_COLORS["SC"])  # no SC region in this scene, so not in the legend


def test_views_see_the_right_side_where_a_radiologist_expects_it(scene):
    # One TP node (red) on the patient's right at (30, 5, 25): image left in the anterior view, and only in the
    # right lateral view, anterior half (image right).
    sizes = [(300, 300)] * 3
    ant, rlat, llat = (shot.image for shot in render_views(scene, VIEWS, sizes, px_per_mm=2.0))
    red = np.array(OUTCOME_COLORS["TP"]) * 255

    def red_cols(img):
        d = np.abs(img.astype(float) - red).sum(axis=-1)
        return np.nonzero(d < 120)[1]

    assert red_cols(ant).size > 0 and red_cols(ant).mean() < 150
    assert red_cols(rlat).size > 0 and red_cols(rlat).mean() > 150
    assert red_cols(llat).size == 0


@pytest.fixture(scope="module")
def shots(scene):
    return render_views(scene, VIEWS, [(300, 300)] * 3, px_per_mm=2.0)


def _pixels_of(img: np.ndarray, rgb) -> np.ndarray:
    target = np.round(np.asarray(rgb) * 255).astype(np.uint8)
    return np.all(img == target, axis=-1)


def test_regions_are_drawn_in_their_exact_legend_colours(shots):
    # Opaque flat regions: the front-most level at a pixel shows the legend colour itself, not a blend.
    ant = shots[0].image
    for level in ("IA", "IB", "VI", "III", "IV"):
        assert _pixels_of(ant, LEVEL_COLORS[level]).sum() > 200, level


def test_each_label_sits_inside_its_own_region_and_labels_do_not_pile_up(scene, shots):
    colour = {m.name: m.color[:3] for m in scene.of_kind("level")}
    for shot in shots:
        for name, (col, row) in shot.labels.items():
            own = _pixels_of(shot.image, colour[name])
            r, c = int(round(row)), int(round(col))
            assert own[r - 4 : r + 5, c - 4 : c + 5].all(), name  # room around the label point
        pts = np.array(list(shot.labels.values()))
        gaps = np.linalg.norm(pts[:, None] - pts[None], axis=-1) + 1e6 * np.eye(len(pts))
        assert gaps.min() >= 2 * LABEL_RADIUS_PX


def test_only_levels_seen_from_the_front_are_labelled_in_the_anterior_view(shots):
    ant, rlat, llat = shots
    assert {"LN_Neck_IA_R", "LN_Neck_IB_L", "LN_Neck_VI_R", "LN_Neck_IV_L"} <= set(ant.labels)
    assert "LN_Neck_IIB_R" not in ant.labels  # a 5 mm strip beside IIA from the front: no room for a label
    assert ant.hidden == {}  # the anterior view outlines no covered regions
    # From the side, IA lies entirely behind IB: a dashed outline of its silhouette, no plain label.
    assert "LN_Neck_IA_R" in rlat.hidden and "LN_Neck_IA_R" not in rlat.labels
    assert rlat.hidden["LN_Neck_IA_R"].sum() == pytest.approx(40 * 40, rel=0.1)  # y 20-40, z 10-30 mm at 2 px/mm
    assert "LN_Neck_IA_L" in llat.hidden and not any(n.endswith("_L") for n in rlat.labels)


def test_place_labels_separates_piled_up_labels():
    anchors = {f"L{i}": (100.0, 100.0) for i in range(8)} | {"far": (400.0, 10.0)}
    placed = place_labels(anchors, dx=30.0, dy=15.0)
    assert placed["far"] == (400.0, 10.0)
    pts = np.array(list(placed.values()))
    dx, dy = np.abs(pts[:, None, 0] - pts[None, :, 0]), np.abs(pts[:, None, 1] - pts[None, :, 1])
    apart = (dx >= 30.0) | (dy >= 15.0) | np.eye(len(pts), dtype=bool)
    assert apart.all()
    assert max(abs(x - 100.0) + abs(y - 100.0) for n, (x, y) in placed.items() if n != "far") <= 60.0


def test_label_surfaces_encloses_the_ball_volume(node_map):
    surf = label_surfaces(node_map, labels=[1], smooth_iterations=0)[1]
    assert surf.is_watertight
    assert surf.volume == pytest.approx(4 / 3 * np.pi * 7.0**3, rel=0.08)  # outward faces despite the x flip
    assert np.allclose(surf.vertices.mean(axis=0), [30.0, 5.0, 25.0], atol=0.5)


def test_scene_names_and_colouring(scene):
    levels, nodes = scene.of_kind("level"), scene.of_kind("node")
    assert len(levels) == 18 and len(nodes) == 6 and len(scene.of_kind("container")) == 2
    assert {parse_level_name(m.name)[0] for m in levels} == set(LEVEL_COLORS) - {"VII", "RP", "SC"}
    by_name = {m.name: m for m in nodes}
    assert by_name["node_3"].color[:3] == OUTCOME_COLORS["FN"]
    assert by_name["node_5"].attrs["category"] == "unmatched"
    assert scene.title == "Case SYN1: 6 MR nodes - TP 1, FN 1, FP 1, TN 2, unmatched 1"


def test_case_node_table_joins_levels_and_truth(tmp_path, node_table):
    levels = node_table[["case_id", "node", "side", "level", "x", "y", "z"]]
    levels.to_csv(tmp_path / "levels.csv", index=False)
    truth = node_table.rename(columns={"node": "mr_node"})[["case_id", "mr_node", "outcome", "match_kind"]]
    extra = pd.DataFrame([{"case_id": "SYN1", "mr_node": np.nan, "outcome": "FN", "match_kind": "unmatched"}])
    pd.concat([truth, extra]).to_csv(tmp_path / "truth_nodes.csv", index=False)
    table = case_node_table(None, tmp_path)
    assert table["node"].tolist() == [1, 2, 3, 4, 5, 6]
    assert table.set_index("node").loc[3, "outcome"] == "FN"


def test_bad_truth_table_is_an_input_error(tmp_path, node_table):
    node_table.to_csv(tmp_path / "levels.csv", index=False)
    pd.DataFrame({"mr_node": [1]}).to_csv(tmp_path / "truth_nodes.csv", index=False)
    with pytest.raises(InputError, match="needs mr_node and outcome"):
        case_node_table(None, tmp_path)


def test_containers_from_specimen_json(tmp_path, containers):
    (tmp_path / "specimen.json").write_text(json.dumps({"case_id": "SYN1", "containers": containers}))
    assert [c["container"] for c in _containers(tmp_path)] == ["R-II", "L-III+IV"]
    assert _containers(tmp_path / "absent") == []


def test_level_region_volumes_in_the_scene(scene):
    box = trimesh.creation.box(extents=(2.0, 3.0, 4.0))
    assert _volume_mm3(box) == pytest.approx(24.0)
    ball = trimesh.creation.icosphere(subdivisions=3, radius=5.0)
    assert _volume_mm3(ball) == pytest.approx(ball.volume)
    vols = {m.name: m.attrs["volume_ml"] for m in scene.of_kind("level")}
    assert vols["LN_Neck_IA_R"] == pytest.approx(10 * 20 * 20 / 1000.0, rel=0.15)  # the 10 x 20 x 20 mm box
    assert vols["LN_Neck_IV_L"] == pytest.approx(25 * 25 * 30 / 1000.0, rel=0.15)
