"""neckmatch.io.results: one case's results as one object, written and read back the same; stacked tables."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from neckmatch.errors import InputError
from neckmatch.io.case import read_case
from neckmatch.io.results import (
    RESULT_FILES,
    CaseResult,
    read_results,
    stack_truth_tables,
    write_results,
    write_stacked_tables,
)
from neckmatch.pipeline import run_case

MINIMAL = Path(__file__).resolve().parents[2] / "examples" / "minimal_case"


@pytest.fixture(scope="module")
def result() -> CaseResult:
    return run_case(read_case(MINIMAL))


def test_written_files_are_the_documented_ones_in_order(result: CaseResult, tmp_path: Path) -> None:
    written = write_results(result, tmp_path)
    assert [p.name for p in written] == list(RESULT_FILES)


def test_read_back_equals_what_was_written(result: CaseResult, tmp_path: Path) -> None:
    write_results(result, tmp_path)
    back = read_results(tmp_path)
    assert back.case_id == result.case_id == "MIN01"
    assert back.specimen == result.specimen and back.summary == result.summary
    assert list(back.tables) == list(result.tables)
    for stem, frame in result.tables.items():
        assert list(back.tables[stem].columns) == list(frame.columns) and len(back.tables[stem]) == len(frame), stem
    pd.testing.assert_frame_equal(back.levels[["node", "x", "y", "z"]], result.levels[["node", "x", "y", "z"]],
                                  check_dtype=False, atol=1e-5)
    again = tmp_path / "again"
    again.mkdir()
    write_results(back, again)  # a loaded result serialises to the same bytes
    for name in RESULT_FILES:
        assert (again / name).read_bytes() == (tmp_path / name).read_bytes(), name


def test_ids_and_levels_stay_text(tmp_path: Path) -> None:
    levels = pd.DataFrame({"case_id": ["007"], "node": [1], "level": ["II"], "runner_up": [""]})
    nodes = pd.DataFrame({"case_id": ["007"], "mr_node": [1], "path_node": ["0012"], "outcome": ["TP"]})
    write_results(CaseResult("007", levels, nodes.iloc[:, :3], {"nodes": nodes}, {}, {}), tmp_path)
    back = read_results(tmp_path)
    assert back.case_id == "007" and back.truth["nodes"]["path_node"].tolist() == ["0012"]


def test_a_folder_without_truth_nodes_is_refused(result: CaseResult, tmp_path: Path) -> None:
    write_results(result, tmp_path)
    (tmp_path / "truth_nodes.csv").unlink()
    with pytest.raises(InputError, match="truth_nodes.csv: missing"):
        read_results(tmp_path)


def test_write_stacked_tables_stores_a_column_of_mixed_types_in_parquet(tmp_path: Path) -> None:
    """A carried-through report column read as a number in one case and as joined fragments in another."""
    frame = pd.DataFrame({"case_id": ["P1", "P2", "P3"], "path_deposit_mm": [8.2, "8.2;1.1", None]})
    files = write_stacked_tables({"nodes": frame}, tmp_path)
    back = pd.read_parquet(files["truth_nodes.parquet"])
    assert back["path_deposit_mm"].tolist()[:2] == ["8.2", "8.2;1.1"] and pd.isna(back["path_deposit_mm"].iloc[2])
    assert pd.read_csv(files["truth_nodes.csv"])["path_deposit_mm"].tolist()[:2] == ["8.2", "8.2;1.1"]


def test_stack_truth_tables_keeps_case_order_and_each_case_text(tmp_path: Path) -> None:
    """Cases with the same header are parsed at once, a different header starts a new run; rows stay in case
    order and a carried-through column keeps each case's text (``13`` stays ``13``, not ``13.0``)."""
    texts = {"P1": "case_id,mr_node,path_deposit_mm\nP1,1,13\nP1,2,\n", "P2": "case_id,mr_node,path_deposit_mm\n",
             "P3": "case_id,mr_node,path_deposit_mm\nP3,4,8.2;1.1\n", "P4": "case_id,mr_node\nP4,7\n",
             "P5": "case_id,mr_node,path_deposit_mm\n005,9,2"}  # fmt: skip
    for cid, text in texts.items():
        (tmp_path / cid).mkdir()
        (tmp_path / cid / "truth_nodes.csv").write_text(text)
    ids = [*texts, "P6"]  # P6 has no results folder: passed over
    nodes = stack_truth_tables(tmp_path, ids)["nodes"]
    assert nodes["case_id"].tolist() == ["P1", "P1", "P3", "P4", "005"]
    assert nodes["mr_node"].tolist() == [1, 2, 4, 7, 9]
    deposit = nodes["path_deposit_mm"]
    assert [deposit.iloc[i] for i in (0, 2, 4)] == ["13", "8.2;1.1", 2]  # P5 follows another header: own run
    assert pd.isna(deposit.iloc[1]) and pd.isna(deposit.iloc[3])
    assert stack_truth_tables(tmp_path, ids)["levels"].empty
