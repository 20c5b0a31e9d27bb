"""The demo command: a seeded cohort run end to end, with outputs where the summary says."""

from __future__ import annotations

import pandas as pd
from typer.testing import CliRunner

from neckmatch.cli import app
from neckmatch.demo import pair_agreement


def test_pair_agreement_counts_fragments_and_merged_labels():
    truth = pd.DataFrame({"mr_label": [1, 1, 2, None], "path_node": ["a", "b", "c", "d"],
                          "path_fragments": ["", "b;b2", "", ""]})
    matches = pd.DataFrame({"mr_node": [1, 1, 2, 2, None], "path_node": ["b2", "a", "a", None, "d"]})
    assert pair_agreement(matches, truth) == (2, 3)


def test_demo_command(tmp_path):
    res = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "d")])
    assert res.exit_code == 0, res.output
    assert "neckmatch demo: 6 synthetic cases" in res.output
    cases = sorted(p.name for p in (tmp_path / "d" / "cohort").iterdir() if p.is_dir())
    assert cases == [f"SYN{k:03d}" for k in range(1, 7)]
    for c in cases:
        levels = pd.read_csv(tmp_path / "d" / "results" / c / "levels.csv")
        assert len(levels) > 10 and levels["level"].notna().mean() > 0.9
        assert (tmp_path / "d" / "results" / c / "matches.csv").is_file()
