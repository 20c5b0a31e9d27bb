"""Cohort runs: every case of a study folder, in parallel, resumable, with a progress bar and a report.

``run_cohort(cohort_dir, out_dir)`` finds every case folder (a folder holding ``case.json``), runs the per-case
pipeline (:func:`neckmatch.pipeline.process_case`: levels, specimen, matching, truth tables) and the maps on each,
in a process pool (or on a dask.distributed cluster), then stacks the truth tables, computes the study statistics,
draws the figures and writes a self-contained ``report.html``.

Resumability: each finished case folder holds ``run.json`` with a fingerprint (SHA-256 of the case's input files,
the settings and the neckmatch version). A rerun skips cases whose fingerprint is unchanged and redoes the rest.
Every case is produced in a staging folder and renamed into place only when complete, so a run killed at any
moment leaves no half-written case; cohort-level files are written atomically too.

A case that fails is recorded with its one-line error (``cases.csv``, the report) and the run goes on.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import pandas as pd

from neckmatch import __version__
from neckmatch.errors import InputError, NeckmatchError
from neckmatch.io.atomic import atomic_path, replace_dir, write_csv, write_text

__all__ = [
    "CaseRecord",
    "CohortResult",
    "default_workers",
    "find_cases",
    "input_fingerprint",
    "records_frame",
    "run_case_task",
    "run_cohort",
    "stack_case_csvs",
    "stack_truth_tables",
    "write_tables",
]

STAMP = "run.json"
STAGING = ".staging"
# Names the cohort run writes at the top of OUT: a case id may not be one of them.
RESERVED_NAMES = frozenset({"tables", "stats", "figures", "cases.csv", "report.html", "run.json"})
TRUTH_KEYS = ("nodes", "reads", "levels", "sides", "patient")
_BLAS_ENV = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


@dataclass(frozen=True)
class CaseRecord:
    """What happened to one case in a cohort run. ``status`` is ``ok``, ``skipped`` (unchanged) or ``failed``;
    ``fingerprint`` is the input fingerprint of a finished case's output (empty for a failed case)."""

    case_id: str
    case_dir: str
    status: str
    error: str = ""
    seconds: float = 0.0
    summary: dict[str, Any] = field(default_factory=dict)
    fingerprint: str = ""


@dataclass(frozen=True)
class CohortResult:
    """The outcome of :func:`run_cohort`: one record per case and the cohort-level files written."""

    out_dir: Path
    records: tuple[CaseRecord, ...]
    files: dict[str, Path]

    @property
    def n_failed(self) -> int:
        return sum(r.status == "failed" for r in self.records)

    @property
    def n_skipped(self) -> int:
        return sum(r.status == "skipped" for r in self.records)


def find_cases(cohort_dir: str | Path) -> list[Path]:
    """Every case folder (holding ``case.json``) below ``cohort_dir``, sorted, hidden folders excluded."""
    root = Path(cohort_dir)
    if not root.is_dir():
        raise InputError(root, "", "is not a folder of cases")
    found = []
    for manifest in root.rglob("case.json"):
        rel = manifest.parent.relative_to(root)
        if any(part.startswith(".") for part in rel.parts):
            continue
        found.append(manifest.parent)
    return sorted(found)


def input_fingerprint(case_dir: str | Path, settings_fingerprint: str = "") -> str:
    """SHA-256 over the case folder's files (names and bytes), the settings and the neckmatch version."""
    root = Path(case_dir)
    h = hashlib.sha256()
    h.update(f"neckmatch {__version__}\n{settings_fingerprint}\n".encode())
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts):
            continue
        h.update(str(rel.as_posix()).encode() + b"\0")
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def _case_id(case_dir: Path) -> str:
    """The case id from case.json (folder name when unreadable), made safe as a folder name."""
    try:
        cid = str(json.loads((case_dir / "case.json").read_text(encoding="utf-8"))["case_id"])
    except (OSError, ValueError, KeyError, TypeError):
        cid = case_dir.name
    safe = "".join(c if (c.isalnum() or c in "-_.") else "_" for c in cid).strip(".")
    return safe or case_dir.name


