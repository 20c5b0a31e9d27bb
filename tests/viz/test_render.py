"""The PNG of a synthetic case: size, content, legend colours, orientation, and the case orchestration."""

from __future__ import annotations

import json

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest

from neckmatch.errors import InputError
from neckmatch.viz.render import VIEWS, _containers, case_node_table, render_scene, render_views
from neckmatch.viz.scene import LEVEL_COLORS, OUTCOME_COLORS, build_scene, label_surfaces, parse_level_name


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
    (ant, _), (rlat, _), (llat, _) = render_views(scene, VIEWS, sizes, px_per_mm=2.0)
    red = np.array(OUTCOME_COLORS["TP"]) * 255

    def red_cols(img):
        d = np.abs(img.astype(float) - red).sum(axis=-1)
        return np.nonzero(d < 120)[1]

    assert red_cols(ant).size > 0 and red_cols(ant).mean() < 150
    assert red_cols(rlat).size > 0 and red_cols(rlat).mean() > 150
    assert red_cols(llat).size == 0


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
