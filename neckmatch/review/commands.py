"""The review service's commands (``users``, ``serve``, ``review export``, ``db upgrade``), registered on the
``neckmatch`` command line by :func:`register`. Parsing and printing only; the work is in this package."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console

__all__ = ["open_db", "register", "resolve_url"]

console = Console()
_DB_HELP = "Database URL (default: sqlite in the results folder), e.g. postgresql+psycopg://user@host/db."


def resolve_url(db: str | None, folder: str | Path | None) -> str:
    """``--db`` if given, else the results folder's ``review.sqlite`` (the current folder without one)."""
    from neckmatch.errors import InputError
    from neckmatch.review.db import default_url

    if db:
        if not (db.startswith("sqlite") or db.startswith("postgresql")):
            raise InputError("options", "--db", "must be a sqlite:/// or postgresql+psycopg:// URL")
        return db
    folder = Path(folder) if folder is not None else Path.cwd()
    if not folder.is_dir():
        raise InputError(folder, "", "results folder not found")
    return default_url(folder)


@contextmanager
def open_db(url: str) -> Iterator[Any]:
    """A migrated database: yield a session in one transaction (committed on success)."""
    from neckmatch.review.db import make_engine, session_factory, upgrade

    upgrade(url, once=True)
    engine = make_engine(url)
    try:
        with session_factory(engine)() as db, db.begin():
            yield db
    finally:
        engine.dispose()


def users_add(
    name: str = typer.Argument(..., help="Login name."),
    role: str = typer.Option(..., "--role", help="radiologist, pathologist, adjudicator or admin."),
    password_file: Path = typer.Option(..., "--password-file", help="File whose first line is the password."),
    results: Optional[Path] = typer.Option(None, "--results", help="Results folder (default: current)."),  # noqa: UP045
    db: Optional[str] = typer.Option(None, "--db", help=_DB_HELP),  # noqa: UP045
) -> None:
    """Add a user (password stored as an argon2id hash)."""
    from neckmatch.review.auth import add_user, read_password_file
    from neckmatch.review.service import audit

    password = read_password_file(password_file)
    with open_db(resolve_url(db, results)) as s:
        user = add_user(s, name, role, password)
        audit(s, None, "user-add", after={"name": user.name, "role": user.role})
    console.print(f"added {name} ({role})", markup=False)


def users_list(
    results: Optional[Path] = typer.Option(None, "--results", help="Results folder (default: current)."),  # noqa: UP045
    db: Optional[str] = typer.Option(None, "--db", help=_DB_HELP),  # noqa: UP045
) -> None:
    """List the users: name, role, active."""
    from neckmatch.review.auth import list_users

    with open_db(resolve_url(db, results)) as s:
        for u in list_users(s):
            sys.stdout.write(f"{u.name}\t{u.role}\t{'active' if u.active else 'disabled'}\n")


def users_disable(
    name: str = typer.Argument(..., help="Login name."),
    results: Optional[Path] = typer.Option(None, "--results", help="Results folder (default: current)."),  # noqa: UP045
    db: Optional[str] = typer.Option(None, "--db", help=_DB_HELP),  # noqa: UP045
) -> None:
    """Disable a user (their sessions end; their decisions stay)."""
    from neckmatch.review.auth import disable_user
    from neckmatch.review.service import audit

    with open_db(resolve_url(db, results)) as s:
        disable_user(s, name)
        audit(s, None, "user-disable", after={"name": name})
    console.print(f"disabled {name}", markup=False)


def db_upgrade(
    results: Optional[Path] = typer.Argument(None, help="Results folder (default: current)."),  # noqa: UP045
    db: Optional[str] = typer.Option(None, "--db", help=_DB_HELP),  # noqa: UP045
) -> None:
    """Create or migrate the review database to the newest schema."""
    from neckmatch.review.db import upgrade

    upgrade(resolve_url(db, results))
    console.print("database is up to date", markup=False)


def review_export(
    results: Path = typer.Argument(..., help="Results folder of `neckmatch run`."),
    out: Path = typer.Option(..., "--out", help="Folder for <case>/constraints.json and review_summary.csv."),
    db: Optional[str] = typer.Option(None, "--db", help=_DB_HELP),  # noqa: UP045
) -> None:
    """Write every case's decisions as constraints (for `neckmatch run --constraints`) and a summary."""
    from neckmatch.review.export import export_review
    from neckmatch.review.service import import_results

    with open_db(resolve_url(db, results)) as s:
        import_results(s, results)
        frame = export_review(s, out)
    console.print(f"wrote {len(frame)} cases to {out}: {int(frame['decided'].sum())} decided, "
                  f"{int(frame['pending'].sum())} pending", markup=False)


def serve(
    results: Path = typer.Argument(..., help="Results folder of `neckmatch run`."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (default: this machine only)."),
    port: int = typer.Option(8000, "--port", help="Port."),
    db: Optional[str] = typer.Option(None, "--db", help=_DB_HELP),  # noqa: UP045
) -> None:
    """Serve the review web application on RESULTS."""
    import uvicorn

    from neckmatch.review.app import create_app

    app_ = create_app(results, resolve_url(db, results))
    console.print(f"serving {results.name} on http://{host}:{port}/", markup=False)
    uvicorn.run(app_, host=host, port=port, log_level="info", server_header=False)


def register(app: typer.Typer, command_cls: Any, group_cls: Any) -> None:
    """Add ``users``, ``db``, ``review`` and ``serve`` to the ``neckmatch`` app (with its command and group
    classes, for the same clean help)."""
    users = typer.Typer(cls=group_cls, help="People who may log in to the review service.", no_args_is_help=True,
                        add_completion=False, pretty_exceptions_enable=False)
    db_app = typer.Typer(cls=group_cls, help="The review database.", no_args_is_help=True, add_completion=False,
                         pretty_exceptions_enable=False)
    review = typer.Typer(cls=group_cls, help="The review's results.", no_args_is_help=True, add_completion=False,
                         pretty_exceptions_enable=False)
    app.add_typer(users, name="users")
    app.add_typer(db_app, name="db")
    app.add_typer(review, name="review")
    users.command("add", cls=command_cls)(users_add)
    users.command("list", cls=command_cls)(users_list)
    users.command("disable", cls=command_cls)(users_disable)
    db_app.command("upgrade", cls=command_cls)(db_upgrade)
    review.command("export", cls=command_cls)(review_export)
    app.command("serve", cls=command_cls)(serve)
