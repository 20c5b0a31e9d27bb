"""The web application over HTTP: pages, JSON API, and the security checklist (docs/review-security.md)."""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.review.helpers import PASSWORD, as_user, login, login_csrf


def _first_mr_item(client: Any) -> dict[str, Any]:
    q = next(q for q in client.get("/api/queue").json() if q["key"].startswith("mr:"))
    return client.get(f"/api/cases/{q['case']}/items/{q['item']}").json()


def _post(client: Any, view: dict[str, Any], action: str, partner: str | None = None, **kw: Any) -> Any:
    body = {"action": action, "partner": partner, "version": view["version"], **kw}
    return client.post(f"/api/cases/{view['case']}/items/{view['item']}/decision", json=body)


def _api_routes() -> list[tuple[str, str]]:
    from neckmatch.review.app import router

    out = []
    for route in router.routes:
        path = getattr(route, "path", "")
        if path.startswith("/api/"):
            for method in sorted(route.methods):
                out.append((method, re.sub(r"\{[^}]+\}", "1", path)))
    return out


def test_anonymous_api_calls_get_401_and_pages_redirect_to_login(sqlite_app):
    anon = TestClient(sqlite_app, base_url="http://127.0.0.1")
    routes = _api_routes()
    assert len(routes) >= 7
    for method, path in routes:
        assert anon.request(method, path, json={}).status_code == 401, (method, path)
    for path in ("/", "/cases/1", "/cases/1/items/1", "/cases/1/audit"):
        resp = anon.get(path, follow_redirects=False)
        assert (resp.status_code, resp.headers["location"]) == (303, "/login")


def test_session_cookie_is_httponly_and_samesite(sqlite_app):
    client = TestClient(sqlite_app, base_url="http://127.0.0.1")
    resp = client.post("/login", data={"name": "rad", "password": PASSWORD, "csrf": login_csrf(client)},
                       follow_redirects=False)
    cookie = next(c for c in resp.headers.get_list("set-cookie") if c.startswith("nm_session="))
    flags = {f.strip().lower() for f in cookie.split(";")[1:]}
    assert {"httponly", "samesite=strict", "path=/"} <= flags


def test_every_form_and_api_write_needs_the_csrf_token(sqlite_app):
    rad = as_user(sqlite_app, "rad")
    view = _first_mr_item(rad)
    form = {"choice": "unmatched", "version": view["version"]}
    url = f"/cases/{view['case']}/items/{view['item']}"
    assert rad.post(url, data=form).status_code == 403
    assert rad.post(url, data={**form, "csrf": "forged"}).status_code == 403
    token = rad.headers.pop("X-CSRF-Token")
    assert _post(rad, view, "unmatched").status_code == 403
    assert rad.post("/logout", data={}).status_code == 403
    rad.headers["X-CSRF-Token"] = token
    assert rad.get(f"/api/cases/{view['case']}/items/{view['item']}").json()["decisions"] == {}
    fresh = TestClient(sqlite_app, base_url="http://127.0.0.1")  # the login form too (its own cookie-bound token)
    assert fresh.post("/login", data={"name": "rad", "password": PASSWORD}).status_code == 403


def test_login_is_throttled_after_repeated_failures(sqlite_app):
    client = TestClient(sqlite_app, base_url="http://127.0.0.1")
    for _ in range(5):
        resp = client.post("/login", data={"name": "path", "password": "wrong password!", "csrf": login_csrf(client)})
        assert resp.status_code == 401
    resp = client.post("/login", data={"name": "path", "password": PASSWORD, "csrf": login_csrf(client)},
                       follow_redirects=False)
    assert resp.status_code == 429 and "nm_session" not in resp.cookies
    login(sqlite_app, "rad")  # another name is not affected


def test_role_checks(sqlite_app):
    rad, boss, adj = as_user(sqlite_app, "rad"), as_user(sqlite_app, "boss"), as_user(sqlite_app, "adj")
    view = _first_mr_item(rad)
    assert rad.get(f"/api/cases/{view['case']}/audit").status_code == 403
    assert rad.get(f"/cases/{view['case']}/audit").status_code == 403
    assert adj.get(f"/api/cases/{view['case']}/audit").status_code == 200
    assert boss.get(f"/cases/{view['case']}/audit").status_code == 200
    assert _post(boss, view, "unmatched").status_code == 403
    assert _post(adj, view, "unmatched").status_code == 409  # open items are the reviewers'


