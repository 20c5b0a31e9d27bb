"""Running the console-script entry point in-process, as a user's shell would (exit code, no traceback)."""

from __future__ import annotations

import sys

import pytest

from neckmatch import cli


def run_main(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    """Run ``neckmatch ARGS`` through :func:`neckmatch.cli.main`; return its exit code (0 when it returns)."""
    monkeypatch.setattr(sys, "argv", ["neckmatch", *args])
    try:
        cli.main()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0
