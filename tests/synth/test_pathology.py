"""Surgery and pathology: dissections, containers, boundary errors, harvest, fragments, shrinkage, positions."""

from __future__ import annotations

import numpy as np
import pytest

from neckmatch.model import ContainerLevel
from neckmatch.synth import simulate_case
from neckmatch.synth.params import SynthParams
from neckmatch.synth.pathology import draw_containers

P = SynthParams()


@pytest.fixture(scope="module")
def cases():
    return [simulate_case(f"S{k}", 300 + k, P, raster=False) for k in range(40)]


def _harvested(cases):
    rows = []
    for c in cases:
        rep = c.pathology.report.set_index("node")
        for i, pid in enumerate(c.pathology.path_node):
            if pid:
                rows.append((c.nodes.long_mm[i], rep.loc[pid, "size_mm"], c.nodes.level[i], rep.loc[pid, "level"]))
    return rows


def test_containers_sub_and_merged():
    rng = np.random.default_rng(0)
    p = P.replace(subcontainer_II_fraction=1.0, merged_III_IV_fraction=1.0, subcontainer_I_fraction=0.0)
    got = draw_containers(rng, p, {"R": ["I", "II", "III", "IV"]})
    assert [g[2] for g in got] == ["I", "IIA", "IIB", "III+IV"]
    assert got[0][0] == "R-I"


def test_shrinkage_and_rounding(cases):
    rows = _harvested(cases)
    long_, size = np.array([r[0] for r in rows]), np.array([r[1] for r in rows], float)
    assert np.all(size == np.rint(size)) and np.all(size >= 1)
    big = long_ > 8  # rounding matters little here
    assert np.median(size[big] / long_[big]) == pytest.approx(1 - P.shrinkage_mean, abs=0.04)


def test_small_nodes_harvested_less_often(cases):
    long_ = np.concatenate([c.nodes.long_mm[c.pathology.container != ""] for c in cases])
    got = np.concatenate([c.pathology.path_node[c.pathology.container != ""] != "" for c in cases])
    assert got[long_ < 4].mean() < got[long_ > 8].mean() - 0.15


def test_container_holds_the_level_mostly(cases):
    rows = _harvested(cases)
    ok = np.array([ContainerLevel.parse(r[3]).contains(r[2]) for r in rows])
    assert 0.75 < ok.mean() < 0.99  # surgeons err near boundaries, but not often


def test_no_errors_without_the_knobs():
    p = P.replace(container_error_rate=0.0, surgical_II_III_offset_mm=(0.0, 0.0), surgical_III_IV_offset_mm=(0.0, 0.0))
    for k in range(5):
        c = simulate_case("S", 50 + k, p, raster=False)
        rep = c.pathology.report.set_index("node")
        for i, pid in enumerate(c.pathology.path_node):
            if pid:
                assert ContainerLevel.parse(rep.loc[pid, "level"]).contains(c.nodes.level[i])


def test_fragments_point_to_a_node_of_the_same_container():
    c = simulate_case("S", 9, P.replace(fragment_rate=0.3), raster=False)
    rep = c.pathology.report.set_index("node")
    frag = rep[rep.fragment_of != ""]
    assert len(frag) > 0
    for _, row in frag.iterrows():
        assert rep.loc[row.fragment_of, "container"] == row.container
        assert rep.loc[row.fragment_of, "fragment_of"] == ""
    listed = [f for f in c.pathology.path_fragments if f]
    assert len(listed) == len(frag)


def test_positions_follow_the_true_layout():
    c = simulate_case("S", 4, P.replace(positions_fraction=1.0, stretch_sd=0.0, shift_sd=0.0, position_noise=0.0),
                      raster=False)
    rep = c.pathology.report.set_index("node")
    assert rep.cc.between(0, 1).all() and rep.ap.between(0, 1).all()
    local = (c.nodes.centres - c.phantom.matrix[:3, 3]) @ c.phantom.matrix[:3, :3]
    for cid in np.unique(c.pathology.container[c.pathology.container != ""]):
        idx = np.flatnonzero((c.pathology.container == cid) & (c.pathology.path_node != ""))
        if len(idx) < 3:
            continue
        cc = rep.loc[c.pathology.path_node[idx], "cc"].to_numpy()
        assert np.all(np.diff(cc[np.argsort(-local[idx, 2])]) >= -1e-3)  # 0 = most cranial


def test_positions_only_in_some_cases(cases):
    with_pos = np.array(["cc" in c.pathology.report.columns for c in cases])
    np.testing.assert_array_equal(with_pos, [c.with_positions for c in cases])
    assert 0.25 < with_pos.mean() < 0.75


def test_node_ids_do_not_follow_mr_labels(cases):
    c = cases[0]
    m = (c.pathology.path_node != "") & (c.mri.mr_label > 0)
    ids = c.pathology.path_node[m]
    assert not np.all(np.diff(c.mri.mr_label[m][np.argsort(ids)]) >= 0)
