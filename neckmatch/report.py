"""The cohort report: stacked tables, statistics, figures and one self-contained ``report.html``.

The HTML embeds its figures (base64 PNG) so it can be mailed as one file; links to per-case outputs are
relative to the report, so they resolve where the run folder is opened.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from neckmatch._version import __version__
from neckmatch.io.atomic import write_csv, write_text
from neckmatch.io.results import stack_results, stack_truth_tables, write_stacked_tables

__all__ = ["write_cohort_outputs", "render_report_html", "records_frame"]


def write_cohort_outputs(out_dir: Path, records: Sequence[Any]) -> dict[str, Path]:
    """Write ``cases.csv``, ``tables/``, ``stats/``, ``figures/`` and ``report.html`` for a finished run."""
    files: dict[str, Path] = {}
    cases = records_frame(records)
    files["cases.csv"] = write_csv(cases, out_dir / "cases.csv")
    tables = stack_truth_tables(out_dir, _finished(records))
    files.update(write_stacked_tables(tables, out_dir / "tables"))
    files.update(_stack_matches(out_dir, records))
    files.update(_statistics(out_dir / "tables", out_dir / "stats", tables))
    figures = _figures(tables, out_dir / "stats", out_dir / "figures")
    files.update(figures)
    from neckmatch.stats.reader_study import write_reader_study
    from neckmatch.viz.learning import learning_curve_figure

    files.update(write_reader_study(out_dir, records, tables, draw=learning_curve_figure))
    html_text = render_report_html(out_dir, cases, tables, figures)
    files["report.html"] = write_text(html_text, out_dir / "report.html")
    return files


def records_frame(records: Iterable[Any]) -> pd.DataFrame:
    """One row per case: id, status, error, seconds and the per-case summary counts."""
    rows = []
    for r in records:
        row: dict[str, Any] = {
            "case_id": r.case_id,
            "status": r.status,
            "error": r.error,
            "seconds": round(r.seconds, 3),
        }
        for k, v in (r.summary or {}).items():
            if isinstance(v, dict):  # e.g. decisions: {auto: 14, review: 72} -> decisions.auto, decisions.review
                row.update({f"{k}.{sub}": n for sub, n in v.items() if isinstance(n, (int, float, str, bool))})
            elif isinstance(v, (int, float, str, bool)):
                row[k] = v
        rows.append(row)
    return pd.DataFrame(rows)


def _finished(records: Iterable[Any]) -> list[str]:
    """The case ids of the finished (ok or skipped) cases, in order: the ones with results folders."""
    return [r.case_id for r in records if r.status != "failed"]


def _stack_matches(out_dir: Path, records: Sequence[Any]) -> dict[str, Path]:
    """``tables/matches.csv``: the finished cases' ``matches.csv`` stacked, so that the statistics (STARD flow)
    see why nodes were left unmatched. Nothing is written without any."""
    matches = stack_results(out_dir, _finished(records), "matches.csv")
    if matches.empty:
        return {}
    return {"matches.csv": write_csv(matches, out_dir / "tables" / "matches.csv")}


def _statistics(tables_dir: Path, stats_dir: Path, tables: dict[str, pd.DataFrame]) -> dict[str, Path]:
    """The study statistics of the stacked truth tables (neckmatch.stats.report)."""
    if all(t.empty for t in tables.values()):
        return {}
    from neckmatch.stats.report import run_stats

    return {f"stats/{Path(p).name}": Path(p) for p in run_stats(tables_dir, stats_dir)["files"]}


def _figures(tables: dict[str, pd.DataFrame], stats_dir: Path, fig_dir: Path) -> dict[str, Path]:
    """Cohort figures from the statistics tables (neckmatch.viz.plots)."""
    if all(t.empty for t in tables.values()):
        return {}
    from neckmatch.viz.plots import cohort_figures

    return {f"figures/{Path(p).name}": Path(p) for p in cohort_figures(tables, stats_dir, fig_dir)}


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def _table(frame: pd.DataFrame, float_format: str = "{:.3f}") -> str:
    if frame.empty:
        return "<p><em>none</em></p>"
    return frame.to_html(index=False, border=0, classes="t", na_rep="", float_format=float_format.format, escape=True)


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2rem auto;max-width:1200px;
color:#1d2330;line-height:1.4} h1{margin-bottom:.2rem} h2{border-bottom:2px solid #dde3ec;padding-bottom:.2rem;
margin-top:2.2rem} .meta{color:#5b6577} table.t{border-collapse:collapse;font-size:.84rem;margin:.5rem 0}
table.t th,table.t td{padding:.25rem .55rem;border-bottom:1px solid #e6e9ef;text-align:right}
table.t th{background:#f3f5f9} .cards{display:flex;gap:1rem;flex-wrap:wrap} .card{background:#f3f5f9;
border-radius:8px;padding:.7rem 1rem;min-width:9rem} .card b{font-size:1.5rem;display:block} .fail{color:#a61b1b}
img{max-width:100%;border:1px solid #e6e9ef;margin:.4rem 0} h3{margin:1.2rem 0 .3rem;font-size:1.02rem}
table.acc td{white-space:nowrap;vertical-align:top}
table.t small{color:#5b6577} table.t td.l,table.last-l td:last-child,table.t th:first-child{text-align:left}
.note{color:#5b6577;font-size:.8rem} details{margin:.6rem 0}
summary{cursor:pointer;color:#1f3d7a} code{background:#f3f5f9;padding:0 .2rem;border-radius:3px}
svg.flow{max-width:1130px;font-size:13px} svg.flow rect{fill:#fff;stroke:#6b7fa8;stroke-width:1.2}
svg.flow text{text-anchor:middle;fill:#1d2330} svg.flow text.b{font-weight:600} svg.flow text.l{text-anchor:start;
fill:#5b6577;font-size:12px} svg.flow line{stroke:#5b6577;stroke-width:1.3}
"""


