"""The neck phantom: every landmark, realistic layout, and every level region non-empty on both sides."""

from __future__ import annotations

import numpy as np
import pytest

from neckmatch.geometry.levels import assign_levels
from neckmatch.model import REQUIRED_LANDMARKS
from neckmatch.synth.anatomy import _BOXES, level_box, make_phantom, rotation_matrix
from neckmatch.synth.params import SynthParams


@pytest.fixture(scope="module", params=[0, 1, 2])
def phantom(request):
    return make_phantom(np.random.default_rng(request.param), SynthParams())


def _local(phantom, ras):
    return (np.atleast_2d(ras) - phantom.matrix[:3, 3]) @ phantom.matrix[:3, :3]


def test_rotation_matrix_is_proper():
    r = rotation_matrix(10.0, -20.0, 33.0)
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(r) == pytest.approx(1.0)


def test_all_landmarks_present(phantom):
    assert phantom.landmarks.missing(REQUIRED_LANDMARKS) == []


def test_heights_in_anatomical_order(phantom):
    z = {k: _local(phantom, v)[0, 2] for k, v in phantom.landmarks.points.items()}
    assert z["skull_base"] > z["hyoid_body_inferior"] + 35 > z["cricoid_arch_inferior"] + 35
    assert z["cricoid_arch_inferior"] > z["clavicle_superior_R"] > z["manubrium_superior"]
    assert z["cricoid_arch_inferior"] > z["clavicle_superior_L"] > z["manubrium_superior"]


def test_vessels_and_muscles_in_place(phantom):
    zc = _local(phantom, phantom.landmarks.points["cricoid_arch_inferior"])[0, 2]
    for side, sign in (("R", 1), ("L", -1)):
        pts = {n: _local(phantom, phantom.landmarks.curve(f"{n}_{side}").points) for n in
               ("carotid_medial", "IJV_posterior", "SCM_posterior", "trapezius_anterior")}
        mid = {n: p[np.argmin(np.abs(p[:, 2] - zc))] for n, p in pts.items()}
        assert 10 < sign * mid["carotid_medial"][0] < 24
        assert sign * mid["IJV_posterior"][0] > sign * mid["carotid_medial"][0]  # IJV lateral
        assert mid["IJV_posterior"][1] < mid["carotid_medial"][1]  # and posterior
        assert mid["trapezius_anterior"][1] < mid["SCM_posterior"][1] - 20  # level V has depth


@pytest.mark.parametrize("side", ["R", "L"])
def test_every_level_region_is_non_empty(phantom, side):
    rng = np.random.default_rng(5)
    sign = 1.0 if side == "R" else -1.0
    for level in _BOXES:
        lo, hi = level_box(phantom, level)
        u = rng.uniform(lo, hi, size=(500, 3))
        a = assign_levels(phantom.to_ras(np.column_stack([sign * u[:, 0], u[:, 1], u[:, 2]])), phantom.landmarks)
        hit = (a.level == level) & (a.side == side)
        assert hit.mean() > 0.4, (level, side, hit.mean())
