"""Level regions, meshes and atlas mode: hand-picked voxels, envelope, mesh volumes, level-name parsing."""

from __future__ import annotations

import json

import numpy as np
import pytest

from neckmatch.errors import InputError
from neckmatch.geometry.levels import assign_levels
from neckmatch.geometry.regions import (
    LEVEL_LABELS,
    LEVEL_NAMES,
    assign_levels_atlas,
    level_label_map,
    level_meshes,
    parse_level_name,
    write_level_regions,
)
from neckmatch.io.labelmap import read_label_map
from neckmatch.model import Curve, LabelMap, Landmarks, Level, Side, SurgicalLevel

# Right-side curves as vertical lines (x, y), RAS mm; the left side mirrors x. Midline x = 0.
RIGHT = {
    "carotid_medial": (10.0, 0.0),
    "SMG_posterior": (30.0, 10.0),
    "SCM_posterior": (40.0, -10.0),
    "IJV_posterior": (25.0, -5.0),
    "digastric_anterior": (8.0, 30.0),
    "scalene_anterior": (30.0, -20.0),
    "trapezius_anterior": (50.0, -40.0),
}


@pytest.fixture(scope="module")
def landmarks() -> Landmarks:
    curves = {}
    for stem, (x, y) in RIGHT.items():
        for side, sx in (("R", x), ("L", -x)):
            curves[f"{stem}_{side}"] = Curve(f"{stem}_{side}", [[sx, y, -100.0], [sx, y, 60.0]])
    points = {
        "skull_base": [0.0, 0.0, 40.0],
        "hyoid_body_inferior": [0.0, 20.0, 0.0],
        "cricoid_arch_inferior": [0.0, 20.0, -30.0],
        "manubrium_superior": [0.0, 20.0, -65.0],
        "clavicle_superior_R": [60.0, 0.0, -55.0],
        "clavicle_superior_L": [-60.0, 0.0, -55.0],
    }
    return Landmarks(points=points, curves=curves)


