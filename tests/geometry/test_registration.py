"""Specimen-to-patient registration: suture frame, affine / non-rigid CPD, poses, and the fast node measure."""

from __future__ import annotations

import numpy as np
import pytest

from neckmatch.geometry.registration import (
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
