"""Cohort runs (neckmatch.cohort, ``neckmatch run``): end to end on a small synthetic cohort, failing cases,
skipping unchanged cases, resuming after a kill (simulated and real), the dask path and the CLI."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from neckmatch import cli
from neckmatch.cohort import (
    CaseRecord,
    CohortResult,
    find_cases,
    input_fingerprint,
    run_cohort,
)
from neckmatch.errors import InputError
from neckmatch.io.outdir import MARKER
from neckmatch.io.results import RESULT_FILES, TRUTH_KINDS
from neckmatch.pipeline import Settings
from neckmatch.progress import format_cohort_summary
from neckmatch.report import iter_report_links
from neckmatch.synth import generate_cohort

SEED = 808
CASES = ("SYN001", "SYN002", "SYN003")
CASE_CSVS = tuple(f for f in RESULT_FILES if f.endswith(".csv"))


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three synthetic cases (never modified: tests that change inputs copy it first)."""
    root = tmp_path_factory.mktemp("cohort") / "cohort"
    generate_cohort(len(CASES), SEED, root)
    return root


@pytest.fixture(scope="module")
def baseline(cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted in-process run of the cohort without maps (never modified: copy it first)."""
    out = tmp_path_factory.mktemp("baseline") / "out"
    result = run_cohort(cohort, out, workers=1, maps=False)
    assert [r.status for r in result.records] == ["ok"] * len(CASES)
    return out


def _copy(src: Path, dst: Path) -> Path:
    return Path(shutil.copytree(src, dst))


def _assert_same_results(out: Path, reference: Path) -> None:
    """Every per-case CSV byte-identical, the stacked tables equal, no hidden leftovers."""
    for cid in CASES:
        for name in CASE_CSVS:
            assert (out / cid / name).read_bytes() == (reference / cid / name).read_bytes(), f"{cid}/{name}"
    for key in TRUTH_KINDS:
        assert (out / "tables" / f"truth_{key}.csv").read_bytes() == (
            reference / "tables" / f"truth_{key}.csv"
        ).read_bytes()
        pd.testing.assert_frame_equal(
            pd.read_parquet(out / "tables" / f"truth_{key}.parquet"),
            pd.read_parquet(reference / "tables" / f"truth_{key}.parquet"),
        )
    assert (out / "stats" / "accuracy.csv").read_bytes() == (reference / "stats" / "accuracy.csv").read_bytes()
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in reference.iterdir())
    assert not [p for p in out.rglob(".*")], "hidden leftovers of a killed run"


def _assert_links_resolve(out: Path) -> list[str]:
    links = list(iter_report_links((out / "report.html").read_text(encoding="utf-8")))
    assert links, "the report links to no case output"
    missing = [link for link in links if not (out / link).is_file()]
    assert missing == []
    return links


def test_small_cohort_end_to_end(baseline: Path) -> None:
    for cid in CASES:
        assert {p.name for p in (baseline / cid).iterdir()} == {*RESULT_FILES, MARKER, "run.json"}
        stamp = json.loads((baseline / cid / "run.json").read_text())
        assert len(stamp["fingerprint"]) == 64 and stamp["summary"]["case_id"] == cid
    for key in TRUTH_KINDS:
        csv = pd.read_csv(baseline / "tables" / f"truth_{key}.csv", dtype={"case_id": str})
        parquet = pd.read_parquet(baseline / "tables" / f"truth_{key}.parquet")
        assert sorted(csv["case_id"].unique()) == list(CASES) == sorted(parquet["case_id"].unique())
        per_case = sum(len(pd.read_csv(baseline / cid / f"truth_{key}.csv")) for cid in CASES)
        assert len(csv) == len(parquet) == per_case
    assert len(pd.read_csv(baseline / "stats" / "accuracy.csv")) > 0
    cases = pd.read_csv(baseline / "cases.csv", keep_default_na=False)
    assert list(cases["case_id"]) == list(CASES) and set(cases["status"]) == {"ok"}
    links = _assert_links_resolve(baseline)
    assert {f"{cid}/matches.csv" for cid in CASES} <= set(links)
    html = (baseline / "report.html").read_text(encoding="utf-8")
    assert "data:image/png;base64," in html and "<h2>Cases that failed</h2>" in html


def test_failing_cases_do_not_stop_the_run(cohort: Path, tmp_path: Path) -> None:
    src = _copy(cohort, tmp_path / "cohort")
    (src / "SYN002" / "pathology" / "nodes.csv").write_text("node_id,level\nA,IIc\n\x00garbage", encoding="utf-8")
    (src / "SYN003" / "mri" / "reads.csv").unlink()
    out = tmp_path / "out"
    seen: list[tuple[str, str, int, int]] = []
    result = run_cohort(src, out, workers=2, maps=False, on_progress=lambda r, i, n: seen.append((r.case_id,
                        r.status, i, n)))  # fmt: skip
    status = {r.case_id: r.status for r in result.records}
    assert status == {"SYN001": "ok", "SYN002": "failed", "SYN003": "failed"} and result.n_failed == 2
    assert sorted(s[2] for s in seen) == [1, 2, 3] and {s[3] for s in seen} == {3}
    assert not (out / "SYN002").exists() and not (out / "SYN003").exists()
    cases = pd.read_csv(out / "cases.csv", keep_default_na=False).set_index("case_id")
    for cid, needle in (("SYN002", "nodes.csv"), ("SYN003", "reads.csv")):
        error = cases.loc[cid, "error"]
        assert needle in error and "\n" not in error and str(tmp_path) not in error, error
        assert error.startswith(f"{cid}/"), error  # the case folder's path is shown as the case id
    assert cases.loc["SYN001", "error"] == ""
    nodes = pd.read_csv(out / "tables" / "truth_nodes.csv", dtype={"case_id": str})
    assert set(nodes["case_id"]) == {"SYN001"}
    html = (out / "report.html").read_text(encoding="utf-8")
    assert 'class="fail"' in html and "reads.csv" in html
    _assert_links_resolve(out)


def test_rerun_skips_unchanged_and_redoes_changed(cohort: Path, baseline: Path, tmp_path: Path) -> None:
    src = _copy(cohort, tmp_path / "cohort")
    out = _copy(baseline, tmp_path / "out")
    cohort_files = [out / "report.html", out / "cases.csv", out / "tables" / "truth_nodes.parquet"]
    before = [p.stat().st_mtime_ns for p in cohort_files]
    again = run_cohort(src, out, workers=1, maps=False)
    assert [r.status for r in again.records] == ["skipped"] * 3
    assert [p.stat().st_mtime_ns for p in cohort_files] == before  # nothing changed: no report rewritten
    assert again.files["report.html"] == out / "report.html"
    unreachable = run_cohort(src, out, maps=False, dask="tcp://127.0.0.1:9")  # nothing to run: no cluster
    assert [r.status for r in unreachable.records] == ["skipped"] * 3
    assert [r.summary["pairs"] for r in again.records] == [
        json.loads((baseline / c / "summary.json").read_text())["pairs"] for c in CASES
    ]
    _assert_same_results(out, baseline)
    reads = src / "SYN002" / "mri" / "reads.csv"
    reads.write_text(reads.read_text(encoding="utf-8") + "\n", encoding="utf-8")  # same content, new bytes
    changed = run_cohort(src, out, workers=1, maps=False)
    assert [r.status for r in changed.records] == ["skipped", "ok", "skipped"]
    assert (out / "report.html").stat().st_mtime_ns != before[0]
    _assert_same_results(out, baseline)
    retuned = run_cohort(src, out, workers=1, maps=False, settings=Settings(tolerance_mm=1.0))
    assert [r.status for r in retuned.records] == ["ok"] * 3


def test_a_case_json_now_unreadable_fails_under_a_neutral_id(cohort: Path, baseline: Path, tmp_path: Path) -> None:
    src = _copy(cohort, tmp_path / "cohort")
    out = _copy(baseline, tmp_path / "out")
    (src / "SYN001" / "case.json").write_text("{", encoding="utf-8")
    result = run_cohort(src, out, workers=1, maps=False)
    assert [r.status for r in result.records] == ["failed", "skipped", "skipped"]
    assert result.records[0].case_id == "case0001"  # unreadable case.json: a neutral index, never the folder name
    assert "SYN001" not in (out / "cases.csv").read_text() and not list(out.glob(".SYN001*"))
    assert set(pd.read_csv(out / "tables" / "truth_nodes.csv")["case_id"]) == {"SYN002", "SYN003"}


def test_simulated_kill_then_rerun_equals_uninterrupted(cohort: Path, baseline: Path, tmp_path: Path) -> None:
    out = _copy(baseline, tmp_path / "out")
    shutil.rmtree(out / "SYN002")
    half = out / ".staging" / "SYN002.4242"
    half.mkdir(parents=True)
    (half / "levels.csv").write_text("case_id,node\nSYN002,1\n")  # half-written, no run.json
    stale = out / ".SYN003.old.4242"
    shutil.copytree(out / "SYN003", stale)
    (out / "tables" / ".truth_nodes.csv.x1y2.tmp.csv").write_text("case_id\nSYN0")
    (out / "report.html").unlink()  # killed while writing the cohort outputs
    result = run_cohort(cohort, out, workers=1, maps=False)
    assert [r.status for r in result.records] == ["skipped", "ok", "skipped"]
    _assert_same_results(out, baseline)


def _wait_for(predicate, timeout: float, proc: subprocess.Popen[bytes]) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"condition not reached (exit code {proc.poll()})")
        time.sleep(0.02)


def test_real_kill_then_rerun_equals_uninterrupted(cohort: Path, baseline: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "neckmatch.cli", "run", str(cohort), "--out", str(out), "--no-maps", "--workers", "1"]
    with subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True) as proc:
        try:
            _wait_for(lambda: any(out.glob("SYN*/run.json")), 60, proc)
            assert proc.poll() is None, "the run ended before it could be killed"
            os.killpg(proc.pid, signal.SIGKILL)
        finally:
            proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "report.html").exists()
    finished = {p.parent.name for p in out.glob("SYN*/run.json")}
    assert finished and {p.name for p in out.glob("SYN*")} == finished  # no half-written case folder
    result = run_cohort(cohort, out, workers=1, maps=False)
    assert {r.case_id for r in result.records if r.status == "skipped"} == finished
    _assert_same_results(out, baseline)


def test_dask_local_cluster_gives_the_same_tables(cohort: Path, baseline: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_cohort(cohort, out, dask="local", workers=1, maps=False)
    assert [r.status for r in result.records] == ["ok"] * 3
    _assert_same_results(out, baseline)


def test_cli_run_with_maps_prints_summary(cohort: Path, tmp_path: Path) -> None:
    one = tmp_path / "one"
    shutil.copytree(cohort / "SYN001", one / "SYN001")
    out = tmp_path / "out"
    res = CliRunner().invoke(cli.app, ["run", str(one), "--out", str(out), "--workers", "1"])
    assert res.exit_code == 0, res.output
    assert "cases: 1 (1 run, 0 unchanged, 0 failed)" in res.output
    assert f"report: {out / 'report.html'}" in res.output.replace("\n", "")
    maps = {p.name for p in (out / "SYN001" / "maps").iterdir()}
    assert {"SYN001_map.png", "SYN001_scene.glb", "SYN001_levels.seg.nrrd"} <= maps
    links = _assert_links_resolve(out)
    assert "SYN001/maps/SYN001_map.png" in links
    again = CliRunner().invoke(cli.app, ["run", str(one), "--out", str(out), "--workers", "1", "--no-maps"])
    assert "cases: 1 (1 run, 0 unchanged" in again.output  # the maps setting is part of the fingerprint


def test_cli_folder_without_cases_exits_2_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty").mkdir()
    monkeypatch.setattr(sys, "argv", ["neckmatch", "run", str(tmp_path / "empty"), "--out", str(tmp_path / "o")])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert err.count("\n") == 1 and "holds no case folder" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_all_cases_failing_exits_1(cohort: Path, tmp_path: Path) -> None:
    src = tmp_path / "c"
    shutil.copytree(cohort / "SYN001", src / "SYN001")
    (src / "SYN001" / "mri" / "nodes.nii.gz").write_bytes(b"not a nifti")
    res = CliRunner().invoke(cli.app, ["run", str(src), "--out", str(tmp_path / "o"), "--no-maps"])
    assert res.exit_code == 1
    assert "failed SYN001: SYN001/mri/nodes.nii.gz" in res.output.replace("\n", "")


def test_find_cases_nested_sorted_hidden_excluded(tmp_path: Path) -> None:
    for rel in ("b/P2", "a/P1", ".trash/P3", "P0"):
        (tmp_path / rel).mkdir(parents=True)
        (tmp_path / rel / "case.json").write_text("{}")
    (tmp_path / "notacase").mkdir()
    assert [p.relative_to(tmp_path).as_posix() for p in find_cases(tmp_path)] == ["P0", "a/P1", "b/P2"]


def test_find_cases_rejects_a_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="is not a folder of cases"):
        find_cases(tmp_path / "nope")


def test_duplicate_case_ids_are_refused(tmp_path: Path) -> None:
    for name in ("x", "y"):
        (tmp_path / "c" / name).mkdir(parents=True)
        (tmp_path / "c" / name / "case.json").write_text('{"case_id": "P1"}')
    with pytest.raises(InputError, match="'P1' is also the case id of"):
        run_cohort(tmp_path / "c", tmp_path / "o", workers=1, maps=False)


def test_input_fingerprint_follows_bytes_names_and_settings(tmp_path: Path) -> None:
    case = tmp_path / "P1"
    (case / "mri").mkdir(parents=True)
    (case / "case.json").write_text('{"case_id": "P1"}')
    (case / "mri" / "reads.csv").write_text("a\n1\n")
    base = input_fingerprint(case)
    (case / ".DS_Store").write_text("junk")  # hidden files are not inputs
    assert input_fingerprint(case) == base
    assert input_fingerprint(case, "tolerance=2") != base
    (case / "mri" / "reads.csv").rename(case / "mri" / "reads2.csv")
    assert input_fingerprint(case) != base
    (case / "mri" / "reads2.csv").rename(case / "mri" / "reads.csv")
    assert input_fingerprint(case) == base
    (case / "mri" / "reads.csv").write_text("a\n2\n")
    assert input_fingerprint(case) != base


def test_format_cohort_summary_counts() -> None:
    recs = (
        CaseRecord("P1", "/c/P1", "ok", summary={"pairs": 4, "decisions": {"auto": 3, "review": 1}}),
        CaseRecord("P2", "/c/P2", "skipped", summary={"pairs": 2, "decisions": {"review": 2}}),
        CaseRecord("P3", "/c/P3", "failed", "P3/case.json: case_id: missing", summary={"pairs": 9}),
    )
    result = CohortResult(Path("out"), recs, {"report.html": Path("out/report.html")})
    assert format_cohort_summary(result).splitlines() == [
        "cases: 3 (1 run, 1 unchanged, 1 failed)",
        "node pairs: 6; decisions to review: 3",
        "  failed P3: P3/case.json: case_id: missing",
        "report: out/report.html",
    ]


def test_a_case_id_that_names_a_cohort_output_is_refused(cohort: Path, tmp_path: Path) -> None:
    """A case called 'tables' would be written over by (or over) the stacked tables folder."""
    one = _copy(cohort / "SYN001", tmp_path / "c" / "x")
    manifest = json.loads((one / "case.json").read_text())
    (one / "case.json").write_text(json.dumps({**manifest, "case_id": "tables"}))
    with pytest.raises(InputError, match="'tables' is reserved for the cohort's own outputs"):
        run_cohort(tmp_path / "c", tmp_path / "out", workers=1, maps=False)
    assert not (tmp_path / "out" / "tables").exists()


def test_a_missing_constraints_folder_is_refused_before_any_case_runs(tmp_path):
    from neckmatch.cohort import run_cohort

    generate_cohort(1, 3, tmp_path / "cohort")
    with pytest.raises(InputError, match="constraints folder not found"):
        run_cohort(tmp_path / "cohort", tmp_path / "out", workers=1, maps=False, constraints_dir=tmp_path / "nope")
    assert not any((tmp_path / "out").glob("SYN*"))


class _FakeLibc:
    """Records the glibc memory calls the cohort makes."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def malloc_trim(self, pad: int) -> int:
        self.calls.append(("malloc_trim", pad))
        return 1

    def mallopt(self, param: int, value: int) -> int:
        self.calls.append(("mallopt", param, value))
        return 1


def test_every_case_returns_its_freed_memory_even_when_it_fails(cohort: Path, tmp_path: Path, monkeypatch) -> None:
    import neckmatch.cohort as cohort_mod

    fake = _FakeLibc()
    monkeypatch.setattr(cohort_mod, "_libc", lambda: fake)
    ok = cohort_mod.run_case_task(str(cohort / CASES[0]), str(tmp_path), CASES[0], "fp", Settings(), False)
    bad = cohort_mod.run_case_task(str(tmp_path / "missing"), str(tmp_path), "X1", "fp", Settings(), False)
    assert (ok.status, bad.status) == ("ok", "failed")
    assert fake.calls == [("malloc_trim", 0), ("malloc_trim", 0)]


def test_a_worker_maps_large_blocks_in_pages_of_their_own(monkeypatch) -> None:
    import neckmatch.cohort as cohort_mod

    fake = _FakeLibc()
    monkeypatch.setattr(cohort_mod, "_libc", lambda: fake)
    cohort_mod._map_large_blocks()
    assert fake.calls == [("mallopt", -3, 1 << 20)]  # M_MMAP_THRESHOLD, 1 MiB


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim and mallopt are Linux calls")
def test_the_c_library_offers_the_memory_calls_on_linux() -> None:
    from neckmatch.cohort import _libc

    libc = _libc()
    assert libc is not None and libc.malloc_trim(0) in (0, 1)


def test_the_report_modules_are_imported_in_a_thread_while_cases_run() -> None:
    code = ("import sys, threading; from neckmatch.cohort import _prepare_report; "
            "before = 'neckmatch.viz.plots' in sys.modules; _prepare_report(); "
            "[t.join() for t in threading.enumerate() if t.name == 'neckmatch-report-imports']; "
            "print(before, all(m in sys.modules for m in ('neckmatch.report', 'neckmatch.stats.report', "
            "'neckmatch.viz.plots', 'neckmatch.stats.reader_study')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.split() == ["False", "True"]
