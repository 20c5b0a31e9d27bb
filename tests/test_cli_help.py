"""What a person reads first: every ``--help`` page and the text of ``neckmatch inspect``."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from typer.main import get_command
from typer.testing import CliRunner

from neckmatch import cli

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "minimal_case"
runner = CliRunner()


def _command_paths(cmd: click.Command, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    for name, sub in sorted(getattr(cmd, "commands", {}).items()):
        yield from _command_paths(sub, (*path, name))


COMMANDS = list(_command_paths(get_command(cli.app)))


def _help(*path: str) -> str:
    result = runner.invoke(cli.app, [*path, "--help"], env={"COLUMNS": "110"})
    assert result.exit_code == 0, result.output
    return result.output


def test_every_command_is_covered():
    assert {"inspect", "match", "render", "run", "demo", "levels", "landmarks", "synth", "stats"} <= {
        p[0] for p in COMMANDS if p
    }
    assert ("stats", "lydata") in COMMANDS
    assert {("stats", "mrmc"), ("score", "develop"), ("score", "validate")} <= set(COMMANDS)


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "neckmatch")
def test_help_has_no_type_noise(path: tuple[str, ...]):
    text = _help(*path)
    assert "Usage: neckmatch" in text
    assert "<bool>" not in text  # flags take no value, so no type after them
    assert "{" not in text and "}" not in text  # typer's {case_dir} in usage lines


def test_usage_names_arguments_in_capitals():
    assert re.search(r"Usage: neckmatch inspect \[OPTIONS\] CASE_DIR\s*$", _help("inspect"), re.MULTILINE)
    assert re.search(r"Usage: neckmatch run \[OPTIONS\] COHORT_DIR\s*$", _help("run"), re.MULTILINE)
    lydata = _help("stats", "lydata")
    assert re.search(r"Usage: neckmatch stats lydata \[OPTIONS\] FILE\s*$", lydata, re.MULTILINE)
    assert "TRUTH_DIR" not in lydata.splitlines()[1]  # the group's own argument is not part of this command


def test_constraints_help_lists_actions_and_columns():
    match = get_command(cli.app).commands["match"]  # type: ignore[attr-defined]
    option = next(p for p in match.params if "--constraints" in p.opts)
    for word in ("must_link", "cannot_link", "unmatched", "mr_node", "path_node", "action"):
        assert word in option.help, word
    flat = " ".join(re.sub(r"[│╭╮╰╯─]", " ", _help("match")).split())
    assert "--constraints CSV" in flat and "action: must_link" in flat


def test_inspect_counts_in_the_right_number_and_does_not_wrap():
    result = runner.invoke(cli.app, ["inspect", str(EXAMPLE)])
    assert result.exit_code == 0, result.output
    text = result.output
    assert "1 nodes" not in text
    assert re.search(r"R-III\s+R III\s+1 node,\s+1 positive", text)
    assert re.search(r"R-II\s+R II\s+2 nodes,\s+0 positive", text)
    grid = [line for line in text.splitlines() if line.startswith("  grid")]
    assert len(grid) == 1 and len(grid[0]) > 80 and grid[0].endswith("mm RAS")  # one line, beyond 80 columns
    assert "reads: 8 on 4 nodes" in text and "2 malignant calls" in text
