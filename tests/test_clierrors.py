"""Exit codes and usage errors of every command (neckmatch.clierrors), found by walking the registered commands:
a command added later is covered without editing this file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from typer.main import get_command

from neckmatch import cli
from neckmatch._version import __version__
from tests.cli_helpers import run_main

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "minimal_case"
SCRIPT = Path(sys.executable).with_name("neckmatch")


def _walk(cmd: click.Command, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    yield path, cmd
    for name, sub in sorted(getattr(cmd, "commands", {}).items()):
        yield from _walk(sub, (*path, name))


ALL = list(_walk(get_command(cli.app)))
PATHS = [p for p, _ in ALL]


def _is_number_option(param: object) -> bool:
    """An option taking an int or float (typer keeps the annotation; click's own options carry a type name)."""
    if not str(getattr(param, "opts", [""])[0]).startswith("-") or getattr(param, "is_flag", False):
        return False
    annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    name = getattr(getattr(param, "type", None), "name", "")
    return annotation in (int, float, int | None, float | None) or name in ("integer", "float")


NUMERIC = [(p, opt.opts[0]) for p, cmd in ALL for opt in cmd.params if _is_number_option(opt)]
REQUIRED = [p for p, cmd in ALL if p and any(getattr(q, "required", False) for q in cmd.params)]


def _lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip()]


def test_the_walk_finds_every_command_and_some_numbers():
    assert {("match",), ("run",), ("stats",), ("stats", "lydata")} <= set(PATHS)
    assert len(NUMERIC) >= 8 and len(REQUIRED) >= 6


@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "neckmatch")
def test_unknown_option_is_one_line_and_a_hint_exit_2(path, monkeypatch, capsys):
    code = run_main(monkeypatch, *path, "--no-such-option")
    err = _lines(capsys.readouterr().err)
    assert code == 2
    assert len(err) == 2 and err[0].startswith("error: neckmatch") and "--no-such-option" in err[0]
    assert err[1].startswith("try 'neckmatch") and err[1].endswith("--help'")


@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "neckmatch")
@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_help_everywhere(path, flag, monkeypatch, capsys):
    code = run_main(monkeypatch, *path, flag)
    out = capsys.readouterr()
    assert code == 0 and "Usage: neckmatch" in out.out and out.err == ""


@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "neckmatch")
@pytest.mark.parametrize("flag", ["-V", "--version"])
def test_version_everywhere(path, flag, monkeypatch, capsys):
    code = run_main(monkeypatch, *path, flag)
    assert code == 0 and capsys.readouterr().out.strip() == f"neckmatch {__version__}"


@pytest.mark.parametrize("path", REQUIRED, ids=" ".join)
def test_missing_argument_is_a_usage_error(path, monkeypatch, capsys):
    code = run_main(monkeypatch, *path)
    err = _lines(capsys.readouterr().err)
    assert code == 2 and len(err) == 2 and err[0].startswith(f"error: neckmatch {' '.join(path)}: Missing")


@pytest.mark.parametrize(("path", "option"), NUMERIC, ids=lambda v: " ".join(v) if isinstance(v, tuple) else v)
def test_a_bad_number_is_a_usage_error(path, option, monkeypatch, capsys):
    code = run_main(monkeypatch, *path, option, "twelve")
    err = _lines(capsys.readouterr().err)
    assert code == 2 and len(err) == 2 and option in err[0] and "Traceback" not in err[0]


def test_a_mistyped_command_suggests_the_right_one(monkeypatch, capsys):
    assert run_main(monkeypatch, "mtach", "x") == 2
    err = _lines(capsys.readouterr().err)
    assert len(err) == 2 and "No such command 'mtach'" in err[0] and "match" in err[0].split("mtach", 1)[1]


def test_an_internal_error_is_one_line_exit_1(monkeypatch, capsys):
    def boom(*args, **kwargs):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr("neckmatch.io.case.read_case", boom)
    code = run_main(monkeypatch, "inspect", str(EXAMPLE))
    err = _lines(capsys.readouterr().err)
    assert code == 1 and err == ["error: internal error: ZeroDivisionError: boom (NECKMATCH_DEBUG=1 shows more)"]


