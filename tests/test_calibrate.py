"""`neckmatch calibrate`: the auto threshold learnt from reviewed decisions, and `--calibration` on match/run."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from neckmatch.calibrate import calibrate_results, collect
from neckmatch.errors import InputError
from neckmatch.pipeline import Settings
from tests.cli_helpers import run_main


def _results(tmp_path, n: int, case_id: str = "C1"):
    """A results folder with n engine pairs (confidence falling) and a decisions file: pairs k with k % 10 == 9
    among the lowest-confidence third were separated by the reviewers, all others linked."""
    conf = np.linspace(0.999, 0.40, n)
    m = pd.DataFrame({"case_id": case_id, "mr_node": np.arange(1, n + 1), "path_node": [f"P{k}" for k in range(n)],
                      "confidence": conf, "decision": "review", "kind": "pair", "reason": "", "constrained": False})
    case = tmp_path / "results" / case_id
    case.mkdir(parents=True)
    m.to_csv(case / "matches.csv", index=False)
    wrong = [(k >= 2 * n // 3) and k % 10 == 9 for k in range(n)]
    dec = pd.DataFrame({"mr_node": m["mr_node"], "path_node": m["path_node"],
                        "action": ["cannot_link" if w else "must_link" for w in wrong]})
    dec.to_csv(tmp_path / "decisions.csv", index=False)
    return tmp_path / "results", tmp_path / "decisions.csv", conf, np.array(wrong)


def test_calibrate_certifies_a_threshold_and_match_uses_it(tmp_path, monkeypatch):
    res, dec, conf, wrong = _results(tmp_path, 300)
    out = tmp_path / "calibration.json"
    assert run_main(monkeypatch, "calibrate", str(res), "--decisions", str(dec), "--out", str(out)) == 0
    doc = json.loads(out.read_text())
    thr = doc["auto_threshold"]
    above = conf >= thr
    assert doc["n_above"] == above.sum() and doc["errors_above"] == wrong[above].sum()
    assert doc["upper_error_bound"] <= 0.03
    # the first wrong decision sits at index 209; everything above it is right, so the threshold reaches it or
    # lower only while the bound holds
    assert thr <= conf[200]
    assert Settings(calibration=str(out)).auto_threshold == pytest.approx(thr)
    assert Settings(calibration=str(out), auto_threshold=0.5).auto_threshold == 0.5


def test_too_few_decisions_is_a_clear_refusal_and_writes_nothing(tmp_path, monkeypatch, capsys):
    res, dec, *_ = _results(tmp_path, 60)
    out = tmp_path / "calibration.json"
    assert run_main(monkeypatch, "calibrate", str(res), "--decisions", str(dec), "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert "at least 99" in err and "60 reviewed decisions" in err
    assert not out.exists()


def test_decisions_label_pairs_and_unmatched_nodes(tmp_path):
    m = pd.DataFrame({"case_id": "C1", "mr_node": [1, 2, 3, 4, 5, None], "path_node": ["a", "b", "c", None, None, "f"],
                      "confidence": [0.9, 0.8, 0.7, 0.6, 0.5, 0.4], "kind": ["pair"] * 3 + ["mr-unmatched"] * 2
                      + ["path-unmatched"], "reason": "", "constrained": [False] * 5 + [True]})
    (tmp_path / "r").mkdir()
    m.to_csv(tmp_path / "r" / "matches.csv", index=False)
    pd.DataFrame({"mr_node": [1, 2, 9, 4, None, 5], "path_node": ["a", None, "c", None, "f", "x"],
                  "action": ["must_link", "unmatched", "must_link", "unmatched", "unmatched", "must_link"]}
                 ).to_csv(tmp_path / "r" / "constraints.csv", index=False)
    got = collect([tmp_path / "r"], []).set_index("confidence")["right"].to_dict()
    # 1-a linked: right; 2-b but 2 declared unmatched: wrong; 3-c but c linked to 9: wrong; 4 unmatched: right;
    # 5 unmatched but linked to x: wrong; the constrained row is left out
    assert got == {0.9: True, 0.8: False, 0.7: False, 0.6: True, 0.5: False}


def test_decisions_of_several_cases_need_a_case_id(tmp_path):
    res, dec, *_ = _results(tmp_path, 10, "C1")
    m2 = pd.read_csv(res / "C1" / "matches.csv").assign(case_id="C2")
    (res / "C2").mkdir()
    m2.to_csv(res / "C2" / "matches.csv", index=False)
    with pytest.raises(InputError, match="case_id"):
        calibrate_results([res], [dec], tmp_path / "c.json")


def test_match_with_calibration_redecides_with_its_threshold(tmp_path, monkeypatch):
    from pathlib import Path

    minimal = Path(__file__).resolve().parents[1] / "examples" / "minimal_case"
    cal = tmp_path / "cal.json"
    cal.write_text(json.dumps({"format": "neckmatch-calibration/1", "auto_threshold": 1.0}))
    assert run_main(monkeypatch, "match", str(minimal), "--out", str(tmp_path / "out"), "--calibration", str(cal)) == 0
    m = pd.read_csv(tmp_path / "out" / "matches.csv")
    # threshold 1: only decisions of confidence 1 (fixed by construction) stay auto
    assert ((m["decision"] == "auto") == (m["confidence"] >= 1.0)).all()
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["settings"]["calibration"] == "cal.json"


def test_match_with_a_missing_calibration_file_exits_2(tmp_path, monkeypatch, capsys):
    from pathlib import Path

    minimal = Path(__file__).resolve().parents[1] / "examples" / "minimal_case"
    code = run_main(monkeypatch, "match", str(minimal), "--out", str(tmp_path / "out"), "--calibration",
                    str(tmp_path / "nope.json"))
    assert code == 2 and "calibration file not found" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_cohort_runs_stacked_table_does_not_hide_the_case_folders_decisions(tmp_path):
    res, dec, conf, wrong = _results(tmp_path, 120)
    (res / "tables").mkdir()
    pd.read_csv(res / "C1" / "matches.csv").to_csv(res / "tables" / "matches.csv", index=False)
    dec.rename(res / "C1" / "constraints.csv")
    got = collect([res], [])
    assert len(got) == 120 and int((~got["right"]).sum()) == int(wrong.sum())