def _stard(out_dir: Path, tables: Mapping[str, pd.DataFrame]) -> dict[str, Any]:
    """The STARD counts: ``stats/stard.json`` where the statistics were written, else from the tables."""
    path = out_dir / "stats" / "stard.json"
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    from neckmatch.stats.stard import stard_counts

    return stard_counts({k: v for k, v in tables.items() if v is not None and "case_id" in v})


_LINE, _PAD = 17, 9


def _svg_box(cx: float, y: float, w: float, lines: Sequence[str], key: str, n: int | None, h: float) -> str:
    """A flow box centred at ``cx`` with its first line bold; ``data-key``/``data-n`` carry the count."""
    x = cx - w / 2
    attrs = f' data-key="{html.escape(key)}"' + (f' data-n="{n}"' if n is not None else "")
    cls = ['class="b"'] + ['class="n"'] * (len(lines) - 1)
    text = "".join(f'<text x="{cx:.0f}" y="{y + _PAD + 12 + i * _LINE:.0f}" {c}>{html.escape(line)}</text>'
                   for i, (line, c) in enumerate(zip(lines, cls, strict=True)))
    return f'<g{attrs}><rect x="{x:.0f}" y="{y:.0f}" width="{w:.0f}" height="{h:.0f}" rx="5"/>{text}</g>'


def _box_h(lines: Sequence[str]) -> float:
    return 2 * _PAD + _LINE * len(lines)


def _arrow(x1: float, y1: float, x2: float, y2: float) -> str:
    return f'<line x1="{x1:.0f}" y1="{y1:.0f}" x2="{x2:.0f}" y2="{y2:.0f}" marker-end="url(#nm-arrow)"/>'


