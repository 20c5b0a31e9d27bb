"""``neckmatch match``: a summary and the files on success; one line, exit code 2 and no folder on bad input."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.cli_helpers import run_main as _run

MINIMAL = Path(__file__).resolve().parents[1] / "examples" / "minimal_case"


def test_match_writes_outputs_and_prints_summary(tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    code = _run(monkeypatch, "match", str(MINIMAL), "--out", str(out), "--tolerance", "2.5")
    printed = capsys.readouterr().out
    assert code == 0
    assert printed.startswith("MIN01: 4 MR nodes, 6 pathology nodes")
    assert (out / "matches.csv").is_file() and (out / "truth_patient.csv").is_file()
    assert '"tolerance_mm": 2.5' in (out / "summary.json").read_text()


def test_bad_case_is_one_line_exit_2_and_no_folder(tmp_path, monkeypatch, capsys):
    case = tmp_path / "bad"
    shutil.copytree(MINIMAL, case, ignore=shutil.ignore_patterns("*.py"))
    reads = case / "mri" / "reads.csv"
    reads.write_text(reads.read_text() + "1,R3,2,maybe\n")
    out = tmp_path / "out"
    code = _run(monkeypatch, "match", str(case), "--out", str(out))
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: ") and "maybe" in err
    assert not out.exists()


def test_missing_case_folder_exit_2(tmp_path, monkeypatch, capsys):
    code = _run(monkeypatch, "match", str(tmp_path / "nope"), "--out", str(tmp_path / "out"))
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_bad_constraints_file_exit_2(tmp_path, monkeypatch, capsys):
    cons = tmp_path / "c.csv"
    cons.write_text("mr_node,path_node,action\n1,R-II-01,merge\n")
    code = _run(monkeypatch, "match", str(MINIMAL), "--out", str(tmp_path / "out"), "--constraints", str(cons))
    err = capsys.readouterr().err
    assert code == 2
    assert "c.csv: row 1: action: must be one of must_link, cannot_link, unmatched, got 'merge'" in err
    assert not (tmp_path / "out").exists()


def test_negative_tolerance_exit_2(tmp_path, monkeypatch, capsys):
    code = _run(monkeypatch, "match", str(MINIMAL), "--out", str(tmp_path / "out"), "--tolerance", "-1")
    assert code == 2
    assert "tolerance_mm: must be a finite number >= 0, got -1" in capsys.readouterr().err
