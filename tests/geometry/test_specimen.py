"""Specimen reconstruction: container regions from landmarks (known answers on a box-shaped neck), the
fallback from MR nodes, node placement through a warp and the specimen.json export."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from neckmatch.geometry.specimen import Warp, container_regions, reconstruct_specimen
from neckmatch.model import Case, Container, Curve, LabelMap, Landmarks, PathNode, Side, SurgicalLevel

# Right-side curves are vertical lines (x, y); the left side mirrors x. z: skull base 40, hyoid 0, cricoid -30,
# clavicles -55, manubrium -65.
_RIGHT = {"carotid_medial": (10.0, 0.0), "SMG_posterior": (30.0, 10.0), "SCM_posterior": (40.0, -10.0),
          "IJV_posterior": (25.0, -5.0), "digastric_anterior": (8.0, 30.0), "scalene_anterior": (30.0, -20.0),
          "trapezius_anterior": (50.0, -40.0)}


def landmarks():
    curves = {}
    for stem, (x, y) in _RIGHT.items():
        for side, sx in (("R", x), ("L", -x)):
            curves[f"{stem}_{side}"] = Curve(f"{stem}_{side}", [[sx, y, -100.0], [sx, y, 60.0]])
    pts = {"skull_base": [0, 0, 40], "hyoid_body_inferior": [0, 20, 0], "cricoid_arch_inferior": [0, 20, -30],
           "manubrium_superior": [0, 20, -65], "clavicle_superior_R": [60, 0, -55],
           "clavicle_superior_L": [-60, 0, -55]}
    return Landmarks(points=pts, curves=curves)


def case(lm, nodes, containers=()):
    return Case("S1", "R", {Side.R: frozenset({SurgicalLevel.II, SurgicalLevel.III, SurgicalLevel.IV})},
                LabelMap(np.zeros((2, 2, 2), np.int16), np.eye(4)), lm, tuple(nodes), tuple(containers))


EMPTY_LEVELS = pd.DataFrame(columns=["node", "side", "level", "x", "y", "z"])


def test_level_iii_region_from_landmarks():
    c = case(landmarks(), [PathNode("n1", "R-III", "R", "III", "negative", size_mm=5, cc=0.5, ap=0.5)])
    reg = container_regions(c, EMPTY_LEVELS)["R-III"]
    assert (reg.z_top, reg.z_bottom) == (0.0, -30.0)  # hyoid to cricoid
    # anterior limit = carotid y + 15, posterior = SCM posterior y
    assert np.allclose(reg.y_ant, 15.0) and np.allclose(reg.y_post, -10.0)
    assert reg.relative([[25.0, 2.5, -15.0]]).tolist() == [[0.5, 0.5]]


def test_merged_container_spans_both_levels():
    c = case(landmarks(), [], [Container("R-III+IV", "R", "III+IV", 3, 0)])
    reg = container_regions(c, EMPTY_LEVELS)["R-III+IV"]
    # hyoid down to 15 mm below the clavicle: surgical IV holds imaging IV and SC
    assert (reg.z_top, reg.z_bottom) == (0.0, -70.0)
    assert reg.y_post[-1] == -40.0  # SC reaches back to the trapezius


def test_relative_absolute_round_trip():
    c = case(landmarks(), [], [Container("R-II", "R", "II", 3, 0)])
    reg = container_regions(c, EMPTY_LEVELS)["R-II"]
    rng = np.random.default_rng(1)
    cc, ap = rng.uniform(0, 1, 5), rng.uniform(0, 1, 5)
    back = reg.relative(reg.absolute(cc, ap))
    assert np.allclose(back, np.column_stack([cc, ap]))


def test_region_from_mr_nodes_without_landmarks():
    levels = pd.DataFrame({"node": [1, 2], "side": ["R", "R"], "level": ["IIA", "IIB"], "x": [30.0, 40.0],
                           "y": [0.0, -20.0], "z": [30.0, 10.0]})
    c = case(None, [PathNode("n1", "R-II", "R", "II", "negative", size_mm=5)])
    reg = container_regions(c, levels)["R-II"]
    assert reg.source == "mr-nodes"
    assert (reg.z_top, reg.z_bottom) == (35.0, 5.0)
    assert np.allclose(reg.y_ant, 5.0) and np.allclose(reg.y_post, -25.0)


def test_placement_through_warp_and_json():
    nodes = [PathNode("a", "R-III", "R", "III", "negative", size_mm=5, cc=0.6, ap=0.5),
             PathNode("b", "R-III", "R", "III", "negative", size_mm=5)]
    spec = reconstruct_specimen(case(landmarks(), nodes), EMPTY_LEVELS)
    warped = spec.with_warps({"R-III": Warp(1.0, 0.1, 1.0, 0.0)}, tuple(nodes))
    a = warped.placed.set_index("node")
    # path cc 0.6 = MR cc 0.5 + shift 0.1 -> z = -15
    assert a.loc["a", "z"] == pytest.approx(-15.0)
    assert a.loc["b", "sd_cc_mm"] == pytest.approx(30.0 / np.sqrt(12.0))
    assert not a.loc["b", "positioned"]
    doc = json.loads(json.dumps(warped.to_json()))
    cont = doc["containers"][0]
    assert cont["warp"]["shift_cc"] == 0.1
    assert [n["node"] for n in cont["nodes"]] == ["a", "b"]


def test_warp_invert_is_inverse():
    w = Warp(1.3, -0.1, 0.8, 0.2)
    cc, ap = w.invert(*w.apply(np.array([0.2, 0.9]), np.array([0.4, 0.1])))
    assert np.allclose(cc, [0.2, 0.9]) and np.allclose(ap, [0.4, 0.1])