def _branch(cx: float, y_from: float, centres: Sequence[float], y_to: float) -> str:
    """Lines from a parent's bottom centre to each child's top centre (a bracket with arrow heads)."""
    mid = (y_from + y_to) / 2
    out = f'<line x1="{cx:.0f}" y1="{y_from:.0f}" x2="{cx:.0f}" y2="{mid:.0f}"/>'
    out += f'<line x1="{min(centres):.0f}" y1="{mid:.0f}" x2="{max(centres):.0f}" y2="{mid:.0f}"/>'
    return out + "".join(_arrow(c, mid, c, y_to) for c in centres)


def _reasons(by_reason: Mapping[str, int] | None, drop: str = "") -> list[str]:
    return [f"{k.replace('-', ' ')}: {v}" for k, v in sorted((by_reason or {}).items()) if k != drop and v]


def _flow(stard: Mapping[str, Any], cases: pd.DataFrame) -> str:
    """STARD 2015 flow diagram (item 19) of patients and nodes as inline SVG, from the STARD counts."""
    n_cases = len(cases)
    n_failed = int((cases["status"] == "failed").sum()) if not cases.empty else 0
    sides, levels = stard.get("sides", {}), stard.get("levels", {})
    mr, pn = stard.get("mr_nodes", {}), stard.get("path_nodes", {})
    svg: list[str] = []
    top = [("cohort", ["Patients in the cohort", f"n = {n_cases}"], n_cases)]
    y = 10.0
    svg.append(_svg_box(560, y, 320, top[0][1], "cohort", n_cases, _box_h(top[0][1])))
    y_b = y + _box_h(top[0][1]) + 56
    svg.append(_arrow(560, y + _box_h(top[0][1]), 560, y_b))
    excl = ["Excluded: processing failed", f"n = {n_failed}"]
    y_ex = y + _box_h(top[0][1]) + 28 - _box_h(excl) / 2
    svg.append(_arrow(560, y_ex + _box_h(excl) / 2, 780, y_ex + _box_h(excl) / 2))
    svg.append(_svg_box(920, y_ex, 280, excl, "excluded", n_failed, _box_h(excl)))
    analysed = ["Patients analysed", f"n = {stard.get('patients', 0)}"]
    if sides:
        analysed.append(f"sides: {sides.get('total', 0)} (dissected {sides.get('dissected', 0)}; "
                        f"with reference {sides.get('with_reference', 0)})")
    if levels:
        analysed.append(f"levels: {levels.get('total', 0)} (dissected {levels.get('dissected', 0)}; "
                        f"with reference {levels.get('with_reference', 0)})")
    svg.append(_svg_box(560, y_b, 460, analysed, "patients", stard.get("patients", 0), _box_h(analysed)))
    y_n = y_b + _box_h(analysed) + 56
    if not mr and not pn:
        return _svg_wrap(svg, y_b + _box_h(analysed) + 10)
    svg.append(_branch(560, y_b + _box_h(analysed), [290, 850], y_n))
    heads: list[tuple[float, str, list[str], Any]] = [
        (290, "mr_nodes.total", ["MR nodes segmented", f"n = {mr.get('total', 0)}"], mr.get("total", 0)),
        (850, "path_nodes.total", ["Pathology nodes", f"n = {pn.get('total', 0)}"], pn.get("total", 0)),
    ]
    for cx, key, lines, n in heads:
        svg.append(_svg_box(cx, y_n, 360, lines, key, n, _box_h(lines)))
    y_c = y_n + _box_h(heads[0][2]) + 56
    children = _flow_children(mr, pn)
    h = max(_box_h(lines) for _cx, _k, lines, _n in children)
    svg.append(_branch(290, y_n + _box_h(heads[0][2]), MR_X, y_c))
    svg.append(_branch(850, y_n + _box_h(heads[1][2]), PATH_X, y_c))
    for cx, key, lines, n in children:
        svg.append(_svg_box(cx, y_c, 134, lines, key, n, h))
    foot = _reasons(mr.get("unmatched_by_reason"))
    y_end = y_c + h + 10
    if foot:
        svg.append(f'<text x="20" y="{y_end + 14:.0f}" class="l">MR nodes without a node partner (level-only or '
                   f'unmatched), by reason: {html.escape("; ".join(foot))}</text>')
        y_end += 24
    return _svg_wrap(svg, y_end)


