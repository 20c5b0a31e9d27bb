"""The cohort report (neckmatch.report) on hand-made inputs: links, escaping, flow counts, failures, review."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
from statsmodels.stats.proportion import proportion_confint

from neckmatch.cohort import CaseRecord
from neckmatch.report import iter_report_links, records_frame, render_report_html, write_cohort_outputs


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


def test_case_rows_link_the_viewer_page_and_the_slicer_scene(tmp_path):
    from neckmatch.report import _case_rows

    (tmp_path / "P1" / "maps").mkdir(parents=True)
    for name in ("P1_viewer.html", "P1_scene.mrml"):
        (tmp_path / "P1" / "maps" / name).write_text("x")
    row = _case_rows(tmp_path, pd.DataFrame([{"case_id": "P1", "status": "ok"}]))
    assert '<a href="P1/maps/P1_viewer.html">viewer.html</a>' in row
    assert '<a href="P1/maps/P1_scene.mrml">scene.mrml</a>' in row
    assert "map.png" not in row  # only files that exist are linked
    assert "specimen" not in row


def test_case_rows_give_the_specimen_pairs_and_link_the_registration(tmp_path: Path) -> None:
    from neckmatch.report import _case_rows

    (tmp_path / "P1").mkdir()
    (tmp_path / "P1" / "specimen_registration.csv").write_text("x")
    cases = pd.DataFrame([{"case_id": "P1", "status": "ok", "pairs": 40, "specimen.pairs_via_specimen": 31,
                           "decisions.auto": 70, "decisions.review": 9}])
    row = _case_rows(tmp_path, cases)
    assert "pairs=40, via specimen=31, auto=70, review=9" in row
    assert '<a href="P1/specimen_registration.csv">specimen_registration.csv</a>' in row


def test_report_flow_cards_and_review(tmp_path: Path) -> None:
    text = render_report_html(tmp_path, _cases(), {"nodes": _nodes()}, {})  # no stats/: counts from the tables
    flow = _flow_counts(text)
    assert flow["cohort"] == 2 and flow["excluded"] == 1 and flow["patients"] == 1
    assert flow["mr_nodes.total"] == 3 and flow["mr_nodes.matched"] == 2 and flow["mr_nodes.unmatched"] == 1
    assert flow["path_nodes.total"] == 3 and flow["path_nodes.unseen"] == 1
    assert "<div class='card'><b>1</b>decisions to review</div>" in text
    review = text.split("<h2>What needs review</h2>")[1]
    assert '<a href="P1/matches.csv">P1</a>' in review


def _flow_counts(text: str) -> dict[str, int]:
    svg = text.split('<svg class="flow"')[1].split("</svg>")[0]
    return {k: int(n) for k, n in re.findall(r'data-key="([^"]+)" data-n="(\d+)"', svg)}


STARD = {"patients": 5, "sides": {"total": 10, "dissected": 8, "with_reference": 8},
         "levels": {"total": 60, "dissected": 30, "with_reference": 29},
         "mr_nodes": {"total": 100, "matched": 50, "undecided": 10, "awaiting_review": 10, "level-only": 15,
                      "unmatched": 25, "matched_auto": 41, "matched_person": 9,
                      "unmatched_by_reason": {"not-harvested": 16, "undissected": 24}},
         "path_nodes": {"total": 70, "matched": 50, "awaiting_review": 10, "unseen_on_mr": 10,
                        "in_undissected_levels": 3,
                        "unseen_by_reason": {"not-visible": 7, "undissected": 3}}}


def test_flow_numbers_are_those_of_stard_json(tmp_path: Path) -> None:
    (tmp_path / "stats").mkdir()
    (tmp_path / "stats" / "stard.json").write_text(json.dumps(STARD))
    text = render_report_html(tmp_path, _cases(), {"nodes": _nodes()}, {})
    flow = _flow_counts(text)
    assert flow == {"cohort": 2, "excluded": 1, "patients": 5, "mr_nodes.total": 100, "mr_nodes.matched": 50,
                    "mr_nodes.awaiting_review": 10, "mr_nodes.level-only": 15, "mr_nodes.unmatched": 25,
                    "path_nodes.total": 70, "path_nodes.matched": 50, "path_nodes.awaiting_review": 10,
                    "path_nodes.unseen": 7, "path_nodes.in_undissected_levels": 3}
    # the children of each node box add up to it; the pathology side splits unseen nodes by where they were
    mr_keys = ("matched", "awaiting_review", "level-only", "unmatched")
    assert sum(flow[f"mr_nodes.{k}"] for k in mr_keys) == 100
    path_keys = ("matched", "awaiting_review", "unseen", "in_undissected_levels")
    assert sum(flow[f"path_nodes.{k}"] for k in path_keys) == 70
    for line in ("auto 41 · person 9", "sides: 10 (dissected 8; with reference 8)", "not visible: 7",
                 "levels: 60 (dissected 30; with reference 29)", "by reason: not harvested: 16; undissected: 24"):
        assert line in text, line


def _acc_row(analysis: str, unit: str, level: str, side: str, tp: int, fp: int, fn: int, tn: int) -> dict:
    row = {"analysis": analysis, "unit": unit, "level": level, "side": side, "n_patients": 4,
           "n": tp + fp + fn + tn, "tp": tp, "fp": fp, "fn": fn, "tn": tn}
    for m, (a, b) in {"sensitivity": (tp, fn), "specificity": (tn, fp), "ppv": (tp, fp), "npv": (tn, fn)}.items():
        lo, hi = proportion_confint(a, a + b, method="wilson") if a + b else (np.nan, np.nan)
        row |= {m: a / (a + b) if a + b else np.nan, f"{m}_low": lo, f"{m}_high": hi}
    return row


def _accuracy() -> pd.DataFrame:
    rows = [_acc_row("main", "node", "IIA", "R", 3, 1, 1, 20), _acc_row("main", "node", "all", "both", 9, 2, 3, 80),
            _acc_row("auto-only", "node", "all", "both", 5, 1, 1, 40),
            _acc_row("size <5mm", "node", "all", "both", 0, 1, 2, 50),
            _acc_row("main", "level", "III", "L", 2, 0, 0, 5), _acc_row("main", "level", "all", "both", 6, 3, 1, 22),
            _acc_row("main", "side", "all", "both", 5, 1, 0, 3), _acc_row("main", "patient", "any", "both", 4, 0, 0, 0)]
    acc = pd.DataFrame(rows)
    pooled_node = (acc["unit"] == "node") & (acc["analysis"] == "main") & (acc["level"] == "all")
    acc.loc[pooled_node, ["sensitivity_low_boot", "sensitivity_high_boot"]] = [0.5, 0.9]
    acc.loc[pooled_node, ["sensitivity_gee", "sensitivity_low_gee", "sensitivity_high_gee", "sensitivity_deff"]] = [
        0.74, 0.48, 0.9, 1.7]
    acc.loc[pooled_node, "design_effect"] = 1.25
    return acc


def _section(text: str, start: str, end: str) -> str:
    return text.split(start, 1)[1].split(end, 1)[0]


def test_accuracy_compact_table_has_the_four_units_with_formatted_intervals(tmp_path: Path) -> None:
    (tmp_path / "stats").mkdir()
    _accuracy().to_csv(tmp_path / "stats" / "accuracy.csv", index=False)
    text = render_report_html(tmp_path, _cases(), {"nodes": _nodes()}, {})
    main = _section(text, "<h3>Main analysis, pooled per unit</h3>", "<h3>")
    units = re.findall(r'<tr><td class="l">(\w+)</td>', main)
    assert units == ["node", "level", "side", "patient"]  # pooled rows only, in this order
    assert "0.75 (0.47-0.91)" in main  # node sensitivity 9/12, Wilson, two decimals
    assert "boot 0.50-0.90" in main and "GEE 0.74 (0.48-0.90) · deff 1.70" in main and "<td>1.25</td>" in main
    assert "<td>–</td>" in main  # patient specificity: no negative patient
    assert "<th>" + "</th><th>".join(["unit", "patients", "units", "TP", "FP", "FN", "TN", "Sensitivity",
                                      "Specificity", "PPV", "NPV", "design effect"]) + "</th>" in main
    sens = _section(text, "<h3>Sensitivity analyses (node unit, pooled)</h3>", "<details>")
    assert re.findall(r'<tr><td class="l">([^<]+)</td>', sens) == [
        "main: matched node pairs", "automatic matches only", "MR short axis &lt;5 mm"]
    details = _section(text, "<details>", "</details>")
    assert "Per level and side (2 rows" in details and "IIA" in details and "III" in details
    assert "stats/accuracy.csv" in iter_report_links(text) and "docs/statistics.md" in text
    assert "sensitivity_low" not in text  # not the raw csv


def test_reader_and_agreement_tables(tmp_path: Path) -> None:
    (tmp_path / "stats").mkdir()
    pd.DataFrame({"reader": ["R1", "R3"], "n": [40, 9], "n_positive": [8, 2], "n_negative": [32, 7],
                  "n_patients": [6, 1], "auc": [0.8123, 0.97], "auc_low_boot": [0.7, np.nan],
                  "auc_high_boot": [0.9, np.nan], "youden_threshold": [3.0, 5.0], "youden_sensitivity": [0.75, 1.0],
                  "youden_specificity": [0.8, 0.9], "youden_j": [0.55, 0.9],
                  "auc_note": [np.nan, "CI n/a: scores from 1 patient (< 5)"]}).to_csv(
        tmp_path / "stats" / "roc.csv", index=False)
    pd.DataFrame({"variable": ["score", "score"], "readers": ["R1|R2", "R1|R2|R3"],
                  "statistic": ["cohen_linear", "fleiss"], "n": [30, 12], "kappa": [0.55, 0.81],
                  "se": [0.1, np.nan], "low": [0.35, np.nan], "high": [0.75, np.nan],
                  "landis_koch": ["moderate", "almost perfect"]}).to_csv(
        tmp_path / "stats" / "agreement.csv", index=False)
    text = render_report_html(tmp_path, _cases(), {"nodes": _nodes()}, {})
    readers = _section(text, "<h2>Readers: ROC and agreement</h2>", "<h2>")
    assert "0.81 (0.70-0.90)" in readers and "0.97 (CI n/a)" in readers and "score ≥ 3" in readers
    assert "CI n/a: scores from 1 patient (&lt; 5)" in readers
    assert "R1 vs R2" in readers and "Cohen&#x27;s kappa, linear weights" in readers
    assert "0.55 (0.35-0.75)" in readers and "moderate" in readers and "R1, R2, R3" in readers
    assert {"stats/roc.csv", "stats/agreement.csv"} <= set(iter_report_links(text))


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


def test_records_frame_flattens_summary_counts() -> None:
    recs = [
        CaseRecord("P1", "/c/P1", "ok", "", 1.23456, {"pairs": 3, "decisions": {"auto": 2, "review": 1}}),
        CaseRecord("P2", "/c/P2", "failed", "P2/case.json: bad"),
    ]
    frame = records_frame(recs)
    assert list(frame.columns) == ["case_id", "status", "error", "seconds", "pairs", "decisions.auto",
                                   "decisions.review"]  # fmt: skip
    assert frame.loc[0, "seconds"] == 1.235 and frame.loc[0, "decisions.review"] == 1
    assert pd.isna(frame.loc[1, "pairs"]) and frame.loc[1, "error"] == "P2/case.json: bad"


def test_a_script_in_any_text_never_reaches_the_report_raw(tmp_path: Path) -> None:
    """Every interpolated text goes through html.escape: a case id, an error, node ids, the folder name."""
    x = "<script>alert(1)</script>"
    cases = pd.DataFrame([{"case_id": x, "status": "failed", "error": x, "seconds": 0.1},
                          {"case_id": "A1", "status": "ok", "error": "", "seconds": 1.0, "mr_nodes": 3}])
    nodes = pd.DataFrame([{"case_id": x, "mr_node": 1, "path_node": x, "decision": "review",
                           "match_kind": "matched", "confidence": 0.5, "level": x, "side": "R"}])
    text = render_report_html(tmp_path / x.replace("/", "_"), cases, {"nodes": nodes}, {})
    assert "<script" not in text
    assert text.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 3  # shown, escaped: cases, failures, review
