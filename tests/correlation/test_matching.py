"""Node-to-node matching on hand-made cases: unique answers, ambiguity, unmatched reasons, constraints, fragments,
the output contract and the absence of incorporation (reads and status never change a match)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from neckmatch.correlation.matching import MATCH_COLUMNS, Constraints, MatchParams, match_case
from neckmatch.errors import InputError
from neckmatch.model import Case, LabelMap, PathNode, Read, Side, SurgicalLevel


def mr_table(rows, shape=None):
    """levels.csv-like table from (node, side, level, long_mm, z, y) tuples (x = +-40 by side); ``shape`` maps a
    node to its (short axis mm, volume mm^3) - without it no volume is known and no label can be merged."""
    out = []
    for node, side, level, long_mm, z, y in rows:
        short, vol = (shape or {}).get(node, (0.6 * long_mm, np.nan))
        out.append({"node": node, "side": side, "level": level, "runner_up": "", "borderline": False,
                    "x": 40.0 if side == "R" else -40.0, "y": y, "z": z, "long_axis_mm": long_mm,
                    "short_axis_mm": short, "volume_mm3": vol})
    return pd.DataFrame(out)


def make_case(path_nodes, dissected=None, reads=()):
    dissected = dissected or {Side.R: frozenset({SurgicalLevel.II, SurgicalLevel.III})}
    lm = LabelMap(np.zeros((2, 2, 2), dtype=np.int16), np.eye(4))
    return Case("T1", "R", dissected, lm, None, tuple(path_nodes), (), reads=tuple(reads))


def pn(node, size, container="R-II", level="II", side="R", status="negative", **kw):
    return PathNode(node, container, side, level, status, size_mm=size, **kw)


@pytest.fixture
def unique():
    levels = mr_table([(1, "R", "IIA", 5.0, 20, 0), (2, "R", "IIA", 11.0, 10, 0), (3, "R", "IIA", 24.0, 5, 0),
                       (4, "R", "III", 14.0, -15, 0)])
    case = make_case([pn("a", 4.3), pn("b", 9.5), pn("c", 20.0), pn("d", 12.0, "R-III", "III")])
    return case, levels


def pairs(result):
    m = result.matches
    sel = m[m["kind"] == "pair"]
    return {(int(a), b) for a, b in zip(sel["mr_node"], sel["path_node"], strict=True)}


def test_unique_answer_is_found_and_auto(unique):
    res = match_case(*unique)
    assert pairs(res) == {(1, "a"), (2, "b"), (3, "c"), (4, "d")}
    big = res.matches[res.matches["mr_node"].isin([2, 3, 4])]
    assert (big["decision"] == "auto").all()
    assert list(res.matches.columns) == MATCH_COLUMNS


def test_shrinkage_estimated_from_pairs(unique):
    res = match_case(*unique)
    assert 0.80 < res.shrinkage < 0.90  # the pairs above have ratios 0.86-0.87


def test_identical_nodes_are_ambiguous_and_flagged_review():
    levels = mr_table([(1, "R", "IIA", 10.0, 20, 0), (2, "R", "IIA", 10.0, 10, 0)])
    case = make_case([pn("a", 8.5), pn("b", 8.5)])
    m = match_case(case, levels).matches
    assert set(m["kind"]) == {"pair"}
    assert (m["decision"] == "review").all()
    assert (m["confidence"] < 0.6).all()
    assert m["level_only"].all()


def test_positions_break_the_tie():
    levels = mr_table([(1, "R", "IIA", 10.0, 30, 0), (2, "R", "IIA", 10.0, 0, 0)])
    case = make_case([pn("top", 8.5, cc=0.15, ap=0.5), pn("bottom", 8.5, cc=0.85, ap=0.5)])
    res = match_case(case, levels)
    assert pairs(res) == {(1, "top"), (2, "bottom")}
    assert res.matches["position_mm"].notna().all()
    assert res.matches["confidence"].min() > 0.8


def test_undissected_level_is_unmatched_with_reason():
    levels = mr_table([(1, "R", "IIA", 10.0, 20, 0), (2, "R", "IV", 15.0, -40, 0), (3, "L", "III", 9.0, -10, 0)])
    case = make_case([pn("a", 8.5)])
    m = match_case(case, levels).matches.set_index("mr_node")
    assert m.loc[2, "reason"] == "undissected" and m.loc[3, "reason"] == "undissected"
    assert m.loc[2, "kind"] == "mr-unmatched" and m.loc[2, "confidence"] == 1.0
    assert m.loc[2, "decision"] == "auto"


def test_small_mr_node_left_unharvested_and_small_path_node_not_visible():
    levels = mr_table([(1, "R", "IIA", 12.0, 20, 0), (2, "R", "III", 3.0, -10, 0)])
    case = make_case([pn("a", 10.0), pn("tiny", 1.5)])
    m = match_case(case, levels).matches
    assert pairs(type("R", (), {"matches": m})) == {(1, "a")}
    assert m.loc[m["mr_node"] == 2, "reason"].item() == "not-harvested"
    assert m.loc[m["path_node"] == "tiny", "reason"].item() == "not-visible"


def test_wrong_side_never_matches():
    levels = mr_table([(1, "L", "IIA", 12.0, 20, 0)])
    case = make_case([pn("a", 10.0)], dissected={Side.R: frozenset({SurgicalLevel.II}),
                                                  Side.L: frozenset({SurgicalLevel.II})})
    m = match_case(case, levels).matches
    assert set(m["kind"]) == {"mr-unmatched", "path-unmatched"}


def test_every_node_exactly_once():
    rng = np.random.default_rng(7)
    rows = [(k + 1, "R", str(rng.choice(["IIA", "IIB", "III"])), float(rng.uniform(3, 20)),
             float(rng.uniform(-20, 30)), 0.0) for k in range(12)]
    levels = mr_table(rows)
    nodes = [pn(f"II-{k}", float(rng.uniform(1, 18))) for k in range(9)]
    nodes += [pn(f"III-{k}", float(rng.uniform(1, 18)), "R-III", "III") for k in range(6)]
    m = match_case(make_case(nodes), levels).matches
    assert sorted(m["mr_node"].dropna().astype(int)) == list(range(1, 13))
    assert sorted(m["path_node"].dropna()) == sorted(p.node for p in nodes)
    assert m["confidence"].between(0, 1).all()
    assert set(m["decision"]) <= {"auto", "review"}


def test_fragments_share_one_mr_node():
    levels = mr_table([(1, "R", "IIA", 20.0, 20, 0), (2, "R", "IIA", 6.0, 10, 0)])
    case = make_case([pn("big", 17.0), pn("big-f", 9.0, fragment_of="big"), pn("small", 5.0)])
    res = match_case(case, levels)
    assert pairs(res) == {(1, "big"), (1, "big-f"), (2, "small")}


def test_reads_and_status_do_not_change_matches(unique):
    case, levels = unique
    flipped = make_case([PathNode(p.node, p.container, p.side, p.level,
                                  "positive" if p.status.value == "negative" else "negative", size_mm=p.size_mm)
                         for p in case.path_nodes],
                        reads=[Read(k, "r1", float(k % 5 + 1), k % 2 == 0) for k in range(1, 5)])
    a, b = match_case(case, levels).matches, match_case(flipped, levels).matches
    pd.testing.assert_frame_equal(a, b)


def test_must_link_is_honoured(unique):
    res = match_case(*unique, constraints=Constraints(must_link={(2, "c")}))
    p = pairs(res)
    assert (2, "c") in p and (3, "c") not in p
    row = res.matches[res.matches["path_node"] == "c"].iloc[0]
    assert row["constrained"] and row["confidence"] == 1.0


def test_cannot_link_is_honoured(unique):
    res = match_case(*unique, constraints=Constraints(cannot_link={(3, "c")}))
    assert (3, "c") not in pairs(res)


def test_forced_unmatched_is_honoured(unique):
    c = Constraints(forced_unmatched_mr={2}, forced_unmatched_path={"d"})
    m = match_case(*unique, constraints=c).matches
    assert m.loc[m["mr_node"] == 2, "kind"].item() == "mr-unmatched"
    assert m.loc[m["path_node"] == "d", "kind"].item() == "path-unmatched"
    assert m.loc[m["path_node"] == "d", "confidence"].item() == 1.0


def test_must_link_of_two_units_to_one_mr_node(unique):
    res = match_case(*unique, constraints=Constraints(must_link={(3, "c"), (3, "b")}))
    assert {(3, "c"), (3, "b")} <= pairs(res)


def test_a_person_linking_one_partner_of_a_merged_label_keeps_its_second_slot(tmp_path):
    """Seed 7, case 4 (no specimen scan): MR label 29 holds R-I-05 and R-I-06, both auto. A person's link of
    R-I-06 used to close the label to everything else: R-I-05 went to MR label 71 (review, 0.46). The link fixes
    one partner; the label's second slot stays the engine's, and R-I-05 stays in it."""
    from neckmatch.geometry.levels import levels_table
    from neckmatch.io.case import read_case
    from neckmatch.synth import SynthParams, generate_cohort

    case_dir = generate_cohort(4, 7, tmp_path, SynthParams(specimen_fraction=0.0))[3]
    case = read_case(case_dir)
    levels = levels_table(case)
    m = match_case(case, levels).matches
    assert sorted(m.loc[m["mr_node"] == 29, "path_node"]) == ["R-I-05", "R-I-06"] and m.loc[m["mr_node"] == 29,
                                                                                           "merged"].all()
    m = match_case(case, levels, constraints=Constraints(must_link={(29, "R-I-06")})).matches
    rows = m[m["mr_node"] == 29].set_index("path_node")
    assert sorted(rows.index) == ["R-I-05", "R-I-06"] and rows["merged"].all()
    assert rows.loc["R-I-06", "constrained"] and rows.loc["R-I-06", "confidence"] == 1.0
    assert not rows.loc["R-I-05", "constrained"] and rows.loc["R-I-05", "confidence"] < 1.0  # the engine's
    # two links fill both slots: nothing else joins the label
    m = match_case(case, levels, constraints=Constraints(must_link={(29, "R-I-06"), (29, "R-I-05")})).matches
    assert sorted(m.loc[m["mr_node"] == 29, "path_node"]) == ["R-I-05", "R-I-06"]


def test_unknown_constraint_node_is_input_error(unique):
    with pytest.raises(InputError, match="MR node 99 is not in the case"):
        match_case(*unique, constraints=Constraints(must_link={(99, "a")}))


def test_unit_linked_to_two_mr_nodes_is_input_error(unique):
    with pytest.raises(InputError, match="'a' is linked to two MR nodes"):
        match_case(*unique, constraints=Constraints(must_link={(1, "a"), (2, "a")}))


def test_count_only_case_leaves_every_mr_node_unmatched():
    levels = mr_table([(1, "R", "IIA", 12.0, 20, 0), (2, "R", "III", 8.0, -10, 0)])
    m = match_case(make_case([]), levels).matches
    assert (m["kind"] == "mr-unmatched").all() and len(m) == 2



def test_unmatched_central_node_names_the_other_sides_container():
    # a left level VI node lies in the central compartment removed as one container recorded on the right
    from neckmatch.model import Container

    lm = LabelMap(np.zeros((2, 2, 2), dtype=np.int16), np.eye(4))
    case = Case("T1", "R", {Side.R: frozenset({SurgicalLevel.VI})}, lm, None, (),
                (Container("R-VI", "R", "VI", 2, 0),))
    m = match_case(case, mr_table([(1, "L", "VI", 6.0, -20, 10), (2, "L", "IV", 6.0, -30, 0)])).matches
    assert m["container"].fillna("").tolist() == ["R-VI", ""]
    assert m["reason"].tolist() == ["not-harvested", "undissected"]

def test_synthetic_case_contract_and_auto_precision(tmp_path):
    from neckmatch.geometry.levels import levels_table
    from neckmatch.io.case import read_case
    from neckmatch.synth import generate_cohort

    (case_dir,) = generate_cohort(1, 5, tmp_path)
    case = read_case(case_dir)
    levels = levels_table(case)
    m = match_case(case, levels).matches
    gt = pd.read_csv(case_dir / "ground_truth.csv", dtype=str, keep_default_na=False)
    assert sorted(m["path_node"].dropna()) == sorted(p.node for p in case.path_nodes)
    assert set(m["mr_node"].dropna().astype(int)) == set(levels["node"].astype(int))
    truth = {(int(a), piece) for a, b, frags in zip(gt["mr_label"], gt["path_node"], gt["path_fragments"], strict=True)
             if a and b for piece in (frags.split(";") if frags else [b])}  # every fragment of a node is its pair
    auto = m[(m["kind"] == "pair") & (m["decision"] == "auto")]
    right = sum((int(a), b) in truth for a, b in zip(auto["mr_node"], auto["path_node"], strict=True))
    assert len(auto) >= 3 and right / len(auto) >= 0.9


@pytest.mark.parametrize(("boundary_mm", "matched"), [(1.0, True), (40.0, False)])
def test_undissected_level_node_on_the_boundary_may_match(boundary_mm, matched):
    levels = mr_table([(1, "R", "IB", 12.0, 30, 20), (2, "R", "III", 6.0, -15, 0)])
    levels["runner_up"] = ["IIA", ""]
    levels["boundary_mm"] = [boundary_mm, 20.0]
    m = match_case(make_case([pn("a", 10.0), pn("b", 5.0, "R-III", "III")]), levels).matches
    row = m[m["mr_node"] == 1].iloc[0]
    assert (row["kind"] == "pair" and row["path_node"] == "a") == matched
    if not matched:
        assert row["reason"] == "undissected"


# An elongated MR label (14 x 5 mm, volume well below the ellipsoid's 183 mm^3): the shape of two touching nodes.
_MERGED_SHAPE = {1: (5.0, 140.0), 2: (3.6, 35.0)}


def test_elongated_label_takes_two_piece_sized_nodes():
    # 16 x 5.5 mm label: pieces of 8 and 6 mm (about 0.6 and 0.45 of 0.85 x 16 mm); c fits the 6 mm node 2
    levels = mr_table([(1, "R", "IIA", 16.0, 20, 0), (2, "R", "IIA", 6.0, 0, 0)], {1: (5.5, 180.0), 2: (3.6, 35.0)})
    case = make_case([pn("a", 8.0), pn("b", 6.0), pn("c", 5.0)])
    m = match_case(case, levels).matches
    assert pairs(type("R", (), {"matches": m})) == {(1, "a"), (1, "b"), (2, "c")}
    one = m[m["mr_node"] == 1]
    assert len(one) == 2 and one["merged"].all()
    assert not m.loc[m["mr_node"] == 2, "merged"].any()
    assert sorted(m["path_node"].dropna()) == ["a", "b", "c"]  # every pathology node exactly once


def test_compact_label_is_not_merged():
    # same long axis, round and full (volume of the 14 x 12 x 12 ellipsoid): one node, the other piece unmatched
    levels = mr_table([(1, "R", "IIA", 14.0, 20, 0)], {1: (12.0, 1050.0)})
    m = match_case(make_case([pn("a", 12.0), pn("b", 5.0)]), levels).matches
    assert pairs(type("R", (), {"matches": m})) == {(1, "a")}
    assert not m["merged"].any()
    assert m.loc[m["path_node"] == "b", "kind"].item() == "path-unmatched"


def test_merge_needs_piece_sized_partners():
    # an elongated label whose first partner has the full size (a single node): no second partner
    levels = mr_table([(1, "R", "IIA", 14.0, 20, 0)], _MERGED_SHAPE)
    m = match_case(make_case([pn("a", 12.0), pn("b", 3.0)]), levels).matches
    assert pairs(type("R", (), {"matches": m})) == {(1, "a")}
    assert not m["merged"].any()


def test_merge_option_can_be_switched_off():
    levels = mr_table([(1, "R", "IIA", 14.0, 20, 0)], _MERGED_SHAPE)
    case = make_case([pn("a", 7.0), pn("b", 5.0)])
    assert match_case(case, levels).matches["merged"].sum() == 2
    off = match_case(case, levels, params=MatchParams(merge=False)).matches
    assert not off["merged"].any() and (off["kind"] == "pair").sum() == 1


def test_cannot_link_applies_to_the_second_slot():
    levels = mr_table([(1, "R", "IIA", 14.0, 20, 0)], _MERGED_SHAPE)
    case = make_case([pn("a", 7.0), pn("b", 5.0)])
    m = match_case(case, levels, constraints=Constraints(cannot_link={(1, "b")})).matches
    assert pairs(type("R", (), {"matches": m})) == {(1, "a")}
    assert m.loc[m["path_node"] == "b", "kind"].item() == "path-unmatched"


def _units(cc, ap, container="R-II"):
    from neckmatch.correlation.evidence import PathUnits
    from neckmatch.model import ContainerLevel

    m = len(cc)
    return PathUnits(tuple(f"u{k}" for k in range(m)), tuple((f"u{k}",) for k in range(m)), (container,) * m,
                     np.array(["R"] * m), (ContainerLevel.parse("II"),) * m, np.full(m, 5.0),
                     np.asarray(cc, dtype=float), np.asarray(ap, dtype=float))


def test_censored_warp_fit_is_unbiased_at_the_edges():
    from neckmatch.correlation.evidence import fit_warp

    x = np.linspace(0.02, 0.98, 25)
    y = np.clip(0.5 + 1.3 * (x - 0.5), 0.0, 1.0)  # stretched beyond the specimen: 6 reports at each edge
    rel = np.repeat(np.column_stack([x, x])[:, None, :], 25, axis=1)
    pairs = np.column_stack([np.arange(25), np.arange(25)])
    flat = MatchParams(stretch_prior_sd=10.0, shift_prior_sd=10.0)
    w = fit_warp(rel, _units(y, y), pairs, flat)["R-II"]
    assert w.stretch_cc == pytest.approx(1.3, abs=0.02) and w.shift_cc == pytest.approx(0.0, abs=0.01)
    naive = fit_warp(rel, _units(y, y), pairs, MatchParams(stretch_prior_sd=10.0, shift_prior_sd=10.0,
                                                          pos_censored=False))["R-II"]
    assert naive.stretch_cc < 1.25  # clipped reports pull an uncensored fit towards the identity


def test_order_warps_recover_a_stretch_and_shift_without_pairs():
    from neckmatch.correlation.evidence import order_warps

    rng = np.random.default_rng(3)
    x = np.sort(rng.uniform(0.1, 0.9, 30))
    y = 0.5 + 0.8 * (x - 0.5) + 0.1
    rel = np.repeat(np.column_stack([x, x])[:, None, :], 30, axis=1)
    cand = np.ones((30, 30), dtype=bool)
    w = order_warps(rel, _units(rng.permutation(y), rng.permutation(y)), cand, MatchParams())["R-II"]
    assert w.stretch_cc == pytest.approx(0.8, abs=0.05) and w.shift_cc == pytest.approx(0.1, abs=0.02)


def test_soft_marginals_are_sub_stochastic_and_favour_strong_pairs():
    from neckmatch.correlation.assign import soft_marginals

    w = np.array([[4.0, 1.0, -np.inf], [1.0, 4.0, 0.5], [0.0, 0.0, -1.0]])
    q = soft_marginals(w)
    assert (q.sum(axis=0) <= 1 + 1e-9).all() and (q.sum(axis=1) <= 1 + 1e-6).all()
    assert q[0, 2] == 0.0 and q[0, 0] > 0.5 and q[1, 1] > 0.5 and q[0, 0] > 5 * q[0, 1]


def test_shifted_and_compressed_layout_is_recovered():
    # 8 equal nodes 8 mm apart: sizes say nothing, the report's layout is compressed (0.75) and shifted (+0.12)
    z = np.arange(8) * 8.0
    levels = mr_table([(k + 1, "R", "IIA", 8.0, float(zz), 0) for k, zz in enumerate(z)])
    rel = (z.max() + 5 - z) / (z.max() - z.min() + 10)
    cc = 0.5 + 0.75 * (rel - 0.5) + 0.12
    case = make_case([pn(f"n{k}", 7.0, cc=float(c), ap=0.5) for k, c in enumerate(cc)])
    res = match_case(case, levels)
    assert pairs(res) == {(k + 1, f"n{k}") for k in range(8)}
    w = res.specimen.warps["R-II"]
    assert w.stretch_cc == pytest.approx(0.75, abs=0.08) and w.shift_cc == pytest.approx(0.12, abs=0.04)


def test_position_noise_is_estimated_per_case():
    from neckmatch.correlation.evidence import fit_pos_sd
    from neckmatch.geometry.specimen import Warp

    rng = np.random.default_rng(11)
    x = rng.uniform(0.2, 0.8, 200)
    y = np.clip(x + rng.normal(0.0, 0.15, 200), 0.0, 1.0)
    rel = np.repeat(np.column_stack([x, x])[:, None, :], 200, axis=1)
    pairs = np.column_stack([np.arange(200), np.arange(200)])
    units = _units(y, np.full(200, np.nan))
    sd = fit_pos_sd(rel, units, pairs, {"R-II": Warp()}, MatchParams())
    # 1.28 x ~0.15 (edge reports left out) with 10 pseudo-residuals of 0.10: about 0.19
    assert 0.16 < sd < 0.22
    assert fit_pos_sd(rel, units, pairs, {}, MatchParams(estimate_pos_sd=False)) == 0.10
    assert fit_pos_sd(rel, units, pairs[:2], {}, MatchParams()) == 0.10  # too few residuals: the prior
