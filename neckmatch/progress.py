"""Progress display and summaries of cohort runs, for the CLI (rich). No science here."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

__all__ = ["cohort_progress", "format_cohort_summary"]


@contextmanager
def cohort_progress(console: Console) -> Iterator[Callable[[Any, int, int], None]]:
    """A rich progress bar; yields the ``on_progress(record, done, total)`` callback of ``run_cohort``.

    A failed case is printed above the bar as it happens (its one-line error, case id only), and so are the lines
    of a dask run (``neckmatch.cluster``: the scheduler and its dashboard, each case with the worker that ran it).
    """
    progress = Progress(
        TextColumn("[bold]cases"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[last]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
        disable=not console.is_terminal,
    )
    task = progress.add_task("cases", total=None, last="")

    def on_progress(record: Any, done: int, total: int) -> None:
        progress.update(task, completed=done, total=total, last=f"{record.case_id}: {record.status}")
        if record.status == "failed":
            progress.console.print(f"{record.case_id}: failed: {record.error}", markup=False, soft_wrap=True)

    handler = _ConsoleHandler(progress.console)
    cluster_log = logging.getLogger("neckmatch.cluster")
    cluster_log.addHandler(handler)
    cluster_log.setLevel(logging.INFO)
    try:
        with progress:
            yield on_progress
    finally:
        cluster_log.removeHandler(handler)


class _ConsoleHandler(logging.Handler):
    """Log records printed as plain lines on a rich console (above a live progress bar)."""

    def __init__(self, console: Console) -> None:
        super().__init__(logging.INFO)
        self.console = console

    def emit(self, record: logging.LogRecord) -> None:
        self.console.print(self.format(record), markup=False, highlight=False, soft_wrap=True)


def format_cohort_summary(result: Any) -> str:
    """A few lines: cases run / skipped / failed, and where the report is."""
    recs = result.records
    n_ok = sum(r.status == "ok" for r in recs)
    lines = [
        f"cases: {len(recs)} ({n_ok} run, {result.n_skipped} unchanged, {result.n_failed} failed)",
    ]
    pairs = sum(int(r.summary.get("pairs", 0) or 0) for r in recs if r.status != "failed")
    review = sum(int((r.summary.get("decisions") or {}).get("review", 0) or 0) for r in recs if r.status != "failed")
    lines.append(f"node pairs: {pairs}; decisions to review: {review}")
    for r in recs:
        if r.status == "failed":
            lines.append(f"  failed {r.case_id}: {r.error}")
    report = result.files.get("report.html")
    if report is not None:
        lines.append(f"report: {report}")
    return "\n".join(lines)