def _flow_children(mr: Mapping[str, Any], pn: Mapping[str, Any]) -> list[tuple[float, str, list[str], int]]:
    """(centre x, key, lines, count) of the eight outcome boxes: MR nodes and pathology nodes by match. Matched
    means decided (by the engine, ``auto``, or by a person); pairs awaiting review have their own box."""
    matched = int(mr.get("matched", 0))
    auto, person = mr.get("matched_auto"), mr.get("matched_person")
    detail = [f"auto {auto}" + (f" · person {person}" if person else "")] if auto is not None else []
    waiting = int(mr.get("awaiting_review", mr.get("undecided", 0)))
    p_waiting = int(pn.get("awaiting_review", 0))
    undissected = int(pn.get("in_undissected_levels", 0))
    unseen = max(int(pn.get("unseen_on_mr", 0)) - undissected, 0)
    return [
        (MR_X[0], "mr_nodes.matched", ["Matched", f"n = {matched}", *detail, "node reference"], matched),
        (MR_X[1], "mr_nodes.awaiting_review", ["Awaiting review", f"n = {waiting}", "not yet a reference"],
         waiting),
        (MR_X[2], "mr_nodes.level-only", ["Level-only", f"n = {mr.get('level-only', 0)}", "level reference"],
         int(mr.get("level-only", 0))),
        (MR_X[3], "mr_nodes.unmatched", ["Unmatched", f"n = {mr.get('unmatched', 0)}", "no reference"],
         int(mr.get("unmatched", 0))),
        (PATH_X[0], "path_nodes.matched", ["Matched", f"n = {pn.get('matched', 0)}"], int(pn.get("matched", 0))),
        (PATH_X[1], "path_nodes.awaiting_review", ["Awaiting review", f"n = {p_waiting}"], p_waiting),
        (PATH_X[2], "path_nodes.unseen", ["Unseen on MR", f"n = {unseen}",
                                          *_reasons(pn.get("unseen_by_reason"), drop="undissected")], unseen),
        (PATH_X[3], "path_nodes.in_undissected_levels", ["Undissected level", f"n = {undissected}"], undissected),
    ]


# x centres of the outcome boxes (the flow diagram is 1130 wide): MR nodes on the left, pathology on the right
MR_X = (75.0, 215.0, 355.0, 495.0)
PATH_X = (635.0, 775.0, 915.0, 1055.0)


def _svg_wrap(parts: Sequence[str], height: float) -> str:
    return (
        f'<svg class="flow" viewBox="0 0 1130 {height:.0f}" width="100%" role="img" '
        'aria-label="STARD flow diagram of patients and nodes" xmlns="http://www.w3.org/2000/svg">'
        '<defs><marker id="nm-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#5b6577"/></marker></defs>'
        + "".join(parts) + "</svg>"
    )


_COUNT_LABELS = {"decisions.auto": "auto", "decisions.review": "review", "specimen.pairs_via_specimen": "via specimen"}


