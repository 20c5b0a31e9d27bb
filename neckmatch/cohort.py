"""Cohort runs: every case of a study folder, in parallel, resumable, with a progress bar and a report.

``run_cohort(cohort_dir, out_dir)`` finds every case folder (a folder holding ``case.json``), runs the per-case
pipeline (:func:`neckmatch.pipeline.run_case`: levels, specimen, matching, truth tables) and the maps on each,
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

from neckmatch._version import __version__
from neckmatch.errors import InputError, NeckmatchError
from neckmatch.io.atomic import replace_dir, write_text
from neckmatch.io.ids import safe_join
from neckmatch.io.outdir import inputs_fingerprint, write_marker
from neckmatch.io.results import CaseResult
from neckmatch.model import Case

__all__ = [
    "CaseRecord",
    "CohortResult",
    "default_workers",
    "find_cases",
    "input_fingerprint",
    "run_case_task",
    "run_cohort",
]

STAMP = "run.json"
STAGING = ".staging"
# Names the cohort run writes at the top of OUT: a case id may not be one of them.
RESERVED_NAMES = frozenset({"tables", "stats", "figures", "cases.csv", "report.html", "run.json"})
TRUTH_KEYS = ("nodes", "reads", "levels", "sides", "patient")
_MMAP_THRESHOLD = 1 << 20  # bytes; see _worker_init
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


def _case_id(case_dir: Path, index: int = 0) -> str:
    """The case id from case.json; a neutral ``case0007`` (the case's 1-based position) when case.json is
    unreadable or its id is not a valid one (a folder name may be a patient's name: it never appears)."""
    from neckmatch.io.ids import is_valid_case_id

    try:
        cid = json.loads((case_dir / "case.json").read_text(encoding="utf-8"))["case_id"]
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        cid = None
    cid = cid.strip() if isinstance(cid, str) else cid
    return cid if is_valid_case_id(cid) else f"case{index:04d}"


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
    from neckmatch.io.case import read_case
    from neckmatch.io.results import write_results
    from neckmatch.pipeline import run_case

    t0 = time.perf_counter()
    staging = safe_join(out_root, STAGING, f"{case_id}.{os.getpid()}")
    final = safe_join(out_root, case_id)
    shutil.rmtree(staging, ignore_errors=True)
    try:
        _check_ours(final)
        case = read_case(case_dir)  # read once: the pipeline and the maps share it
        result = run_case(case, settings)
        staging.mkdir(parents=True)
        write_results(result, staging)
        if maps:
            _render_maps(case, result, staging)
        write_marker(staging, {"command": "run", "case_id": case_id, "inputs_sha256": inputs_fingerprint(case_dir)})
        seconds = time.perf_counter() - t0
        stamp = {"fingerprint": fingerprint, "neckmatch": __version__, "seconds": round(seconds, 3),
                 "summary": result.summary, "case_dir": str(Path(case_dir).resolve())}
        (staging / STAMP).write_text(json.dumps(stamp, indent=2, default=str), encoding="utf-8")
        replace_dir(staging, final)
        return CaseRecord(case_id, str(case_dir), "ok", "", seconds, dict(result.summary), fingerprint)
    except Exception as exc:  # a bad case is recorded, the run goes on
        shutil.rmtree(staging, ignore_errors=True)
        if _is_ours(final):
            _remove_dir(final)  # an older result of inputs that now fail would contradict cases.csv
        return CaseRecord(case_id, str(case_dir), "failed", _one_line(exc, case_dir, case_id), time.perf_counter() - t0)
    finally:
        _return_freed_memory()


def _libc() -> Any:
    """The C library (glibc's ``mallopt`` / ``malloc_trim``), or None where there is none to call (not Linux, musl)."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None
    except OSError:
        return None


def _return_freed_memory() -> None:
    """Give the heap memory freed by a finished case back to the system (glibc ``malloc_trim``; a few ms): a
    worker's resident memory otherwise ratchets up from case to case (~100 MB after 3 cases)."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


def _map_large_blocks() -> None:
    """Allocate every block of :data:`_MMAP_THRESHOLD` bytes or more in pages of its own, returned to the system
    when freed (glibc ``mallopt(M_MMAP_THRESHOLD)``). By default glibc raises that threshold as large blocks are
    freed, after which the large temporary arrays of the next case come from the heap, whose freed gaps stay
    resident: a worker's peak memory was 30 MB higher. Same speed (measured)."""
    libc = _libc()
    if libc is not None:
        libc.mallopt(-3, _MMAP_THRESHOLD)  # M_MMAP_THRESHOLD = -3


def _is_ours(folder: Path) -> bool:
    """A case output folder neckmatch wrote (its run stamp or output marker), or no folder at all."""
    from neckmatch.io.outdir import MARKER

    return not folder.exists() or (folder / STAMP).is_file() or (folder / MARKER).is_file()


def _is_run_folder(out: Path) -> bool:
    """A results folder a run may write into: none yet, empty, or made by a run (its stamp; or, for a run killed
    before its first stamp, a staging folder or a case folder with a run stamp)."""
    if not out.is_dir() or (out / STAMP).is_file():
        return not out.exists() or out.is_dir()
    entries = list(out.iterdir())
    return not entries or any(p.name == STAGING or (p / STAMP).is_file() for p in entries)


def _check_ours(folder: Path) -> None:
    if not _is_ours(folder):
        raise InputError(folder, "", "exists and was not written by neckmatch; refusing to replace it")


def _render_maps(case: Case, result: CaseResult, results_dir: Path) -> None:
    from neckmatch.viz.maps import render_maps

    # in memory (nothing read again); serially: the run's other workers keep the cores busy
    render_maps(case, results_dir / "maps", result.tables, result.specimen, overlap=False)


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
    for index, case_dir in enumerate(cases, 1):
        cid = _case_id(case_dir, index)
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


@contextmanager
def _sigint_held() -> Iterator[None]:
    """Hold Ctrl-C back while the pool starts its workers, then raise it: a spawned worker reads its start-up data
    from a pipe the parent writes after starting it, and a KeyboardInterrupt in between left the worker reading
    half of it (it printed a traceback). Only in the main thread, where a Python Ctrl-C handler is installed
    (Python's own, or the command line's that notes it, :mod:`neckmatch.clierrors`); that handler is put back and
    given the held Ctrl-C."""
    import signal
    import threading

    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or not callable(previous):
        yield
        return
    caught: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        previous(signal.SIGINT, None)  # Python's own raises KeyboardInterrupt
        raise KeyboardInterrupt


def _run_local(tasks: list[_Task], out_dir: Path, settings: Any, maps: bool, workers: int) -> Iterator[CaseRecord]:
    """Run tasks in a spawn-context process pool with BLAS threads capped at one per worker."""
    if workers <= 1 or len(tasks) <= 1:
        for t in tasks:
            yield run_case_task(str(t.case_dir), str(out_dir), t.case_id, t.fingerprint, t.settings or settings, maps)
        return
    with _capped_blas_env():
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"),
                                   initializer=_worker_init, initargs=(os.getpid(),))
        finished = False
        try:
            with _sigint_held():  # submit starts the workers
                pending: dict[Future[CaseRecord], _Task] = {
                    pool.submit(run_case_task, str(t.case_dir), str(out_dir), t.case_id, t.fingerprint,
                                t.settings or settings, maps): t
                    for t in tasks
                }
            _prepare_report()
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    task = pending.pop(fut)
                    try:
                        yield fut.result()
                    except Exception as exc:  # a worker killed (out of memory, ...): that case failed, run goes on
                        yield _failed(task, exc)
            finished = True
        finally:  # on Ctrl-C: drop the queued cases and stop the running ones (their staging is cleaned on rerun)
            if finished:  # the workers exit while the report is written (their exit took 0.5-1.7 s)
                pool.shutdown(wait=False)
            else:
                _terminate_workers(pool)
                try:
                    pool.shutdown(wait=False, cancel_futures=True)
                except RuntimeError:  # interrupted while the pool was still starting its threads
                    pass


def _prepare_report() -> None:
    """Import the report's modules (statistics, plots: ~1.5 s) in a thread while the workers run the cases: the
    report is written after the last case, when one of the two cores of a small machine would otherwise wait."""
    import threading

    def load() -> None:
        import neckmatch.report
        import neckmatch.stats.reader_study
        import neckmatch.stats.report
        import neckmatch.viz.learning
        import neckmatch.viz.plots  # noqa: F401

    threading.Thread(target=load, daemon=True, name="neckmatch-report-imports").start()


def _worker_init(parent_pid: int) -> None:
    """In each worker: ignore Ctrl-C (the parent stops the workers) and die with the parent, even on ``kill -9``
    (Linux: the kernel's parent-death signal; elsewhere a thread that watches the parent's pid)."""
    import signal
    import sys
    import threading

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _map_large_blocks()
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG = 1
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="neckmatch-parent-watch").start()


