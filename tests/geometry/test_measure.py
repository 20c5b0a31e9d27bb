"""Node measurements against analytic ellipsoids rasterised on isotropic, anisotropic and oblique grids."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from neckmatch.errors import InputError
from neckmatch.geometry.measure import COLUMNS, label_voxels, measure_nodes
from neckmatch.model import LabelMap


def _raster(diam, rot, spacing, grid_rot, centre) -> LabelMap:
    """Solid ellipsoid (full diameters ``diam`` mm, axes = columns of ``rot``) centred at ``centre`` (RAS)."""
    a = grid_rot @ np.diag(spacing)
    n = np.ceil((max(diam) / 2 + 2) / np.asarray(spacing)).astype(int)
    shape = tuple(2 * n + 1)
    aff = np.eye(4)
    aff[:3, :3], aff[:3, 3] = a, centre - a @ n + 0.37 * np.asarray(spacing)  # off-centre by a voxel fraction
    ijk = np.stack(np.meshgrid(*[np.arange(k) for k in shape], indexing="ij"), axis=-1).reshape(-1, 3)
    local = (ijk @ a.T + aff[:3, 3] - centre) @ rot
    inside = ((local / (np.asarray(diam) / 2)) ** 2).sum(axis=1) <= 1.0
    return LabelMap(inside.reshape(shape).astype(np.uint8) * 7, aff)


def _axial_section(diam, rot) -> tuple[float, float]:
    """(long, short) full diameters of the ellipsoid's central axial (z = const) section, mm."""
    m = rot @ np.diag(4.0 / np.asarray(diam) ** 2) @ rot.T
    e = np.linalg.eigvalsh(m[:2, :2])
    return 2.0 / np.sqrt(e[0]), 2.0 / np.sqrt(e[1])


def _cases():
    rng = np.random.default_rng(20240611)
    grids = [("iso-0.5", (0.5, 0.5, 0.5), 0.0), ("iso-1.0", (1.0, 1.0, 1.0), 0.0), ("iso-0.8", (0.8, 0.8, 0.8), 0.0),
             ("aniso", (0.6, 0.6, 1.2), 0.0), ("oblique", (0.7, 0.7, 0.7), 20.0),
             ("oblique-aniso", (0.7, 0.7, 1.0), 15.0)]
    out = []
    for name, spacing, tilt in grids:
        for k in range(3):
            diam = np.sort(rng.uniform(5.0, 18.0, 3))[::-1]
            rot = Rotation.random(random_state=int(rng.integers(1 << 30))).as_matrix()
            grid_rot = Rotation.from_euler("xyz", rng.uniform(-tilt, tilt, 3), degrees=True).as_matrix()
            out.append(pytest.param(diam, rot, spacing, grid_rot, id=f"{name}-{k}"))
    return out


@pytest.mark.parametrize(("diam", "rot", "spacing", "grid_rot"), _cases())
def test_ellipsoid_measurements(diam, rot, spacing, grid_rot):
    centre = np.array([12.0, -30.0, 45.0])
    lm = _raster(diam, rot, spacing, grid_rot, centre)
    row = measure_nodes(lm).iloc[0]
    voxel = max(spacing)
    assert row.node == 7
    assert row.volume_mm3 == pytest.approx(np.pi / 6 * np.prod(diam), rel=0.03)
    np.testing.assert_allclose([row.x, row.y, row.z], centre, atol=0.1 * voxel)
    assert row.long_axis_mm == pytest.approx(diam[0], rel=0.05)
    axial_long, axial_short = _axial_section(diam, rot)
    assert abs(row.short_axis_mm - axial_short) <= voxel
    assert abs(row.axial_long_mm - axial_long) <= voxel
    np.testing.assert_allclose([row.pa1_mm, row.pa2_mm, row.pa3_mm], diam, rtol=0.05)


def test_several_labels_in_one_pass_match_single_label_maps():
    rot = np.eye(3)
    a = _raster((9.0, 6.0, 5.0), rot, (1.0, 1.0, 1.0), np.eye(3), np.zeros(3))
    data = np.zeros((40, 40, 40), dtype=np.int32)
    n = a.data.shape
    data[: n[0], : n[1], : n[2]] = (a.data > 0) * 3
    data[20 : 20 + n[0], 20 : 20 + n[1], 20 : 20 + n[2]] = (a.data > 0) * 150
    table = measure_nodes(LabelMap(np.asfortranarray(data), a.affine))
    single = measure_nodes(a)
    assert list(table.columns) == COLUMNS and table["node"].tolist() == [3, 150]
    np.testing.assert_allclose(table.iloc[1][["x", "y", "z"]].to_numpy(float) - 20.0,
                               single.iloc[0][["x", "y", "z"]].to_numpy(float))
    for col in ("n_voxels", "volume_mm3", "long_axis_mm", "short_axis_mm", "axial_long_mm", "pa1_mm"):
        assert table[col].tolist() == pytest.approx([single[col][0]] * 2)


