"""The review database: migrations on SQLite and PostgreSQL, the append-only audit table."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.exc import DBAPIError

from neckmatch.review.db import default_url, make_engine, upgrade

TABLES = {"users", "sessions", "login_failures", "cases", "items", "decisions", "audit", "alembic_version"}


def test_upgrade_creates_every_table_and_is_idempotent(db_url):
    upgrade(db_url)
    upgrade(db_url)  # a second upgrade finds nothing to do
    engine = make_engine(db_url)
    try:
        assert TABLES <= set(inspect(engine).get_table_names())
        with engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0001"
    finally:
        engine.dispose()


@pytest.mark.parametrize("statement", ["UPDATE audit SET reason = 'rewritten'", "DELETE FROM audit"])
def test_audit_refuses_update_and_delete(db_url, statement):
    upgrade(db_url)
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO audit (at, user_name, role, item_key, event, before, after, reason) "
                              "VALUES (CURRENT_TIMESTAMP, 'rad', 'radiologist', 'mr:1', 'decide', '', '', 'x')"))
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
            conn.execute(text(statement))
        with engine.connect() as conn:  # the row is still there, unchanged
            assert conn.execute(text("SELECT reason FROM audit")).scalars().all() == ["x"]
    finally:
        engine.dispose()


def test_default_url_is_the_results_folders_sqlite(tmp_path):
    assert default_url(tmp_path) == f"sqlite:///{tmp_path.resolve() / 'review.sqlite'}"