def test_a_reviewer_cannot_read_the_other_reviewers_open_decision(app):
    rad, path = as_user(app, "rad"), as_user(app, "path")
    view = _first_mr_item(rad)
    partner = view["candidates"][0]["partner"]
    assert _post(rad, view, "link", partner, reason="secret reasoning").status_code == 200
    seen = path.get(f"/api/cases/{view['case']}/items/{view['item']}")
    assert seen.json()["decisions"] == {} and "secret reasoning" not in seen.text
    page = path.get(f"/cases/{view['case']}/items/{view['item']}")
    assert page.status_code == 200 and "secret reasoning" not in page.text and partner in page.text
    assert "secret reasoning" not in path.get(f"/api/cases/{view['case']}").text


def test_a_stale_version_gets_a_clear_409(app):
    rad, path = as_user(app, "rad"), as_user(app, "path")
    view = _first_mr_item(rad)
    assert _post(rad, view, "unmatched").status_code == 200
    resp = _post(path, view, "unmatched")  # still the version rad started from
    assert resp.status_code == 409 and "changed since version" in resp.json()["detail"]


def test_security_headers_and_no_foreign_hosts(sqlite_app):
    rad = as_user(sqlite_app, "rad")
    view = _first_mr_item(rad)
    for path in ("/login", "/", f"/cases/{view['case']}", f"/cases/{view['case']}/items/{view['item']}"):
        resp = rad.get(path)
        assert resp.headers["x-frame-options"] == "DENY"
        assert resp.headers["x-content-type-options"] == "nosniff"
        assert "default-src 'self'" in resp.headers["content-security-policy"]
        assert not re.search(r'(src|href)="(https?:)?//', resp.text), path


def test_logout_and_disabling_end_the_session(sqlite_app, sqlite_db):
    from neckmatch.review.auth import disable_user
    from neckmatch.review.commands import open_db

    rad, path = login(sqlite_app, "rad"), as_user(sqlite_app, "path")
    assert rad.post("/logout", data={"csrf": rad.headers["X-CSRF-Token"]}, follow_redirects=False).status_code == 303
    assert rad.get("/api/me").status_code == 401
    with open_db(sqlite_db) as db:
        disable_user(db, "path")
    assert path.get("/api/me").status_code == 401


def test_reasons_are_escaped_in_pages(sqlite_app):
    rad, path, boss = as_user(sqlite_app, "rad"), as_user(sqlite_app, "path"), as_user(sqlite_app, "boss")
    view = _first_mr_item(rad)
    assert _post(rad, view, "unmatched", reason="<script>alert(1)</script>").status_code == 200
    view = path.get(f"/api/cases/{view['case']}/items/{view['item']}").json()
    assert _post(path, view, "unmatched").json()["status"] == "settled"
    for page in (f"/cases/{view['case']}/items/{view['item']}", f"/cases/{view['case']}/audit"):
        text = boss.get(page).text
        assert "<script>alert(1)</script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text