def test_label_voxels_known_centres_on_a_flipped_grid():
    data = np.zeros((2, 3, 4), dtype=np.uint16)
    data[1, 2, 3] = 5
    data[0, 0, 1] = 5
    data[1, 0, 0] = 2
    aff = np.array([[-0.5, 0, 0, 10.0], [0, 0, 2.0, -4.0], [0, 1.0, 0, 7.0], [0, 0, 0, 1.0]])
    vox = label_voxels(LabelMap(data, aff))
    assert sorted(vox) == [2, 5]
    np.testing.assert_allclose(vox[2], [[9.5, -4.0, 7.0]])
    np.testing.assert_allclose(vox[5], [[10.0, -2.0, 7.0], [9.5, 2.0, 9.0]])


def test_single_voxel_node():
    data = np.zeros((5, 5, 5), dtype=np.int8)
    data[2, 2, 2] = 1
    row = measure_nodes(LabelMap(data, np.diag([0.8, 0.8, 0.8, 1.0]))).iloc[0]
    assert row.n_voxels == 1 and row.volume_mm3 == pytest.approx(0.512)
    assert row.long_axis_mm == pytest.approx(0.4) and row.axial_long_mm == pytest.approx(0.4)
    assert row.short_axis_mm == pytest.approx(0.4)  # capped by the axial long axis (was 0.6 > 0.4)


def test_empty_map_gives_empty_table_with_columns():
    table = measure_nodes(LabelMap(np.zeros((3, 3, 3), dtype=np.uint8), np.eye(4)))
    assert len(table) == 0 and list(table.columns) == COLUMNS


def test_negative_labels_are_rejected():
    data = np.zeros((3, 3, 3), dtype=np.int16)
    data[1, 1, 1] = -4
    with pytest.raises(InputError, match="got -4"):
        measure_nodes(LabelMap(data, np.eye(4)))


def test_float32_rounding_of_the_affine_does_not_move_the_measurements():
    """NIfTI stores the affine as float32: a 0.7 x 0.7 x 1.4 mm grid rounded so must measure the same node."""
    rot = Rotation.from_euler("xyz", [20, 35, 10], degrees=True).as_matrix()
    lm = _raster((12.0, 7.0, 5.0), rot, (0.7, 0.7, 1.4), np.eye(3), np.array([3.1, -40.2, 17.7]))
    rounded = LabelMap(lm.data, lm.affine.astype(np.float32).astype(np.float64))
    a, b = measure_nodes(lm), measure_nodes(rounded)
    for col in ("long_axis_mm", "short_axis_mm", "axial_long_mm", "volume_mm3"):
        assert abs(a[col].iloc[0] - b[col].iloc[0]) < 1e-3, col


@pytest.mark.parametrize("spacing", [1.0, 1.5])
@pytest.mark.parametrize("radius_vox", [1.0, 1.5, 2.0, 3.0])
def test_short_axis_never_exceeds_axial_long_axis_on_round_nodes(spacing, radius_vox):
    """Small spheres (2-9 mm): the short axis (padded 3/4 voxel) used to exceed the long axis (padded 1/2)."""
    g = np.mgrid[-4:5, -4:5, -4:5]
    data = (np.sqrt((g**2).sum(axis=0)) <= radius_vox).astype(np.uint8)
    row = measure_nodes(LabelMap(data, np.diag([spacing, spacing, spacing, 1.0]))).iloc[0]
    assert row.short_axis_mm <= row.axial_long_mm
    assert row.short_axis_mm == pytest.approx(row.axial_long_mm)  # a disc-shaped section: short = long


def test_short_axis_of_a_square_section_is_its_long_axis():
    data = np.zeros((5, 5, 3), dtype=np.uint8)
    data[1:4, 1:4, 1] = 1
    row = measure_nodes(LabelMap(data, np.eye(4))).iloc[0]
    assert row.axial_long_mm == pytest.approx(2 * np.sqrt(2) + 0.5)  # diagonal of the centres + half a voxel
    assert row.short_axis_mm == pytest.approx(row.axial_long_mm)