def _case_rows(out_dir: Path, cases: pd.DataFrame) -> str:
    """Per-case table with links to each case's outputs (only links to files that exist)."""
    rows = []
    for rec in cases.to_dict("records"):
        cid = str(rec["case_id"])
        links = []
        names = ["matches.csv", "truth_nodes.csv", "levels.csv", "specimen_registration.csv"]
        names += [f"maps/{cid}_map.png", f"maps/{cid}_viewer.html", f"maps/{cid}_scene.mrml",
                  f"maps/{cid}_scene.glb", f"maps/{cid}_levels.seg.nrrd"]
        for name in names:
            if (out_dir / cid / name).exists():
                label = name.split("/")[-1].removeprefix(f"{cid}_")
                links.append(f'<a href="{html.escape(cid)}/{html.escape(name)}">{html.escape(label)}</a>')
        counts = ", ".join(
            f"{_COUNT_LABELS.get(k, k)}={rec[k]:g}"
            for k in ("mr_nodes", "path_nodes", "pairs", "specimen.pairs_via_specimen", "decisions.auto",
                      "decisions.review")
            if k in rec and pd.notna(rec[k])
        )
        status = html.escape(str(rec["status"]))
        err = html.escape(str(rec.get("error") or ""))
        cls = ' class="fail"' if rec["status"] == "failed" else ""
        rows.append(
            f"<tr{cls}><td>{html.escape(cid)}</td><td>{status}</td><td>{counts}</td>"
            f"<td>{' · '.join(links)}</td><td>{err}</td></tr>"
        )
    head = "<tr><th>case</th><th>status</th><th>counts</th><th>outputs</th><th>error</th></tr>"
    return f'<table class="t">{head}{"".join(rows)}</table>'


def render_report_html(
    out_dir: Path, cases: pd.DataFrame, tables: dict[str, pd.DataFrame], figures: dict[str, Path]
) -> str:
    """The report as one HTML string (figures embedded, case links relative to ``out_dir``)."""
    nodes = tables.get("nodes", pd.DataFrame())
    failed = cases[cases["status"] == "failed"] if not cases.empty else cases
    review = nodes[nodes["decision"] == "review"] if "decision" in nodes else pd.DataFrame()
    acc_path = out_dir / "stats" / "accuracy.csv"
    accuracy = pd.read_csv(acc_path) if acc_path.exists() else pd.DataFrame()
    cards = {
        "cases": len(cases),
        "failed": len(failed),
        "MR nodes": int(nodes["mr_node"].notna().sum()) if "mr_node" in nodes else 0,
        "matched": int((nodes.get("match_kind", pd.Series(dtype=str)) == "matched").sum()),
        "decisions to review": len(review),  # rows of the node truth table (a pair or an unmatched node)
    }
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>neckmatch cohort report</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>neckmatch cohort report</h1>",
        f"<p class='meta'>neckmatch {__version__} · {html.escape(str(out_dir.name))}</p>",
        "<h2>Summary</h2><div class='cards'>"
        + "".join(f"<div class='card'><b>{v}</b>{html.escape(k)}</div>" for k, v in cards.items())
        + "</div>",
        "<h2>Flow of patients and nodes (STARD)</h2>",
        _flow(_stard(out_dir, tables), cases),
        "<h2>Diagnostic accuracy</h2>",
        _accuracy_section(accuracy),
        "<h2>Readers: ROC and agreement</h2>",
        _readers_section(out_dir / "stats"),
        _reader_study_section(out_dir),
        "<h2>Figures</h2>",
        "".join(_img(p) for p in figures.values() if Path(p).suffix == ".png") or "<p><em>none</em></p>",
        "<h2>Cases</h2>",
        _case_rows(out_dir, cases),
        "<h2>Cases that failed</h2>",
        _table(failed[["case_id", "error"]] if not failed.empty else failed),
        "<h2>What needs review</h2>",
        _review_section(review),
        "<h2>Files</h2>",
        _files_section(out_dir),
        "</body></html>",
    ]
    return "\n".join(parts)


def _reader_study_section(out_dir: Path) -> str:
    from neckmatch.stats.reader_study import reader_study_section

    return reader_study_section(out_dir)


def _files_section(out_dir: Path) -> str:
    """Links to the cohort tables and statistics written so far (relative to the report)."""
    found = [out_dir / "cases.csv"] if (out_dir / "cases.csv").is_file() else []
    for folder, pattern in (("tables", "truth_*.csv"), ("tables", "truth_*.parquet"), ("tables", "matches.csv"),
                            ("stats", "*"), ("reader_study", "*")):
        found += sorted(p for p in (out_dir / folder).glob(pattern) if p.is_file() and not p.name.startswith("."))
    if not found:
        return "<p><em>none</em></p>"
    links = [f'<a href="{html.escape(p.relative_to(out_dir).as_posix())}">{html.escape(p.name)}</a>' for p in found]
    return "<p>" + " · ".join(links) + "</p>"


