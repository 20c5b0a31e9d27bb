"""No partial output on any CLI path: ``levels``, ``render`` and ``stats`` write all their files or none, and a
path that cannot be written is one line and exit code 2 (``io.atomic.atomic_files``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from neckmatch.errors import InputError, RenderError
from neckmatch.io.atomic import atomic_files
from tests.cli_helpers import run_main as _run

MINIMAL = Path(__file__).resolve().parents[1] / "examples" / "minimal_case"


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    return err


def test_atomic_files_moves_everything_in_on_success_and_keeps_other_files(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "meshes").mkdir(parents=True)
    (out / "meshes" / "old.ply").write_text("old")
    (out / "keep.txt").write_text("keep")
    (out / "a.csv").write_text("old")
    with atomic_files(out) as stage:
        (stage / "a.csv").write_text("new")
        (stage / "meshes").mkdir()
        (stage / "meshes" / "new.ply").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["a.csv", "keep.txt", "meshes"]
    assert (out / "a.csv").read_text() == "new" and (out / "keep.txt").read_text() == "keep"
    assert [p.name for p in (out / "meshes").iterdir()] == ["new.ply"]  # a folder is replaced whole
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no staging folder left


def test_atomic_files_writes_nothing_on_failure(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="half-way"), atomic_files(out) as stage:
        (stage / "a.csv").write_text("a")
        raise RuntimeError("half-way")
    assert list(tmp_path.iterdir()) == []


def test_atomic_files_refuses_a_file_in_the_way(tmp_path: Path) -> None:
    (tmp_path / "out").write_text("")
    with pytest.raises(InputError, match="output folder is an existing file"), atomic_files(tmp_path / "out"):
        pass


def test_levels_failing_in_the_level_map_leaves_no_levels_csv(tmp_path, monkeypatch, capsys) -> None:
    from neckmatch.geometry import regions

    def broken(out_dir, *args, **kwargs):  # writes one file, then fails
        (Path(out_dir) / "level_map.json").write_text("{}")
        raise InputError("landmarks.mrk.json", "hyoid", "broken on purpose")

    monkeypatch.setattr(regions, "write_level_regions", broken)
    out = tmp_path / "out"
    assert _run(monkeypatch, "levels", str(MINIMAL), "--out", str(out)) == 2
    assert "broken on purpose" in _one_line_error(capsys)
    assert list(tmp_path.iterdir()) == []  # before the fix: out/levels.csv was written


def test_render_with_a_results_folder_without_truth_tables_is_refused(tmp_path, monkeypatch, capsys) -> None:
    out = tmp_path / "out"
    code = _run(monkeypatch, "render", str(MINIMAL), "--out", str(out), "--results", str(tmp_path / "nope"))
    assert code == 2  # before the fix: exit 0, nodes silently coloured by level
    assert "holds no neckmatch match output" in _one_line_error(capsys)
    assert not out.exists()


def test_render_failing_after_the_png_leaves_nothing(tmp_path, monkeypatch, capsys) -> None:
    from neckmatch.viz import export, png

    def fake_png(scene, path, size=(2000, 1100)):  # the OpenGL part is not under test here
        Path(path).write_bytes(b"png")
        return Path(path)

    def broken_glb(scene, path, data=None):
        raise RenderError("no GLB today")

    monkeypatch.setattr(png, "render_scene", fake_png)
    monkeypatch.setattr(export, "write_glb", broken_glb)
    out = tmp_path / "out"
    assert _run(monkeypatch, "match", str(MINIMAL), "--out", str(out)) == 0  # results of this very case
    before = sorted(p.name for p in out.iterdir())
    assert _run(monkeypatch, "render", str(MINIMAL), "--out", str(out)) == 2
    assert "no GLB today" in _one_line_error(capsys)
    assert sorted(p.name for p in out.iterdir()) == before  # before the fix: MIN01_map.png was left
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_stats_failing_half_way_writes_no_table(tmp_path, monkeypatch, capsys) -> None:
    from neckmatch.stats import report as stats_report

    truth = tmp_path / "truth"
    assert _run(monkeypatch, "match", str(MINIMAL), "--out", str(truth)) == 0
    capsys.readouterr()

    def broken(tables):
        raise InputError("truth_levels.csv", "outcome", "broken on purpose")

    monkeypatch.setattr(stats_report, "cross_tabulations", broken)
    out = tmp_path / "stats"
    assert _run(monkeypatch, "stats", str(truth), "--out", str(out), "--n-boot", "20") == 2
    assert "broken on purpose" in _one_line_error(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["truth"]  # before: accuracy.csv, roc.csv ... were left


def test_an_output_path_blocked_by_a_file_is_one_line_exit_2(tmp_path, monkeypatch, capsys) -> None:
    (tmp_path / "afile").write_text("")
    code = _run(monkeypatch, "synth", "--cases", "1", "--seed", "1", "--out", str(tmp_path / "afile" / "cohort"))
    assert code == 2  # before the fix: a NotADirectoryError traceback, exit 1
    assert "afile" in _one_line_error(capsys)
