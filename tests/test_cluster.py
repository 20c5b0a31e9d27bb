"""Cohort runs on a real dask cluster (neckmatch.cluster): a scheduler and workers started as separate processes
on 127.0.0.1, a relative cohort path, a worker killed mid-run, the preflight; plus the worker check itself."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest

from neckmatch.cluster import (
    WorkerCheck,
    check_worker,
    environment_versions,
    lost_worker_error,
    make_check,
    travelling_settings,
)
from neckmatch.cohort import CaseRecord, input_fingerprint, run_case_task, run_cohort
from neckmatch.errors import NeckmatchError
from neckmatch.pipeline import Settings
from neckmatch.synth import generate_cohort
from tests.cli_helpers import run_main

SEED = 2020
GOOD = ("SYN001", "SYN002", "SYN003")
BAD = "SYN004"  # its label map is not a NIfTI: a failed case, on the cluster as locally
START_S = 60.0  # bound of every wait for a process (scheduler up, workers joined, run finished)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(predicate: Callable[[], bool], what: str, procs: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + START_S
    while not predicate():
        dead = [p.args for p in procs if p.poll() is not None]
        if dead or time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached (exited: {dead})")
        time.sleep(0.05)


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


class Cluster:
    """A dask scheduler and workers, each a process group of its own, all killed by :meth:`stop`."""

    def __init__(self, scratch: Path, allowed_failures: int = 3) -> None:
        self.scratch = scratch
        self.env = {"DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": str(allowed_failures)}
        self.port = _free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        # --no-dashboard still serves http (health, metrics): on a free port, not 8787 that others may hold
        self._start("scheduler", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", str(self.port),
                    "--no-dashboard", "--dashboard-address", "127.0.0.1:0")  # fmt: skip
        _wait(lambda: _port_open(self.port), "scheduler listening", list(self.procs.values()))

    def _start(self, name: str, module: str, *args: str, hide: Path | None = None) -> None:
        env = {**os.environ, **self.env, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        cmd = [sys.executable, "-m", module, *args]
        if hide is not None:  # a private mount namespace with an empty tmpfs over `hide`
            cmd = ["unshare", "--mount", "sh", "-c", 'mount -t tmpfs none "$0" && exec "$@"', str(hide), *cmd]
        with (self.scratch / f"{name}.log").open("wb") as log:  # the child keeps its own descriptor
            self.procs[name] = subprocess.Popen(cmd, cwd=self.scratch, stdout=log, stderr=subprocess.STDOUT, env=env,
                                                start_new_session=True)  # fmt: skip

    def add_worker(self, name: str, *args: str, hide: Path | None = None) -> None:
        """Start ``dask worker`` (one single-threaded process under a nanny) in the scratch folder."""
        local = str(self.scratch / name)
        self._start(name, "distributed.cli.dask_worker", self.address, "--nthreads", "1", "--nworkers", "1",
                    "--no-dashboard", "--name", name, "--local-directory", local, *args, hide=hide)  # fmt: skip

    def workers(self) -> dict[str, str]:
        """Worker name -> address, as the scheduler sees them."""
        from distributed import Client

        with Client(self.address, timeout="20s") as c:
            return {str(w["name"]): addr for addr, w in c.scheduler_info()["workers"].items()}

    def wait_workers(self, names: set[str]) -> dict[str, str]:
        found: dict[str, str] = {}

        def joined() -> bool:
            found.update(self.workers())
            return names <= set(found)

        _wait(joined, f"workers {sorted(names)} joined", list(self.procs.values()))
        return found

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

    def stop(self) -> None:
        for name in [n for n in self.procs if n != "scheduler"] + ["scheduler"]:
            if name in self.procs:
                self.kill(name)


@pytest.fixture
def cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """A fresh scheduler (its own scratch folder as working folder); every process killed at the end.
    ``@pytest.mark.parametrize("cluster", [n], indirect=True)`` sets dask's allowed failures per task."""
    scratch = Path(tempfile.mkdtemp(prefix="nm-dask-"))  # the processes' working folder: not the client's
    c = Cluster(scratch, getattr(request, "param", 3))
    try:
        yield c
    finally:
        c.stop()
        shutil.rmtree(scratch, ignore_errors=True)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three synthetic cases and one whose label map is broken (never modified)."""
    root = tmp_path_factory.mktemp("cluster") / "cohort"
    generate_cohort(len(GOOD) + 1, SEED, root)
    (root / BAD / "mri" / "nodes.nii.gz").write_bytes(b"not a nifti")
    return root


@pytest.fixture(scope="module")
def local(cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, CaseRecord]]:
    """Each case run in-process by the per-case task of a local run: its output folder and the records."""
    out = tmp_path_factory.mktemp("local") / "out"
    fp = Settings().fingerprint() + "|maps=False"
    records = {cid: run_case_task(str(cohort / cid), str(out), cid, input_fingerprint(cohort / cid, fp), Settings(),
                                  False) for cid in (*GOOD, BAD)}  # fmt: skip
    assert [r.status for r in records.values()] == ["ok"] * len(GOOD) + ["failed"]
    return out, records


def _assert_same_as_local(out: Path, local: tuple[Path, dict[str, CaseRecord]]) -> None:
    """Every case's output folder byte-identical to the local run's (every file), the failed case's error the
    same, no hidden leftovers (staging folders, the preflight marker)."""
    ref, records = local
    for cid in GOOD:
        files = sorted(p.relative_to(ref / cid) for p in (ref / cid).rglob("*") if p.is_file())
        assert files == sorted(p.relative_to(out / cid) for p in (out / cid).rglob("*") if p.is_file())
        for rel in files:
            if rel.name != "run.json":  # it holds the seconds the case took
                assert (out / cid / rel).read_bytes() == (ref / cid / rel).read_bytes(), f"{cid}/{rel}"
        assert json.loads((out / cid / "run.json").read_text())["fingerprint"] == records[cid].fingerprint
    assert not (out / BAD).exists()
    cases = pd.read_csv(out / "cases.csv", keep_default_na=False).set_index("case_id")
    assert list(cases.index) == [*GOOD, BAD]
    for cid, rec in records.items():
        assert cases.loc[cid, "status"] == rec.status and cases.loc[cid, "error"] == rec.error, cid
    assert not [p for p in out.rglob(".*")], "hidden leftovers (staging, preflight marker)"


def test_relative_paths_and_a_worker_killed_mid_run_give_the_local_outputs(
    cluster: Cluster, cohort: Path, local: tuple[Path, dict[str, CaseRecord]], tmp_path: Path
) -> None:
    cluster.add_worker("w1")
    cluster.add_worker("w2")
    addresses = cluster.wait_workers({"w1", "w2"})
    shutil.copytree(cohort, tmp_path / "cohort")
    cmd = [sys.executable, "-m", "neckmatch.cli", "run", "cohort", "--out", "out", "--no-maps", "--dask",
           cluster.address]  # fmt: skip
    from distributed import Client

    with Client(cluster.address, timeout="20s") as watcher:
        with (tmp_path / "run.log").open("wb") as log:
            run = subprocess.Popen(cmd, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            on_w1: list[str] = []

            def w1_busy() -> bool:  # w1 holds a case (the first one also imports the pipeline: seconds of work)
                on_w1[:] = [str(k) for k in watcher.processing([addresses["w1"]]).get(addresses["w1"], ())]
                return any(k.startswith("neckmatch-") for k in on_w1)

            _wait(w1_busy, "a case on worker w1", [run])
            cluster.kill("w1")
            run.wait(timeout=START_S)
        finally:
            if run.poll() is None:
                os.killpg(run.pid, signal.SIGKILL)
                run.wait(timeout=30)
    output = (tmp_path / "run.log").read_text()
    assert run.returncode == 1, output  # one case failed (its own bad input), the rest done
    assert not (cluster.scratch / "out").exists() and not (cluster.scratch / "cohort").exists()
    _assert_same_as_local(tmp_path / "out", local)
    ran_on = dict(re.findall(r"^(SYN\d+): (?:ok|failed) on (tcp://\S+)", output, flags=re.M))
    assert set(ran_on) == {*GOOD, BAD}, output
    lost = {k.split("-")[1] for k in on_w1 if k.startswith("neckmatch-")}
    assert lost and all(ran_on[cid] == addresses["w2"] for cid in lost), (lost, ran_on)  # rerun on the survivor
    assert output.startswith(f"dask scheduler {cluster.address}: 2 workers\n")  # --no-dashboard: none shown


def _can_unshare_mounts() -> bool:
    return shutil.which("unshare") is not None and subprocess.run(
        ["unshare", "--mount", "true"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0


@pytest.mark.skipif(not _can_unshare_mounts(), reason="needs a private mount namespace (unshare --mount)")
def test_a_worker_that_cannot_see_the_cohort_stops_the_run_before_anything_is_written(
    cluster: Cluster, cohort: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    study = tmp_path / "study"  # on this worker an empty disk is mounted there: the shared filesystem is missing
    shutil.copytree(cohort / "SYN001", study / "cohort" / "SYN001")
    cluster.add_worker("outsider", hide=study)
    addresses = cluster.wait_workers({"outsider"})
    monkeypatch.chdir(study)
    code = run_main(monkeypatch, "run", "cohort", "--out", str(tmp_path / "out"), "--no-maps", "--dask",
                    cluster.address)  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert err == (f"error: worker {addresses['outsider']}: cannot see the cohort folder {study / 'cohort'}: it does "
                   "not exist on this worker (is the shared filesystem mounted there?)\n")  # fmt: skip
    assert not (tmp_path / "out").exists()


def _huge_label_map(path: Path, shape: tuple[int, int, int]) -> None:
    """A small .nii.gz file that decompresses to a uint8 label map of ``shape`` (gzip members of zeros
    repeated), so reading it needs far more memory than the file's size."""
    import gzip

    import nibabel as nib
    import numpy as np

    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(np.uint8)
    header.set_qform(np.eye(4), code=1)
    header.set_sform(np.eye(4), code=1)
    header["vox_offset"] = 352
    head = header.binaryblock + b"\0" * 4  # no extensions
    chunk = 1 << 24
    total = int(np.prod(shape))
    zeros = gzip.compress(b"\0" * chunk, compresslevel=9)
    with path.open("wb") as fh:
        fh.write(gzip.compress(head + b"\1" * 8))  # a few voxels of label 1
        for _ in range((total - 8) // chunk):
            fh.write(zeros)
        fh.write(gzip.compress(b"\0" * ((total - 8) % chunk)))


@pytest.mark.parametrize("cluster", [0], indirect=True)
def test_a_case_that_kills_its_worker_is_failed_with_its_reason_not_retried(
    cluster: Cluster, cohort: Path, tmp_path: Path
) -> None:
    cluster.add_worker("small", "--memory-limit", "300MB")  # its nanny ends it above 95 % of that
    addresses = cluster.wait_workers({"small"})
    case = Path(shutil.copytree(cohort / "SYN001", tmp_path / "cohort" / "SYN001"))
    _huge_label_map(case / "mri" / "nodes.nii.gz", (640, 640, 640))  # 0.26 GB uint8 (under the reader's limit)
    result = run_cohort(tmp_path / "cohort", tmp_path / "out", dask=cluster.address, maps=False)
    (record,) = result.records
    assert record.status == "failed"
    assert record.error == (f"the case killed its worker once (last {addresses['small']}: out of memory, a crash "
                            "in native code or a lost machine; see that worker's log); not retried")  # fmt: skip
    assert not (tmp_path / "out" / "SYN001").exists() and not list((tmp_path / "out").rglob(".*"))


def _check(tmp_path: Path, **changes: object) -> tuple[WorkerCheck, Settings]:
    cohort = tmp_path / "cohort"
    (cohort / "P1").mkdir(parents=True, exist_ok=True)
    (cohort / "P1" / "case.json").write_text('{"case_id": "P1"}')
    settings = Settings()
    check = make_check(cohort, tmp_path / "out", cohort / "P1" / "case.json", settings)
    return WorkerCheck(**{**check.__dict__, **changes}), settings  # type: ignore[arg-type]


def test_check_worker_accepts_the_client_itself(tmp_path: Path) -> None:
    check, settings = _check(tmp_path)
    assert check_worker(check, settings) == ""
    assert Path(check.marker).read_text() == check.token and Path(check.marker).is_relative_to(tmp_path / "out")
    assert [p.name for p in Path(check.marker).parent.iterdir()] == [Path(check.marker).name]  # its probe removed


def test_check_worker_names_the_path_it_cannot_see_or_use(tmp_path: Path) -> None:
    check, settings = _check(tmp_path)
    missing = tmp_path / "elsewhere"
    assert check_worker(WorkerCheck(**{**check.__dict__, "cohort_dir": str(missing)}), settings) == (
        f"cannot see the cohort folder {missing}: it does not exist on this worker "
        "(is the shared filesystem mounted there?)"
    )
    (tmp_path / "cohort" / "P1" / "case.json").write_text('{"case_id": "P2"}')  # another disk at the same path
    assert check_worker(check, settings).startswith(f"sees another cohort folder at {tmp_path / 'cohort'}: ")
    (tmp_path / "cohort" / "P1" / "case.json").write_text('{"case_id": "P1"}')
    Path(check.marker).unlink()  # a results folder at the same path that is not the client's
    assert check_worker(check, settings).startswith(f"cannot see the results folder {tmp_path / 'out'} the client sees")


def test_check_worker_refuses_other_software_and_settings(tmp_path: Path) -> None:
    check, settings = _check(tmp_path)
    versions = tuple((k, "0.0.1" if k == "neckmatch" else v) for k, v in environment_versions())
    msg = check_worker(WorkerCheck(**{**check.__dict__, "versions": versions}), settings)
    assert msg.startswith(f"runs neckmatch {environment_versions()[0][1]}, the client neckmatch 0.0.1")
    assert check_worker(check, Settings(tolerance_mm=1.0)).startswith("computes another settings fingerprint")
    decisions = tmp_path / "decisions.csv"
    decisions.write_text("mr_node,path_node,action\n")
    with_file = Settings(constraints=str(decisions))
    assert check_worker(WorkerCheck(**{**check.__dict__, "settings_fingerprint": with_file.fingerprint()}),
                        with_file) == ""  # fmt: skip
    decisions.unlink()  # the client's constraints file is not on the worker's disk
    assert check_worker(check, with_file) == f"cannot read the constraints file {decisions}"


def test_relative_constraints_travel_as_absolute_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "decisions.csv").write_text("mr_node,path_node,action\n")
    rel = Settings(constraints="decisions.csv")
    sent = travelling_settings(rel)
    assert sent.constraints == str(tmp_path / "decisions.csv") and sent.fingerprint() == rel.fingerprint()
    assert travelling_settings(Settings()) == Settings()


