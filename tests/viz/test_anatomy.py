"""Reference structures: closed tubes of the right size, placed where the landmarks say."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from neckmatch.geometry.levels import _demo_landmarks
from neckmatch.viz.anatomy import reference_structures, tube


def test_tube_is_closed_outward_and_has_the_cylinder_volume():
    path = np.column_stack([np.zeros(11), np.zeros(11), np.linspace(0.0, 50.0, 11)])
    mesh = trimesh.Trimesh(*tube(path, 4.0, sections=48), process=True)
    assert mesh.is_watertight and mesh.volume > 0  # outward winding gives a positive volume
    assert mesh.volume == pytest.approx(np.pi * 4.0**2 * 50.0, rel=0.01)


def test_a_closed_ring_has_no_caps_and_the_torus_volume():
    t = np.linspace(0.0, 2 * np.pi, 64, endpoint=False)
    ring = np.column_stack([20 * np.cos(t), 20 * np.sin(t), np.zeros_like(t)])
    mesh = trimesh.Trimesh(*tube(ring, 2.0, sections=24, closed=True), process=True)
    assert mesh.is_watertight
    assert abs(mesh.volume) == pytest.approx(2 * np.pi**2 * 20.0 * 2.0**2, rel=0.02)


def test_structures_sit_where_the_landmarks_put_them():
    lm = _demo_landmarks()
    got = {s.name: s for s in reference_structures(lm)}
    assert {"mandible", "hyoid", "cricoid_cartilage", "airway", "carotid_R", "jugular_L", "SCM_R",
            "submandibular_gland_L", "clavicle_R"} <= set(got)
    z_hy = lm.point("hyoid_body_inferior")[2]
    assert got["mandible"].vertices[:, 2].min() > z_hy  # above the hyoid
    car = got["carotid_R"].vertices
    mid = car[np.abs(car[:, 2] - z_hy) < 3.0]
    medial_edge = lm.curve("carotid_medial_R").at(z_hy)[0]
    assert mid[:, 0].min() == pytest.approx(medial_edge, abs=1.0)  # its medial edge on the landmark
    for s in got.values():
        assert (s.side == "") == (not s.name.endswith(("_R", "_L")))
        assert np.all(np.isfinite(s.vertices)) and s.faces.max() < len(s.vertices)
        right = s.vertices[:, 0].mean() > lm.x_mid(s.vertices[:, 2].mean())
        if s.side:
            assert right == (s.side == "R"), s.name
