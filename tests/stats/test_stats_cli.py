"""The stats commands end to end: truth tables of a cohort (per case or stacked) and a lyDATA file."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from neckmatch.errors import InputError
from neckmatch.stats.report import read_truth_tables, truth_accuracy
from tests.cli_helpers import run_main as _run
from tests.correlation.truth_fixtures import write_cohort

REQUIRED = ["unit", "level", "side", "tp", "fp", "fn", "tn", "sensitivity", "sensitivity_low", "sensitivity_high",
            "specificity", "specificity_low", "specificity_high"]


def _cells(table, **where):
    sel = table
    for k, v in where.items():
        sel = sel[sel[k] == v]
    row = sel.iloc[0]
    return [int(row.tp), int(row.fp), int(row.fn), int(row.tn)]


@pytest.mark.parametrize("stacked", [False, True])
def test_stats_truth_dir_writes_tables(tmp_path, monkeypatch, stacked):
    truth = write_cohort(tmp_path / "run", stacked=stacked)
    assert _run(monkeypatch, "stats", str(truth), "--out", str(tmp_path / "st"), "--n-boot", "100") == 0
    acc = pd.read_csv(tmp_path / "st" / "accuracy.csv", keep_default_na=False, na_values=[""])
    assert set(REQUIRED) <= set(acc.columns)
    # P1's node 3 awaits review: it is no node-level fact and stays out of the main table
    assert _cells(acc, analysis="main", unit="node", level="all") == [2, 1, 1, 1]
    assert _cells(acc, analysis="main", unit="node", level="IIA", side="R") == [1, 1, 0, 0]
    assert _cells(acc, analysis="auto-only", unit="node") == [2, 1, 1, 1]
    assert _cells(acc, analysis="with-level-only", unit="node") == [2, 1, 2, 1]
    # worst: undecided negative call -> FN, unseen positive -> FN, unseen negative -> FP (called positive)
    assert _cells(acc, analysis="worst-case", unit="node") == [2, 2, 4, 1]
    # best: undecided negative call -> TN, unseen positive -> TP, unseen negative -> TN
    assert _cells(acc, analysis="best-case", unit="node") == [3, 1, 2, 3]
    assert _cells(acc, analysis="size >=10mm", unit="node") == [2, 0, 0, 0]
    assert _cells(acc, analysis="size 5-10mm", unit="node") == [0, 1, 1, 0]
    assert _cells(acc, unit="level", level="all") == [2, 0, 1, 1]
    assert _cells(acc, unit="side", level="all", side="both") == [2, 0, 0, 0]
    assert _cells(acc, unit="patient") == [2, 0, 0, 0]
    pooled = acc[(acc.unit == "node") & (acc.analysis == "main") & (acc.level == "all")].iloc[0]
    assert pooled.max_units_per_patient == 3 and pooled.ci_method == "wilson-deff t(C-1)"
    assert np.isnan(pooled.accuracy_low_boot) and pooled.boot_note == "2 patients < 20"
    expected = acc[acc.analysis == "expected"].iloc[0]
    assert expected.ci_method.startswith("multiple imputation") and expected.level == "all"
    assert expected.sensitivity_low < expected.sensitivity < expected.sensitivity_high
    roc = pd.read_csv(tmp_path / "st" / "roc.csv")
    assert roc["reader"].tolist() == ["A", "B", "consensus"]
    agreement = pd.read_csv(tmp_path / "st" / "agreement.csv")
    assert "cohen_quadratic" in set(agreement["statistic"])
    stard = json.loads((tmp_path / "st" / "stard.json").read_text())
    assert stard["patients"] == 2 and stard["path_nodes"]["unseen_on_mr"] == 2


def test_truth_accuracy_same_for_stacked_and_per_case(tmp_path):
    a = truth_accuracy(read_truth_tables(write_cohort(tmp_path / "a")), n_boot=50)
    b = truth_accuracy(read_truth_tables(write_cohort(tmp_path / "b", stacked=True)), n_boot=50)
    pd.testing.assert_frame_equal(a, b)


def test_stats_lydata_command(tmp_path, monkeypatch, shared_data):
    data = shared_data / "lydata/2023-isb-multisite/data.csv"
    code = _run(monkeypatch, "stats", "lydata", str(data), "--index", "MRI", "--reference", "pathology",
                "--out", str(tmp_path / "ly"), "--n-boot", "100")
    assert code == 0
    acc = pd.read_csv(tmp_path / "ly" / "accuracy.csv", keep_default_na=False, na_values=[""])
    assert set(REQUIRED) <= set(acc.columns)
    assert len(acc) == 11 * 2 + 2
    assert acc.iloc[-2][["level", "side"]].tolist() == ["all", "both"]
    assert acc.iloc[-1][["unit", "level", "side"]].tolist() == ["patient", "any", "both"]


def test_stats_bad_dir_is_one_line_exit_2(tmp_path, monkeypatch, capsys):
    (tmp_path / "empty").mkdir()
    assert _run(monkeypatch, "stats", str(tmp_path / "empty"), "--out", str(tmp_path / "o")) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "no truth_*.csv" in err and "\n" not in err


def test_read_truth_tables_requires_case_id(tmp_path):
    pd.DataFrame({"mr_call": [True]}).to_csv(tmp_path / "truth_patient.csv", index=False)
    with pytest.raises(InputError, match="no 'case_id' column"):
        read_truth_tables(tmp_path)


def test_level_only_nodes_count_only_where_their_container_is_negative():
    """A level-only MR node in a container without metastasis is surely benign; in a positive container its own
    status is unknown (it may be any of the container's nodes), so the with-level-only analysis leaves it out."""
    base = {"mr_call": "false", "match_kind": "level-only", "path_status": "", "decision": "review",
            "level": "III", "side": "R", "short_axis_mm": 4.0}
    rows = [
        {"case_id": "P1", "mr_node": "1", "path_node": "A", **base, "match_kind": "matched", "path_status": "negative",
         "container_status": "negative"},
        {"case_id": "P1", "mr_node": "2", "path_node": "", **base, "container_status": "negative"},
        {"case_id": "P1", "mr_node": "3", "path_node": "", **base, "mr_call": "true", "container_status": "negative"},
        {"case_id": "P2", "mr_node": "4", "path_node": "", **base, "container_status": "positive"},
    ]
    acc = truth_accuracy({"nodes": pd.DataFrame(rows)}, n_boot=50)
    row = acc[(acc["analysis"] == "with-level-only") & (acc["unit"] == "node")].iloc[0]
    assert (row["tp"], row["fp"], row["fn"], row["tn"]) == (0, 1, 0, 2)


def test_old_truth_tables_do_not_count_review_pairs(tmp_path):
    """Truth tables written before decided_by existed called a review pair 'matched': it is still left out."""
    from tests.correlation.truth_fixtures import truth_tables

    tables = truth_tables()
    nodes = tables["nodes"].drop(columns="decided_by")
    nodes.loc[nodes["match_kind"] == "undecided", ["match_kind", "outcome"]] = ["matched", "TN"]
    tables["nodes"] = nodes
    for key, frame in tables.items():
        frame.to_csv(tmp_path / f"truth_{key}.csv", index=False)
    acc = truth_accuracy(read_truth_tables(tmp_path), n_boot=20)
    assert _cells(acc, analysis="main", unit="node", level="all") == [2, 1, 1, 1]
