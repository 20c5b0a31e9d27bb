"""Specimen-to-patient registration: suture frame, affine / non-rigid CPD, poses, and the fast node measure."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from neckmatch.geometry.registration import (
    _e_step,
    board_rotation,
    cpd_affine,
    cpd_nonrigid,
    register_piece,
    specimen_nodes,
    suture_rotation,
)
from neckmatch.model import LabelMap
from neckmatch.synth.anatomy import rotation_matrix


def _patient(n: int, seed: int) -> np.ndarray:
    """A right-side node cloud: 30 mm deep (x), 50 mm (y), 110 mm long (z), RAS mm."""
    rng = np.random.default_rng(seed)
    return rng.uniform([30, -30, -60], [60, 20, 50], size=(n, 3))


def _to_specimen(x: np.ndarray, seed: int, flatten: float = 0.5, turned: bool = False
                 ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Flatten x, stretch y and z, bend, shrink, rotate and shift into a scanner frame; sutures at the ends."""
    rng = np.random.default_rng(seed)
    c = x.mean(axis=0)

    def deform(p: np.ndarray) -> np.ndarray:
        r = np.atleast_2d(p) - c
        q = r * np.array([flatten, 1.25, 1.25])
        q[:, 0] += 6.0 * (r[:, 2] / 55.0) ** 2
        return 0.95 * q

    rot = rotation_matrix(*rng.uniform(0, 360, 3))
    shift = rng.uniform(-50, 50, 3)
    y = deform(x) @ rot.T + shift
    sut = {"cranial": np.array([c[0], c[1], x[:, 2].max() + 5]), "caudal": np.array([c[0], c[1], x[:, 2].min() - 5]),
           "anterior": np.array([c[0], x[:, 1].max() + 5, c[2]])}
    sutures = {k: deform(v)[0] @ rot.T + shift + rng.normal(0, 3, 3) for k, v in sut.items()}
    if turned:  # the cranial / caudal sutures read from the wrong end
        sutures["cranial"], sutures["caudal"] = sutures["caudal"], sutures["cranial"]
    return y, rot, sutures


def test_suture_rotation_is_the_patient_frame_and_detects_a_mirror() -> None:
    rot = rotation_matrix(20, -35, 110)
    s = {"cranial": rot @ [0, 0, 50.0], "caudal": rot @ [0, 0, -50.0], "anterior": rot @ [0, 30.0, 0]}
    assert np.allclose(suture_rotation(s, "R"), rot.T, atol=1e-9)
    s["lateral"], s["medial"] = rot @ [-10.0, 0, 0], rot @ [10.0, 0, 0]  # lateral on the -x side: mirrored for R
    assert np.allclose(suture_rotation(s, "R"), np.diag([-1.0, 1, 1]) @ rot.T, atol=1e-9)
    assert np.allclose(suture_rotation(s, "L"), rot.T, atol=1e-9)  # but right for a left-side piece


def test_affine_cpd_recovers_an_affine_with_outliers() -> None:
    rng = np.random.default_rng(3)
    Y = rng.normal(size=(40, 3))
    A = np.array([[0.5, 0.1, 0.0], [0.0, 1.3, 0.2], [0.1, 0.0, 1.2]])
    X = np.vstack([Y @ A.T + [0.2, -0.1, 0.3], rng.uniform(-3, 3, size=(8, 3))])  # 8 MR-only points
    B, t, _, _ = cpd_affine(X, Y, w=0.2)
    assert np.allclose(B, A, atol=0.02) and np.allclose(t, [0.2, -0.1, 0.3], atol=0.02)


def test_nonrigid_cpd_follows_a_bend_the_affine_cannot() -> None:
    rng = np.random.default_rng(4)
    Y = rng.normal(size=(50, 3))
    X = Y + np.column_stack([0.3 * Y[:, 2] ** 2, np.zeros(50), np.zeros(50)])
    B, t, _, _ = cpd_affine(X, Y, w=0.0)
    affine_err = np.abs(Y @ B.T + t - X).max()
    W, _, P, _ = cpd_nonrigid(X, Y @ B.T + t, w=0.0, beta=1.0, lam=0.5)
    from neckmatch.geometry.registration import _gauss_kernel

    Y0 = Y @ B.T + t
    assert np.abs(Y0 + _gauss_kernel(Y0, Y0, 1.0) @ W - X).max() < 0.3 * affine_err
    assert (P.argmax(axis=0) == np.arange(50)).mean() > 0.95