def _stamp(out_case: Path) -> dict[str, Any] | None:
    try:
        return json.loads((out_case / STAMP).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _one_line(exc: BaseException, case_dir: str = "", case_id: str = "") -> str:
    """One line for a failed case; the case folder's path is shown as the case id (folders may carry names).

    Examples
    --------
    >>> _one_line(InputError("/data/Doe_J/pathology/nodes.csv", "row 2: level", "got 'IIc'"), "/data/Doe_J", "P7")
    "P7/pathology/nodes.csv: row 2: level: got 'IIc'"
    >>> _one_line(KeyError("x"))
    "internal error: KeyError: 'x'"
    """
    text = " ".join(str(exc).split()) or type(exc).__name__
    if case_dir and case_id:
        text = text.replace(str(Path(case_dir).resolve()), case_id).replace(str(case_dir), case_id)
    return text if isinstance(exc, NeckmatchError) else f"internal error: {type(exc).__name__}: {text}"


def run_case_task(
    case_dir: str, out_root: str, case_id: str, fingerprint: str, settings: Any, maps: bool
) -> CaseRecord:
    """Run one case into ``out_root/case_id`` through a staging folder; never raises for a bad case.

    This is the unit of work sent to a process pool or a dask worker.
    """
    from neckmatch.pipeline import process_case

    t0 = time.perf_counter()
    staging = Path(out_root) / STAGING / f"{case_id}.{os.getpid()}"
    final = Path(out_root) / case_id
    shutil.rmtree(staging, ignore_errors=True)
    try:
        summary = process_case(case_dir, staging, settings)
        if maps:
            _render_maps(case_dir, staging)
        seconds = time.perf_counter() - t0
        stamp = {"fingerprint": fingerprint, "neckmatch": __version__, "seconds": round(seconds, 3), "summary": summary,
                 "case_dir": str(Path(case_dir).resolve())}
        (staging / STAMP).write_text(json.dumps(stamp, indent=2, default=str), encoding="utf-8")
        replace_dir(staging, final)
        return CaseRecord(case_id, str(case_dir), "ok", "", seconds, dict(summary or {}), fingerprint)
    except Exception as exc:  # a bad case is recorded, the run goes on
        shutil.rmtree(staging, ignore_errors=True)
        _remove_dir(final)  # an older result of inputs that now fail would contradict cases.csv
        return CaseRecord(case_id, str(case_dir), "failed", _one_line(exc, case_dir, case_id), time.perf_counter() - t0)


def _render_maps(case_dir: str, results_dir: Path) -> None:
    from neckmatch.io.case import read_case
    from neckmatch.viz.render import render_case

    render_case(read_case(case_dir), results_dir / "maps", results_dir=results_dir)


def _remove_dir(path: Path) -> None:
    """Remove a case output folder: renamed aside first, so it is never seen half-deleted."""
    if path.is_dir():
        old = path.with_name(f".{path.name}.old.{os.getpid()}")
        os.replace(path, old)
        shutil.rmtree(old, ignore_errors=True)


def _clean_leftovers(out_dir: Path) -> None:
    """Remove what a killed run may leave: the staging folder, case folders set aside (``.<case>.old.<pid>``)
    and the temporary files of atomic writes in the cohort-level folders."""
    shutil.rmtree(out_dir / STAGING, ignore_errors=True)
    for old in out_dir.glob(".*.old*"):
        if old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
    for folder in (out_dir, out_dir / "tables", out_dir / "stats", out_dir / "figures"):
        for tmp in folder.glob(".*.tmp*"):
            if tmp.is_file():
                tmp.unlink(missing_ok=True)
            elif tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)


@dataclass(frozen=True)
class _Task:
    case_dir: Path
    case_id: str
    fingerprint: str
    settings: Any = None  # this case's settings when they differ from the run's (its own constraints file)


