"""The demo command: a seeded cohort run end to end, with outputs where the summary says."""

from __future__ import annotations

import re

import pandas as pd
from typer.testing import CliRunner

from neckmatch.cli import app
from neckmatch.demo import pair_agreement, run_demo


def test_pair_agreement_counts_fragments_and_merged_labels():
    truth = pd.DataFrame({"mr_label": [1, 1, 2, None], "path_node": ["a", "b", "c", "d"],
                          "path_fragments": ["", "b;b2", "", ""]})
    matches = pd.DataFrame({"mr_node": [1, 1, 2, 2, None], "path_node": ["b2", "a", "a", None, "d"]})
    assert pair_agreement(matches, truth) == (2, 3)


def test_demo_command(tmp_path):
    res = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "d"), "--cases", "2", "--workers", "1", "--no-maps"])
    assert res.exit_code == 0, res.output
    assert "neckmatch demo: 2 synthetic cases (0 failed)" in res.output
    report = tmp_path / "d" / "results" / "report.html"
    assert f"report: {report}" in res.output.replace("\n", "") and report.is_file()
    cases = sorted(p.name for p in (tmp_path / "d" / "cohort").iterdir() if p.is_dir())
    assert cases == ["SYN001", "SYN002"]
    for c in cases:
        levels = pd.read_csv(tmp_path / "d" / "results" / c / "levels.csv")
        assert len(levels) > 10 and levels["level"].notna().mean() > 0.9
        assert (tmp_path / "d" / "results" / c / "matches.csv").is_file()
    share = re.search(r"ground truth: (\d+)/(\d+)", res.output)
    assert share is not None
    # The printed agreement is the one the files give ...
    found = [pair_agreement(pd.read_csv(tmp_path / "d" / "results" / c / "matches.csv"),
                            pd.read_csv(tmp_path / "d" / "cohort" / c / "ground_truth.csv")) for c in cases]
    assert (int(share[1]), int(share[2])) == tuple(map(sum, zip(*found, strict=True)))
    # ... and far above chance: pairing nodes at random within their container agrees on ~1 in 8 here, while level
    # and size alone (these two cases have no cc/ap positions) reach ~0.4-0.55 (docs/matching.md).
    assert int(share[1]) / int(share[2]) > 0.3
    nodes = pd.read_csv(tmp_path / "d" / "results" / "tables" / "truth_nodes.csv")
    assert sorted(nodes["case_id"].unique()) == cases


def test_demo_rerun_skips_done_cases(tmp_path):
    first = run_demo(tmp_path / "d", n_cases=1, workers=1, maps=False)
    stamp = tmp_path / "d" / "results" / "SYN001" / "run.json"
    before = stamp.read_bytes()  # holds the case's run time: a redone case would rewrite it
    again = run_demo(tmp_path / "d", n_cases=1, workers=1, maps=False)
    assert again == first and first["pairs"] > 0
    assert stamp.read_bytes() == before
