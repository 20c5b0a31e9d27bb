"""The cohort report: stacked tables, statistics, figures and one self-contained ``report.html``.

The HTML embeds its figures (base64 PNG) so it can be mailed as one file; links to per-case outputs are
relative to the report, so they resolve where the run folder is opened.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from neckmatch import __version__
from neckmatch.io.atomic import write_csv, write_text

__all__ = ["write_cohort_outputs", "render_report_html"]


def write_cohort_outputs(out_dir: Path, records: Sequence[Any]) -> dict[str, Path]:
    """Write ``cases.csv``, ``tables/``, ``stats/``, ``figures/`` and ``report.html`` for a finished run."""
    from neckmatch.cohort import records_frame, stack_truth_tables, write_tables

    files: dict[str, Path] = {}
    cases = records_frame(records)
    files["cases.csv"] = write_csv(cases, out_dir / "cases.csv")
    tables = stack_truth_tables(out_dir, records)
    files.update(write_tables(tables, out_dir / "tables"))
    files.update(_statistics(out_dir / "tables", out_dir / "stats", tables))
    figures = _figures(tables, out_dir / "stats", out_dir / "figures")
    files.update(figures)
    html_text = render_report_html(out_dir, cases, tables, figures)
    files["report.html"] = write_text(html_text, out_dir / "report.html")
    return files


def _statistics(tables_dir: Path, stats_dir: Path, tables: dict[str, pd.DataFrame]) -> dict[str, Path]:
    """The study statistics of the stacked truth tables (neckmatch.correlation.stats_report)."""
    if all(t.empty for t in tables.values()):
        return {}
    from neckmatch.correlation.stats_report import run_stats

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
margin-top:2.2rem} .meta{color:#5b6577} table.t{border-collapse:collapse;font-size:.86rem;margin:.5rem 0}
table.t th,table.t td{padding:.25rem .55rem;border-bottom:1px solid #e6e9ef;text-align:right}
table.t th{background:#f3f5f9} .cards{display:flex;gap:1rem;flex-wrap:wrap} .card{background:#f3f5f9;
border-radius:8px;padding:.7rem 1rem;min-width:9rem} .card b{font-size:1.5rem;display:block} .fail{color:#a61b1b}
img{max-width:100%;border:1px solid #e6e9ef;margin:.4rem 0} .flow{display:flex;gap:2rem;flex-wrap:wrap}
.box{border:1px solid #9aa5b8;border-radius:6px;padding:.5rem .8rem;margin:.3rem 0;background:#fff}
.box.sub{margin-left:1.5rem;border-style:dashed}
"""


def _flow(tables: dict[str, pd.DataFrame], cases: pd.DataFrame) -> str:
    """STARD-style participant and node flow as nested boxes (item 19)."""
    nodes = tables.get("nodes", pd.DataFrame())
    n_ok = int((cases["status"] != "failed").sum()) if not cases.empty else 0

    def count(frame: pd.DataFrame, **eq: Any) -> int:
        if frame.empty:
            return 0
        mask = pd.Series(True, index=frame.index)
        for k, v in eq.items():
            if k not in frame:
                return 0
            mask &= frame[k].astype(str) == v
        return int(mask.sum())

    mr = nodes[nodes["mr_node"].notna()] if "mr_node" in nodes else pd.DataFrame()
    path_only = nodes[nodes["mr_node"].isna()] if "mr_node" in nodes else pd.DataFrame()
    boxes = [
        f'<div class="box">Patients in the cohort: <b>{len(cases)}</b></div>',
        f'<div class="box sub">analysed: {n_ok}; failed: {len(cases) - n_ok}</div>',
        f'<div class="box">MR nodes: <b>{len(mr)}</b></div>',
        f'<div class="box sub">matched node-to-node: {count(mr, match_kind="matched")}</div>',
        f'<div class="box sub">level-only: {count(mr, match_kind="level-only")}</div>',
        f'<div class="box sub">unmatched: {count(mr, match_kind="unmatched")}</div>',
        f'<div class="box">Pathology nodes without an MR partner: <b>{len(path_only)}</b></div>',
    ]
    return '<div class="flow"><div>' + "".join(boxes) + "</div></div>"


def _case_rows(out_dir: Path, cases: pd.DataFrame) -> str:
    """Per-case table with links to each case's outputs (only links to files that exist)."""
    rows = []
    for rec in cases.to_dict("records"):
        cid = str(rec["case_id"])
        links = []
        names = ["matches.csv", "truth_nodes.csv", "levels.csv"]
        names += [f"maps/{cid}_map.png", f"maps/{cid}_scene.glb", f"maps/{cid}_levels.seg.nrrd"]
        for name in names:
            if (out_dir / cid / name).exists():
                label = name.split("/")[-1].removeprefix(f"{cid}_")
                links.append(f'<a href="{html.escape(cid)}/{html.escape(name)}">{html.escape(label)}</a>')
        counts = ", ".join(
            f"{k.removeprefix('decisions.')}={rec[k]:g}"
            for k in ("mr_nodes", "path_nodes", "pairs", "decisions.auto", "decisions.review")
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
        "to review": len(review),
    }
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>neckmatch cohort report</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>neckmatch cohort report</h1>",
        f"<p class='meta'>neckmatch {__version__} · {html.escape(str(out_dir.name))}</p>",
        "<h2>Summary</h2><div class='cards'>"
        + "".join(f"<div class='card'><b>{v}</b>{html.escape(k)}</div>" for k, v in cards.items())
        + "</div>",
        "<h2>Flow of patients and nodes</h2>",
        _flow(tables, cases),
        "<h2>Diagnostic accuracy</h2>",
        _accuracy_section(accuracy),
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


def _files_section(out_dir: Path) -> str:
    """Links to the cohort tables and statistics written so far (relative to the report)."""
    found = [out_dir / "cases.csv"] if (out_dir / "cases.csv").is_file() else []
    for folder, pattern in (("tables", "truth_*.csv"), ("tables", "truth_*.parquet"), ("stats", "*")):
        found += sorted(p for p in (out_dir / folder).glob(pattern) if p.is_file() and not p.name.startswith("."))
    if not found:
        return "<p><em>none</em></p>"
    links = [f'<a href="{html.escape(p.relative_to(out_dir).as_posix())}">{html.escape(p.name)}</a>' for p in found]
    return "<p>" + " · ".join(links) + "</p>"


def _accuracy_section(accuracy: pd.DataFrame) -> str:
    if accuracy.empty:
        return "<p><em>No statistics (no finished case with pathology).</em></p>"
    keep = [c for c in accuracy.columns if not c.endswith("_note")]
    return (
        "<p>Intervals: Wilson 95 % (per row) and, on pooled rows, patient-clustered (cluster bootstrap, GEE). "
        "Column definitions: docs/statistics.md.</p>" + _table(accuracy[keep])
    )


def _review_section(review: pd.DataFrame) -> str:
    if review.empty:
        return "<p>Nothing: every decision is automatic.</p>"
    per_case = review.groupby("case_id").size().rename("decisions to review").reset_index()
    links = [f'<a href="{html.escape(str(c))}/matches.csv">{html.escape(str(c))}</a>' for c in per_case["case_id"]]
    per_case["matches"] = links
    return per_case.to_html(index=False, border=0, classes="t", escape=False)


def write_json(data: Any, path: Path) -> Path:
    """Write JSON atomically (indent 2)."""
    return write_text(json.dumps(data, indent=2, default=str), path)


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