def _grid(spacing: float = 2.0) -> LabelMap:
    """Axial RAS grid, voxel centres on multiples of ``spacing`` from (-80, -60, -90) to about (80, 60, 50)."""
    shape = tuple(int(n) for n in np.array([160, 120, 140]) // spacing + 1)
    aff = np.diag([spacing, spacing, spacing, 1.0])
    aff[:3, 3] = [-80, -60, -90]
    return LabelMap(np.zeros(shape, dtype=np.uint8), aff)


@pytest.fixture(scope="module")
def level_map(landmarks):
    return level_label_map(landmarks, _grid(), margin_mm=10.0)


def _label_at(lm: LabelMap, p) -> int:
    ijk = np.rint(lm.to_ijk(np.atleast_2d(p))).astype(int)[0]
    np.testing.assert_allclose(lm.to_ras(ijk[None]), np.atleast_2d(p))  # p is a voxel centre
    return int(lm.data[tuple(ijk)])


def test_label_table():
    assert sorted(LEVEL_LABELS.values()) == list(range(1, 25))
    assert LEVEL_NAMES[LEVEL_LABELS[(Side.R, Level.IIA)]] == "LN_Neck_IIA_R"
    assert LEVEL_NAMES[LEVEL_LABELS[(Side.L, Level.RP)]] == "LN_Neck_RP_L"
    assert LEVEL_NAMES[LEVEL_LABELS[(Side.R, Level.SC)]] == "LN_Neck_SC_R"


@pytest.mark.parametrize(
    ("point", "side", "level"),
    [
        ((18.0, 0.0, -20.0), "R", "III"),  # infrahyoid, lateral to the carotid, anterior to SCM
        ((2.0, 20.0, -60.0), "R", "VI"),  # medial, above the manubrium
        ((-20.0, 20.0, 10.0), "L", "IB"),  # suprahyoid, anterior to SMG, lateral to the digastric
        ((-4.0, 20.0, 10.0), "L", "IA"),
        ((4.0, 0.0, 20.0), "R", "RP"),
        ((20.0, 0.0, 20.0), "R", "IIA"),
        ((20.0, -8.0, 20.0), "R", "IIB"),
        ((44.0, -20.0, 20.0), "R", "VA"),
        ((20.0, 0.0, -40.0), "R", "IV"),  # in front of the SCM-scalene line
        ((-44.0, -30.0, -40.0), "L", "VB"),
        ((20.0, 0.0, -70.0), "R", "SC"),
        ((-6.0, 10.0, -70.0), "L", "VII"),  # beside the trachea
    ],
)
def test_hand_picked_voxels(level_map, landmarks, point, side, level):
    lm, names = level_map
    value = _label_at(lm, point)
    assert value == LEVEL_LABELS[(Side(side), Level(level))]
    assert names[value] == f"LN_Neck_{level}_{side}"
    res = assign_levels(np.array([point]), landmarks)
    assert (res.side[0], res.level[0]) == (side, level)


@pytest.mark.parametrize(
    "point",
    [
        (0.0, 0.0, 42.0),  # above the skull base
        (20.0, 0.0, -80.0),  # more than the margin below clavicles / manubrium
        (44.0, -42.0, 20.0),  # behind the trapezius
        (62.0, -20.0, -20.0),  # lateral to trapezius / SCM + margin
        (0.0, 42.0, -40.0),  # anterior to digastric / SMG / midline points + margin
    ],
)
def test_empty_outside_envelope(level_map, point):
    assert _label_at(level_map[0], point) == 0


@pytest.mark.parametrize(
    "point",
    [
        (0.0, 10.0, -20.0),  # the larynx: midway between the midline points (y 20) and the carotids (y 0)
        (0.0, 10.0, -70.0),  # the trachea below the manubrium
        (4.0, -10.0, -20.0),  # medial and behind the carotids: the spine
        (-20.0, 20.0, 30.0),  # anterior to SMG above z_hy + 0.5 (z_sb - z_hy) = 20: floor of mouth, not level I
        (54.0, 36.0, -20.0),  # inside the box envelope, outside the rounded body contour
    ],
)
def test_neck_shape_leaves_out_airway_spine_mouth_and_corners(level_map, landmarks, point):
    assert _label_at(level_map[0], point) == 0
    assert assign_levels(np.array([point]), landmarks).level[0] != ""  # the rules alone would label it


def test_mid_neck_slice_is_not_a_box(level_map):
    from neckmatch.geometry.regions import axial_fill_ratio

    ratio = axial_fill_ratio(level_map[0], -16.0)  # between hyoid (0) and cricoid (-30)
    assert 0.4 < ratio < 0.90


def test_every_voxel_consistent_with_assign_levels(level_map, landmarks):
    lm, _ = level_map
    ijk = np.argwhere(lm.data > 0)
    res = assign_levels(lm.to_ras(ijk), landmarks)
    expected = [LEVEL_LABELS[(Side(s), Level(v))] for s, v in zip(res.side, res.level, strict=True)]
    np.testing.assert_array_equal(lm.data[tuple(ijk.T)], expected)
    assert len(np.unique(lm.data)) == 25  # all 24 regions and background


def test_chunking_does_not_change_the_map(level_map, landmarks):
    small, _ = level_label_map(landmarks, _grid(), margin_mm=10.0, chunk_voxels=9973)
    np.testing.assert_array_equal(small.data, level_map[0].data)


def test_oblique_reference_grid(landmarks):
    a = np.deg2rad(20)
    aff = np.eye(4)
    aff[:3, :3] = 3.0 * np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    aff[:3, 3] = [-60, -80, -80]
    ref = LabelMap(np.zeros((50, 50, 42), dtype=np.int16), aff)
    lm, _ = level_label_map(landmarks, ref)
    assert lm.data.shape == ref.data.shape and np.allclose(lm.affine, aff)
    ijk = np.argwhere(lm.data > 0)
    res = assign_levels(lm.to_ras(ijk), landmarks)
    expected = [LEVEL_LABELS[(Side(s), Level(v))] for s, v in zip(res.side, res.level, strict=True)]
    np.testing.assert_array_equal(lm.data[tuple(ijk.T)], expected)


def test_resampled_grid_covers_envelope(landmarks):
    lm, names = level_label_map(landmarks, spacing_mm=4.0)
    assert np.allclose(lm.spacing, 4.0) and len(names) == 24
    z = lm.to_ras(np.argwhere(lm.data > 0))[:, 2]
    assert z.max() <= 40.0 and z.min() >= -75.0


def test_bad_grid_options(landmarks):
    with pytest.raises(InputError, match="need a reference grid or spacing_mm"):
        level_label_map(landmarks)
    with pytest.raises(InputError, match="spacing_mm: must be > 0, got -1"):
        level_label_map(landmarks, spacing_mm=-1)


@pytest.mark.parametrize("missing", ["trapezius_anterior_R", "skull_base", "carotid_medial_L"])
def test_missing_landmark_is_an_input_error_naming_it(landmarks, missing):
    broken = Landmarks(points={k: v for k, v in landmarks.points.items() if k != missing},
                       curves={k: v for k, v in landmarks.curves.items() if k != missing})
    with pytest.raises(InputError, match=f"landmark '{missing}'"):
        level_label_map(broken, spacing_mm=10.0)


@pytest.mark.parametrize("flip", [False, True])
def test_meshes_closed_with_voxel_volume(level_map, flip):
    lm, names = level_map
    if flip:  # an LPS-style grid (negative determinant) must give the same outward meshes
        m = np.diag([-1.0, -1.0, 1.0, 1.0])
        m[:2, 3] = np.array(lm.data.shape[:2]) - 1
        lm = LabelMap(lm.data[::-1, ::-1, :].copy(), lm.affine @ m)
    meshes = level_meshes(lm, names)
    assert sorted(meshes) == sorted(names.values())
    for value, name in names.items():
        mesh = meshes[name]
        voxels = np.argwhere(lm.data == value)
        expected = len(voxels) * lm.voxel_volume
        assert mesh.is_watertight, name
        assert abs(mesh.volume - expected) < 0.1 * expected, (name, mesh.volume, expected)
        ras = lm.to_ras(voxels)
        assert np.all(mesh.bounds[0] >= ras.min(axis=0) - 2.0) and np.all(mesh.bounds[1] <= ras.max(axis=0) + 2.0)


def test_write_level_regions(tmp_path, landmarks):
    files = write_level_regions(tmp_path, landmarks, _grid(4.0), meshes=True)
    back = read_label_map(files["level_map"])
    ref, _ = level_label_map(landmarks, _grid(4.0))
    np.testing.assert_array_equal(back.data, ref.data)
    table = json.loads(files["level_map_json"].read_text())["labels"]
    assert table["3"] == "LN_Neck_IIA_R" and len(table) == 24
    assert (tmp_path / "level_meshes" / "LN_Neck_IIA_R.ply").is_file()


@pytest.mark.parametrize(
    ("name", "side", "level"),
    [
        ("LN_Neck_IIA_R", Side.R, Level.IIA),
        ("LN_Neck_IB_L", Side.L, Level.IB),
        ("LN_Neck_II_L", Side.L, SurgicalLevel.II),
        ("LN_Neck_IA", None, Level.IA),
        ("LN_Neck_RP_R", Side.R, Level.RP),
        ("LN_Neck_SC_L", Side.L, Level.SC),
        ("Level IIa left", Side.L, Level.IIA),
        ("level_2a_right", Side.R, Level.IIA),
        ("Level V R", Side.R, SurgicalLevel.V),
        ("right IIb", Side.R, Level.IIB),
        ("L_Ib", Side.L, Level.IB),
        ("IIa-Rt", Side.R, Level.IIA),
        ("level4_left", Side.L, Level.IV),
        ("LN_Neck_VIIa_L", Side.L, Level.RP),  # Gregoire 2014 VIIa = retropharyngeal
        ("LN_Neck_IVb_R", Side.R, Level.SC),
        ("supraclavicular left", Side.L, Level.SC),
        ("Level VII right", Side.R, Level.VII),
    ],
)
def test_parse_level_name(name, side, level):
    assert parse_level_name(name) == (side, level)


@pytest.mark.parametrize("name", ["LN_Neck_IIC_R", "Parotid_L", "level 8 left", "IIa IIb R", ""])
def test_parse_level_name_rejects(name):
    with pytest.raises(InputError, match="is not a neck level name"):
        parse_level_name(name)


def _atlas_case():
    node = np.zeros((10, 10, 10), dtype=np.int16)
    lev = np.zeros((10, 10, 10), dtype=np.uint8)
    node[0:10, 0, 0] = 1  # 6 voxels in IIA, 3 in III, 1 outside
    lev[0:6, 0, 0] = 3
    lev[6:9, 0, 0] = 5
    node[0:4, 5, 5] = 2  # entirely outside every level
    node[0:4, 9, 9] = 3  # 2 in VI_R, 2 in VI_L: tie
    lev[0:2, 9, 9] = 7
    lev[2:4, 9, 9] = 8
    aff = np.diag([0.8, 0.8, 1.5, 1.0])
    names = {3: "LN_Neck_IIA_R", 5: "Level III right", 7: "LN_Neck_VI_R", 8: "LN_Neck_VI_L"}
    return LabelMap(node, aff), LabelMap(lev, aff), names


def test_atlas_majority():
    nodes, levels, names = _atlas_case()
    df = assign_levels_atlas(nodes, levels, names).set_index("node")
    assert df.loc[1, ["side", "level", "n_voxels"]].tolist() == ["R", "IIA", 10]
    assert df.loc[1, "fraction"] == pytest.approx(0.6)
    assert df.loc[1, "level_fractions"] == "IIA:0.6;III:0.3;outside:0.1"
    assert df.loc[2, ["side", "level", "fraction"]].tolist() == ["", "", 0.0]
    assert df.loc[3, ["side", "level", "level_fractions"]].tolist() == ["L", "VI", "VI:0.5;VI_R:0.5"]


def test_atlas_level_map_on_another_grid():
    nodes, levels, names = _atlas_case()
    # the level map with axes flipped and reordered: same RAS geometry, same answer
    m = np.array([[0, 0, 1, 0], [0, -1, 0, 9], [1, 0, 0, 0], [0, 0, 0, 1.0]])
    moved = LabelMap(np.transpose(levels.data[:, ::-1, :], (2, 1, 0)).copy(), levels.affine @ m)
    pd_a = assign_levels_atlas(nodes, levels, names)
    pd_b = assign_levels_atlas(nodes, moved, names)
    assert pd_a.equals(pd_b)


def test_atlas_unnamed_value():
    nodes, levels, names = _atlas_case()
    del names[5]
    with pytest.raises(InputError, match="label value 5 has no level name"):
        assign_levels_atlas(nodes, levels, names)


def test_axial_grid_path_equals_the_reference_grid_path(landmarks):
    fast, _ = level_label_map(landmarks, spacing_mm=4.0)
    slow, _ = level_label_map(landmarks, LabelMap(np.zeros(fast.data.shape, np.uint8), fast.affine))
    np.testing.assert_array_equal(fast.data, slow.data)
    assert (fast.data > 0).mean() > 0.1
