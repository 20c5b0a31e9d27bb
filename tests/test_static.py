"""Static checks (style.md: "mypy and ruff in CI"): lint as part of the suite; the type check is its own step
in ``.ci/run`` (mypy over the whole package takes longer than the rest of the suite's slowest test, so it does
not sit inside a timed test run); this module checks that ``.ci/run`` runs it.

The tools are the venv's own (next to ``sys.executable``), pinned exactly in pyproject.toml's ``test`` extras so
a new release cannot turn the suite red; the last test checks the installed versions are the pinned ones.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LINTED = ("neckmatch", "tests", "benchmarks", "examples")


def _tool(name: str) -> Path:
    exe = Path(sys.executable).with_name(name)
    if not exe.is_file():
        raise FileNotFoundError(f"{name} not installed next to {sys.executable}: pip install -e '.[test]'")
    return exe


def _run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], cwd=REPO, capture_output=True, text=True, timeout=300)


def test_ruff_check_passes() -> None:
    res = _run(_tool("ruff"), "check", *LINTED)
    assert res.returncode == 0, f"ruff check {' '.join(LINTED)} failed:\n{res.stdout}{res.stderr}"


def test_ci_runs_the_type_check_before_the_tests() -> None:
    lines = [ln.strip() for ln in (REPO / ".ci" / "run").read_text().splitlines()]
    mypy = [i for i, ln in enumerate(lines) if ln.startswith(".venv/bin/mypy")]
    tests = [i for i, ln in enumerate(lines) if "-m pytest" in ln]
    assert mypy and tests and mypy[0] < tests[-1], ".ci/run must run .venv/bin/mypy as its own step"
    _tool("mypy")


@pytest.mark.parametrize("tool", ["ruff", "mypy"])
def test_installed_tool_is_the_pinned_version(tool: str) -> None:
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["test"]
    pins = [r for r in extras if r.split("==")[0].strip() == tool]
    assert len(pins) == 1, f"pyproject.toml [test] extras must pin {tool} exactly (got {extras})"
    assert pins[0] == f"{tool}=={version(tool)}", f"installed {tool} {version(tool)} is not the pin {pins[0]}"
