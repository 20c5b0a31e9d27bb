"""The review database: tables (SQLAlchemy 2), engine creation and migrations (Alembic).

SQLite (the default, ``RESULTS/review.sqlite``) and PostgreSQL (``postgresql+psycopg://...``) hold the same
schema, created by the migrations in ``neckmatch/review/migrations``; the ``audit`` table is append-only on both
(database triggers refuse UPDATE and DELETE).
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

__all__ = [
    "ROLES",
    "REVIEWER_ROLES",
    "AuditEntry",
    "Base",
    "Decision",
    "Item",
    "LoginFailure",
    "ReviewCase",
    "User",
    "WebSession",
    "default_url",
    "make_engine",
    "session_factory",
    "upgrade",
    "utcnow",
]

ROLES = ("radiologist", "pathologist", "adjudicator", "admin")
REVIEWER_ROLES = ("radiologist", "pathologist")
DB_FILE = "review.sqlite"


def utcnow() -> datetime:
    """Now, in UTC (timezone-aware)."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    """Declarative base of the review tables."""


class User(Base):
    """A person who may log in: one role, an argon2id password hash, active or disabled."""

    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class WebSession(Base):
    """A logged-in browser: the SHA-256 of its cookie token, its CSRF token, its expiry."""

    __tablename__ = "sessions"
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    csrf: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class LoginFailure(Base):
    """One failed login (for throttling): the name tried and when."""

    __tablename__ = "login_failures"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), index=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ReviewCase(Base):
    """A case of the results folder under review, with the engine's current solution (JSON)."""

    __tablename__ = "cases"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[str] = mapped_column(String(128), unique=True)
    case_dir: Mapped[str] = mapped_column(Text)
    tolerance_mm: Mapped[float] = mapped_column(Float, default=3.0)
    auto_threshold: Mapped[float | None] = mapped_column(Float, nullable=True)
    solution: Mapped[str | None] = mapped_column(Text, nullable=True)
    solves: Mapped[int] = mapped_column(Integer, default=0)
    version: Mapped[int] = mapped_column(Integer, default=1)


class Item(Base):
    """One undecided node of a case (``mr:<label>`` or ``path:<node id>``) and its state.

    ``status``: ``open`` (waiting for the two reviewers), ``adjudication`` (they disagree), ``settled``
    (``outcome`` / ``partner`` / ``provenance`` hold the result) or ``withdrawn`` (the engine decided it after a
    re-solve before anybody did). ``version`` is the optimistic lock: every change increments it.
    """

    __tablename__ = "items"
    __table_args__ = (UniqueConstraint("case_pk", "key"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_pk: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    key: Mapped[str] = mapped_column(String(160))
    kind: Mapped[str] = mapped_column(String(8))
    node: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16), default="open")
    outcome: Mapped[str | None] = mapped_column(String(16), nullable=True)
    partner: Mapped[str | None] = mapped_column(String(128), nullable=True)
    provenance: Mapped[str | None] = mapped_column(String(16), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    settled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    version: Mapped[int] = mapped_column(Integer, default=1)


class Decision(Base):
    """One person's decision on an item, in the slot of their role (one radiologist, one pathologist, one
    adjudicator per item). ``action``: ``link`` (with ``partner``), ``unmatched`` or ``cannot_tell``."""

    __tablename__ = "decisions"
    __table_args__ = (UniqueConstraint("item_id", "role"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"), index=True)
    role: Mapped[str] = mapped_column(String(16))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    action: Mapped[str] = mapped_column(String(16))
    partner: Mapped[str | None] = mapped_column(String(128), nullable=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    decided_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AuditEntry(Base):
    """Append-only record: who (name, role), when, which item, the state before and after (JSON), why."""

    __tablename__ = "audit"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    user_name: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    case_pk: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    item_key: Mapped[str] = mapped_column(String(160), default="")
    event: Mapped[str] = mapped_column(String(32))
    before: Mapped[str] = mapped_column(Text, default="")
    after: Mapped[str] = mapped_column(Text, default="")
    reason: Mapped[str] = mapped_column(Text, default="")


def default_url(folder: str | Path) -> str:
    """The embedded database of a results folder: ``sqlite:///<folder>/review.sqlite``."""
    return f"sqlite:///{Path(folder).resolve() / DB_FILE}"


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets a busy timeout, foreign keys and ``BEGIN IMMEDIATE`` transactions
    (writers queue instead of failing with "database is locked" half-way)."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # let SQLAlchemy's begin event issue BEGIN itself
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")  # with WAL: never corrupt; fsync at checkpoints
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)


def session_factory(engine: Engine) -> sessionmaker:
    """Sessions that keep loaded objects usable after commit."""
    return sessionmaker(engine, expire_on_commit=False)


_upgrade_lock = threading.Lock()
_upgraded: set[str] = set()


def upgrade(url: str, *, once: bool = False) -> None:
    """Bring the database at ``url`` to the newest schema (Alembic ``upgrade head``); idempotent.

    Alembic's context is process-global, so upgrades run one at a time; with ``once`` a URL already upgraded by
    this process is not looked at again.
    """
    with _upgrade_lock:
        if once and url in _upgraded:
            return
        _upgrade(url)
        _upgraded.add(url)


def _upgrade(url: str) -> None:
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    finally:
        engine.dispose()
