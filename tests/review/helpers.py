"""Helpers of the review tests: the test users and logged-in HTTP clients."""

from __future__ import annotations

import re
from typing import Any

PASSWORD = "correct horse battery staple"
USERS = {"rad": "radiologist", "path": "pathologist", "adj": "adjudicator", "boss": "admin",
         "rad2": "radiologist"}


def session_token(name: str) -> str:
    """The cookie token of the session the test databases hold for ``name`` (no password hashing per test)."""
    return f"test-session-of-{name}"


def csrf_token(name: str) -> str:
    """The CSRF token of that session."""
    return f"test-csrf-of-{name}"


def as_user(app: Any, name: str) -> Any:
    """A TestClient in the test database's session of ``name``, its CSRF token in ``X-CSRF-Token``."""
    from fastapi.testclient import TestClient

    client = TestClient(app, base_url="http://127.0.0.1")
    client.cookies.set("nm_session", session_token(name))
    client.headers["X-CSRF-Token"] = csrf_token(name)
    return client


def login(app: Any, name: str, password: str = PASSWORD) -> Any:
    """A TestClient logged in as ``name`` with its CSRF token in the ``X-CSRF-Token`` header."""
    from fastapi.testclient import TestClient

    client = TestClient(app, base_url="http://127.0.0.1")
    resp = client.post("/login", data={"name": name, "password": password, "csrf": login_csrf(client)},
                       follow_redirects=False)
    assert resp.status_code == 303, resp.text
    client.headers["X-CSRF-Token"] = client.get("/api/me").json()["csrf"]
    return client


def login_csrf(client: Any) -> str:
    """The login form's CSRF token (GET /login sets its cookie)."""
    page = client.get("/login")
    match = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert match is not None
    return match.group(1)
