"""The review web application (FastAPI): server-rendered pages and a JSON API over :mod:`.service`.

Security (``docs/review-security.md``): server-side sessions in an HttpOnly, SameSite=Strict cookie; a CSRF token
on every form and on every state-changing API call (``X-CSRF-Token``); login throttling; a role check on every
endpoint (anonymous API calls get 401, pages redirect to the login); strict security headers; logs name items by
their database ids, never a case id or a case folder.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from neckmatch.errors import InputError
from neckmatch.review import service
from neckmatch.review.auth import Throttled, end_session, login, session_of, start_session
from neckmatch.review.db import Item, ReviewCase, User, make_engine, session_factory, upgrade

__all__ = ["COOKIE", "LOGIN_COOKIE", "create_app"]

COOKIE = "nm_session"
LOGIN_COOKIE = "nm_login_csrf"
HERE = Path(__file__).parent
log = logging.getLogger("neckmatch.review")
_CSP = ("default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; img-src 'self' data: blob:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
_HEADERS = {"Content-Security-Policy": _CSP, "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}
_STATUS = {service.Conflict: 409, service.Forbidden: 403, service.NotFound: 404, InputError: 422}
AUDIT_ROLES = ("adjudicator", "admin")


class _Denied(Exception):
    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status, self.detail = status, detail


_env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True)
router = APIRouter()


def create_app(results_dir: str | Path | None, url: str, *, secure_cookies: bool = False) -> FastAPI:
    """The application on the database at ``url`` (migrated first), with the cases of ``results_dir``.

    Parameters
    ----------
    results_dir : path or None
        A ``neckmatch run`` results folder whose cases are registered (None: only those already known).
    url : str
        SQLAlchemy URL of the review database.
    secure_cookies : bool
        Mark cookies ``Secure`` (behind HTTPS).
    """
    upgrade(url)
    engine = make_engine(url)
    factory = session_factory(engine)
    if results_dir is not None:
        with factory() as db, db.begin():
            service.import_results(db, results_dir)
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    app.state.engine, app.state.factory, app.state.secure_cookies = engine, factory, secure_cookies
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.middleware("http")(_headers)
    app.add_exception_handler(_Denied, _denied)  # type: ignore[arg-type]
    for cls, status in _STATUS.items():
        app.add_exception_handler(cls, _error_handler(status))
    app.include_router(router)
    return app


@contextmanager
def _tx(request: Request) -> Iterator[Session]:
    """A session in one transaction (committed on success, rolled back on an exception)."""
    with request.app.state.factory() as db, db.begin():
        yield db


def _need(request: Request, db: Session, roles: tuple[str, ...] | None = None) -> tuple[User, Any]:
    """The logged-in user and session, else 401; a role outside ``roles`` gets 403."""
    found = session_of(db, request.cookies.get(COOKIE))
    if found is None:
        raise _Denied(401, "log in first")
    if roles is not None and found[0].role not in roles:
        raise _Denied(403, f"role '{found[0].role}' may not do this")
    return found


def _page(name: str, request: Request, status: int = 200, **ctx: Any) -> HTMLResponse:
    return HTMLResponse(_env.get_template(name).render(request=request, **ctx), status_code=status)


async def _headers(request: Request, call_next: Callable[[Request], Any]) -> Response:
    response = await call_next(request)
    for k, v in _HEADERS.items():
        response.headers.setdefault(k, v)
    return response


async def _denied(request: Request, exc: _Denied) -> Response:
    if request.url.path.startswith("/api/"):
        return JSONResponse({"detail": exc.detail}, status_code=exc.status)
    if exc.status == 401:
        return RedirectResponse("/login", status_code=303)
    return _page("error.html", request, exc.status, message=exc.detail, user=None)


def _error_handler(status: int) -> Callable[..., Any]:
    async def handle(request: Request, exc: Exception) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": str(exc)}, status_code=status)
        return _page("error.html", request, status, message=str(exc), user=None)
    return handle


def _check_csrf(given: str | None, expected: str) -> None:
    if not given or not hmac.compare_digest(given, expected):
        raise _Denied(403, "missing or wrong CSRF token")


# ---- login / logout -----------------------------------------------------------------------------------------
@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request) -> Response:
    token = secrets.token_urlsafe(32)
    resp = _page("login.html", request, csrf=token, user=None, message="")
    resp.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="strict", secure=request.app.state.secure_cookies,
                    path="/login")
    return resp


@router.post("/login")
async def login_post(request: Request) -> Response:
    form = await request.form()
    _check_csrf(str(form.get("csrf") or ""), request.cookies.get(LOGIN_COOKIE) or "-")
    name, password = str(form.get("name") or ""), str(form.get("password") or "")
    try:
        with _tx(request) as db:
            user = login(db, name, password)
            token = start_session(db, user)[0] if user is not None else None
    except Throttled:
        log.warning("login throttled")
        return _page("login.html", request, 429, csrf=form.get("csrf"), user=None,
                     message="Too many failed attempts; try again later.")
    if token is None:
        log.info("failed login")
        return _page("login.html", request, 401, csrf=form.get("csrf"), user=None, message="Wrong name or password.")
    resp = RedirectResponse("/", status_code=303)
    resp.set_cookie(COOKIE, token, httponly=True, samesite="strict", secure=request.app.state.secure_cookies,
                    path="/", max_age=12 * 3600)
    resp.delete_cookie(LOGIN_COOKIE, path="/login")
    return resp


@router.post("/logout")
async def logout(request: Request) -> Response:
    form = await request.form()
    with _tx(request) as db:
        _, ws = _need(request, db)
        _check_csrf(str(form.get("csrf") or ""), ws.csrf)
        end_session(db, request.cookies.get(COOKIE))
    resp = RedirectResponse("/login", status_code=303)
    resp.delete_cookie(COOKIE, path="/")
    return resp


# ---- pages --------------------------------------------------------------------------------------------------
@router.get("/", response_class=HTMLResponse)
def index(request: Request) -> Response:
    with _tx(request) as db:
        user, ws = _need(request, db)
        return _page("index.html", request, user=user, csrf=ws.csrf, queue=service.queue(db, user),
                     progress=service.progress(db, user))


@router.get("/cases/{case_pk}", response_class=HTMLResponse)
def case_page(request: Request, case_pk: int) -> Response:
    with _tx(request) as db:
        user, ws = _need(request, db)
        return _page("case.html", request, user=user, csrf=ws.csrf, state=service.case_state(db, user, case_pk),
                     audit_ok=user.role in AUDIT_ROLES)


@router.get("/cases/{case_pk}/items/{item_id}", response_class=HTMLResponse)
def item_page(request: Request, case_pk: int, item_id: int) -> Response:
    with _tx(request) as db:
        user, ws = _need(request, db)
        view = service.item_view(db, user, case_pk, item_id)
        case = db.get(ReviewCase, case_pk)
        assert case is not None
        return _page("item.html", request, user=user, csrf=ws.csrf, v=view, message="",
                     has_image=_has_image(case.case_dir))


@router.post("/cases/{case_pk}/items/{item_id}")
async def item_post(request: Request, case_pk: int, item_id: int) -> Response:
    form = await request.form()
    action, _, partner = str(form.get("choice") or "").partition(":")
    with _tx(request) as db:
        user, ws = _need(request, db)
        _check_csrf(str(form.get("csrf") or ""), ws.csrf)
        service.decide(db, user, case_pk, item_id, action, partner or None, _int(form.get("version")),
                       str(form.get("reason") or "")[:2000])
        nxt = next((q for q in service.queue(db, user) if q["case"] == case_pk), None)
    target = f"/cases/{case_pk}/items/{nxt['item']}" if nxt else f"/cases/{case_pk}"
    return RedirectResponse(target, status_code=303)


def _item_media(request: Request, case_pk: int, item_id: int) -> tuple[dict[str, Any], str, float]:
    """For a volume of an item (any logged-in user who may see the item): its view, case folder and tolerance."""
    with _tx(request) as db:
        user, _ = _need(request, db)
        view = service.item_view(db, user, case_pk, item_id)
        case = db.get(ReviewCase, case_pk)
        assert case is not None
        return view, case.case_dir, case.tolerance_mm


@router.get("/cases/{case_pk}/items/{item_id}/labels.nii.gz")
def labels(request: Request, case_pk: int, item_id: int) -> Response:
    from neckmatch.review.media import highlight_labels

    view, case_dir, tol = _item_media(request, case_pk, item_id)
    node, cands = service.highlight_nodes(view)
    body = highlight_labels(case_dir, tol, node, cands, service.item_centre(view))
    return Response(body, media_type="application/octet-stream")


@router.get("/cases/{case_pk}/items/{item_id}/image.nii.gz")
def image(request: Request, case_pk: int, item_id: int) -> Response:
    from neckmatch.review.media import image_volume

    view, case_dir, tol = _item_media(request, case_pk, item_id)
    body = image_volume(case_dir, tol, service.item_centre(view))
    if body is None:
        raise service.NotFound("this case has no MR image")
    return Response(body, media_type="application/octet-stream")


@router.get("/cases/{case_pk}/map.glb")
def map_glb(request: Request, case_pk: int) -> Response:
    from fastapi.responses import FileResponse

    from neckmatch.review.media import blind_map_glb

    with _tx(request) as db:
        _need(request, db)
        case = db.get(ReviewCase, case_pk)
        if case is None:
            raise service.NotFound(f"no case {case_pk}")
        case_dir, tol = case.case_dir, case.tolerance_mm
    return FileResponse(blind_map_glb(case_dir, tol), media_type="model/gltf-binary")


@router.get("/cases/{case_pk}/audit", response_class=HTMLResponse)
def audit_page(request: Request, case_pk: int) -> Response:
    with _tx(request) as db:
        user, ws = _need(request, db, AUDIT_ROLES)
        state = service.case_state(db, user, case_pk)
        return _page("audit.html", request, user=user, csrf=ws.csrf, state=state,
                     entries=service.audit_entries(db, case_pk))


# ---- JSON API -----------------------------------------------------------------------------------------------
@router.get("/api/me")
def api_me(request: Request) -> dict[str, Any]:
    with _tx(request) as db:
        user, ws = _need(request, db)
        return {"name": user.name, "role": user.role, "csrf": ws.csrf}


@router.get("/api/progress")
def api_progress(request: Request) -> list[dict[str, Any]]:
    with _tx(request) as db:
        user, _ = _need(request, db)
        return service.progress(db, user)


@router.get("/api/queue")
def api_queue(request: Request) -> list[dict[str, Any]]:
    with _tx(request) as db:
        user, _ = _need(request, db)
        return service.queue(db, user)


@router.get("/api/cases")
def api_cases(request: Request) -> list[dict[str, Any]]:
    with _tx(request) as db:
        _need(request, db)
        return _cases(db)


@router.get("/api/cases/{case_pk}")
def api_case(request: Request, case_pk: int) -> dict[str, Any]:
    with _tx(request) as db:
        user, _ = _need(request, db)
        return service.case_state(db, user, case_pk)


@router.get("/api/cases/{case_pk}/items/{item_id}")
def api_item(request: Request, case_pk: int, item_id: int) -> dict[str, Any]:
    with _tx(request) as db:
        user, _ = _need(request, db)
        return service.item_view(db, user, case_pk, item_id)


@router.post("/api/cases/{case_pk}/items/{item_id}/decision")
async def api_decide(request: Request, case_pk: int, item_id: int) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise InputError("request", "body", "must be a JSON object {action, partner, version, reason}")
    with _tx(request) as db:
        user, ws = _need(request, db)
        _check_csrf(request.headers.get("x-csrf-token"), ws.csrf)
        return service.decide(db, user, case_pk, item_id, str(body.get("action") or ""),
                              None if body.get("partner") in (None, "") else str(body["partner"]),
                              _int(body.get("version")), str(body.get("reason") or "")[:2000])


@router.get("/api/cases/{case_pk}/audit")
def api_audit(request: Request, case_pk: int) -> list[dict[str, Any]]:
    with _tx(request) as db:
        _need(request, db, AUDIT_ROLES)
        return service.audit_entries(db, case_pk)


def _has_image(case_dir: str) -> bool:
    """Whether the case names an MR image the viewer can show (``mri.image``, NIfTI or NRRD); reads case.json only."""
    from neckmatch.io.case import read_manifest
    from neckmatch.io.labelmap import label_map_format

    try:
        image = read_manifest(case_dir)["files"].get("mri.image")
        return image is not None and label_map_format(image) != "dicom"
    except InputError:
        return False


def _int(value: Any) -> int:
    try:
        return int(str(value))
    except ValueError:
        raise InputError("request", "version", f"must be an integer, got '{value}'") from None


def _cases(db: Session) -> list[dict[str, Any]]:
    """Every case with its item counts by status."""
    counts: dict[int, dict[str, int]] = {}
    for pk, status, n in db.execute(select(Item.case_pk, Item.status, func.count()).group_by(Item.case_pk,
                                                                                              Item.status)):
        counts.setdefault(pk, {})[status] = n
    out = []
    for c in db.scalars(select(ReviewCase).order_by(ReviewCase.case_id)):
        k = counts.get(c.id, {})
        out.append({"case": c.id, "case_id": c.case_id, "open": k.get("open", 0),
                    "adjudication": k.get("adjudication", 0), "settled": k.get("settled", 0)})
    return out
