"""Alembic environment of the review database: runs on the connection given by
:func:`neckmatch.review.db.upgrade` (``config.attributes["connection"]``), never from an ini file."""

from __future__ import annotations

from alembic import context

from neckmatch.review.db import Base


def run_migrations() -> None:
    """Run the migrations on the connection :func:`neckmatch.review.db.upgrade` handed over."""
    connection = context.config.attributes.get("connection")
    if connection is None:  # pragma: no cover - only neckmatch.review.db.upgrade drives the migrations
        raise RuntimeError("run the review migrations through `neckmatch db upgrade`")
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


if hasattr(context, "config"):  # inside Alembic; a plain import (e.g. pytest's doctest collection) does nothing
    run_migrations()