def test_pages_walk_a_disagreement_to_the_adjudicator_and_the_audit(app, caplog):
    caplog.set_level(logging.DEBUG)
    rad, path, adj = as_user(app, "rad"), as_user(app, "path"), as_user(app, "adj")
    start = rad.get("/")
    first = re.search(r'id="next"[^>]*href="(/cases/(\d+)/items/(\d+))"', start.text)
    assert first is not None
    page = rad.get(first.group(1)).text
    version = re.search(r'name="version" value="(\d+)"', page).group(1)
    choice = re.search(r'name="choice" value="(link:[^"]+)"', page).group(1)
    resp = rad.post(first.group(1), data={"csrf": rad.headers["X-CSRF-Token"], "version": version,
                                          "choice": choice}, follow_redirects=False)
    assert resp.status_code == 303 and resp.headers["location"] != first.group(1)  # on to the next item
    page = path.get(first.group(1)).text
    version = re.search(r'name="version" value="(\d+)"', page).group(1)
    resp = path.post(first.group(1), data={"csrf": path.headers["X-CSRF-Token"], "version": version,
                                           "choice": "cannot_tell", "reason": "fragmented"}, follow_redirects=False)
    assert resp.status_code == 303
    queue = adj.get("/").text
    assert first.group(1) in queue
    page = adj.get(first.group(1)).text
    assert choice.split(":", 1)[1] in page and "fragmented" in page  # both decisions, for the adjudicator
    version = re.search(r'name="version" value="(\d+)"', page).group(1)
    resp = adj.post(first.group(1), data={"csrf": adj.headers["X-CSRF-Token"], "version": version,
                                          "choice": choice, "reason": "sizes agree"}, follow_redirects=False)
    assert resp.status_code == 303
    audit = adj.get(f"/cases/{first.group(2)}/audit").text
    for word in ("disagree", "settle", "adjudicated", "sizes agree", "rad", "path", "adj"):
        assert word in audit
    entries = adj.get(f"/api/cases/{first.group(2)}/audit").json()
    assert [e["event"] for e in entries][-5:] == ["decide", "decide", "disagree", "decide", "settle"]
    assert [e["user"] for e in entries][-5:] == ["rad", "path", "path", "adj", "adj"]
    case_ids = {c["case_id"] for c in adj.get("/api/cases").json()}
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "adjudication" in logged
    assert not any(cid in logged for cid in case_ids)  # no patient identifiers in the logs


@pytest.mark.parametrize("path", ["/api/cases/999", "/api/cases/1/items/99999"])
def test_unknown_ids_are_404(sqlite_app, path):
    assert as_user(sqlite_app, "rad").get(path).status_code == 404


def test_the_item_page_shows_the_mr_image_only_where_the_case_has_one(sqlite_app):
    rad = as_user(sqlite_app, "rad")
    cases = {c["case_id"]: c["case"] for c in rad.get("/api/cases").json()}
    first = {}
    for q in rad.get("/api/queue").json():
        first.setdefault(q["case_id"], q["item"])
    assert {"SYN001", "SYN002"} <= set(first)
    base = f"/cases/{cases['SYN001']}/items/{first['SYN001']}"
    assert f'data-image="{base}/image.nii.gz"' in rad.get(base).text
    body = rad.get(base + "/image.nii.gz")
    assert body.status_code == 200 and body.content[:2] == b"\x1f\x8b"  # gzipped NIfTI
    other = f"/cases/{cases['SYN002']}/items/{first['SYN002']}"
    assert "data-image" not in rad.get(other).text
    assert rad.get(other + "/image.nii.gz").status_code == 404
    rad.cookies.clear()
    assert rad.get(base + "/image.nii.gz", follow_redirects=False).status_code == 303  # to the login


def test_the_specimen_panel_shows_the_rows_and_marks_candidates_but_no_status(sqlite_app):
    from types import SimpleNamespace

    from neckmatch.review.app import _env

    rad = as_user(sqlite_app, "rad")
    view = _first_mr_item(rad)
    cand = view["candidates"][0]["partner"]
    view |= {"has_specimen": True, "specimen": [
        {"image": "R-piece", "specimen_node": 4, "mr_node": int(view["node"]), "confidence": 0.93, "xyz": [0, 0, 0],
         "residual_mm": 1.2, "path_nodes": [cand, "R-X-9"], "distance_mm": 2.5, "marked": [cand]}]}
    user = SimpleNamespace(role="radiologist", name="rad")
    html = _env.get_template("item.html").render(request=None, user=user, csrf="x", v=view, message="",
                                                 has_image=False)
    panel = html.split("<h2>Specimen MRI</h2>", 1)[1].split("</section>", 1)[0]
    assert "R-piece" in panel and "2.5" in panel and "0.93" in panel and f"<strong>{cand}</strong>" in panel
    assert "R-X-9" in panel and "<strong>R-X-9</strong>" not in panel and 'class="marked"' in panel
    assert "positive" not in panel and "negative" not in panel
    view |= {"specimen": []}
    html = _env.get_template("item.html").render(request=None, user=user, csrf="x", v=view, message="",
                                                 has_image=False)
    assert "No specimen node near this node." in html
    assert "Specimen MRI" not in rad.get(f"/cases/{view['case']}/items/{view['item']}").text  # no specimen block
