"""The cohort report (neckmatch.report) on hand-made inputs: links, escaping, flow counts, failures, review."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from neckmatch.cohort import CaseRecord
from neckmatch.report import iter_report_links, render_report_html, write_cohort_outputs


def _cases() -> pd.DataFrame:
    return pd.DataFrame({
        "case_id": ["P1", "P2"],
        "status": ["ok", "failed"],
        "error": ["", "P2/pathology/nodes.csv: row 2: level: '<IIc>' is not a level"],
        "seconds": [1.5, 0.1],
        "mr_nodes": [3, np.nan],
        "pairs": [2, np.nan],
        "decisions.auto": [1, np.nan],
        "decisions.review": [1, np.nan],
    })  # fmt: skip


def _nodes() -> pd.DataFrame:
    return pd.DataFrame({
        "case_id": ["P1"] * 4,
        "mr_node": [1, 2, 3, np.nan],
        "path_node": ["A", "B", None, "C"],
        "match_kind": ["matched", "matched", "unmatched", ""],
        "decision": ["auto", "review", "", ""],
    })  # fmt: skip


def test_iter_report_links_keeps_relative_targets_only() -> None:
    text = ('<a href="P1/matches.csv">m</a> <a href="https://example.org/x">w</a> <a href="#top">t</a>'
            '<img src="data:image/png;base64,AAAA"> <a href="P1/maps/P1_map.png#v">p</a>')  # fmt: skip
    assert list(iter_report_links(text)) == ["P1/matches.csv", "P1/maps/P1_map.png"]


def test_report_links_only_existing_outputs_and_escapes_errors(tmp_path: Path) -> None:
    (tmp_path / "P1").mkdir()
    (tmp_path / "P1" / "matches.csv").write_text("case_id\nP1\n")
    text = render_report_html(tmp_path, _cases(), {"nodes": _nodes()}, {})
    links = list(iter_report_links(text))
    assert set(links) == {"P1/matches.csv"}  # no link to P1/levels.csv (absent) nor to the failed P2
    assert "&#x27;&lt;IIc&gt;&#x27; is not a level" in text and "<IIc>" not in text
    assert "mr_nodes=3, pairs=2, auto=1, review=1" in text


def test_report_flow_cards_and_review(tmp_path: Path) -> None:
    text = render_report_html(tmp_path, _cases(), {"nodes": _nodes()}, {})
    assert "Patients in the cohort: <b>2</b>" in text and "analysed: 1; failed: 1" in text
    assert "MR nodes: <b>3</b>" in text and "matched node-to-node: 2" in text and "unmatched: 1" in text
    assert "Pathology nodes without an MR partner: <b>1</b>" in text
    assert "<div class='card'><b>1</b>to review</div>" in text
    review = text.split("<h2>What needs review</h2>")[1]
    assert '<a href="P1/matches.csv">P1</a>' in review


def test_report_without_any_finished_case(tmp_path: Path) -> None:
    records = [CaseRecord("P9", str(tmp_path / "in" / "P9"), "failed", "P9/case.json: case_id: missing")]
    files = write_cohort_outputs(tmp_path / "out", records)
    assert set(files) >= {"cases.csv", "report.html", "truth_nodes.csv", "truth_nodes.parquet"}
    assert not (tmp_path / "out" / "stats").exists() and not (tmp_path / "out" / "figures").exists()
    text = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert "No statistics (no finished case with pathology)." in text
    assert "P9/case.json: case_id: missing" in text
    links = list(iter_report_links(text))  # no case output to link; the (empty) stacked tables and cases.csv
    keys = ("levels", "nodes", "patient", "reads", "sides")
    tables = [f"tables/truth_{k}.{ext}" for ext in ("csv", "parquet") for k in keys]
    assert links == ["cases.csv", *tables]
    assert all((tmp_path / "out" / link).is_file() for link in links)
    cases = pd.read_csv(tmp_path / "out" / "cases.csv", keep_default_na=False)
    assert cases.to_dict("records") == [
        {"case_id": "P9", "status": "failed", "error": "P9/case.json: case_id: missing", "seconds": 0.0}
    ]
