"""Misspecification families: each changes what it claims and keeps the ground truth consistent with the report."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from neckmatch.synth import SynthParams, case_seed, simulate_case
from neckmatch.synth.misspec import FAMILIES, simulate_family_case


def _sim(family: str, k: int = 0, **kw):
    return simulate_family_case(family, f"C{k}", case_seed(11, k), raster=False, **kw)


def _referenced(truth: pd.DataFrame) -> set[str]:
    out = set(truth["path_node"][truth["path_node"] != ""])
    for v in truth["path_fragments"]:
        out |= {x for x in str(v).split(";") if x}
    return out


def test_at_least_eight_families_besides_the_default():
    assert len([f for f in FAMILIES if f != "default"]) >= 8


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_truth_names_only_reported_nodes(family):
    for k in range(1):
        c = _sim(family, k)
        rep = c.pathology.report
        assert rep["node"].is_unique
        assert _referenced(c.truth) <= set(rep["node"])
        frag = rep["fragment_of"][rep["fragment_of"] != ""]
        assert set(frag) <= set(rep["node"])


def test_default_family_is_the_tuning_generator():
    a = _sim("default")
    b = simulate_case("C0", case_seed(11, 0), raster=False)
    pd.testing.assert_frame_equal(a.pathology.report, b.pathology.report)


def test_heavy_positions_move_reports_but_stay_in_the_unit_interval():
    knobs = SynthParams(**FAMILIES["heavy-positions"].knobs)
    for k in range(6):
        c, d = _sim("heavy-positions", k), simulate_case(f"C{k}", case_seed(11, k), knobs, raster=False)
        if "cc" in c.pathology.report:
            cc = c.pathology.report["cc"].to_numpy(float)
            assert np.nanmin(cc) >= 0.0 and np.nanmax(cc) <= 1.0
            assert not np.allclose(cc, d.pathology.report["cc"].to_numpy(float))
            return
    pytest.fail("no case of six has positions")


def test_count_only_containers_have_no_sizes():
    c = _sim("count-only")
    rep = c.pathology.report
    blank = rep.groupby("container")["size_mm"].apply(lambda s: s.isna().all())
    assert blank.any()
    assert rep.groupby("container")["size_mm"].apply(lambda s: s.isna().any() == s.isna().all()).all()


def test_swapped_containers_report_a_jar_under_its_neighbours_label():
    swapped = 0
    for k in range(8):
        c = _sim("swapped-containers", k)
        truth, rep = c.truth, c.pathology.report.set_index("node")
        for node, cont in zip(truth["path_node"], truth["container"], strict=True):
            if node and rep.at[node, "container"] != cont:
                swapped += 1
    assert swapped > 0


def test_size_habits_change_reported_sizes():
    changed = 0
    for k in range(3):
        a, b = _sim("size-habits", k).pathology.report, _sim("default", k).pathology.report
        changed += int((a["size_mm"].to_numpy() != b["size_mm"].to_numpy()).any())
    assert changed == 3


def test_merged_reports_give_two_true_nodes_one_row():
    shared = 0
    for k in range(3):
        t = _sim("fragments-merges", k).truth
        shared += int(t.loc[t["path_node"] != "", "path_node"].duplicated().sum())
    assert shared > 0
