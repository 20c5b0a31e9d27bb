"""Cohort runs on a dask.distributed cluster: a preflight of every worker, per-case logs, lost workers.

:func:`neckmatch.cohort.run_cohort` with ``dask=ADDRESS`` hands its planned cases to :func:`run_on_cluster`.
What a cluster of several machines adds to a local run, and how it is handled here:

- **Paths.** The client resolves the cohort and results folders to absolute paths before anything is sent
  (:func:`neckmatch.cohort.run_cohort` does it), so a worker never resolves a path against its own working
  folder; a relative constraints file in the settings is resolved here too (:func:`travelling_settings`).
- **Preflight.** Before the first case, every worker answers :func:`check_worker`: can it read the cohort folder
  (and the very bytes the client read of one case), write the results folder (and see the marker file the client
  just wrote there, so it is the same folder), and does it run the same neckmatch, Python, numpy, scipy and
  pandas, and compute the same settings fingerprint? A worker that joins later answers the same question
  before its first case (:func:`worker_task`). A worker that fails stops the run with one line naming the
  worker and the path (:class:`WorkerCheckError`, exit code 2); before the first case, nothing is written.
- **Faults.** Each case is written to a staging folder and renamed into place when complete
  (:func:`neckmatch.cohort.run_case_task`), so a worker lost mid-case leaves no case folder a later run would
  take as done. dask reruns the cases of a lost worker elsewhere; a case that kills ``allowed-failures + 1``
  workers (dask's ``distributed.scheduler.allowed-failures``, 3 by default) is recorded as failed with that
  reason (:func:`lost_worker_error`) and not retried.
- **Logs.** One line per case on the ``neckmatch.cluster`` logger (case id, status, the worker that ran it,
  seconds) and one with the scheduler, its workers and its dashboard address when it has one; the CLI prints
  them above its progress bar (:func:`neckmatch.progress.cohort_progress`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import platform
import shutil
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from neckmatch._version import __version__
from neckmatch.errors import NeckmatchError

__all__ = [
    "PREFLIGHT_DIR",
    "WORKER_WAIT_S",
    "ClusterError",
    "WorkerCheck",
    "WorkerCheckError",
    "check_worker",
    "connect",
    "environment_versions",
    "lost_worker_error",
    "make_check",
    "preflight",
    "run_on_cluster",
    "travelling_settings",
    "worker_task",
]

log = logging.getLogger("neckmatch.cluster")

PREFLIGHT_DIR = ".preflight"  # inside OUT/.staging: the client's marker file, removed with the staging folder
WORKER_WAIT_S = 60.0  # how long a run waits for the first worker of a scheduler that has none
_CHECKED: dict[str, str] = {}  # per worker process: the answer of check_worker, by run token


class ClusterError(NeckmatchError):
    """The cluster cannot run the cohort (scheduler unreachable, no worker joined); the CLI exits 2."""


class WorkerCheckError(ClusterError):
    """A worker failed the preflight: it cannot read the cohort, write the results or runs other software."""


class _Task(Protocol):
    """A planned case (:class:`neckmatch.cohort._Task`): only these are read here (``settings``: the case's own,
    or None for the run's)."""

    @property
    def settings(self) -> Any: ...

    @property
    def case_dir(self) -> Path: ...

    @property
    def case_id(self) -> str: ...

    @property
    def fingerprint(self) -> str: ...


@dataclass(frozen=True)
class WorkerCheck:
    """What every worker must confirm before its first case (built by :func:`make_check` on the client).

    Parameters
    ----------
    cohort_dir, out_dir : str
        Absolute paths of the cohort and results folders, as the client resolved them.
    probe : str
        Absolute path of one input file of the cohort (the first case's ``case.json``).
    probe_sha256 : str
        SHA-256 of the probe's bytes as the client read them.
    marker : str
        Absolute path of the marker file the client wrote in the results folder.
    token : str
        The marker's content, unique to this run.
    versions : tuple of (str, str)
        ``(package, version)`` of the client's environment (:func:`environment_versions`).
    settings_fingerprint : str
        The client's ``Settings.fingerprint()``.
    """

    cohort_dir: str
    out_dir: str
    probe: str
    probe_sha256: str
    marker: str
    token: str
    versions: tuple[tuple[str, str], ...]
    settings_fingerprint: str


def environment_versions() -> tuple[tuple[str, str], ...]:
    """The versions a worker must share with the client: neckmatch, Python (major.minor) and the numeric stack.

    Examples
    --------
    >>> dict(environment_versions())["neckmatch"] == __version__
    True
    """
    import numpy
    import pandas
    import scipy

    python = ".".join(platform.python_version_tuple()[:2])
    return (("neckmatch", __version__), ("python", python), ("numpy", numpy.__version__),
            ("scipy", scipy.__version__), ("pandas", pandas.__version__))  # fmt: skip


def travelling_settings(settings: Any) -> Any:
    """``settings`` with a relative constraints path made absolute here, on the client (the fingerprint, which
    reads the file's content, is unchanged)."""
    path = getattr(settings, "constraints", None)
    if path is None or Path(path).is_absolute():
        return settings
    return dataclasses.replace(settings, constraints=str(Path(path).resolve()))


def make_check(cohort_dir: Path, out_dir: Path, probe: Path, settings: Any) -> WorkerCheck:
    """Write the run's marker file into ``out_dir/.staging/.preflight`` and describe what workers must confirm."""
    token = uuid.uuid4().hex
    marker = out_dir / ".staging" / PREFLIGHT_DIR / f"{token}.txt"
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(token, encoding="utf-8")
    return WorkerCheck(
        cohort_dir=str(cohort_dir), out_dir=str(out_dir), probe=str(probe), probe_sha256=_sha256(probe),
        marker=str(marker), token=token, versions=environment_versions(),
        settings_fingerprint=settings.fingerprint(),
    )  # fmt: skip


def _sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def _check_cohort(check: WorkerCheck) -> str:
    """A problem reading the cohort folder, or ``""``."""
    try:
        os.listdir(check.cohort_dir)
    except FileNotFoundError:
        return (f"cannot see the cohort folder {check.cohort_dir}: it does not exist on this worker "
                "(is the shared filesystem mounted there?)")  # fmt: skip
    except OSError as exc:
        return f"cannot read the cohort folder {check.cohort_dir}: {_reason(exc)}"
    try:
        seen = _sha256(check.probe)
    except OSError as exc:
        return f"cannot read the cohort folder {check.cohort_dir}: {check.probe}: {_reason(exc)}"
    if seen != check.probe_sha256:
        return f"sees another cohort folder at {check.cohort_dir}: {check.probe} differs from the client's"
    return ""


def _check_results(check: WorkerCheck) -> str:
    """A problem writing the results folder, or ``""``."""
    try:
        same = Path(check.marker).read_text(encoding="utf-8") == check.token
    except OSError:
        same = False
    if not same:
        return (f"cannot see the results folder {check.out_dir} the client sees (its marker {check.marker} is "
                "missing here: is the shared filesystem mounted?)")  # fmt: skip
    probe = Path(check.marker).with_name(f"{check.token}.{platform.node()}.{os.getpid()}.txt")
    try:
        probe.write_text("ok", encoding="utf-8")
        probe.unlink()
    except OSError as exc:
        return f"cannot write the results folder {check.out_dir}: {_reason(exc)}"
    return ""


def check_worker(check: WorkerCheck, settings: Any) -> str:
    """Run on a worker: ``""`` if it can run the cohort, else the first problem found (one line, with the path).

    Parameters
    ----------
    check : WorkerCheck
        What the client expects (paths, bytes of one input, the marker, versions, settings fingerprint).
    settings : neckmatch.pipeline.Settings
        The settings as the worker unpickled them; their fingerprint must equal the client's.
    """
    mine = dict(environment_versions())
    for name, version in check.versions:
        if mine.get(name) != version:
            return f"runs {name} {mine.get(name, '(none)')}, the client {name} {version}: install the same versions"
    problem = _check_cohort(check) or _check_results(check)
    if problem:
        return problem
    constraints = getattr(settings, "constraints", None)
    if constraints is not None and not os.access(constraints, os.R_OK):
        return f"cannot read the constraints file {constraints}"
    if settings.fingerprint() != check.settings_fingerprint:
        return "computes another settings fingerprint than the client: install the same neckmatch"
    return ""


def _checked(check: WorkerCheck, settings: Any) -> str:
    """:func:`check_worker`, once per worker process and run."""
    if check.token not in _CHECKED:
        _CHECKED[check.token] = check_worker(check, settings)
    return _CHECKED[check.token]


def _preflight_on_worker(check: WorkerCheck, settings: Any) -> str:
    return _checked(check, settings)


def worker_task(
    run_case: Callable[..., Any], check: WorkerCheck, case_dir: str, out_root: str, case_id: str,
    fingerprint: str, settings: Any, maps: bool,
) -> tuple[Any, str]:  # fmt: skip
    """The unit of work on a worker: the preflight (once per worker process), then ``run_case`` on one case.

    Returns the case's record and the address of the worker that ran it; raises :class:`WorkerCheckError`
    (before writing anything) on a worker that fails the preflight, e.g. one that joined after the run began.
    """
    from distributed import get_worker

    worker = get_worker().address
    problem = _checked(check, settings)
    if problem:
        raise WorkerCheckError(f"worker {worker}: {problem}")
    return run_case(case_dir, out_root, case_id, fingerprint, settings, maps), worker


@contextmanager
def connect(address: str, workers: int, env: dict[str, str] | None = None) -> Iterator[Any]:
    """A dask client on the scheduler at ``address``, or on a new LocalCluster of ``workers`` single-threaded
    processes for ``address == "local"`` (``env``: extra environment of its workers); closed on exit. An
    unreachable scheduler is a :class:`ClusterError`."""
    from distributed import Client, LocalCluster

    cluster = None
    if address == "local":
        # ":0": the scheduler's http server (and dashboard, with bokeh) on a free port, never a clash on 8787
        cluster = LocalCluster(n_workers=max(workers, 1), threads_per_worker=1, processes=True,
                               dashboard_address=":0", env=env)  # fmt: skip
        client = Client(cluster)
    else:
        try:
            client = Client(address, timeout="20s")
        except (OSError, ValueError) as exc:
            raise ClusterError(f"cannot reach the dask scheduler at {address}: {' '.join(str(exc).split())}") from None
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _dashboard(client: Any, info: dict[str, Any]) -> str:
    """The scheduler's dashboard address, or ``""`` when it has none: a scheduler started with ``--no-dashboard``
    still lists its HTTP port (health, metrics), so the page is asked for once, briefly."""
    if "dashboard" not in (info.get("services") or {}):
        return ""
    try:
        link = str(client.dashboard_link or "")
        with urllib.request.urlopen(link, timeout=2) as page:  # noqa: S310 - the scheduler's own http address
            return link if page.status == 200 else ""
    except (OSError, ValueError, KeyError, AttributeError, TypeError):
        return ""


def preflight(client: Any, check: WorkerCheck, settings: Any, wait_s: float = WORKER_WAIT_S) -> list[str]:
    """Ask every worker of ``client``'s scheduler :func:`check_worker`; raise :class:`WorkerCheckError` naming the
    first worker that fails (and how many others do). Returns the addresses of the workers checked."""
    try:
        client.wait_for_workers(1, timeout=wait_s)
    except TimeoutError:
        address = client.scheduler.address
        raise ClusterError(f"no dask worker joined the scheduler {address} within {wait_s:g} s") from None
    answers = client.run(_preflight_on_worker, check, settings, on_error="return")
    problems = []
    for worker, answer in sorted(answers.items()):
        if isinstance(answer, BaseException):  # e.g. neckmatch missing or another version without this module
            answer = f"cannot run neckmatch's check: {type(answer).__name__}: {' '.join(str(answer).split())}"
        if answer:
            problems.append(f"worker {worker}: {answer}")
    if problems:
        more = f" (and {len(problems) - 1} other workers)" if len(problems) > 1 else ""
        raise WorkerCheckError(problems[0] + more)
    return sorted(answers)


def lost_worker_error(exc: BaseException) -> BaseException:
    """The reason recorded for a case whose worker died: dask's ``KilledWorker`` as one plain sentence.

    Other exceptions are returned unchanged.
    """
    from distributed import KilledWorker

    if not isinstance(exc, KilledWorker):
        return exc
    last = getattr(exc.last_worker, "address", exc.last_worker)
    times = "once" if exc.allowed_failures == 0 else f"{exc.allowed_failures + 1} times"
    return NeckmatchError(
        f"the case killed its worker {times} (last {last}: out of memory, a crash in native code or a lost machine; "
        "see that worker's log); not retried"
    )


def _cleanup_refused(out_dir: Path, created: bool) -> None:
    """After a failed preflight: remove the staging folder, and the results folder if this run created it."""
    shutil.rmtree(out_dir / ".staging", ignore_errors=True)
    if created and out_dir.is_dir() and not any(out_dir.iterdir()):
        out_dir.rmdir()


def run_on_cluster(
    client: Any,
    tasks: Sequence[_Task],
    out_dir: Path,
    cohort_dir: Path,
    settings: Any,
    maps: bool,
    run_case: Callable[..., Any],
    failed: Callable[[Any, BaseException], Any],
    created: bool = False,
) -> Iterator[Any]:
    """Preflight every worker, then run ``tasks`` on the cluster; yield each case's record as it finishes.

    Parameters
    ----------
    client : distributed.Client
        A connected client (:func:`connect`).
    tasks : sequence
        The cases to run (``case_dir`` absolute, ``case_id``, ``fingerprint``).
    out_dir, cohort_dir : Path
        Absolute results and cohort folders, resolved on the client.
    settings : neckmatch.pipeline.Settings
        The per-case settings (their paths are made absolute here).
    maps : bool
        Render the per-case maps.
    run_case : callable
        The per-case function run on a worker, ``run_case(case_dir, out_root, case_id, fingerprint, settings,
        maps) -> record`` (:func:`neckmatch.cohort.run_case_task`).
    failed : callable
        ``failed(task, exc) -> record`` for a case whose worker died or that dask gave up on.
    created : bool
        ``out_dir`` was created by this run: a failed preflight removes it again.
    """
    from distributed import as_completed

    settings = travelling_settings(settings)
    info = client.scheduler_info()
    dash = _dashboard(client, info)
    log.info("dask scheduler %s: %d workers%s", info.get("address", "?"), len(info.get("workers", {})),
             f", dashboard {dash}" if dash else "")  # fmt: skip
    check = make_check(cohort_dir, out_dir, Path(tasks[0].case_dir) / "case.json", settings)
    try:
        preflight(client, check, settings)
    except ClusterError:
        _cleanup_refused(out_dir, created)
        raise
    futures = {
        client.submit(worker_task, run_case, check, str(t.case_dir), str(out_dir), t.case_id, t.fingerprint,
                      t.settings or settings,
                      maps, key=f"neckmatch-{t.case_id}-{t.fingerprint[:12]}", pure=False): t
        for t in tasks
    }  # fmt: skip
    try:
        for fut in as_completed(futures):
            task = futures[fut]
            try:
                record, worker = fut.result()
            except WorkerCheckError:
                raise  # a worker that joined later and cannot run the cohort: stop (exit 2)
            except Exception as exc:  # the case killed its workers repeatedly (KilledWorker) ...
                record, worker = failed(task, lost_worker_error(exc)), "?"
            log.info("%s: %s on %s (%.1f s)", record.case_id, record.status, worker, record.seconds)
            yield record
    finally:
        client.cancel(list(futures))