def _plan(cases: Iterable[Path], out_dir: Path, settings_fp: str, force: bool,
          case_settings: Callable[[str], Any] | None = None) -> tuple[list[_Task], list[CaseRecord]]:
    """Split cases into those to run and those whose finished output is still current.

    ``case_settings(case_id)`` gives a case's own settings (or None for the run's); they replace ``settings_fp``
    in that case's fingerprint."""
    todo: list[_Task] = []
    skipped: list[CaseRecord] = []
    seen: dict[str, Path] = {}
    for case_dir in cases:
        cid = _case_id(case_dir)
        if cid in RESERVED_NAMES:
            raise InputError(case_dir / "case.json", "case_id",
                             f"'{cid}' is reserved for the cohort's own outputs ({', '.join(sorted(RESERVED_NAMES))})")
        if cid in seen:
            raise InputError(case_dir / "case.json", "case_id", f"'{cid}' is also the case id of {seen[cid]}")
        seen[cid] = case_dir
        own = case_settings(cid) if case_settings is not None else None
        fp = input_fingerprint(case_dir, settings_fp if own is None else own.fingerprint() + settings_fp[64:])
        stamp = _stamp(out_dir / cid)
        if not force and stamp is not None and stamp.get("fingerprint") == fp:
            skipped.append(CaseRecord(cid, str(case_dir), "skipped", "", 0.0, dict(stamp.get("summary") or {}), fp))
        else:
            todo.append(_Task(case_dir, cid, fp, own))
    return todo, skipped


@contextmanager
def _capped_blas_env() -> Iterator[None]:
    """Set the BLAS/OpenMP thread variables to 1 while worker processes are started (they copy the environment
    when spawned, which a ProcessPoolExecutor does lazily, at submit time); restore them afterwards."""
    saved = {k: os.environ.get(k) for k in _BLAS_ENV}
    os.environ.update({k: "1" for k in _BLAS_ENV})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _failed(task: _Task, exc: BaseException) -> CaseRecord:
    """The record of a case whose worker died or could not run it (pool broken, worker lost)."""
    return CaseRecord(task.case_id, str(task.case_dir), "failed", _one_line(exc, str(task.case_dir), task.case_id))


def _run_local(tasks: list[_Task], out_dir: Path, settings: Any, maps: bool, workers: int) -> Iterator[CaseRecord]:
    """Run tasks in a spawn-context process pool with BLAS threads capped at one per worker."""
    if workers <= 1 or len(tasks) <= 1:
        for t in tasks:
            yield run_case_task(str(t.case_dir), str(out_dir), t.case_id, t.fingerprint, t.settings or settings, maps)
        return
    with _capped_blas_env():
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"))
        try:
            pending: dict[Future[CaseRecord], _Task] = {
                pool.submit(run_case_task, str(t.case_dir), str(out_dir), t.case_id, t.fingerprint,
                            t.settings or settings, maps): t
                for t in tasks
            }
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    task = pending.pop(fut)
                    try:
                        yield fut.result()
                    except Exception as exc:  # a worker killed (out of memory, ...): that case failed, run goes on
                        yield _failed(task, exc)
        finally:  # on Ctrl-C: drop the queued cases at once instead of running them all first
            pool.shutdown(wait=True, cancel_futures=True)


def _run_dask(
    tasks: list[_Task], out_dir: Path, settings: Any, maps: bool, address: str, workers: int
) -> Iterator[CaseRecord]:
    """Run tasks on a dask.distributed cluster (``address`` = scheduler address, or ``local``).

    The per-case task is the same as on the local pool; every worker must see ``out_dir`` and the case folders
    at the same paths (a shared filesystem).
    """
    from distributed import Client, LocalCluster, as_completed

    cluster = None
    if address == "local":
        with _capped_blas_env():
            cluster = LocalCluster(
                n_workers=max(workers, 1), threads_per_worker=1, processes=True, dashboard_address=None
            )
        client = Client(cluster)
    else:
        client = Client(address)
    try:
        futures = {
            client.submit(
                run_case_task, str(t.case_dir), str(out_dir), t.case_id, t.fingerprint, t.settings or settings, maps,
                key=f"neckmatch-{t.case_id}-{t.fingerprint[:12]}", pure=False,
            ): t
            for t in tasks
        }  # fmt: skip
        for fut in as_completed(futures):
            try:
                yield fut.result()
            except Exception as exc:  # worker lost too often (KilledWorker) ...
                yield _failed(futures[fut], exc)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _constraints_of(folder: Path, settings: Any) -> Callable[[str], Any]:
    """``case_id -> settings`` with that case's constraints file from ``folder`` (None where it has none)."""
    from dataclasses import replace

    if not folder.is_dir():
        raise InputError(folder, "", "constraints folder not found")

    def own(case_id: str) -> Any:
        for name in ("constraints.json", "constraints.csv"):
            if (folder / case_id / name).is_file():
                return replace(settings, constraints=str(folder / case_id / name))
        return None

    return own


