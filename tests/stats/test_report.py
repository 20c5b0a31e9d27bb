"""stats.report: the inputs of the expected analysis from truth tables (hand-computed)."""

from __future__ import annotations

import pandas as pd
import pytest

from neckmatch.stats.report import expected_inputs


def _nodes():
    cols = ["case_id", "mr_node", "path_node", "container", "container_status", "mr_call", "path_status",
            "match_kind", "confidence", "decision", "decided_by"]
    rows = [
        ("A", 1, "A-1", "R-II", "positive", True, "positive", "matched", 0.95, "auto", "auto"),
        ("A", 2, "A-2", "R-II", "positive", False, "negative", "undecided", 0.40, "review", "review"),
        ("A", 3, None, "R-II", "positive", False, None, "level-only", 0.70, "review", "review"),
        ("B", 1, "B-1", "R-II", "negative", True, "negative", "undecided", 0.30, "review", "review"),
        ("B", 2, "B-2", "R-II", "negative", False, "negative", "matched", 0.50, "auto", "person"),
        ("B", 3, None, "", None, True, None, "unmatched", 1.0, "auto", "auto"),  # outside the dissection
        ("B", None, "B-9", "R-II", "negative", None, "negative", "unmatched", 0.8, "auto", "auto"),
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=cols)


def _levels():
    # the same container id in two cases: A's R-II holds 2 positives of 5 nodes, B's none of 4
    return pd.DataFrame({"case_id": ["A", "B"], "container": ["R-II", "R-II"], "path_nodes": [5, 4],
                         "path_positive_nodes": [2, 0]})


def test_expected_inputs_by_hand():
    got = expected_inputs(_nodes(), _levels())
    assert got["case_id"].tolist() == ["A", "A", "A", "B", "B"]  # no unmatched MR or pathology rows
    # A1: 0.95 * 1 + 0.05 * (2 - 1) / 4; A2: 0.4 * 0 + 0.6 * 2 / 4; A3 (level-only): 2 / 5 with p_has 1 - 0.7
    # B1, B2: a negative container; B2 is a person's decision (confidence taken as 1)
    assert got["p_pos"].tolist() == pytest.approx([0.9625, 0.3, 0.4, 0.0, 0.0])
    assert got["p_has"].tolist() == pytest.approx([1.0, 1.0, 0.3, 1.0, 1.0])
    assert got["call"].tolist() == [True, False, False, True, False]
