"""Users, passwords and sessions: argon2id, throttling, disabled users, expiry."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from neckmatch.errors import InputError
from neckmatch.review import auth
from neckmatch.review.commands import open_db
from neckmatch.review.db import LoginFailure, User, WebSession, utcnow

PW = "a sufficiently long password"


@pytest.fixture
def url(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'review.sqlite'}"
    with open_db(url) as db:
        auth.add_user(db, "rad", "radiologist", PW)
    return url


def test_passwords_are_stored_as_argon2id(url):
    with open_db(url) as db:
        stored = db.scalar(select(User.password_hash).where(User.name == "rad"))
    assert stored.startswith("$argon2id$") and PW not in stored


def test_login_checks_the_password_and_throttles(url):
    with open_db(url) as db:
        assert auth.login(db, "rad", PW) is not None
        assert auth.login(db, "rad", "wrong") is None
        assert auth.login(db, "nobody", PW) is None
    with open_db(url) as db:
        for _ in range(auth.MAX_FAILURES - 1):
            assert auth.login(db, "rad", "wrong") is None
    with open_db(url) as db, pytest.raises(auth.Throttled):
        auth.login(db, "rad", PW)  # five failures within the window: even the right password is refused
    with open_db(url) as db:  # failures older than the window no longer count
        for f in db.scalars(select(LoginFailure)):
            db.delete(f)
        db.add(LoginFailure(name="rad", at=utcnow() - auth.THROTTLE_WINDOW - timedelta(minutes=1)))
    with open_db(url) as db:
        assert auth.login(db, "rad", PW) is not None


def test_disabled_users_cannot_log_in_and_lose_their_sessions(url):
    with open_db(url) as db:
        user = auth.login(db, "rad", PW)
        token, _ = auth.start_session(db, user)
    with open_db(url) as db:
        assert auth.session_of(db, token)[0].name == "rad"
        auth.disable_user(db, "rad")
    with open_db(url) as db:
        assert auth.session_of(db, token) is None
        assert auth.login(db, "rad", PW) is None


def test_sessions_expire_and_store_only_a_digest(url):
    with open_db(url) as db:
        user = auth.login(db, "rad", PW)
        token, csrf = auth.start_session(db, user)
    with open_db(url) as db:
        ws = db.scalars(select(WebSession)).one()
        assert token not in ws.token_hash and ws.csrf == csrf
        ws.expires_at = utcnow() - timedelta(seconds=1)
    with open_db(url) as db:
        assert auth.session_of(db, token) is None


def test_bad_users_and_password_files(url, tmp_path):
    with open_db(url) as db:
        with pytest.raises(InputError, match="exists already"):
            auth.add_user(db, "rad", "radiologist", PW)
        with pytest.raises(InputError, match="--role"):
            auth.add_user(db, "x", "surgeon", PW)
        with pytest.raises(InputError, match="NAME"):
            auth.add_user(db, "a b", "admin", PW)
    short = tmp_path / "pw"
    short.write_text("short\n")
    with pytest.raises(InputError, match="at least 12"):
        auth.read_password_file(short)
    short.write_text(PW + "\nsecond line ignored\n")
    assert auth.read_password_file(short) == PW