_METRICS = (("sensitivity", "Sensitivity"), ("specificity", "Specificity"), ("ppv", "PPV"), ("npv", "NPV"))
_UNITS = ("node", "level", "side", "patient")
_ANALYSES = {
    "main": "main: matched node pairs",
    "auto-only": "automatic matches only",
    "with-level-only": "+ level-only nodes (negative containers)",
    "best-case": "+ nodes unseen on MR, counted correct",
    "worst-case": "+ nodes unseen on MR, counted missed",
}


def _num(value: Any, digits: int = 2) -> str:
    """A number as text with ``digits`` decimals; an en dash for a missing one.

    Examples
    --------
    >>> _num(0.8166), _num(float("nan")), _num(None)
    ('0.82', '–', '–')
    """
    if value is None or pd.isna(value):
        return "–"
    return f"{float(value):.{digits}f}"


def format_interval(est: Any, low: Any, high: Any, digits: int = 2) -> str:
    """``estimate (low-high)`` as reported in the tables; the estimate alone without an interval; an en dash
    where the estimate is undefined (e.g. sensitivity with no positive unit).

    Examples
    --------
    >>> format_interval(0.8166, 0.7123, 0.9, 2)
    '0.82 (0.71-0.90)'
    >>> format_interval(1.0, float("nan"), float("nan")), format_interval(float("nan"), 0.1, 0.2)
    ('1.00', '–')
    """
    if est is None or pd.isna(est):
        return "–"
    if low is None or high is None or pd.isna(low) or pd.isna(high):
        return _num(est, digits)
    return f"{_num(est, digits)} ({_num(low, digits)}-{_num(high, digits)})"


def _metric_cell(row: Mapping[str, Any], m: str, clustered: bool) -> str:
    """One metric of one accuracy row: Wilson interval, then (small) bootstrap and GEE intervals and deff."""
    lines = [html.escape(format_interval(row.get(m), row.get(f"{m}_low"), row.get(f"{m}_high")))]
    if clustered and pd.notna(row.get(f"{m}_low_boot")) and pd.notna(row.get(f"{m}_high_boot")):
        lines.append(f"<small>boot {_num(row[f'{m}_low_boot'])}-{_num(row[f'{m}_high_boot'])}</small>")
    if clustered and pd.notna(row.get(f"{m}_gee")):
        gee = format_interval(row[f"{m}_gee"], row.get(f"{m}_low_gee"), row.get(f"{m}_high_gee"))
        deff = f" · deff {_num(row[f'{m}_deff'])}" if pd.notna(row.get(f"{m}_deff")) else ""
        lines.append(f"<small>GEE {html.escape(gee)}{deff}</small>")
    return "<br>".join(lines)


def _accuracy_rows_html(rows: pd.DataFrame, first: Sequence[tuple[str, str]], clustered: bool) -> str:
    """An HTML table of accuracy rows: the ``first`` (column, header) pairs, counts, then the four metrics."""
    head = [h for _c, h in first] + ["patients", "units", "TP", "FP", "FN", "TN"] + [h for _m, h in _METRICS]
    if clustered:
        head.append("design effect")
    body = []
    for row in rows.to_dict("records"):
        cells = [html.escape(str(row.get(c, ""))) for c, _h in first]  # text: left-aligned (first columns)
        cells += [_count_text(row.get(c)) for c in ("n_patients", "n", "tp", "fp", "fn", "tn")]
        cells += [_metric_cell(row, m, clustered) for m, _h in _METRICS]
        if clustered:
            cells.append(_num(row.get("design_effect")))
        tds = ['<td class="l">'] * len(first) + ["<td>"] * (len(cells) - len(first))
        body.append("<tr>" + "".join(f"{td}{c}</td>" for td, c in zip(tds, cells, strict=True)) + "</tr>")
    header = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    return f'<table class="t acc"><tr>{header}</tr>{"".join(body)}</table>'


