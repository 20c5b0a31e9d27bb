"""Atomic writers: all or nothing, and files readable like any other output."""

from __future__ import annotations

import os
import stat

import pandas as pd
import pytest

from neckmatch.io.atomic import atomic_dir, atomic_path, write_csv


def test_failed_write_leaves_nothing(tmp_path):
    target = tmp_path / "out.csv"
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_written_file_and_folder_have_the_umask_mode(tmp_path):
    mask = os.umask(0o022)
    try:
        path = write_csv(pd.DataFrame({"a": [True]}), tmp_path / "t.csv")
        with atomic_dir(tmp_path / "case") as d:
            (d / "x.txt").write_text("x")
    finally:
        os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "case").stat().st_mode) == 0o755
    assert path.read_text() == "a\ntrue\n"


def test_atomic_dir_replaces_whole_folder(tmp_path):
    target = tmp_path / "case"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with atomic_dir(target) as d:
        (d / "new.txt").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]


def test_booleans_of_every_kind_are_written_as_true_false(tmp_path):
    frame = pd.DataFrame({
        "plain": [True, False, True],
        "nullable": pd.array([True, None, False], dtype="boolean"),
        "mixed": [True, "x", None],
    })
    text = write_csv(frame, tmp_path / "b.csv").read_text()
    assert text.splitlines() == ["plain,nullable,mixed", "true,true,true", "false,,x", "true,false,"]


def test_text_a_spreadsheet_would_run_is_neutralised_numbers_stay(tmp_path):
    frame = pd.DataFrame({"node": ["=HYPERLINK(\"x\")", "+1+cmd", "@SUM(A1)", "-2+3", "\tx", "R-II-01", "-2.5"],
                          "size_mm": [1.0, -2.0, 3.0, 4.0, 5.0, 6.0, 7.0], "=col": ["a"] * 7})
    text = write_csv(frame, tmp_path / "t.csv").read_text()
    back = pd.read_csv(tmp_path / "t.csv", dtype={"node": str})
    assert back["node"].tolist() == ["'=HYPERLINK(\"x\")", "'+1+cmd", "'@SUM(A1)", "'-2+3", "'\tx", "R-II-01", "-2.5"]
    assert back["size_mm"].tolist() == [1.0, -2.0, 3.0, 4.0, 5.0, 6.0, 7.0]  # numbers stay numbers
    assert text.startswith("node,size_mm,'=col\n")
