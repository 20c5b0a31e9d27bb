"""True nodes: counts vs lyDATA medians, involvement chain, sizes vs the literature, placement in level."""

from __future__ import annotations

import numpy as np
import pytest

from neckmatch.geometry.levels import assign_levels
from neckmatch.synth import simulate_case
from neckmatch.synth.nodes import _sizes, draw_counts, draw_involvement, support_radius
from neckmatch.synth.params import COUNT_PRIORS, IMAGING_LEVELS, SynthParams

P = SynthParams()


@pytest.fixture(scope="module")
def cases():
    return [simulate_case(f"S{k}", k, P, raster=False) for k in range(30)]


def test_support_radius_known_answers():
    axes = np.eye(3)[None]
    semi = np.array([[5.0, 3.0, 2.0]])
    assert support_radius(axes, semi, np.array([[1.0, 0.0, 0.0]]))[0] == pytest.approx(5.0)
    u = np.array([[1.0, 1.0, 0.0]]) / np.sqrt(2)
    assert support_radius(axes, semi, u)[0] == pytest.approx(np.sqrt((25 + 9) / 2))
    sphere = support_radius(axes, np.full((1, 3), 4.0), u)
    assert sphere[0] == pytest.approx(4.0)


def test_drawn_counts_follow_lydata_medians():
    rng = np.random.default_rng(11)
    draws = [draw_counts(rng, P) for _ in range(400)]
    for lv in IMAGING_LEVELS:
        n = np.array([d[(s, lv)] for d in draws for s in ("R", "L")])
        assert abs(np.median(n) - COUNT_PRIORS[lv][0]) <= 1.0, lv
        assert n.max() <= np.ceil(P.count_max_factor * COUNT_PRIORS[lv][0])


def test_placed_counts_per_level_follow_lydata_medians(cases):
    # placement must not drop nodes: per-level counts of placed nodes still match lyDATA's medians
    for lv in IMAGING_LEVELS:
        n = [np.sum((c.nodes.level == lv) & (c.nodes.side == s)) for c in cases for s in ("R", "L")]
        assert abs(np.median(n) - COUNT_PRIORS[lv][0]) <= 1.0, lv


def test_true_levels_agree_with_assign_levels(cases):
    for c in cases:
        a = assign_levels(c.nodes.centres, c.phantom.landmarks)
        assert np.array_equal(a.level, c.nodes.level)
        assert np.array_equal(a.side, c.nodes.side)


def test_nodes_do_not_overlap(cases):
    for c in cases[:5]:
        n = c.nodes
        i, j = np.triu_indices(len(n), k=1)
        d = n.centres[j] - n.centres[i]
        dist = np.linalg.norm(d, axis=1)
        u = d / dist[:, None]
        h = support_radius(n.axes[i], n.semi[i], u) + support_radius(n.axes[j], n.semi[j], u)
        assert np.all(dist > h)


def test_long_axis_mostly_cranio_caudal(cases):
    c = cases[0]
    local_axes = np.einsum("ji,njk->nik", c.phantom.matrix[:3, :3], c.nodes.axes)
    cos_z = np.abs(local_axes[:, 2, 0])
    assert np.median(cos_z) > 0.85


def test_sizes_follow_the_literature():
    rng = np.random.default_rng(3)
    n = 20000
    benign = _sizes(rng, P, np.zeros(n, bool), np.zeros(n, bool))
    short = 2 * benign[:, 2]
    assert 0.85 < np.mean((short >= 2) & (short <= 6)) < 0.95  # domain: most benign 2-6 mm
    pos = np.ones(n, bool)
    micro = rng.random(n) < P.micro_fraction
    meta = _sizes(rng, P, pos, micro)
    assert 0.33 < np.mean(2 * meta[:, 0] < 10.0) < 0.47  # domain: ~40 % of metastatic nodes 1-10 mm
    assert np.all(benign[:, 0] >= benign[:, 1]) and np.all(benign[:, 1] >= benign[:, 2])


def test_involvement_follows_the_chain():
    rng = np.random.default_rng(8)
    draws = [draw_involvement(rng, P, "oropharynx", "R") for _ in range(3000)]
    ii = np.array([d[("R", "II")] > 0 for d in draws])
    iii = np.array([d[("R", "III")] > 0 for d in draws])
    p_ii = P.involvement_priors["oropharynx"]["ipsi"]["II"][0]
    assert ii.mean() == pytest.approx(p_ii, abs=0.03)
    assert iii[ii].mean() == pytest.approx(P.involvement_priors["oropharynx"]["ipsi"]["III"][0], abs=0.04)
    assert iii[~ii].mean() == pytest.approx(P.involvement_priors["oropharynx"]["ipsi"]["III"][1], abs=0.04)
    contra_ii = np.array([d[("L", "II")] > 0 for d in draws]).mean()
    assert contra_ii == pytest.approx(P.involvement_priors["oropharynx"]["contra"]["II"][0], abs=0.03)


def test_involved_levels_hold_positive_nodes(cases):
    for c in cases:
        assert np.all(c.nodes.positive[c.nodes.micro])  # micrometastases are metastases
        assert not np.any(c.nodes.positive & np.isin(c.nodes.level, ["RP", "VI", "VII", "SC"]))
