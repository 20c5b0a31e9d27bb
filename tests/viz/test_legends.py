"""The legends of the map PNG: drawn once per legend content, their pixels pasted back exactly."""

from __future__ import annotations

import dataclasses

import matplotlib.image as mpimg
import numpy as np
import pytest

from neckmatch.viz.legends import LEGEND_LAYERS
from neckmatch.viz.png import render_scene, scene_figure
from neckmatch.viz.scene import build_scene, label_surfaces


@pytest.fixture(scope="module")
def scene(level_map, node_map, node_table, containers):
    lm, names = level_map
    levels = {names[k]: m for k, m in label_surfaces(lm).items()}
    return build_scene("SYN1", label_surfaces(node_map), node_table, levels, containers)


def test_legends_drawn_once_are_pasted_back_as_drawn(scene, tmp_path):
    tall = dataclasses.replace(scene, meshes=[dataclasses.replace(m, vertices=m.vertices * [1.0, 1.0, 3.0])
                                              for m in scene.meshes])
    LEGEND_LAYERS.clear()
    fresh = mpimg.imread(render_scene(tall, tmp_path / "tall_fresh.png"))
    LEGEND_LAYERS.clear()
    first = mpimg.imread(render_scene(scene, tmp_path / "first.png"))
    again = mpimg.imread(render_scene(scene, tmp_path / "again.png"))
    pasted = mpimg.imread(render_scene(tall, tmp_path / "tall_pasted.png"))
    assert len(LEGEND_LAYERS) == 1  # one legend content: drawn once, pasted twice
    anchors = [scene_figure(s)[0].legends[0].get_bbox_to_anchor().x0 for s in (scene, tall)]
    assert anchors[0] != anchors[1]  # the taller scene's legends sit elsewhere
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(fresh, pasted)