@pytest.mark.parametrize("turned", [False, True])
def test_register_piece_pairs_a_flattened_turned_specimen(turned: bool) -> None:
    x_true = _patient(45, seed=1)
    mr = x_true[:30]  # in vivo MRI sees 30 of the 45 nodes; the specimen all of them
    y, _, sutures = _to_specimen(x_true, seed=2, turned=turned)
    reg = register_piece("R", y, mr, "R", sutures, np.arange(1, 46), np.arange(101, 131))
    assert reg.pose == ("turned-y" if turned else "sutures")
    pairs = reg.pairs()
    right = sum(m == n for m, n, _ in pairs)
    assert len(pairs) >= 27 and right >= 0.95 * len(pairs)
    resid = np.linalg.norm(reg.registered[:30] - mr, axis=1)
    assert np.median(resid) < 3.0
    assert np.allclose(reg.map_points(y), reg.registered, atol=1e-9)  # the stored transform maps any point


def test_warp_is_how_far_the_nonrigid_stage_moved_each_node() -> None:
    x_true = _patient(45, seed=1)
    y, _, sutures = _to_specimen(x_true, seed=2)
    reg = register_piece("R", y, x_true[:30], "R", sutures, np.arange(1, 46), np.arange(101, 131))
    affine_only = reg.ctrl * reg.pat_scale + reg.pat_centre  # the control points are the affine-mapped nodes
    np.testing.assert_allclose(reg.warp_mm(), np.linalg.norm(reg.registered - affine_only, axis=1), atol=1e-9)
    assert len(reg.warp_mm()) == 45 and reg.warp_mm().max() > 0.1
    one = dataclasses.replace(reg, ctrl=np.zeros((1, 3)), coef=np.array([[0.3, 0.4, 0.0]]), pat_scale=10.0)
    assert one.warp_mm() == pytest.approx([5.0])  # kernel 1 at its own control point: |coef| x scale


def test_too_few_nodes_keep_the_suture_frame_and_pair_nothing() -> None:
    x = _patient(2, seed=5)
    y, _, sutures = _to_specimen(_patient(10, seed=5), seed=6)
    reg = register_piece("R", y[:2], x, "R", sutures, [1, 2], [7, 8])
    assert reg.pose == "sutures" and reg.pairs() == [] and reg.registered.shape == (2, 3)


def test_specimen_nodes_measure_centroid_volume_and_long_axis() -> None:
    data = np.zeros((30, 30, 30), dtype=np.uint8)
    ii, jj, kk = np.meshgrid(*(np.arange(30),) * 3, indexing="ij")
    data[((ii - 15) / 10.0) ** 2 + ((jj - 15) / 5.0) ** 2 + ((kk - 15) / 5.0) ** 2 <= 1] = 4
    aff = np.diag([0.5, 0.5, 0.5, 1.0])
    aff[:3, 3] = [10, 20, 30]
    row = specimen_nodes(LabelMap(data, aff)).iloc[0]
    assert row.node == 4
    assert np.allclose([row.x, row.y, row.z], [17.5, 27.5, 37.5])
    assert row.volume_mm3 == pytest.approx(4 / 3 * np.pi * 5 * 2.5 * 2.5, rel=0.05)
    assert row.long_axis_mm == pytest.approx(10.0, rel=0.05)


def test_affine_cpd_with_a_bend_term_recovers_a_bent_affine() -> None:
    rng = np.random.default_rng(7)
    Y = rng.normal(size=(40, 3))
    A = np.array([[0.5, 0.1, 0.0], [0.0, 1.2, 0.1], [0.0, 0.0, 1.2]])
    c = np.array([0.4, -0.3, 0.0])  # sag and curve along the long (z) axis
    X = Y @ A.T + c * Y[:, 2:3] ** 2 + [0.1, 0.2, -0.1]
    B, t, _, _ = cpd_affine(X, Y, w=0.0, quad=Y[:, 2:3] ** 2)
    assert B.shape == (3, 4)
    assert np.allclose(B[:, :3], A, atol=0.02) and np.allclose(B[:, 3], c, atol=0.02)
    fit = np.column_stack([Y, Y[:, 2] ** 2]) @ B.T + t
    assert np.abs(fit - X).max() < 0.02
    B0, t0, _, _ = cpd_affine(X, Y, w=0.0)  # a plain affine cannot follow the bend
    assert np.abs(Y @ B0.T + t0 - X).max() > 10 * np.abs(fit - X).max()


def test_board_rotation_turns_the_medio_lateral_axis_to_the_thinnest_direction() -> None:
    rng = np.random.default_rng(8)
    flat = rng.uniform([-2, -15, -25], [2, 15, 25], size=(12, 3))  # thin along x: the board's normal
    sutures = rotation_matrix(0, 0, 35)  # a suture frame turned 35 degrees about the long axis
    board = board_rotation(flat, sutures)
    assert np.allclose(board @ board.T, np.eye(3), atol=1e-9) and np.linalg.det(board) == pytest.approx(1.0)
    assert abs(board[0] @ [1.0, 0, 0]) > 0.99 and board[0] @ sutures[0] > 0  # x: the normal, on the sutures' side
    assert board[2] @ sutures[2] > 0.99  # cranio-caudal axis kept


