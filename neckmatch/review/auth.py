"""People and sessions: argon2id password hashes, login throttling, server-side sessions with CSRF tokens.

A session cookie holds a random token; the database keeps only its SHA-256, the user and the session's CSRF
token, so logging out or disabling a user ends the session at once. After :data:`MAX_FAILURES` failed logins
for one name within :data:`THROTTLE_WINDOW` further attempts are refused, even with the right password.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from neckmatch.errors import InputError
from neckmatch.review.db import ROLES, LoginFailure, User, WebSession, utcnow

__all__ = ["MAX_FAILURES", "SESSION_HOURS", "THROTTLE_WINDOW", "Throttled", "add_user", "disable_user",
           "end_session", "list_users", "login", "read_password_file", "session_of", "start_session"]

MAX_FAILURES = 5
THROTTLE_WINDOW = timedelta(minutes=15)
SESSION_HOURS = 12
MIN_PASSWORD = 12
_hasher = PasswordHasher()  # argon2id with the library's (RFC 9106 low-memory) parameters
_DUMMY = _hasher.hash("not a password of anybody")


class Throttled(Exception):
    """Too many failed logins for this name recently."""


def read_password_file(path: str | Path) -> str:
    """The password in ``path`` (its first line, without the line end); at least :data:`MIN_PASSWORD` chars."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "", "password file not found")
    lines = path.read_text(encoding="utf-8").splitlines()
    password = lines[0] if lines else ""
    if len(password) < MIN_PASSWORD:
        raise InputError(path, "password", f"must be at least {MIN_PASSWORD} characters, got {len(password)}")
    return password


def add_user(db: Session, name: str, role: str, password: str) -> User:
    """Create a user (``role`` one of :data:`neckmatch.review.db.ROLES`); the password is stored as argon2id."""
    if role not in ROLES:
        raise InputError("users add", "--role", f"must be one of {', '.join(ROLES)}, got '{role}'")
    if not name or len(name) > 64 or not all(c.isalnum() or c in "._-" for c in name):
        raise InputError("users add", "NAME", f"must be 1-64 letters, digits, '.', '_' or '-', got '{name}'")
    if db.scalar(select(User).where(User.name == name)) is not None:
        raise InputError("users add", "NAME", f"user '{name}' exists already")
    user = User(name=name, role=role, password_hash=_hasher.hash(password), active=True)
    db.add(user)
    db.flush()
    return user


def list_users(db: Session) -> list[User]:
    """Every user, by name."""
    return list(db.scalars(select(User).order_by(User.name)))


def disable_user(db: Session, name: str) -> User:
    """Disable a user and end their sessions."""
    user = db.scalar(select(User).where(User.name == name))
    if user is None:
        raise InputError("users disable", "NAME", f"no user '{name}'")
    user.active = False
    db.execute(delete(WebSession).where(WebSession.user_id == user.id))
    return user


def login(db: Session, name: str, password: str) -> User | None:
    """The active user with this name and password, or None (the failure is recorded).

    Raises
    ------
    Throttled
        After :data:`MAX_FAILURES` failures for ``name`` within :data:`THROTTLE_WINDOW`.
    """
    since = utcnow() - THROTTLE_WINDOW
    failures = db.scalar(select(func.count()).select_from(LoginFailure)
                         .where(LoginFailure.name == name[:64], LoginFailure.at >= since)) or 0
    if failures >= MAX_FAILURES:
        raise Throttled(name)
    user = db.scalar(select(User).where(User.name == name))
    try:
        _hasher.verify(user.password_hash if user is not None else _DUMMY, password)
        ok = user is not None and user.active
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        ok = False
    if not ok:
        db.add(LoginFailure(name=name[:64]))
        return None
    assert user is not None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    return user


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start_session(db: Session, user: User) -> tuple[str, str]:
    """A new session of ``user``: ``(cookie token, csrf token)``; only the token's SHA-256 is stored."""
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    db.add(WebSession(token_hash=_digest(token), user_id=user.id, csrf=csrf,
                      expires_at=utcnow() + timedelta(hours=SESSION_HOURS)))
    return token, csrf


def session_of(db: Session, token: str | None) -> tuple[User, WebSession] | None:
    """The active user and session of a cookie token, or None (unknown, expired or disabled)."""
    if not token:
        return None
    ws = db.get(WebSession, _digest(token))
    if ws is None:
        return None
    expires = ws.expires_at if ws.expires_at.tzinfo else ws.expires_at.replace(tzinfo=utcnow().tzinfo)
    if expires <= utcnow():
        return None
    user = db.get(User, ws.user_id)
    if user is None or not user.active:
        return None
    return user, ws


def end_session(db: Session, token: str | None) -> None:
    """Log out: forget the session."""
    if token:
        db.execute(delete(WebSession).where(WebSession.token_hash == _digest(token)))
