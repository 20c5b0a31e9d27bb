"""Static checks as part of the suite (style.md: "mypy and ruff in CI"): lint and type check must pass.

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


def test_mypy_passes() -> None:
    # cwd = repo: [tool.mypy] names the files; the default .mypy_cache (git-ignored) keeps reruns at ~1 s.
    res = _run(_tool("mypy"), "--config-file", REPO / "pyproject.toml")
    assert res.returncode == 0, f"mypy failed:\n{res.stdout}{res.stderr}"
    assert "Success: no issues found" in res.stdout


@pytest.mark.parametrize("tool", ["ruff", "mypy"])
def test_installed_tool_is_the_pinned_version(tool: str) -> None:
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["test"]
    pins = [r for r in extras if r.split("==")[0].strip() == tool]
    assert len(pins) == 1, f"pyproject.toml [test] extras must pin {tool} exactly (got {extras})"
    assert pins[0] == f"{tool}=={version(tool)}", f"installed {tool} {version(tool)} is not the pin {pins[0]}"
