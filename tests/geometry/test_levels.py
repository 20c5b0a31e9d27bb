"""The som1999 level engine against hand-computed points (shared/spec/levels.md), invariances and the table.

Hand computations use ``_demo_landmarks()``: midline x = 0; z_sb 40, z_hy 0, z_cr -30, z_cl -55, z_mn -65;
right-side curves are vertical lines: carotid x 10 (dcar 10), SMG y 10, SCM (40, -10), IJV y -5, digastric
x 8, scalene (30, -20), trapezius y -40; left = mirror. The IV/VB line runs through (40, -10) and (30, -20),
i.e. y = x - 50, and sd = (y - x + 50) / sqrt(2) (the carotid at (10, 0) is on the positive side).
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from neckmatch.errors import InputError
from neckmatch.geometry.levels import (
    _demo_landmarks,
    adjacent_level_pairs,
    assign_levels,
    level_graph,
    levels_table,
)
from neckmatch.geometry.measure import measure_nodes
from neckmatch.model import Case, Curve, LabelMap, Landmarks
from tests.cli_helpers import run_main as _run_cli

S2 = math.sqrt(2.0)

# (point RAS, level, boundary_mm, runner_up): every branch of the rules and every boundary term.
HAND = [
    ((20, 0, 45), "", 5.0, ""),  # above the skull base: z - z_sb
    ((20, 0, 40), "IIA", 5.0, "IIB"),  # z == z_sb is not above (strict); y - ant(IJV)
    ((4, 20, 10), "IA", 4.0, "IB"),  # lat(digastric) - dlat
    ((5, 20, 5), "IA", 3.0, "IB"),  # ... vs z - z_hy = 5 (VI)
    ((2, 20, 3), "IA", 3.0, "VI"),  # tie 3 == 3 between z - z_hy and digastric: first term wins
    ((12, 20, 10), "IB", 4.0, "IA"),  # dlat - lat(digastric)
    ((8, 20, 10), "IB", 0.0, "IA"),  # dlat == lat(digastric): not medial to it (strict)
    ((20, 12, 10), "IB", 2.0, "IIA"),  # y - ant(SMG)
    ((20, 20, 1), "IB", 1.0, "III"),  # z - z_hy
    ((5, 0, 10), "RP", 5.0, "IIA"),  # dcar - dlat
    ((5, 8, 10), "RP", 2.0, "IB"),  # ant(SMG) - y
    ((5, 0, 1), "RP", 1.0, "VI"),  # z - z_hy
    ((20, -7, 10), "IIB", 2.0, "IIA"),  # ant(IJV) - y
    ((20, -9, 10), "IIB", 1.0, "VA"),  # y - ant(SCM)
    ((11, -7, 10), "IIB", 1.0, "RP"),  # dlat - dcar
    ((20, -7.5, 1), "IIB", 1.0, "III"),  # z - z_hy
    ((20, 2, 3), "IIA", 3.0, "III"),  # z - z_hy
    ((20, 8, 10), "IIA", 2.0, "IB"),  # ant(SMG) - y
    ((10, 2, 10), "IIA", 0.0, "RP"),  # dlat == dcar: not medial (strict)
    ((20, -5, 10), "IIA", 0.0, "IIB"),  # y == ant(IJV): not behind it (strict)
    ((20, -10, 10), "VA", 0.0, "IIB"),  # y == ant(SCM): not in front (strict); VA above the hyoid -> IIB
    ((45, -20, 10), "VA", 10.0, "IIB"),  # ant(SCM) - y
    ((45, -38, 10), "VA", 2.0, ""),  # y - ant(trapezius): the outside beyond is ""
    ((45, -45, 10), "", 5.0, ""),  # behind the trapezius: ant(trapezius) - y
    ((45, -40, 10), "", 0.0, ""),  # y == ant(trapezius): not in front (strict)
    ((20, 0, 0), "III", 0.0, "IIA"),  # z == z_hy: not suprahyoid (strict)
    ((20, 0, -20), "III", 10.0, "IV"),  # tie 10 (z - z_cr, dcar, SCM): z - z_cr listed first
    ((18, 0, -20), "III", 8.0, "VI"),  # dlat - dcar
    ((20, -8, -15), "III", 2.0, "VA"),  # y - ant(SCM)
    ((45, -20, -25), "VA", 5.0, "VB"),  # z - z_cr
    ((45, -12, -20), "VA", 2.0, "III"),  # ant(SCM) - y, below the hyoid -> III
    ((45, -42, -20), "", 2.0, ""),  # behind the trapezius below the hyoid
    ((2, 20, -20), "VI", 8.0, "III"),  # dcar - dlat, above the cricoid -> III
    ((2, 20, -40), "VI", 8.0, "IV"),  # dcar - dlat, below the cricoid -> IV
    ((9, 20, -62), "VI", 1.0, "IV"),  # 3 to z_mn, 1 to the carotid
    ((2, 20, -3), "VI", 3.0, "IA"),  # z_hy - z
    ((2, 20, -63), "VI", 2.0, "VII"),  # z - z_mn
    ((2, 20, -65), "VII", 0.0, "VI"),  # z == z_mn: not above (strict)
    ((3, 20, -70), "VII", 5.0, "VI"),  # z_mn - z
    ((7, 20, -80), "VII", 3.0, "SC"),  # dcar - dlat
    ((22, 0, -36), "IV", 6.0, "III"),  # z_cr - z
    ((20, 0, -30), "IV", 0.0, "III"),  # z == z_cr: not above (strict)
    ((20, 0, -52), "IV", 3.0, "SC"),  # z - z_cl
    ((12, 10, -40), "IV", 2.0, "VI"),  # dlat - dcar
    ((45, -5, -40), "IV", 0.0, "VB"),  # sd == 0: IV (sd >= 0)
    ((45, -3, -40), "IV", 2.0 / S2, "VB"),  # sd
    ((50, -10, -40), "VB", 10.0 / S2, "IV"),  # -sd
    ((50, -20, -32), "VB", 2.0, "VA"),  # z_cr - z
    ((60, -38, -40), "VB", 2.0, ""),  # y - ant(trapezius)
    ((60, -20, -54), "VB", 1.0, "SC"),  # z - z_cl
    ((50, -45, -40), "", 5.0, ""),  # behind the trapezius, low neck
    ((30, 0, -60), "SC", 5.0, "IV"),  # z_cl - z
    ((30, 0, -55), "SC", 0.0, "IV"),  # z == z_cl: not above (strict)
    ((12, 0, -80), "SC", 2.0, "VII"),  # dlat - dcar
]


@pytest.mark.parametrize(("point", "level", "boundary", "runner"), HAND)
def test_hand_computed_right(point, level, boundary, runner):
    res = assign_levels(np.array([point], dtype=float), _demo_landmarks())
    assert (res.side[0], res.level[0], res.runner_up[0]) == ("R", level, runner)
    assert res.boundary_mm[0] == pytest.approx(boundary, abs=1e-12)


def test_hand_computed_left_is_the_mirror():
    pts = np.array([p for p, *_ in HAND], dtype=float) * [-1, 1, 1]
    res = assign_levels(pts, _demo_landmarks())
    assert set(res.side) == {"L"}
    assert res.level.tolist() == [lv for _, lv, _, _ in HAND]
    assert res.runner_up.tolist() == [r for *_, r in HAND]
    np.testing.assert_allclose(res.boundary_mm, [b for _, _, b, _ in HAND], atol=1e-12)


def test_borderline_is_boundary_below_tolerance():
    pts = np.array([[20, 2, 3], [20, 2, 2.9], [20, 0, 45]], dtype=float)
    res = assign_levels(pts, _demo_landmarks(), tolerance_mm=3.0)
    assert res.borderline.tolist() == [False, True, False]
    assert assign_levels(pts, _demo_landmarks(), tolerance_mm=0.0).borderline.tolist() == [False] * 3


def test_midline_point_is_left_and_medial():
    res = assign_levels([0.0, 20.0, -20.0], _demo_landmarks())
    assert (res.side[0], res.level[0], res.boundary_mm[0], res.runner_up[0]) == ("L", "VI", 10.0, "III")


def _landmarks_with(points=None, curves=None) -> Landmarks:
    base = _demo_landmarks()
    pts = {**base.points, **(points or {})}
    crv = {**base.curves, **{k: Curve(k, v) for k, v in (curves or {}).items()}}
    return Landmarks(points=pts, curves=crv)


def test_curves_clamp_beyond_their_z_range():
    # carotid_R from x 10 at z -20 to x 14 at z 20: at z 30 clamped to 14 (linear extrapolation would give 15).
    lm = _landmarks_with(curves={"carotid_medial_R": [[14, 0, 20], [10, 0, -20]]})
    res = assign_levels([[14.5, 0, 30], [13.5, 0, 30], [11.5, 0, 0 - 50], [12, 0, 0]], lm)
    assert res.level.tolist() == ["IIA", "RP", "IV", "III"]
    np.testing.assert_allclose(res.boundary_mm[:2], [0.5, 0.5])
    assert res.runner_up[:2].tolist() == ["RP", "IIA"]
    np.testing.assert_allclose(res.boundary_mm[3], 0.0)  # carotid at z 0 is x 12 (interpolated)


def test_midline_interpolates_and_clamps():
    lm = _landmarks_with(points={"hyoid_body_inferior": [0, 20, 0], "cricoid_arch_inferior": [2, 20, -30],
                                 "manubrium_superior": [4, 20, -65]})
    res = assign_levels([[1.0, 20, 20], [3.0, 20, -80], [1.5, 20, -15], [0.5, 20, -15]], lm)
    assert res.side.tolist() == ["R", "L", "R", "L"]
    np.testing.assert_allclose(res.boundary_mm[1], 13.0)  # VII: dlat 1 from x_mid 4 (clamped), dcar |-10 - 4|
    assert res.level[1] == "VII"


def test_degenerate_iv_vb_line_gives_vb_and_ignores_sd():
    lm = _landmarks_with(curves={"scalene_anterior_R": [[40, -10, -100], [40, -10, 60]]})
    res = assign_levels([[45, -5, -40]], lm)
    assert (res.level[0], res.runner_up[0]) == ("VB", "VA")
    assert res.boundary_mm[0] == pytest.approx(10.0)


def _asymmetric_landmarks(seed: int) -> Landmarks:
    """Random landmarks, different per side; midline x = 0.1 z between z -65 and 0, clamped beyond.

    Curve control points sit at the midline's break points too, so mirroring about x_mid(z) maps curves onto curves.
    """
    rng = np.random.default_rng(seed)
    base = _demo_landmarks()
    z = np.array([-90.0, -65.0, -40.0, 0.0, 50.0])
    curves = {}
    for name, c in base.curves.items():
        x0, y0 = c.points[0, :2]
        curves[name] = np.column_stack([x0 + rng.normal(0, 3, 5) + 0.1 * z, y0 + rng.normal(0, 3, 5), z])
    points = {k: v.copy() for k, v in base.points.items()}
    for k in ("hyoid_body_inferior", "cricoid_arch_inferior", "manubrium_superior"):
        points[k][0] = 0.1 * points[k][2]
    points["clavicle_superior_L"][2] = -50.0
    return Landmarks(points=points, curves={k: Curve(k, v) for k, v in curves.items()})


def _swap(name: str) -> str:
    return name[:-2] + {"_L": "_R", "_R": "_L"}[name[-2:]] if name[-2:] in ("_L", "_R") else name


def _mirror(p: np.ndarray, lm: Landmarks) -> np.ndarray:
    """x -> 2 x_mid(z) - x."""
    p = np.array(p, dtype=float, copy=True)
    p[..., 0] = 2.0 * lm.x_mid(p[..., 2]) - p[..., 0]
    return p


def _random_points(seed: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform([-70, -60, -100], [70, 50, 60], size=(n, 3))


def test_mirroring_swaps_sides_and_nothing_else():
    lm = _asymmetric_landmarks(1)
    mirrored = Landmarks(points={_swap(k): _mirror(v, lm) for k, v in lm.points.items()},
                         curves={_swap(k): Curve(_swap(k), _mirror(c.points, lm)) for k, c in lm.curves.items()})
    pts = _random_points(2, 20_000)
    a, b = assign_levels(pts, lm), assign_levels(_mirror(pts, lm), mirrored)
    assert np.all(a.side != b.side)
    assert np.array_equal(a.level, b.level) and np.array_equal(a.runner_up, b.runner_up)
    np.testing.assert_allclose(a.boundary_mm, b.boundary_mm, atol=1e-9)
    assert len(set(a.level.tolist())) == 13  # every level and outside occur: the test covers them all


def test_translation_changes_nothing():
    lm = _asymmetric_landmarks(3)
    shift = np.eye(4)
    shift[:3, 3] = [12.5, -40.0, 300.0]
    pts = _random_points(4, 5_000)
    a, b = assign_levels(pts, lm), assign_levels(pts + shift[:3, 3], lm.transformed(shift))
    assert np.array_equal(a.level, b.level) and np.array_equal(a.side, b.side)
    assert np.array_equal(a.runner_up, b.runner_up)
    np.testing.assert_allclose(a.boundary_mm, b.boundary_mm, atol=1e-9)


def test_to_frame_columns_and_values():
    frame = assign_levels([[20, 0, 45], [4, 20, 10]], _demo_landmarks()).to_frame()
    assert list(frame.columns) == ["side", "level", "boundary_mm", "runner_up", "borderline"]
    assert frame["level"].tolist() == ["", "IA"] and frame["borderline"].dtype == bool


def test_missing_landmark_is_named():
    lm = _demo_landmarks()
    broken = Landmarks(points={k: v for k, v in lm.points.items() if k != "clavicle_superior_L"}, curves=lm.curves)
    with pytest.raises(InputError, match="clavicle_superior_L"):
        assign_levels([[0.0, 0.0, 0.0]], broken)


def test_bad_points_shape_is_reported():
    with pytest.raises(InputError, match=r"\(N, 3\), got \(2, 2\)"):
        assign_levels([[0.0, 0.0], [1.0, 1.0]], _demo_landmarks())


def test_non_finite_points_are_reported():
    with pytest.raises(InputError, match="finite"):
        assign_levels([[0.0, np.nan, 0.0]], _demo_landmarks())


def test_negative_tolerance_is_reported():
    with pytest.raises(InputError, match="got -1"):
        assign_levels([[0.0, 0.0, 0.0]], _demo_landmarks(), tolerance_mm=-1)


def test_level_graph_has_the_spec_adjacency():
    g = level_graph()
    assert g.number_of_nodes() == 24 and g.number_of_edges() == 2 * 19 + 3
    assert g.has_edge(("L", "IV"), ("L", "SC")) and g.has_edge(("R", "IIA"), ("R", "RP"))
    assert g.has_edge(("R", "VII"), ("L", "VII")) and g.has_edge(("L", "IA"), ("R", "IA"))
    assert not g.has_edge(("R", "IA"), ("R", "III")) and not g.has_edge(("R", "IIA"), ("L", "IIA"))
    assert not g.has_edge(("R", "IV"), ("L", "VI"))


def test_adjacent_level_pairs_are_the_graphs_same_side_edges():
    same_side = {frozenset((a[1], b[1])) for a, b in level_graph().edges() if a[0] == b[0]}
    assert {frozenset(p) for p in adjacent_level_pairs()} == same_side and len(adjacent_level_pairs()) == 19


def test_matching_a_case_does_not_import_scipy_stats_or_networkx():
    """Each worker of a cohort run imports what matching needs: these two cost ~0.7 s a worker and are not used."""
    code = ("import sys, neckmatch.correlation.matching, neckmatch.pipeline, neckmatch.io.case; "
            "print(sorted(m for m in ('scipy.stats', 'networkx') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------- levels_table on label maps


def _ball_case(affine: np.ndarray, shape: tuple[int, int, int], centres, radius: float = 3.0) -> Case:
    """Balls (label 1, 2, ...) of ``radius`` mm at ``centres`` (RAS) rasterised on the grid ``affine``."""
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1).reshape(-1, 3)
    ras = ijk @ affine[:3, :3].T + affine[:3, 3]
    data = np.zeros(len(ras), dtype=np.int16)
    for k, c in enumerate(centres, start=1):
        data[np.linalg.norm(ras - c, axis=1) <= radius] = k
    return Case(case_id="T1", primary_side="R", dissected={}, label_map=LabelMap(data.reshape(shape), affine),
                landmarks=_demo_landmarks(), path_nodes=(), containers=())


CENTRES = np.array([[20.0, 0.0, -28.5], [-20.0, 2.0, 10.0], [3.0, 20.0, -20.0], [30.0, 0.0, -62.0]])


def _grid(spacing, origin=(-40.0, -20.0, -75.0), size=(80.0, 40.0, 95.0)) -> tuple[np.ndarray, tuple]:
    aff = np.diag([*spacing, 1.0])
    aff[:3, 3] = origin
    return aff, tuple(int(round(s / d)) + 1 for s, d in zip(size, spacing, strict=True))


def test_levels_table_columns_levels_and_fractions():
    aff, shape = _grid((1.0, 1.0, 1.0))
    case = _ball_case(aff, shape, CENTRES)
    table = levels_table(case)
    assert list(table.columns) == ["case_id", "node", "side", "level", "boundary_mm", "runner_up", "borderline",
                                   "x", "y", "z", "volume_mm3", "short_axis_mm", "long_axis_mm", "axial_long_mm",
                                   "level_fractions", "system"]
    assert table["level"].tolist() == ["III", "IIA", "VI", "SC"]
    assert table["side"].tolist() == ["R", "L", "R", "R"]
    assert table["borderline"].tolist() == [True, False, False, False]
    assert table["system"].unique().tolist() == ["som1999"]
    # node 1 straddles the cricoid plane (z = -30): voxel centres with z > -30 are III, the rest IV.
    vox = measure_nodes(case.label_map)
    ras = case.label_map.to_ras(np.argwhere(case.label_map.data == 1))
    share_iii = float(np.mean(ras[:, 2] > -30.0))
    assert 0.5 < share_iii < 1.0
    assert table["level_fractions"][0] == f"III:{share_iii:.3g};IV:{1 - share_iii:.3g}"
    assert table["level_fractions"][2] == "VI:1"
    np.testing.assert_allclose(table[["x", "y", "z"]].to_numpy(), vox[["x", "y", "z"]].to_numpy())


def _reoriented(case: Case) -> Case:
    """The same physical voxels on a permuted and flipped grid (affine adjusted to match)."""
    lm = case.label_map
    data = np.flip(np.transpose(lm.data, (2, 0, 1)), axis=1)  # new[a, b, c] = old[I - 1 - b, c, a]
    new_to_old = np.array([[0, -1, 0, lm.data.shape[0] - 1], [0, 0, 1, 0], [1, 0, 0, 0], [0, 0, 0, 1]], float)
    new_aff = lm.affine @ new_to_old
    return Case(case_id=case.case_id, primary_side="R", dissected={}, label_map=LabelMap(data.copy(), new_aff),
                landmarks=case.landmarks, path_nodes=(), containers=())


def test_reoriented_grid_gives_identical_table():
    aff, shape = _grid((1.0, 1.0, 1.0))
    case = _ball_case(aff, shape, CENTRES)
    a, b = levels_table(case), levels_table(_reoriented(case))
    assert np.array_equal(a["level"], b["level"]) and np.array_equal(a["level_fractions"], b["level_fractions"])
    num = ["boundary_mm", "x", "y", "z", "volume_mm3", "long_axis_mm"]
    np.testing.assert_allclose(a[num].to_numpy(), b[num].to_numpy(), atol=1e-9)


def test_resampled_grid_gives_the_same_levels():
    a_aff, a_shape = _grid((1.0, 1.0, 1.0))
    b_aff, b_shape = _grid((0.6, 0.6, 1.4))
    a = levels_table(_ball_case(a_aff, a_shape, CENTRES))
    b = levels_table(_ball_case(b_aff, b_shape, CENTRES))
    assert a["level"].tolist() == b["level"].tolist() and a["side"].tolist() == b["side"].tolist()
    np.testing.assert_allclose(a[["x", "y", "z"]], b[["x", "y", "z"]], atol=0.2)


def test_levels_table_without_landmarks_is_reported():
    aff, shape = _grid((2.0, 2.0, 2.0))
    case = _ball_case(aff, shape, CENTRES[:1])
    bare = Case(case_id="T1", primary_side="R", dissected={}, label_map=case.label_map, landmarks=None,
                path_nodes=(), containers=())
    with pytest.raises(InputError, match="no landmarks"):
        levels_table(bare)


def test_levels_table_of_an_empty_map_has_the_columns():
    aff, shape = _grid((2.0, 2.0, 2.0))
    case = _ball_case(aff, shape, [])
    table = levels_table(case)
    assert len(table) == 0 and "level_fractions" in table.columns
    assert isinstance(table, pd.DataFrame)


# ---------------------------------------------------------------- CLI


EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "minimal_case"


def test_cli_levels_writes_the_table(monkeypatch, tmp_path, capsys):
    from neckmatch.io.case import read_case

    assert _run_cli(monkeypatch, "levels", str(EXAMPLE), "--out", str(tmp_path / "out"), "--tolerance", "9") == 0
    written = pd.read_csv(tmp_path / "out" / "levels.csv", keep_default_na=False, dtype={"borderline": str})
    expected = levels_table(read_case(EXAMPLE), tolerance_mm=9.0)
    assert written["level"].tolist() == expected["level"].tolist()
    assert written["borderline"].tolist() == ["true" if b else "false" for b in expected["borderline"]]
    np.testing.assert_allclose(written["boundary_mm"], expected["boundary_mm"], rtol=1e-5)
    assert "levels.csv" in capsys.readouterr().out
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["level_map.json", "level_map.nii.gz", "levels.csv"]  # no temporary left behind


def test_cli_levels_bad_case_is_one_line_exit_2(monkeypatch, tmp_path, capsys):
    assert _run_cli(monkeypatch, "levels", str(tmp_path), "--out", str(tmp_path / "out")) == 2
    err = capsys.readouterr().err
    assert "case.json" in err and len(err.strip().splitlines()) == 1