def test_a_case_that_kills_its_workers_gets_one_plain_reason() -> None:
    from distributed import KilledWorker

    class _Worker:
        address = "tcp://10.0.0.7:4000"

    exc = lost_worker_error(KilledWorker("neckmatch-P1-abc", _Worker(), 3))
    assert isinstance(exc, NeckmatchError)
    assert str(exc).startswith("the case killed its worker 4 times (last tcp://10.0.0.7:4000: out of memory")
    other = ValueError("x")
    assert lost_worker_error(other) is other


def test_a_worker_failing_the_check_runs_no_case(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import distributed

    from neckmatch.cluster import WorkerCheckError, worker_task

    class _Worker:
        address = "tcp://10.0.0.9:4000"

    monkeypatch.setattr(distributed, "get_worker", lambda: _Worker())
    check, settings = _check(tmp_path)
    ran: list[str] = []

    def run_case(case_dir: str, *args: object) -> str:
        ran.append(case_dir)
        return "record"

    assert worker_task(run_case, check, "P1", str(tmp_path / "out"), "P1", "fp", settings, False) == (
        "record", "tcp://10.0.0.9:4000")  # fmt: skip
    late = WorkerCheck(**{**check.__dict__, "token": "another-run", "cohort_dir": str(tmp_path / "gone")})
    with pytest.raises(WorkerCheckError, match=r"^worker tcp://10\.0\.0\.9:4000: cannot see the cohort folder "):
        worker_task(run_case, late, "P2", str(tmp_path / "out"), "P2", "fp", settings, False)
    assert ran == ["P1"]
