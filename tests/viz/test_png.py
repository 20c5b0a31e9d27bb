"""The PNG of a synthetic case: size, content, legend colours, orientation, and the case orchestration."""

from __future__ import annotations

import dataclasses
import json

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
import trimesh
from matplotlib.figure import Figure

from neckmatch.errors import InputError
from neckmatch.viz.legends import draw_legends
from neckmatch.viz.maps import node_table as case_node_table
from neckmatch.viz.maps import path_markers, specimen_containers
from neckmatch.viz.png import (
    LABEL_RADIUS_PX,
    VIEWS,
    place_labels,
    project_points,
    render_scene,
    render_views,
    scene_figure,
)
from neckmatch.viz.scene import (
    LEVEL_COLORS,
    OUTCOME_COLORS,
    PATH_STATUS_COLORS,
    PathMarker,
    _volume_mm3,
    build_scene,
    label_surfaces,
    parse_level_name,
    unmatched_path_markers,
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


def test_case_node_table_joins_levels_and_truth(node_table):
    levels = node_table[["case_id", "node", "side", "level", "x", "y", "z"]]
    truth = node_table.rename(columns={"node": "mr_node"})[["case_id", "mr_node", "outcome", "match_kind"]]
    extra = pd.DataFrame([{"case_id": "SYN1", "mr_node": np.nan, "outcome": "FN", "match_kind": "unmatched"}])
    table = case_node_table(None, {"levels": levels, "truth_nodes": pd.concat([truth, extra], ignore_index=True)})
    assert table["node"].tolist() == [1, 2, 3, 4, 5, 6]
    assert table.set_index("node").loc[3, "outcome"] == "FN"


def test_bad_truth_table_is_an_input_error(node_table):
    tables = {"levels": node_table, "truth_nodes": pd.DataFrame({"mr_node": [1]})}
    with pytest.raises(InputError, match="needs mr_node and outcome"):
        case_node_table(None, tables)


def test_containers_from_specimen_json(containers):
    doc = json.loads(json.dumps({"case_id": "SYN1", "containers": containers}))  # as specimen.json reads back
    assert [c["container"] for c in specimen_containers(doc)] == ["R-II", "L-III+IV"]
    assert specimen_containers({}) == []


def test_level_region_volumes_in_the_scene(scene):
    box = trimesh.creation.box(extents=(2.0, 3.0, 4.0))
    assert _volume_mm3(box) == pytest.approx(24.0)
    ball = trimesh.creation.icosphere(subdivisions=3, radius=5.0)
    assert _volume_mm3(ball) == pytest.approx(ball.volume)
    vols = {m.name: m.attrs["volume_ml"] for m in scene.of_kind("level")}
    assert vols["LN_Neck_IA_R"] == pytest.approx(10 * 20 * 20 / 1000.0, rel=0.15)  # the 10 x 20 x 20 mm box
    assert vols["LN_Neck_IV_L"] == pytest.approx(25 * 25 * 30 / 1000.0, rel=0.15)


# Pathology nodes without an MR partner: a positive one in the right IIB box (no MR node near), a negative one in
# the left IV box, and a right one the specimen did not place.
MARKERS = [
    PathMarker("R-II-05", "R", "positive", "R-II", np.array([35.0, -12.0, 30.0])),
    PathMarker("L-III+IV-02", "L", "negative", "L-III+IV", np.array([-32.0, 5.0, -40.0])),
    PathMarker("R-II-06", "R", "negative", "R-II", None),
]


@pytest.fixture(scope="module")
def marked(scene):
    return dataclasses.replace(scene, path_markers=list(MARKERS))


@pytest.fixture(scope="module")
def marked_shots(marked):
    return render_views(marked, VIEWS, [(300, 300)] * 3, px_per_mm=2.0)


def test_project_points_lands_on_the_rendered_node(shots, scene):
    # The TP ball (radius 7 mm, centre (30, 5, 25)) in the right lateral view: its red pixels centre on the
    # projected centre.
    rows, cols = np.nonzero(_pixels_of(shots[1].image, OUTCOME_COLORS["TP"]) | (
        np.abs(shots[1].image.astype(float) - np.array(OUTCOME_COLORS["TP"]) * 255).sum(axis=-1) < 120))
    col, row = project_points(np.array([[30.0, 5.0, 25.0]]), VIEWS[1], scene.bounds(), (300, 300), 2.0)[0]
    assert cols.mean() == pytest.approx(col, abs=1.0)
    assert rows.mean() == pytest.approx(row, abs=1.0)


def test_unmatched_path_nodes_are_placed_in_the_lateral_views_of_their_side(marked, marked_shots):
    ant, rlat, llat = marked_shots
    assert ant.markers == {} and ant.containers == {}  # the anterior view draws no containers
    assert set(rlat.markers) == {"R-II-05"} and rlat.unplaced == 1
    assert set(llat.markers) == {"L-III+IV-02"} and llat.unplaced == 0
    # by hand: (y -12, z 30) lies 8 mm anterior of and 10 mm below the R-II corner (y -20, z 40); at 2 px/mm
    # with anterior on the image right that is 16 px right and 20 px down
    col, row = rlat.markers["R-II-05"]
    ccol, crow = rlat.containers["R-II"]
    assert (col - ccol, row - crow) == pytest.approx((16.0, 20.0))


def test_container_names_sit_at_the_top_left_corner_of_their_outline(marked, marked_shots):
    _ant, rlat, llat = marked_shots
    assert set(rlat.containers) == {"R-II"} and set(llat.containers) == {"L-III+IV"}
    # R-II spans y -20..15 (image left is posterior) and z 10..40 mm: its top-left corner is (y -20, z 40).
    corner = project_points(np.array([[35.0, -20.0, 40.0]]), VIEWS[1], marked.bounds(), (300, 300), 2.0)[0]
    assert rlat.containers["R-II"] == pytest.approx(tuple(corner))


@pytest.fixture(scope="module")
def marked_figure(marked):
    fig, panels = scene_figure(marked, size=(1600, 1000))
    fig.canvas.draw()
    img = np.asarray(fig.canvas.buffer_rgba())[..., :3]
    return fig, panels, img


def test_the_positive_marker_is_drawn_where_the_node_was_placed(marked_figure):
    fig, panels, img = marked_figure
    ax, shot = panels[1]
    x, y = ax.transData.transform(shot.markers["R-II-05"])
    r, c = int(round(img.shape[0] - y)), int(round(x))
    near = img[r - 12 : r + 13, c - 12 : c + 13]
    assert _has_color(near, PATH_STATUS_COLORS["positive"], min_pixels=15)
    away = np.ones(img.shape[:2], dtype=bool)
    away[r - 12 : r + 13, c - 12 : c + 13] = False
    away[:, 1250:] = False  # the legend
    assert not _has_color(img[away], PATH_STATUS_COLORS["positive"], min_pixels=1)


def test_legend_and_labels_name_the_new_marks(marked_figure):
    fig, panels, _img = marked_figure
    legend = [t.get_text() for lg in fig.legends for t in lg.get_texts()]
    assert "pathology node, no MR partner (positive)" in legend
    assert "pathology node, no MR partner (negative)" in legend
    texts = [[t.get_text() for t in ax.texts] for ax, _shot in panels]
    assert "R-II" in texts[1] and "L-III+IV" not in texts[1] and "L-III+IV" in texts[2]
    assert not any(t in texts[0] for t in ("R-II", "L-III+IV"))
    assert "1 unplaced pathology node without MR partner" in [" ".join(t.split()) for t in texts[1]]


def test_container_names_keep_clear_of_the_other_labels(marked_figure):
    _fig, panels, _img = marked_figure
    for ax, _shot in panels[1:]:
        names = [t for t in ax.texts if t.get_text() in ("R-II", "L-III+IV")]
        others = [t.get_window_extent() for t in ax.texts if t not in names and t.get_text()]
        assert len(names) == 1 and len(others) >= 5  # level labels, orientation letters, scale bar
        box = names[0].get_window_extent()
        assert not any(box.overlaps(b) for b in others), names[0].get_text()


def test_no_markers_no_legend_entry(scene):
    fig = Figure()
    draw_legends(fig, scene, 0.8)
    legend = [t.get_text() for lg in fig.legends for t in lg.get_texts()]
    assert "pathology container" in legend and not any("no MR partner" in t for t in legend)


def test_unmatched_path_markers_from_the_truth_table_and_specimen():
    truth = pd.DataFrame({
        "mr_node": [3.0, np.nan, np.nan, np.nan],
        "path_node": ["R-II-01", "R-II-02", "L-IV-01", "L-IV-02"],
        "side": ["R", "R", "L", "L"],
        "container": ["R-II", "R-II", "L-IV", "L-IV"],
        "path_status": ["positive", "positive", "negative", np.nan],
    })
    spec = [{"container": "R-II", "side": "R", "nodes": [
        {"node": "R-II-01", "position_ras_mm": [1.0, 2.0, 3.0], "positioned": True},
        {"node": "R-II-02", "position_ras_mm": [40.0, -5.0, 20.0], "positioned": True}]},
        {"container": "L-IV", "side": "L", "nodes": [
            {"node": "L-IV-01", "position_ras_mm": [-40.0, 0.0, -30.0], "positioned": False}]}]
    got = unmatched_path_markers(truth, spec)
    assert [(m.node, m.side, m.status) for m in got] == [
        ("R-II-02", "R", "positive"), ("L-IV-01", "L", "negative"), ("L-IV-02", "L", "unknown")]
    assert got[0].position.tolist() == [40.0, -5.0, 20.0]
    assert got[1].position is None and got[2].position is None  # not positioned / not in the specimen


def test_marker_title_counts(scene):
    titled = build_scene("SYN1", {}, pd.DataFrame({"node": [], "outcome": []}), path_markers=MARKERS)
    assert titled.title.endswith("; 3 pathology nodes without MR partner (1 positive)")
    assert "MR partner" not in scene.title


def test_truth_table_columns_for_the_markers():
    assert path_markers(pd.DataFrame({"mr_node": [1], "outcome": ["TP"]}), []) == []  # MR nodes only: none
    with pytest.raises(InputError, match="mr_node: missing column"):
        path_markers(pd.DataFrame({"path_node": ["R-II-01"], "outcome": [""]}), [])


def test_node_boxes_from_the_table_hold_every_voxel_of_each_node(node_map, node_table):
    from scipy import ndimage

    from neckmatch.viz.maps import node_boxes

    table = node_table.assign(long_axis_mm=2.0)  # far too small: the boxes must grow to the whole node
    boxes = node_boxes(node_map, table)
    full = ndimage.find_objects(node_map.data)
    for lab, box in boxes.items():
        crop = node_map.data[box] == lab
        assert crop.sum() == (node_map.data == lab).sum()
        assert all(b.start <= f.start and b.stop >= f.stop for b, f in zip(box, full[lab - 1], strict=True))