def _html_rows(head: Sequence[str], rows: Sequence[Sequence[Any]], left: int = 1, cls: str = "t") -> str:
    """An HTML table of already formatted cells (escaped here); the first ``left`` columns are text
    (left-aligned)."""
    header = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    tds = ['<td class="l">'] * left
    body = "".join(
        "<tr>" + "".join(f"{tds[i] if i < left else '<td>'}{html.escape(str(c))}</td>" for i, c in enumerate(r))
        + "</tr>" for r in rows)
    return f'<table class="{cls}"><tr>{header}</tr>{body}</table>'


def _count_text(value: Any) -> str:
    return "–" if value is None or pd.isna(value) else str(int(value))


def _pooled(accuracy: pd.DataFrame) -> pd.Series:
    """Rows pooled over levels and sides (``level`` all/any, ``side`` both)."""
    return accuracy["level"].astype(str).isin(["all", "any"]) & (accuracy["side"].astype(str) == "both")


def _unit_order(accuracy: pd.DataFrame) -> pd.DataFrame:
    from neckmatch.viz.plots import level_sort_key

    keys = pd.Series([(_UNITS.index(u) if u in _UNITS else len(_UNITS), level_sort_key(lv), str(sd))
                      for u, lv, sd in zip(accuracy["unit"], accuracy["level"], accuracy["side"], strict=True)],
                     index=accuracy.index)
    return accuracy.loc[keys.sort_values().index]


def _accuracy_section(accuracy: pd.DataFrame) -> str:
    """Pooled main rows per unit, sensitivity analyses, per-level rows folded away; links to the full table."""
    if accuracy.empty:
        return "<p><em>No statistics (no finished case with pathology).</em></p>"
    main = accuracy[accuracy["analysis"].fillna("main") == "main"]
    pooled = _unit_order(main[_pooled(main)])
    sens = accuracy[(accuracy["unit"] == "node") & _pooled(accuracy)]  # main first, then the others
    sens = sens.assign(what=[_ANALYSES.get(a, a.replace("size ", "MR short axis ").replace("mm", " mm"))
                             for a in sens["analysis"].fillna("main")])
    per_level = _unit_order(main[~_pooled(main)])
    notes = [f"{r['unit']}: {r['gee_note']}" for r in pooled.to_dict("records")
             if isinstance(r.get("gee_note"), str) and r["gee_note"]]
    return "".join([
        "<p>Each cell: estimate (Wilson 95 % CI); <small>boot</small>: patient-clustered bootstrap 95 % interval; "
        "<small>GEE</small>: population-averaged estimate (95 % CI) with its design effect (deff), where units "
        "cluster within patients. Definitions: <code>docs/statistics.md</code> of neckmatch; every column: "
        '<a href="stats/accuracy.csv">stats/accuracy.csv</a>.</p>',
        "<h3>Main analysis, pooled per unit</h3>",
        _accuracy_rows_html(pooled, [("unit", "unit")], clustered=True),
        ("<p class='note'>GEE: " + html.escape("; ".join(notes)) + "</p>") if notes else "",
        "<h3>Sensitivity analyses (node unit, pooled)</h3>",
        _accuracy_rows_html(sens, [("what", "analysis")], clustered=False) if not sens.empty else "",
        f"<details><summary>Per level and side ({len(per_level)} rows, Wilson 95 % CI)</summary>",
        _accuracy_rows_html(per_level, [("unit", "unit"), ("level", "level"), ("side", "side")], clustered=False),
        "</details>",
    ])