def default_workers() -> int:
    """Worker processes by default: the CPUs this process may run on."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def run_cohort(
    cohort_dir: str | Path,
    out_dir: str | Path,
    *,
    workers: int | None = None,
    dask: str | None = None,
    settings: Any = None,
    maps: bool = True,
    force: bool = False,
    on_progress: Callable[[CaseRecord, int, int], None] | None = None,
    constraints_dir: str | Path | None = None,
) -> CohortResult:
    """Run every case of ``cohort_dir`` into ``out_dir`` and write the cohort tables, statistics and report.

    Parameters
    ----------
    cohort_dir : path
        Folder searched recursively for case folders (``case.json``).
    out_dir : path
        Results: ``<case_id>/`` per case, ``tables/``, ``stats/``, ``figures/``, ``cases.csv``, ``report.html``.
    workers : int, optional
        Worker processes (default: the machine's cores).
    dask : str, optional
        A dask.distributed scheduler address, or ``"local"`` for a LocalCluster; default: a local process pool.
    settings : neckmatch.pipeline.Settings, optional
        Per-case settings; part of the fingerprint.
    maps : bool
        Render the per-case 3-D maps.
    force : bool
        Redo every case even where its output is current.
    on_progress : callable, optional
        Called as ``on_progress(record, done, total)`` after each case (the CLI drives its progress bar with it).
    constraints_dir : path, optional
        People's decisions per case (``neckmatch review export``): ``constraints_dir/<case_id>/constraints.json``
        (or ``constraints.csv``), where present, is that case's ``Settings.constraints``.
    """
    from neckmatch.pipeline import Settings

    settings = settings if settings is not None else Settings()
    out = Path(out_dir)
    cases = find_cases(cohort_dir)
    if not cases:
        raise InputError(cohort_dir, "", "holds no case folder (no case.json found)")
    out.mkdir(parents=True, exist_ok=True)
    _clean_leftovers(out)
    todo, records = _plan(cases, out, settings.fingerprint() + f"|maps={maps}", force,
                          None if constraints_dir is None else _constraints_of(Path(constraints_dir), settings))
    total = len(todo) + len(records)
    for i, rec in enumerate(records, 1):
        if on_progress:
            on_progress(rec, i, total)
    n_workers = min(workers or default_workers(), max(len(todo), 1))
    if not todo:
        runner: Iterable[CaseRecord] = ()  # nothing to run: no pool, no cluster
    elif dask:
        runner = _run_dask(todo, out, settings, maps, dask, n_workers)
    else:
        runner = _run_local(todo, out, settings, maps, n_workers)
    for rec in runner:
        records.append(rec)
        if on_progress:
            on_progress(rec, len(records), total)
    shutil.rmtree(out / STAGING, ignore_errors=True)
    order = {str(c): i for i, c in enumerate(cases)}
    records.sort(key=lambda r: order[r.case_dir])
    key = _outputs_key(records)
    files = None if force else _current_outputs(out, key)
    if files is None:  # something changed: stacked tables, statistics, figures and report anew
        from neckmatch.report import write_cohort_outputs

        files = write_cohort_outputs(out, records)
        rel = {name: os.path.relpath(path, out) for name, path in files.items()}
        stamp = {"outputs_key": key, "neckmatch": __version__, "files": rel}
        write_text(json.dumps(stamp, indent=2) + "\n", out / STAMP)
    return CohortResult(out, tuple(records), files)


def _outputs_key(records: Iterable[CaseRecord]) -> str:
    """What the cohort-level outputs depend on: each case's id and its output's fingerprint (or its error)."""
    rows = [(r.case_id, f"failed: {r.error}" if r.status == "failed" else r.fingerprint) for r in records]
    return hashlib.sha256(json.dumps([__version__, rows]).encode()).hexdigest()


def _current_outputs(out_dir: Path, key: str) -> dict[str, Path] | None:
    """The cohort-level files of an earlier run of exactly the same case outputs, if all are still there."""
    stamp = _stamp(out_dir)
    if stamp is None or stamp.get("outputs_key") != key:
        return None
    files = {name: out_dir / rel for name, rel in (stamp.get("files") or {}).items()}
    return files if files and all(p.is_file() for p in files.values()) else None


def records_frame(records: Iterable[CaseRecord]) -> pd.DataFrame:
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


def stack_case_csvs(out_dir: Path, records: Iterable[CaseRecord], name: str) -> pd.DataFrame:
    """Concatenate one per-case CSV (``OUT/<case_id>/<name>``) of the finished (ok or skipped) cases, in case
    order; an empty frame where no case has it."""
    done = [r for r in records if r.status != "failed"]
    paths = [p for p in (out_dir / r.case_id / name for r in done) if p.is_file()]
    frames = [_read_stacked(chunk) for chunk in _same_header_runs(paths)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def stack_truth_tables(out_dir: Path, records: Iterable[CaseRecord]) -> dict[str, pd.DataFrame]:
    """Concatenate the per-case truth tables of the finished (ok or skipped) cases, in case order."""
    records = list(records)
    return {key: stack_case_csvs(out_dir, records, f"truth_{key}.csv") for key in TRUTH_KEYS}


def _same_header_runs(paths: list[Path]) -> Iterator[list[str]]:
    """The files' texts in runs of consecutive files with the same header line (usually one run)."""
    run: list[str] = []
    for path in paths:
        text = path.read_text(encoding="utf-8")
        if run and text.partition("\n")[0] != run[0].partition("\n")[0]:
            yield run
            run = []
        run.append(text)
    if run:
        yield run


def _read_stacked(texts: list[str]) -> pd.DataFrame:
    """One frame from CSV texts with the same header, parsed at once (one dtype per column from all rows)."""
    head, _, first = texts[0].partition("\n")
    bodies = [first] + [t.partition("\n")[2] for t in texts[1:]]
    body = "".join(b if not b or b.endswith("\n") else b + "\n" for b in bodies)
    return pd.read_csv(io.StringIO(f"{head}\n{body}"), keep_default_na=False, na_values=[""], dtype={"case_id": str})


def _parquet_ready(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with every column of mixed value types as text (Parquet needs one type per column).

    A carried-through pathology column (``path_deposit_mm``) reads as numbers in one case and as text in another
    (fragments joined: ``8.2;1.1``), so the stacked column mixes float and str.

    Examples
    --------
    >>> out = _parquet_ready(pd.DataFrame({"a": [8.2, "8.2;1.1", None], "b": [1, 2, 3]}))
    >>> out["a"].tolist()[:2], bool(out["a"].isna().iloc[2]), out["b"].tolist()
    (['8.2', '8.2;1.1'], True, [1, 2, 3])
    """
    out = frame
    for col in [c for c in frame.columns if pd.api.types.is_object_dtype(frame[c])]:
        if len({type(v) for v in frame[col] if not pd.isna(v)}) > 1:
            out = frame.copy() if out is frame else out
            out[col] = [None if pd.isna(v) else str(v) for v in frame[col]]
    return out


def write_tables(frames: dict[str, pd.DataFrame], tables_dir: Path) -> dict[str, Path]:
    """Write stacked truth tables as CSV and Parquet, atomically."""
    files = {}
    for key, frame in frames.items():
        files[f"truth_{key}.csv"] = write_csv(frame, tables_dir / f"truth_{key}.csv")
        with atomic_path(tables_dir / f"truth_{key}.parquet") as tmp:
            _parquet_ready(frame).to_parquet(tmp, index=False)
        files[f"truth_{key}.parquet"] = tables_dir / f"truth_{key}.parquet"
    return files
