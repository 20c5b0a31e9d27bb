"""STARD flow counts and cross-tabulations on hand-made truth tables."""

from __future__ import annotations

from neckmatch.stats.stard import cross_tabulations, stard_counts
from tests.correlation.truth_fixtures import truth_tables


def test_stard_flow_counts():
    s = stard_counts(truth_tables())
    assert s["patients"] == 2
    assert s["sides"] == {"total": 4, "dissected": 2, "with_reference": 2}
    assert s["levels"] == {"total": 5, "dissected": 4, "with_reference": 4}
    assert s["mr_nodes"]["total"] == 8
    mr = s["mr_nodes"]
    assert (mr["matched"], mr["undecided"], mr["level-only"], mr["unmatched"]) == (5, 1, 1, 1)
    assert (mr["awaiting_review"], mr["matched_auto"], mr["matched_person"]) == (1, 5, 0)
    assert s["path_nodes"] == {"total": 8, "matched": 5, "awaiting_review": 1, "unseen_on_mr": 2,
                               "in_undissected_levels": 0}
    assert s["patient_reference"] == {"pN": 0, "levels": 2, "unknown": 0}


def test_patient_reference_sources_are_counted():
    tables = truth_tables()
    tables["patient"] = tables["patient"].assign(reference=["pN", None], path_status=["positive", None])
    assert stard_counts(tables)["patient_reference"] == {"pN": 1, "levels": 0, "unknown": 1}


def test_cross_tabulations_per_unit():
    ct = cross_tabulations(truth_tables()).set_index("unit")
    assert ct.loc["node", ["tp", "fp", "fn", "tn"]].tolist() == [2, 1, 1, 1]  # the undecided pair is left out
    assert ct.loc["level", ["tp", "fp", "fn", "tn", "missing"]].tolist() == [2, 0, 1, 1, 0]
    assert ct.loc["patient", ["tp", "fp", "fn", "tn"]].tolist() == [2, 0, 0, 0]


def test_path_nodes_joined_on_one_mr_row_count_each():
    # fragments (or a merged label's partners) matched to one MR node share its truth row, joined with ';'
    tables = truth_tables()
    nodes = tables["nodes"]
    nodes.loc[0, "path_node"] = "R-II-1;R-II-1b"
    s = stard_counts(tables)
    assert s["path_nodes"]["matched"] == 6
    assert s["path_nodes"]["total"] == 9
    assert s["mr_nodes"]["matched"] == 5
