"""How the ``neckmatch`` command line ends: one exit code per outcome, one line per error, never a traceback.

:func:`run_app` wraps the whole typer app (``neckmatch.cli.main`` calls it), so every command and sub-command,
including ones registered later, gets the same treatment (docs/cli.md, "Exit codes"):

- 0: done (also ``-h`` / ``--help`` and ``-V`` / ``--version`` anywhere on the command line);
- 1: some or all cases failed (``run``; it prints which and why), or an internal error (one line; set
  ``NECKMATCH_DEBUG=1`` to see the traceback);
- 2: a usage error (a mistyped command, an unknown option, a missing argument, a bad number: one line and a
  hint line) or an input error (:class:`neckmatch.errors.NeckmatchError` or ``OSError``: one line naming the
  file, the field and the value);
- 130: interrupted (Ctrl-C).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import FrameType
from typing import Any

from neckmatch.errors import NeckmatchError

__all__ = ["EXIT_OK", "EXIT_FAILED", "EXIT_USAGE", "EXIT_INTERRUPTED", "run_app", "one_line", "wants_version"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
_VERSION_FLAGS = ("-V", "--version")


def one_line(text: object) -> str:
    """``text`` with every run of whitespace (newlines included) collapsed to one space.

    >>> one_line("a\\n  b\\tc ")
    'a b c'
    """
    return " ".join(str(text).split())


def wants_version(argv: Sequence[str]) -> bool:
    """True if ``-V`` / ``--version`` is on the command line (before any ``--``), whatever the command.

    >>> wants_version(["match", "-V"]), wants_version(["match", "--", "-V"]), wants_version(["inspect", "x"])
    (True, False, False)
    """
    args = list(argv)
    if "--" in args:
        args = args[: args.index("--")]
    return any(a in _VERSION_FLAGS for a in args)


def _is_usage_error(exc: BaseException) -> bool:
    """A click / typer usage exception (typer vendors click, a command may raise click's own)."""
    return hasattr(exc, "format_message") and hasattr(exc, "exit_code") and hasattr(exc, "show")


def _usage_lines(exc: Any) -> list[str]:
    """One error line naming the command, and a hint line pointing at its ``--help``."""
    ctx = getattr(exc, "ctx", None)
    path = ctx.command_path if ctx is not None else "neckmatch"
    message = one_line(exc.format_message())
    return [f"error: {path}: {message}", f"try '{path} --help'"]


def _print(console: Any, text: str) -> None:
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def _internal(console: Any, exc: BaseException) -> int:
    if os.environ.get("NECKMATCH_DEBUG"):
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    _print(console, f"error: internal error: {type(exc).__name__}: {one_line(exc)} (NECKMATCH_DEBUG=1 shows more)")
    return EXIT_FAILED


def run_app(app: Any, argv: Sequence[str], err_console: Any, version: str) -> int:
    """Run the typer ``app`` on ``argv`` and return the process exit code (module docstring); print errors to
    ``err_console`` (a rich Console on stderr)."""
    if wants_version(argv):
        print(f"neckmatch {version}")
        return EXIT_OK
    import warnings

    with warnings.catch_warnings():
        if not os.environ.get("NECKMATCH_DEBUG"):  # library warnings (pydicom, numpy ...) are not for the user
            warnings.simplefilter("ignore")
        return _run(app, argv, err_console)


_RETRY_S = 0.05  # a Ctrl-C that arrives during an import is delivered again this much later


def _importing(frame: FrameType | None) -> bool:
    """True if ``frame`` runs inside an import (a module's top-level code, below importlib's frames)."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


@contextmanager
def _noting_interrupts() -> Iterator[list[int]]:
    """Note every Ctrl-C while the command runs, and raise it as KeyboardInterrupt outside imports.

    Raised inside an import, a KeyboardInterrupt leaves a half-made module: trimesh's optional imports catch it
    (BaseException) and go on with a stand-in, VTK's report a missing module, and a half-loaded VTK module crashed
    the process (SIGSEGV). Such a Ctrl-C is delivered again :data:`_RETRY_S` later, until it lands outside an import.
    Where a library swallows it all the same, the note still makes the command exit 130. Only where Python's own
    handler is installed (the main thread); it is put back after."""
    noted: list[int] = []
    if threading.current_thread() is not threading.main_thread() or (
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield noted
        return
    retries: list[threading.Timer] = []

    def note(signum: int, frame: FrameType | None) -> None:
        noted.append(signum)
        if _importing(frame):
            retries.append(threading.Timer(_RETRY_S, os.kill, (os.getpid(), signal.SIGINT)))
            retries[-1].daemon = True
            retries[-1].start()
            return
        signal.default_int_handler(signum, frame)

    signal.signal(signal.SIGINT, note)
    try:
        yield noted
    finally:
        for retry in retries:  # the command is over: a delivery still to come would interrupt the exit itself
            retry.cancel()
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _run(app: Any, argv: Sequence[str], err_console: Any) -> int:
    with _noting_interrupts() as noted:
        try:
            rc = _outcome(app, argv, err_console, noted)
        except KeyboardInterrupt:
            rc = EXIT_INTERRUPTED
    if rc == EXIT_INTERRUPTED or noted:  # typer turns a Ctrl-C inside a command into this exit code
        _print(err_console, "interrupted")
        return EXIT_INTERRUPTED
    return rc


def _outcome(app: Any, argv: Sequence[str], err_console: Any, noted: list[int]) -> int:
    """The exit code of the command; nothing printed where a Ctrl-C was ``noted`` (it decides the outcome)."""
    try:
        rc = app(args=list(argv), prog_name="neckmatch", standalone_mode=False)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (EXIT_OK if exc.code is None else EXIT_FAILED)
    except Exception as exc:
        return EXIT_INTERRUPTED if noted else _error_code(err_console, exc)
    return rc if isinstance(rc, int) else EXIT_OK


def _error_code(err_console: Any, exc: Exception) -> int:
    """Print ``exc`` in one line (usage errors with a hint line) and return its exit code (module docstring)."""
    if isinstance(exc, NeckmatchError):
        _print(err_console, f"error: {one_line(exc)}")
        return EXIT_USAGE
    if isinstance(exc, OSError):  # a file or folder that cannot be read or written (permissions, a file in the way)
        where = f"{exc.filename}: " if exc.filename else ""
        _print(err_console, f"error: {where}{one_line(exc.strerror or exc)}")
        return EXIT_USAGE
    if type(exc).__name__ == "NoArgsIsHelpError":  # bare `neckmatch` or a bare group: its help, not an error
        ctx = getattr(exc, "ctx", None)
        print(ctx.get_help() if ctx is not None else "")
        return EXIT_OK
    if type(exc).__name__ == "Abort":  # end of input at a prompt
        _print(err_console, "aborted")
        return EXIT_FAILED
    if _is_usage_error(exc):
        for line in _usage_lines(exc):
            _print(err_console, line)
        code = int(getattr(exc, "exit_code", EXIT_USAGE))
        return code if code != 1 else EXIT_USAGE
    if isinstance(exc, (RecursionError, MemoryError)):
        _print(err_console, f"error: input too deeply nested or too large: {type(exc).__name__}")
        return EXIT_USAGE
    return _internal(err_console, exc)
