"""Review-service fixtures: a tiny results folder (2 synthetic cases, `neckmatch run`), users, and a database on
SQLite and on PostgreSQL.

PostgreSQL comes from ``NECKMATCH_TEST_PG_URL`` (``.ci/postgres.sh start`` prints it; CI sets it). With CI=true a
missing URL FAILS the PostgreSQL tests; locally without it they are deselected (marker ``postgres``) and the run
says so at the end.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.review.helpers import PASSWORD, USERS, csrf_token, session_token

PG_ENV = "NECKMATCH_TEST_PG_URL"
_deselected: list[str] = []


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _in_ci():
        return
    missing = {"postgres": not os.environ.get(PG_ENV), "browser": shutil.which("chromium") is None}
    keep, drop = [], []
    for item in items:
        gone = any(missing[m] and item.get_closest_marker(m) for m in missing)
        (drop if gone else keep).append(item)
    if drop:
        _deselected.extend(i.nodeid for i in drop)
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _deselected:
        terminalreporter.write_line(f"review: {len(_deselected)} test(s) deselected: PostgreSQL ({PG_ENV}; eval "
                                    "\"$(.ci/postgres.sh start)\") or chromium (apt-get install chromium) missing")


@pytest.fixture(scope="session")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A results folder of `neckmatch run` on 2 synthetic cases (no maps): SYN001 with an MR image
    (``mri.image``), SYN002 without."""
    import json

    from neckmatch.cohort import run_cohort
    from neckmatch.synth import SynthParams, generate_cohort

    root = tmp_path_factory.mktemp("review")
    generate_cohort(2, 11, root / "cohort", SynthParams(mri_image=True))
    manifest = root / "cohort" / "SYN002" / "case.json"
    doc = json.loads(manifest.read_text())
    del doc["mri"]["image"]
    manifest.write_text(json.dumps(doc))
    (root / "cohort" / "SYN002" / "mri" / "image.nii.gz").unlink()
    run_cohort(root / "cohort", root / "results", workers=1, maps=False)
    return root / "results"


def _pg_admin_url() -> str:
    url = os.environ.get(PG_ENV)
    if not url:
        pytest.fail(f"{PG_ENV} is not set: CI must provide PostgreSQL (.ci/postgres.sh start)")
    return url


@contextmanager
def _pg_db(prefix: str, template: str | None = None) -> Iterator[tuple[str, str]]:
    """A throwaway PostgreSQL database (a copy of ``template`` if given): ``(name, url)``; dropped afterwards."""
    from sqlalchemy import create_engine, text

    admin_url = _pg_admin_url()
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")))
    try:
        yield name, re.sub(r"/[^/]*$", f"/{name}", admin_url)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def pg_database() -> Iterator[str]:
    """A fresh, empty PostgreSQL database; its URL."""
    with _pg_db("nm_test") as (_, url):
        yield url


def _fill(url: str, results: Path) -> None:
    """Migrate, add the users of :data:`USERS`, register the results' cases."""
    from neckmatch.review.auth import add_user
    from neckmatch.review.commands import open_db
    from neckmatch.review.db import WebSession, utcnow
    from neckmatch.review.service import import_results

    with open_db(url) as db:
        for name, role in USERS.items():
            user = add_user(db, name, role, PASSWORD)
            db.add(WebSession(token_hash=hashlib.sha256(session_token(name).encode()).hexdigest(), user_id=user.id,
                              csrf=csrf_token(name), expires_at=utcnow() + timedelta(hours=12)))
        import_results(db, results)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory, results: Path) -> Path:
    """A filled SQLite review database, copied by each test (argon2 hashing is slow on purpose)."""
    path = tmp_path_factory.mktemp("template") / "review.sqlite"
    _fill(f"sqlite:///{path}", results)
    from sqlalchemy import create_engine, text

    engine = create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:  # fold the write-ahead log into the file before copying it
        conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
    engine.dispose()
    return path


@pytest.fixture(scope="session")
def pg_template(results: Path) -> Iterator[str]:
    """The name of a filled PostgreSQL template database (CREATE DATABASE ... TEMPLATE copies it)."""
    with _pg_db("nm_tpl") as (name, url):
        _fill(url, results)
        yield name


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty review database, once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'review.sqlite'}"
    return str(request.getfixturevalue("pg_database"))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def review_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A review database with the users of :data:`USERS` (password :data:`PASSWORD`), a session for each
    (:func:`tests.review.helpers.as_user`) and the cases of ``results`` registered, once on SQLite and once
    on PostgreSQL (a fresh copy per test)."""
    if request.param == "sqlite":
        path = tmp_path / "review.sqlite"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
        return
    with _pg_db("nm_test", request.getfixturevalue("pg_template")) as (_, url):
        yield url


@pytest.fixture
def app(review_db: str, results: Path) -> Iterator[Any]:
    """The application over ``results`` on ``review_db``."""
    from neckmatch.review.app import create_app

    application = create_app(results, review_db)
    yield application
    application.state.engine.dispose()


@pytest.fixture
def sqlite_db(sqlite_template: Path, tmp_path: Path) -> str:
    """Like ``review_db``, on SQLite only (for tests of the web layer that do not depend on the database)."""
    path = tmp_path / "review.sqlite"
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def sqlite_app(sqlite_db: str, results: Path) -> Iterator[Any]:
    """The application on ``sqlite_db``."""
    from neckmatch.review.app import create_app

    application = create_app(results, sqlite_db)
    yield application
    application.state.engine.dispose()