def test_ctrl_c_in_a_command_exits_130(monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("neckmatch.io.case.read_case", interrupted)
    assert run_main(monkeypatch, "inspect", str(EXAMPLE)) == 130
    assert _lines(capsys.readouterr().err) == ["interrupted"]


def _swallowed_ctrl_c() -> None:
    """A real Ctrl-C (SIGINT to this process) caught as a library's optional import does (trimesh catches
    BaseException around its imports)."""
    try:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(1.0)  # the handler runs here, at the latest when the signal is delivered
    except BaseException:  # noqa: BLE001 - what the library does
        pass


@pytest.mark.parametrize("then", ["finishes", "fails"])
def test_a_ctrl_c_a_library_swallowed_still_exits_130(then, monkeypatch, capsys):
    """Before: the command went on, and exited 0 (it finished) or 1 with an internal error (an ExceptionWrapper
    where a module was expected)."""
    from neckmatch.io.case import read_case

    def swallowing(*args, **kwargs):
        _swallowed_ctrl_c()
        if then == "fails":
            raise TypeError("unsupported operand type(s) for |: 'ExceptionWrapper' and 'NoneType'")
        return read_case(*args, **kwargs)

    monkeypatch.setattr("neckmatch.io.case.read_case", swallowing)
    assert run_main(monkeypatch, "inspect", str(EXAMPLE)) == 130
    assert _lines(capsys.readouterr().err) == ["interrupted"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Python's own handler is back


def test_a_ctrl_c_during_an_import_lands_after_it(tmp_path, monkeypatch, capsys):
    """A Ctrl-C in a module's top-level code waits for the import to finish (a half-made module is what crashed
    VTK), then interrupts the command."""
    (tmp_path / "slow_native_module.py").write_text(
        "import os, signal, time\n"
        "os.kill(os.getpid(), signal.SIGINT)\n"
        "time.sleep(0.3)  # the Ctrl-C arrives here, inside the import\n"
        "done = True\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "slow_native_module", raising=False)
    reached = []

    def importing(*args, **kwargs):
        import slow_native_module  # noqa: F401

        reached.append("after the import")
        time.sleep(1.0)  # the Ctrl-C delivered again lands here
        reached.append("not interrupted")

    monkeypatch.setattr("neckmatch.io.case.read_case", importing)
    assert run_main(monkeypatch, "inspect", str(EXAMPLE)) == 130
    assert _lines(capsys.readouterr().err) == ["interrupted"]
    assert sys.modules["slow_native_module"].done  # before: the import was cut short (no module)
    assert reached == ["after the import"]


# ---- through the installed console script (a separate process, as a user's shell runs it) -----------------
@pytest.mark.parametrize(("argv", "code", "n_err"), [
    (["mtach", "x"], 2, 2),
    (["match", str(EXAMPLE), "--out"], 2, 2),
    (["run", "--workers", "zero", "x"], 2, 2),
    (["stats", "lydata"], 2, 2),
    (["inspect", "/nonexistent/case"], 2, 1),
    (["-V"], 0, 0),
    (["match", "-h"], 0, 0),
])
def test_console_script(argv, code, n_err):
    proc = subprocess.run([str(SCRIPT), *argv], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == code, proc.stderr
    assert len(_lines(proc.stderr)) == n_err and "Traceback" not in proc.stderr


def test_allow_external_files_is_one_root_option_for_every_command(tmp_path, monkeypatch, capsys):
    import shutil

    case = Path(shutil.copytree(EXAMPLE, tmp_path / "case"))
    (tmp_path / "elsewhere").mkdir()
    shutil.move(case / "mri" / "reads.csv", tmp_path / "elsewhere" / "reads.csv")
    manifest = (case / "case.json").read_text().replace('"mri/reads.csv"', '"../elsewhere/reads.csv"')
    (case / "case.json").write_text(manifest)
    monkeypatch.setenv("NECKMATCH_ALLOW_EXTERNAL_FILES", "0")  # recorded, so the option's "1" is undone after
    assert run_main(monkeypatch, "inspect", str(case)) == 2
    assert "must lie inside the case folder (or pass --allow-external-files)" in capsys.readouterr().err
    assert run_main(monkeypatch, "--allow-external-files", "inspect", str(case)) == 0
