"""Truth tables from small hand-made cases with known answers."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from neckmatch.correlation.truth import (
    LEVEL_COLUMNS,
    NODE_COLUMNS,
    READ_COLUMNS,
    mr_calls,
    truth_tables,
)
from neckmatch.model import Case, Container, LabelMap, PathNode, Read, Side, SurgicalLevel


def _v(values):
    """Values with every missing marker (None, NaN, pd.NA) as None, for comparing with lists."""
    return [None if pd.isna(v) else v for v in values]


def _case(path_nodes, containers, reads=(), dissected=None):
    lm = LabelMap(np.zeros((2, 2, 2), dtype=np.int16), np.eye(4))
    if dissected is None:
        dissected = {Side.R: frozenset({SurgicalLevel.II, SurgicalLevel.III, SurgicalLevel.IV})}
    return Case("P1", "R", dissected, lm, None, tuple(path_nodes), tuple(containers), tuple(reads))


def _levels(rows):
    """rows: (node, side, level, runner_up, short_axis_mm)."""
    frame = pd.DataFrame(rows, columns=["node", "side", "level", "runner_up", "short_axis_mm"])
    frame["long_axis_mm"] = frame["short_axis_mm"] * 1.5
    return frame


def _matches(rows):
    """rows: (mr_node, path_node, kind, confidence, decision)."""
    return pd.DataFrame(rows, columns=["mr_node", "path_node", "kind", "confidence", "decision"])


def _reads(calls):
    """calls: {node: [malignant per reader]} -> Read objects with readers A, B, ..."""
    return [Read(n, "AB"[i], 5.0 if m else 1.0, m) for n, ms in calls.items() for i, m in enumerate(ms)]


PN = [
    PathNode("R-II-1", "R-II", "R", "II", "positive", size_mm=12),
    PathNode("R-II-2", "R-II", "R", "II", "negative", size_mm=5),
    PathNode("R-III-1", "R-III+IV", "R", "III+IV", "negative", size_mm=8),
    PathNode("R-IV-1", "R-III+IV", "R", "III+IV", "negative", size_mm=4),
]
CONT = [Container("R-II", "R", "II", 2, 1), Container("R-III+IV", "R", "III+IV", 2, 0)]
LEVELS = _levels([
    (1, "R", "IIA", "", 10.0),
    (2, "R", "IIB", "", 6.0),
    (3, "R", "III", "", 7.0),
    (4, "R", "IV", "", 4.0),
    (5, "L", "IIA", "", 9.0),
    (6, "R", "", "", 3.0),
])  # fmt: skip
MATCHES = _matches([
    (1, "R-II-1", "pair", 0.99, "auto"),
    (2, "R-II-2", "pair", 0.8, "review"),
    (3, "R-III-1", "pair", 0.98, "auto"),
    (4, None, "mr-unmatched", 0.9, "auto"),
    (5, None, "mr-unmatched", 1.0, "auto"),
    (6, None, "mr-unmatched", 1.0, "auto"),
    (None, "R-IV-1", "path-unmatched", 0.7, "review"),
])  # fmt: skip
READS = _reads({1: [True, True], 2: [True, False], 3: [False, False], 4: [False, False], 5: [True, True],
                6: [False, False]})  # fmt: skip


@pytest.fixture
def tables():
    return truth_tables(_case(PN, CONT, READS), LEVELS, MATCHES)


def test_node_outcomes_and_kinds(tables):
    nodes = tables["nodes"]
    assert list(nodes.columns) == NODE_COLUMNS
    mr = nodes[nodes["mr_node"].notna()].set_index("mr_node")
    # node 2's pair awaits review: not a node-level fact (no outcome), though its proposed partner is kept
    assert _v(mr["outcome"]) == ["TP", None, "TN", None, None, None]
    assert _v(mr["match_kind"]) == ["matched", "undecided", "matched", "level-only", "unmatched", "unmatched"]
    assert mr.loc[2, "mr_call"]  # a 1:1 tie counts malignant
    assert (mr.loc[2, "decision"], mr.loc[2, "decided_by"], mr.loc[2, "path_status"]) == ("review", "review",
                                                                                        "negative")
    assert _v(mr["decided_by"]) == ["auto", "review", "auto", "auto", "auto", "auto"]


def test_a_persons_decision_is_trusted_whatever_its_confidence():
    m = MATCHES.assign(constrained=False)
    m.loc[m["mr_node"] == 2, ["constrained", "decision"]] = [True, "auto"]
    nodes = truth_tables(_case(PN, CONT, READS), LEVELS, m)["nodes"].set_index("mr_node")
    assert (nodes.loc[2, "match_kind"], nodes.loc[2, "decided_by"], nodes.loc[2, "outcome"]) == (
        "matched", "person", "FP")
    by_column = MATCHES.assign(decided_by=["auto", "person", "auto", "auto", "auto", "auto", "review"])
    nodes = truth_tables(_case(PN, CONT, READS), LEVELS, by_column)["nodes"].set_index("mr_node")
    assert nodes.loc[2, "match_kind"] == "matched"  # a person's decision, from decided_by alone
    stale = MATCHES.assign(decided_by=["review", "auto", "auto", "auto", "auto", "auto", "auto"])
    nodes = truth_tables(_case(PN, CONT, READS), LEVELS, stale)["nodes"].set_index("mr_node")
    # a stale decided_by never outlives the decision: node 1 is auto, node 2 still awaits review
    assert _v(nodes.loc[[1, 2], "match_kind"]) == ["matched", "undecided"]


def test_level_only_keeps_container_status_apart(tables):
    row = tables["nodes"].set_index("mr_node").loc[4]
    assert row["container"] == "R-III+IV"
    assert row["container_status"] == "negative"
    assert pd.isna(row["path_status"])


def test_unmatched_pathology_node_row(tables):
    nodes = tables["nodes"]
    row = nodes[nodes["path_node"] == "R-IV-1"].iloc[0]
    assert pd.isna(row["mr_node"])
    assert _v([row["side"], row["level"], row["match_kind"], row["outcome"]]) == ["R", "III+IV", "unmatched", None]
    assert len(nodes) == 7  # six MR nodes + one unmatched pathology node


def test_level_table_merged_and_undissected(tables):
    lv = tables["levels"]
    assert list(lv.columns) == LEVEL_COLUMNS
    got = {(r.side, r.level): _v([r.dissected, r.mr_nodes, r.path_nodes, r.outcome]) for r in lv.itertuples()}
    assert got == {
        ("R", "II"): [True, 2, 2, "TP"],
        ("R", "III+IV"): [True, 2, 2, "TN"],
        ("L", "IIA"): [False, 1, None, None],
    }


def test_sides_and_patient(tables):
    sides = tables["sides"].set_index("side")
    assert sides.loc["R", "outcome"] == "TP"
    assert not sides.loc["L", "dissected"]
    assert pd.isna(sides.loc["L", "path_status"])
    assert bool(sides.loc["L", "mr_call"])  # called on MR, but nothing to compare with
    assert _v(tables["patient"]["outcome"]) == ["TP"]


def test_reads_table(tables):
    reads = tables["reads"]
    assert list(reads.columns) == READ_COLUMNS
    assert len(reads) == 12
    assert reads.loc[reads["mr_node"] == 1, "path_status"].tolist() == ["positive", "positive"]
    assert reads.loc[reads["mr_node"] == 4, "match_kind"].tolist() == ["level-only", "level-only"]


def test_false_negative_level_and_patient():
    # MR calls nothing; the only positive pathology node is unmatched (not visible): FN at level and patient.
    reads = _reads({1: [False, False], 2: [False, False], 3: [False, False], 4: [False], 5: [False], 6: [False]})
    m = MATCHES.copy()
    m.loc[0, ["path_node", "kind"]] = [None, "mr-unmatched"]
    m.loc[len(m)] = [None, "R-II-1", "path-unmatched", 0.6, "review"]
    t = truth_tables(_case(PN, CONT, reads), LEVELS, m)
    lv = t["levels"].set_index("level")
    assert lv.loc["II", "outcome"] == "FN"
    assert t["sides"].set_index("side").loc["R", "outcome"] == "FN"
    assert _v(t["patient"]["outcome"]) == ["FN"]
    assert t["nodes"].set_index("mr_node").loc[1, "match_kind"] == "level-only"


def test_count_only_report_gives_level_side_patient():
    cont = [Container("R-II", "R", "II", 14, 2), Container("R-III", "R", "III", 9, 0)]
    lv = _levels([(1, "R", "IIA", "", 8.0), (2, "R", "III", "", 5.0)])
    m = _matches([(1, None, "mr-unmatched", 1.0, "auto"), (2, None, "mr-unmatched", 1.0, "auto")])
    dissected = {Side.R: frozenset({SurgicalLevel.II, SurgicalLevel.III})}
    t = truth_tables(_case([], cont, _reads({1: [True], 2: [True]}), dissected), lv, m)
    assert _v(t["nodes"]["match_kind"]) == ["level-only", "level-only"]
    assert _v(t["levels"]["outcome"]) == ["TP", "FP"]
    assert t["levels"]["path_positive_nodes"].tolist() == [2, 0]
    assert _v(t["sides"]["outcome"]) == ["TP", None]
    assert _v(t["patient"]["outcome"]) == ["TP"]


def test_dissected_level_without_container_is_a_negative_unit():
    cont = [Container("R-II", "R", "II", 3, 0)]
    dissected = {Side.R: frozenset({SurgicalLevel.II, SurgicalLevel.V})}
    lv = _levels([(1, "R", "VA", "", 8.0)])
    m = _matches([(1, None, "mr-unmatched", 1.0, "auto")])
    t = truth_tables(_case([], cont, _reads({1: [True]}), dissected), lv, m)
    row = t["levels"].set_index("level").loc["V"]
    assert (row["dissected"], row["path_nodes"], row["path_status"], row["outcome"]) == (True, 0, "negative", "FP")
    assert _v(t["nodes"]["match_kind"]) == ["unmatched"]  # no container holds it


def test_supraclavicular_node_goes_with_runner_up_container():
    cont = [Container("R-IV", "R", "IV", 3, 0), Container("R-V", "R", "V", 4, 1)]
    dissected = {Side.R: frozenset({SurgicalLevel.IV, SurgicalLevel.V})}
    lv = _levels([(1, "R", "SC", "VB", 8.0), (2, "R", "SC", "IV", 6.0)])
    m = _matches([(1, None, "mr-unmatched", 1.0, "auto"), (2, None, "mr-unmatched", 1.0, "auto")])
    t = truth_tables(_case([], cont, (), dissected), lv, m)
    assert _v(t["nodes"]["container"]) == ["R-V", "R-IV"]


def test_fragments_sharing_one_mr_node():
    pn = [PathNode("a", "R-II", "R", "II", "negative", size_mm=6),
          PathNode("b", "R-II", "R", "II", "positive", size_mm=4, fragment_of="a")]  # fmt: skip
    cont = [Container("R-II", "R", "II", 2, 1)]
    lv = _levels([(1, "R", "IIA", "", 8.0)])
    m = _matches([(1, "a", "pair", 0.95, "auto"), (1, "b", "pair", 0.9, "review")])
    t = truth_tables(_case(pn, cont, _reads({1: [False]})), lv, m)
    row = t["nodes"].iloc[0]
    assert (row["path_node"], row["path_status"], row["match_kind"]) == ("a;b", "positive", "undecided")
    assert pd.isna(row["outcome"])  # one fragment awaits review: the pair is not a fact yet
    assert (row["confidence"], row["decision"], row["path_size_mm"]) == (0.9, "review", 6.0)
    assert len(t["nodes"]) == 1


def test_merged_mr_label_with_two_distinct_partners():
    # one MR label holds two touching nodes (not fragments), here reported in two containers
    pn = [PathNode("a", "R-II", "R", "II", "negative", size_mm=7),
          PathNode("c", "R-III", "R", "III", "positive", size_mm=5),
          PathNode("d", "R-III", "R", "III", "negative", size_mm=3)]  # fmt: skip
    cont = [Container("R-II", "R", "II", 1, 0), Container("R-III", "R", "III", 2, 1)]
    lv = _levels([(1, "R", "IIA", "III", 8.0), (2, "R", "III", "", 4.0)])
    m = _matches([(1, "a", "pair", 0.95, "auto"), (1, "c", "pair", 1.0, "auto"), (2, "d", "pair", 0.9, "auto")])
    m["merged"], m["constrained"] = [True, True, False], [False, True, False]  # c: a person's decision
    t = truth_tables(_case(pn, cont, _reads({1: [False], 2: [False]})), lv, m)
    nodes = t["nodes"].set_index("mr_node")
    assert len(nodes) == 2  # every pathology node has a partner: no unmatched pathology rows
    row = nodes.loc[1]
    assert (row["path_node"], row["container"], row["path_status"], row["outcome"]) == (
        "a;c", "R-II;R-III", "positive", "FN")
    assert (row["container_status"], row["path_size_mm"], row["decided_by"]) == ("positive", 7.0, "person")
    assert (nodes.loc[2, "path_status"], nodes.loc[2, "outcome"]) == ("negative", "TN")


def test_a_merged_label_with_a_decided_positive_partner_is_a_fact_while_another_awaits_review():
    """Label 1 holds a (decided) and b (under review): positive whatever b is when a is positive; undecided when a
    is negative (b may make it positive)."""
    cont = [Container("R-II", "R", "II", 2, 1)]
    lv = _levels([(1, "R", "IIA", "", 8.0)])
    for a_status, b_status, kind, by, outcome in (("positive", "negative", "matched", "auto", "FN"),
                                                  ("negative", "positive", "undecided", "review", None)):
        pn = [PathNode("a", "R-II", "R", "II", a_status, size_mm=6), PathNode("b", "R-II", "R", "II", b_status,
                                                                             size_mm=4)]
        m = _matches([(1, "a", "pair", 0.99, "auto"), (1, "b", "pair", 0.77, "review")])
        m["merged"] = True
        row = truth_tables(_case(pn, cont, _reads({1: [False]})), lv, m)["nodes"].iloc[0]
        assert (row["path_node"], row["path_status"], row["match_kind"], row["decided_by"]) == (
            "a;b", "positive", kind, by)
        assert row["outcome"] == outcome if outcome else pd.isna(row["outcome"])
        assert row["decision"] == "review"  # b still awaits a person


def test_without_reads_there_are_no_calls_or_outcomes():
    t = truth_tables(_case(PN, CONT), LEVELS, MATCHES)
    assert t["nodes"]["outcome"].isna().all()
    assert t["levels"]["mr_call"].isna().all()
    assert _v(t["patient"]["path_status"]) == ["positive"]
    assert len(t["reads"]) == 0


def test_matches_read_back_from_csv_give_the_same_nodes(tables):
    buf = io.StringIO()
    MATCHES.to_csv(buf, index=False)
    buf.seek(0)
    t = truth_tables(_case(PN, CONT, READS), LEVELS, pd.read_csv(buf))
    pd.testing.assert_frame_equal(t["nodes"], tables["nodes"])


def test_unknown_pathology_node_in_matches():
    m = _matches([(1, "R-IX-9", "pair", 0.9, "auto")])
    with pytest.raises(ValueError, match="'R-IX-9'"):
        truth_tables(_case(PN, CONT), LEVELS, m)


def test_mr_calls_ignore_missing_verdicts():
    reads = [Read(1, "A", 3.0, None), Read(1, "B", 5.0, True), Read(2, "A", 2.0, None)]
    calls = mr_calls(_case([], [], reads))
    assert calls["mr_call"].tolist()[0] is True
    assert calls["mr_call"].isna().tolist() == [False, True]
    assert calls["mr_score"].tolist() == [4.0, 2.0]


def test_level_v_is_not_covered_by_a_level_iv_container():
    # IV and V share the supraclavicular imaging level; a IV container must not hide an empty dissected V.
    cont = [Container("R-IV", "R", "IV", 3, 0)]
    dissected = {Side.R: frozenset({SurgicalLevel.IV, SurgicalLevel.V})}
    lv = _levels([(1, "R", "IV", "", 8.0)])
    m = _matches([(1, None, "mr-unmatched", 1.0, "auto")])
    t = truth_tables(_case([], cont, (), dissected), lv, m)
    assert t["levels"]["level"].tolist() == ["IV", "V"]
    assert t["levels"]["path_nodes"].tolist() == [3, 0]


def test_midline_level_node_joins_the_other_sides_container():
    # Level VI is central: one container, recorded on one side, holds the nodes of both sides (as in matching).
    cont = [Container("R-II", "R", "II", 2, 0), Container("R-VI", "R", "VI", 1, 1)]
    dissected = {Side.R: frozenset({SurgicalLevel.II, SurgicalLevel.VI})}
    lv = _levels([(1, "R", "IIA", "", 8.0), (2, "L", "VI", "", 6.0), (3, "L", "IIA", "", 5.0)])
    m = _matches([(k, None, "mr-unmatched", 1.0, "auto") for k in (1, 2, 3)])
    t = truth_tables(_case([], cont, _reads({1: [False], 2: [True], 3: [False]}), dissected), lv, m)
    got = {(r.side, r.level): _v([r.dissected, r.mr_nodes, r.outcome]) for r in t["levels"].itertuples()}
    assert got == {("R", "II"): [True, 1, "TN"], ("R", "VI"): [True, 1, "TP"], ("L", "IIA"): [False, 1, None]}
    nodes = t["nodes"].set_index("mr_node")
    assert (nodes.loc[2, "match_kind"], nodes.loc[2, "container"]) == ("level-only", "R-VI")
    assert _v(t["patient"]["outcome"]) == ["TP"]


def test_uncovered_sublevel_of_a_dissected_level_is_dissected_and_negative():
    # Level II was dissected but only a IIA container came back: IIB was removed and held no node.
    cont = [Container("R-IIA", "R", "IIA", 2, 0)]
    dissected = {Side.R: frozenset({SurgicalLevel.II})}
    lv = _levels([(1, "R", "IIB", "", 8.0)])
    m = _matches([(1, None, "mr-unmatched", 1.0, "auto")])
    t = truth_tables(_case([], cont, _reads({1: [True]}), dissected), lv, m)
    got = {r.level: _v([r.dissected, r.mr_nodes, r.path_nodes, r.outcome]) for r in t["levels"].itertuples()}
    assert got == {"IIA": [True, 0, 2, "TN"], "IIB": [True, 1, 0, "FP"]}
    assert _v(t["sides"]["outcome"]) == ["FP", None]


def _with_pn(case, pn):
    from dataclasses import replace

    return replace(case, extra={"pN": pn})


@pytest.mark.parametrize(("pn", "status", "source"), [("pN0", "negative", "pN"), ("pN2b", "positive", "pN"),
                                                      ("pNX", "positive", "levels"), (None, "positive", "levels")])
def test_patient_reference_is_pn_where_given(pn, status, source):
    # the levels say positive (R-II holds a positive node); a pN0 overrides them, a pNX or no pN does not
    t = truth_tables(_with_pn(_case(PN, CONT, READS), pn), LEVELS, MATCHES)["patient"]
    assert _v(t[["path_status", "reference"]].iloc[0]) == [status, source]
    assert t["outcome"].iloc[0] == ("FP" if status == "negative" else "TP")


def test_patient_without_any_dissected_level_has_no_reference():
    lv = _levels([(1, "R", "IIA", "", 8.0)])
    m = _matches([(1, None, "mr-unmatched", 1.0, "auto")])
    t = truth_tables(_case([], [], _reads({1: [True]}), {}), lv, m)["patient"]
    assert _v(t[["path_status", "reference", "outcome"]].iloc[0]) == [None, None, None]
    t = truth_tables(_with_pn(_case([], [], _reads({1: [True]}), {}), "pN1"), lv, m)["patient"]
    assert _v(t[["path_status", "reference", "outcome"]].iloc[0]) == ["positive", "pN", "TP"]


def test_on_a_synthetic_case_no_pair_awaiting_review_is_a_node_level_fact(tmp_path):
    """Through the engine: every MR node with a ``review`` pair row is ``undecided`` (no outcome); once a person
    decides that pair (a must_link constraint) it is ``matched`` and ``decided_by=person``."""
    from neckmatch.correlation.matching import Constraints, match_case
    from neckmatch.geometry.levels import levels_table
    from neckmatch.io.case import read_case
    from neckmatch.synth import generate_cohort

    case = read_case(generate_cohort(1, 31, tmp_path)[0])
    levels = levels_table(case)
    matches = match_case(case, levels).matches
    review = matches[(matches["kind"] == "pair") & (matches["decided_by"] == "review")]
    assert len(review) > 0 and set(matches["decided_by"]) <= {"auto", "review"}
    nodes = truth_tables(case, levels, matches)["nodes"]
    mr = nodes[nodes["mr_node"].notna()].set_index("mr_node")
    under_review = sorted({int(v) for v in review["mr_node"]})
    assert (mr.loc[under_review, "match_kind"] == "undecided").all()
    assert mr.loc[under_review, "outcome"].isna().all()
    assert set(mr.loc[mr["match_kind"] == "matched", "decided_by"]) == {"auto"}
    first = review.iloc[0]
    decided = match_case(case, levels, constraints=Constraints(must_link={(int(first.mr_node), first.path_node)}))
    row = decided.matches[decided.matches["mr_node"] == int(first.mr_node)].iloc[0]
    assert (row["decided_by"], bool(row["constrained"])) == ("person", True)
    mr = truth_tables(case, levels, decided.matches)["nodes"].set_index("mr_node")
    assert (mr.loc[int(first.mr_node), "match_kind"], mr.loc[int(first.mr_node), "decided_by"]) == ("matched",
                                                                                                   "person")
