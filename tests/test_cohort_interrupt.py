"""A real ``neckmatch run`` in a subprocess, interrupted: Ctrl-C (SIGINT) exits 130 and leaves no worker
process; ``kill -9`` of the parent leaves no worker either; no half-written case folder is left (that a rerun
then equals an uninterrupted run is tests/test_cohort.py::test_real_kill_then_rerun_equals_uninterrupted)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from neckmatch.synth import SynthParams, generate_cohort

SCRIPT = Path(sys.executable).with_name("neckmatch")
pytestmark = pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")


def _children(pid: int) -> set[int]:
    out: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out |= {int(c) for c in (task / "children").read_text().split()}
        except OSError:
            pass
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")  # a zombie has exited


def _workers(pid: int) -> set[int]:
    found = set()
    for child in _children(pid):
        try:
            cmd = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in cmd:
            found.add(child)
    return found


def _wait_for(predicate, what: str, guard_s: float = 180.0) -> None:
    """Poll until ``predicate()``; the guard only stops a broken run from hanging the suite."""
    deadline = time.monotonic() + guard_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cohort")
    generate_cohort(2, 11, root, SynthParams())
    return root


def _start(cohort: Path, out: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([str(SCRIPT), "run", str(cohort), "--out", str(out), "--workers", "2", "--no-maps"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "kill-9"])
def test_interrupted_run_leaves_no_worker_and_no_half_case(cohort: Path, tmp_path: Path, sig: signal.Signals) -> None:
    out = tmp_path / "out"
    proc = _start(cohort, out)
    workers: set[int] = set()

    def started() -> bool:
        workers.update(_workers(proc.pid))
        return bool(workers) or proc.poll() is not None

    _wait_for(started, "a worker process started")
    assert proc.poll() is None, proc.communicate()
    os.kill(proc.pid, sig)
    _, err = proc.communicate()
    if sig == signal.SIGINT:
        assert proc.returncode == 130, err
        assert "Traceback" not in err and [ln for ln in err.splitlines() if ln.strip()][-1] == "interrupted"
    else:
        assert proc.returncode == -signal.SIGKILL
    _wait_for(lambda: not any(_alive(w) for w in workers), f"workers {sorted(workers)} exited")
    for case in (p for p in out.iterdir() if p.name.startswith("SYN")):
        assert (case / "run.json").is_file(), f"half-written {case.name}"