def _feret_all_pairs(points, axes, pad):
    """Reference: the padded length of every pair of hull vertices, the first largest (row-major) wins."""
    from scipy.spatial import ConvexHull

    points = points[ConvexHull(points).vertices]
    diff = points[:, None, :] - points[None, :, :]
    dist = np.sqrt(np.einsum("ijk,ijk->ij", diff, diff))
    with np.errstate(invalid="ignore", divide="ignore"):
        units = diff / dist[:, :, None]
    padded = np.where(dist > 0, dist + pad * np.linalg.norm(np.nan_to_num(units) @ axes, axis=-1), 0.0)
    i, j = np.unravel_index(np.argmax(padded), padded.shape)
    return float(padded[i, j]), -units[i, j]


def _feret_sets():
    rng = np.random.default_rng(8)
    out = []
    for k in range(6):  # random clouds, anisotropic oblique voxels, 2-D and 3-D
        dim = 2 + k % 2
        axes = Rotation.random(random_state=k).as_matrix()[:dim, :dim] @ np.diag(rng.uniform(0.4, 2.0, dim))
        out.append(pytest.param(rng.normal(size=(int(rng.integers(15, 200)), dim)) * rng.uniform(1, 9, dim), axes,
                                id=f"random-{dim}d-{k}"))
    g = np.stack(np.meshgrid(*[np.arange(5.0)] * 3, indexing="ij"), axis=-1).reshape(-1, 3)
    out.append(pytest.param(g, np.eye(3), id="cube-grid-ties"))  # four tied body diagonals
    out.append(pytest.param(g * [0.7, 0.7, 1.4], np.diag([0.7, 0.7, 1.4]), id="aniso-grid"))
    out.append(pytest.param(g[:, :2] * 0.9, np.eye(2) * 0.9, id="square-2d-ties"))
    return out


@pytest.mark.parametrize(("points", "axes"), _feret_sets())
@pytest.mark.parametrize("pad", [0.5, 2.0])
def test_feret_equals_the_all_pairs_maximum(points, axes, pad):
    """Padding only the pairs that can win gives the same length and direction as padding every pair."""
    from neckmatch.geometry.measure import _feret

    length, unit = _feret(points, axes, pad)
    ref_length, ref_unit = _feret_all_pairs(points, axes, pad)
    assert length == pytest.approx(ref_length, rel=1e-12)
    np.testing.assert_allclose(unit, ref_unit, atol=1e-12)


@pytest.mark.parametrize(("diam", "rot", "spacing", "grid_rot"), _cases()[::3])
def test_feret_length_without_hull_equals_the_hull_vertex_maximum(diam, rot, spacing, grid_rot):
    """The all-points shortcut of the 3-D long axis gives bit for bit the hull-vertex result (voxel ties too)."""
    from neckmatch.geometry.measure import _feret, _feret_length, _line_ends

    lm = _raster(diam, rot, spacing, grid_rot, np.array([1.0, 2.0, 3.0]))
    pts = label_voxels(lm)[7]
    rng = np.random.default_rng(5)
    for sub in (pts, pts[rng.random(len(pts)) < 0.3], rng.normal(size=(60, 3)) * diam):
        assert _feret_length(sub, lm.affine[:3, :3], 0.5) == _feret(sub, lm.affine[:3, :3], 0.5)[0]
    ends = _line_ends(pts, np.array([0]), lm.affine[:3, 2], 0.1)  # label_voxels: C order, rows along k
    assert 0.05 < ends.mean() < 0.9  # the inside of the rows is left out
    assert _feret_length(pts, lm.affine[:3, :3], 0.5, maybe_vertex=ends) == _feret(pts, lm.affine[:3, :3], 0.5)[0]


def test_line_ends_mark_every_centre_but_the_inside_of_rows():
    """Rows along the step: only their first and last centres may be hull vertices; labels never join rows."""
    from neckmatch.geometry.measure import _line_ends

    ras = np.array([[0, 0, 0], [1, 0, 0], [2, 0, 0], [3, 0, 0], [3, 1, 0], [4, 1, 0], [5, 1, 0], [6, 1, 0]], float)
    ends = _line_ends(ras, np.array([0, 5]), np.array([1.0, 0.0, 0.0]), 0.1)  # second label from row 5 on
    assert ends.tolist() == [True, False, False, True, True, True, False, True]


def test_fullest_slab_per_node_ties_go_to_the_lowest():
    from neckmatch.geometry.measure import _in_fullest_slab

    slab = np.array([6, 5, 5, 6, 7, 2, 3, 3])  # node 0: slabs 5 and 6 tie (2 each); node 1: slab 3
    assert _in_fullest_slab(slab, np.array([5, 3])).tolist() == [False, True, True, False, False, False, True, True]
