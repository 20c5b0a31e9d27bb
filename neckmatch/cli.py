"""The ``neckmatch`` command line: parse, call one library function, print. No science here.

Every :class:`neckmatch.errors.NeckmatchError` (and bad-input ``ValueError`` raised by readers as
:class:`~neckmatch.errors.InputError`) becomes one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from neckmatch import __version__
from neckmatch.errors import NeckmatchError

app = typer.Typer(
    name="neckmatch",
    help="Radiology-pathology correlation of neck lymph nodes.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)


def _version(value: bool) -> None:
    if value:
        console.print(f"neckmatch {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Optional[bool] = typer.Option(  # noqa: UP045
        None, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Radiology-pathology correlation of neck lymph nodes."""


@app.command()
def inspect(
    case_dir: Path = typer.Argument(..., help="A case folder (with case.json)."),
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
) -> None:
    """Print what was read from a case: nodes, landmarks, containers, reads."""
    from neckmatch.io.summary import case_summary, format_case_summary
    from neckmatch.io.case import read_case

    summary = case_summary(read_case(case_dir))
    if as_json:
        import json

        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
    else:
        console.print(format_case_summary(summary))


@app.command()
def match(
    case_dir: Path = typer.Argument(..., help="A case folder (with case.json)."),
    out: Path = typer.Option(..., "--out", help="Output folder (created or replaced whole; never left half-written)."),
    constraints: Optional[Path] = typer.Option(  # noqa: UP045
        None, "--constraints", help="People's decisions: CSV mr_node,path_node,action."
    ),
    tolerance: float = typer.Option(3.0, "--tolerance", help="Borderline tolerance of the level assignment, mm."),
    auto_threshold: Optional[float] = typer.Option(  # noqa: UP045
        None, "--auto-threshold", help="Confidence from which a decision is 'auto' (default: the matcher's)."
    ),
) -> None:
    """Match MR nodes to pathology nodes; write levels, matches, truth tables and the specimen."""
    from neckmatch.pipeline import Settings, format_summary, process_case

    settings = Settings(tolerance_mm=tolerance, auto_threshold=auto_threshold,
                        constraints=None if constraints is None else str(constraints))  # fmt: skip
    summary = process_case(case_dir, out, settings)
    console.print(format_summary(summary, out), markup=False)


def main() -> None:
    """Console-script entry point: run the app, turning neckmatch errors into one line and exit code 2."""
    try:
        app(standalone_mode=False)
    except NeckmatchError as exc:
        err_console.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
    except (typer.Exit, SystemExit) as exc:
        code = getattr(exc, "exit_code", getattr(exc, "code", 0))
        sys.exit(code or 0)
    except typer.Abort:
        err_console.print("aborted")
        sys.exit(1)
    except Exception as exc:  # click usage errors come as ClickException
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(2)
        raise


if __name__ == "__main__":  # pragma: no cover
    main()