def test_sinkhorn_correspondences_are_one_to_one() -> None:
    X = np.array([[0.0, 0, 0], [0.2, 0, 0], [2.0, 0, 0]])  # normalised coordinates, noise sd 0.1
    TY = np.array([[0.1, 0, 0], [2.05, 0, 0]])  # specimen node 0 lies between MR nodes 0 and 1
    P_cpd, _ = _e_step(X, TY, 0.01, 0.01, None)
    P_one, _ = _e_step(X, TY, 0.01, 0.01, None, wy=0.3)
    assert P_cpd[0, :2].sum() > 1.5  # CPD: one specimen node explains two MR nodes
    assert np.all(P_one.sum(axis=1) <= 1 + 1e-9)  # one-to-one: at most one MR node's worth per specimen node
    assert P_one[0, 0] == pytest.approx(0.5, abs=0.02) and P_one[0, 1] == pytest.approx(0.5, abs=0.02)
    assert P_one[1, 2] > 0.95


def _small_piece(seed: int, flatten: float, turn_deg: float, upside_down: bool = False
                 ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """A 12-node container piece (RAS mm) flattened along x, stretched, rotated into a scanner frame, with sutures
    whose frame is turned ``turn_deg`` about the long axis (a misplaced anterior suture)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform([20, -15, -20], [45, 10, 20], size=(12, 3))
    c = x.mean(axis=0)
    q = (x - c) * np.array([flatten, 1.2, 1.2])
    rot = rotation_matrix(*rng.uniform(0, 360, 3))
    y = q @ rot.T + 30.0
    turn = rotation_matrix(0, 0, turn_deg)
    sut = {"cranial": np.array([0.0, 0, 35]), "caudal": np.array([0.0, 0, -35]), "anterior": np.array([0.0, 20, 0])}
    sutures = {k: (turn @ v) @ rot.T + 30.0 for k, v in sut.items()}
    if upside_down:  # turned over on the table, sutures read from the wrong end
        y = (y - 30.0) @ rotation_matrix(0, 180, 0).T @ rot.T @ rot + 30.0
        sutures = {k: (v - 30.0) @ rotation_matrix(0, 180, 0).T @ rot.T @ rot + 30.0 for k, v in sutures.items()}
        sutures["cranial"], sutures["caudal"] = sutures["caudal"], sutures["cranial"]
    return x, y, sutures


@pytest.mark.parametrize("upside_down", [False, True])
def test_a_small_flattened_rotated_piece_is_recovered(upside_down: bool) -> None:
    x, y, sutures = _small_piece(11, flatten=0.35, turn_deg=30.0, upside_down=upside_down)
    reg = register_piece("R-III", y, x, "R", sutures, np.arange(1, 13), np.arange(101, 113))
    right = sum(m == n for m, n, _ in reg.pairs())
    assert right >= 11
    assert np.median(np.linalg.norm(reg.registered - x, axis=1)) < 1.5


def test_pose_gap_is_the_margin_over_the_best_other_pose() -> None:
    x = _patient(2, seed=5)
    y, _, sutures = _to_specimen(_patient(10, seed=5), seed=6)
    reg = register_piece("R", y[:2], x, "R", sutures, [1, 2], [7, 8])
    lik = {"sutures": -1.0, "sutures@board": -0.5, "turned-y": -4.0, "turned-y@board": -6.0}
    assert dataclasses.replace(reg, pose_log_lik=lik).pose_gap() == pytest.approx(3.5)  # either frame counts
    assert dataclasses.replace(reg, pose_log_lik={"sutures": 0.0}).pose_gap() == 50.0  # nothing to compare


def test_a_second_pass_tries_only_the_given_pose_and_its_key_is_the_chosen_one() -> None:
    x_true = _patient(45, seed=1)
    y, _, sutures = _to_specimen(x_true, seed=2, turned=True)
    first = register_piece("R", y, x_true[:30], "R", sutures, np.arange(1, 46), np.arange(101, 131))
    assert first.pose_key().split("@")[0] == first.pose == "turned-y"
    assert first.pose_log_lik[first.pose_key()] == max(first.pose_log_lik.values())
    again = register_piece("R", y, x_true[:30], "R", sutures, np.arange(1, 46), np.arange(101, 131),
                           poses=["sutures"])  # held to the unturned pose: the only one tried
    assert list(again.pose_log_lik) == ["sutures"] and again.pose == "sutures"