def _readers_section(stats_dir: Path) -> str:
    """Per-reader ROC summary (roc.csv) and inter-reader agreement (agreement.csv) as compact tables."""
    parts = []
    roc = pd.read_csv(stats_dir / "roc.csv") if (stats_dir / "roc.csv").is_file() else pd.DataFrame()
    if not roc.empty:
        rows = []
        for r in roc.to_dict("records"):
            note = r.get("auc_note") if isinstance(r.get("auc_note"), str) else ""
            auc = format_interval(r["auc"], r.get("auc_low_boot"), r.get("auc_high_boot"))
            auc += " (CI n/a)" if note and pd.notna(r["auc"]) else ""
            rows.append([r["reader"], _count_text(r["n"]), _count_text(r["n_patients"]),
                         f"{_count_text(r['n_positive'])} / {_count_text(r['n_negative'])}", auc,
                         "–" if pd.isna(r["youden_threshold"]) else f"score ≥ {r['youden_threshold']:g}",
                         f"{_num(r['youden_sensitivity'])} / {_num(r['youden_specificity'])}", note])
        head = ["reader", "nodes", "patients", "positive / negative", "AUC (95 % CI, patient bootstrap)",
                "Youden threshold", "sens. / spec. there", "note"]
        parts.append(_html_rows(head, rows, left=1, cls="t last-l"))
    agree = pd.read_csv(stats_dir / "agreement.csv") if (stats_dir / "agreement.csv").is_file() else pd.DataFrame()
    if not agree.empty:
        parts.append("<h3>Agreement between readers</h3>" + _agreement_table(agree))
    if not parts:
        return "<p><em>No reader scores.</em></p>"
    return "".join(parts) + ('<p>Full tables: <a href="stats/roc.csv">roc.csv</a> · '
                             '<a href="stats/agreement.csv">agreement.csv</a></p>')


_STATISTICS = {"cohen_unweighted": "Cohen's kappa", "cohen_linear": "Cohen's kappa, linear weights",
               "cohen_quadratic": "Cohen's kappa, quadratic weights", "fleiss": "Fleiss' kappa"}


def _agreement_table(agree: pd.DataFrame) -> str:
    rows = []
    for r in agree.to_dict("records"):
        readers = str(r["readers"]).split("|")
        who = " vs ".join(readers) if len(readers) == 2 else ", ".join(readers)
        rows.append([r["variable"], who, _STATISTICS.get(r["statistic"], r["statistic"]), _count_text(r["n"]),
                     format_interval(r["kappa"], r.get("low"), r.get("high")),
                     r["landis_koch"] if isinstance(r.get("landis_koch"), str) else ""])
    head = ["rating", "readers", "statistic", "nodes", "kappa (95 % CI)", "Landis-Koch"]
    return _html_rows(head, rows, left=3, cls="t last-l")


def _review_section(review: pd.DataFrame) -> str:
    if review.empty:
        return "<p>Nothing: every decision is automatic.</p>"
    per_case = review.groupby("case_id").size().rename("decisions to review").reset_index()
    links = [f'<a href="{html.escape(str(c))}/matches.csv">{html.escape(str(c))}</a>' for c in per_case["case_id"]]
    per_case["matches"] = links
    per_case["case_id"] = [html.escape(str(c)) for c in per_case["case_id"]]  # escape=False below: escape here
    return per_case.to_html(index=False, border=0, classes="t", escape=False)


def iter_report_links(html_text: str) -> list[str]:
    """Relative link targets (``href``) in a report, unescaped, without ``#fragment``, for checking that they
    resolve; absolute URLs (``https:``, ``mailto:`` ...) and in-page anchors are left out.

    Examples
    --------
    >>> iter_report_links('<a href="P1/m.csv">a</a><a href="mailto:x@y">b</a><a href="#top">c</a>'
    ...                   '<a href="P%201/a&amp;b.png#v">d</a>')
    ['P1/m.csv', 'P 1/a&b.png']
    """
    import re
    from urllib.parse import unquote

    targets = (unquote(html.unescape(m)).split("#", 1)[0] for m in re.findall(r'href="([^"]*)"', html_text))
    return [t for t in targets if t and not re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", t)]