def _terminate_workers(pool: ProcessPoolExecutor) -> None:
    """Stop the pool's worker processes now (an interrupted run)."""
    for proc in list(getattr(pool, "_processes", {}).values()):
        try:
            proc.terminate()
        except (OSError, ValueError, AttributeError):
            pass


def _run_dask(
    tasks: list[_Task], out_dir: Path, settings: Any, maps: bool, address: str, workers: int,
    cohort_dir: Path, created: bool = False,
) -> Iterator[CaseRecord]:  # fmt: skip
    """Run tasks on a dask.distributed cluster (``address`` = scheduler address, or ``local``).

    Every worker is asked first whether it sees ``cohort_dir`` and ``out_dir`` (absolute, resolved on the client)
    and runs the same software (:mod:`neckmatch.cluster`); the per-case task is the same as on the local pool.
    """
    from neckmatch.cluster import connect, run_on_cluster

    with connect(address, workers, env={k: "1" for k in _BLAS_ENV}) as client:
        yield from run_on_cluster(client, tasks, out_dir, cohort_dir, settings, maps, run_case_task, _failed, created)


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
    if dask:  # every path a worker sees is absolute, resolved here on the client
        cohort_dir, out = Path(cohort_dir).resolve(), out.resolve()
    created = not out.exists()
    cases = find_cases(cohort_dir)
    if not cases:
        raise InputError(cohort_dir, "", "holds no case folder (no case.json found)")
    if not _is_run_folder(out):
        raise InputError(out, "", "results folder is not empty and holds no earlier neckmatch run; refusing to "
                         "write into it (choose an empty folder)")
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
        runner = _run_dask(todo, out, settings, maps, dask, n_workers, Path(cohort_dir), created)
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
