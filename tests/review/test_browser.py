"""The review pages in a real browser (Playwright driving Debian's chromium, headless, WebGL by SwiftShader):
the item page's viewers (the MR image under the label map, the 3-D map on demand), and keyboard review as the
radiologist, blind pathologist, a disagreement reaching the adjudicator, the audit page.

The two tests are independent (each its own server and database copy; xdist may run them side by side). The
workflow test serves the vendored viewers (niivue, model-viewer) as empty scripts, in a chromium without GPU
process: under SwiftShader their WebGL costs seconds of CPU per page, and the viewer test is the one that looks
at them.

Screenshots of the item page and of the adjudicator's queue are written to the test's temporary folder (and to
``$NECKMATCH_SCREENSHOTS`` when set; docs/img/ holds two of them).
"""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.review.helpers import PASSWORD

pytestmark = pytest.mark.browser
CHROMIUM_ARGS = ["--enable-unsafe-swiftshader", "--use-angle=swiftshader", "--no-sandbox"]


@pytest.fixture
def server(sqlite_template: Path, results: Path, tmp_path: Path) -> Iterator[str]:
    """A real server (uvicorn in a thread, 127.0.0.1, a free port) on a copy of the test database."""
    import socket

    import uvicorn

    from neckmatch.review.app import create_app

    db = tmp_path / "review.sqlite"
    shutil.copy(sqlite_template, db)
    app = create_app(results, f"sqlite:///{db}")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    for _ in range(1200):  # bounded wait for startup
        if srv.started:
            break
        time.sleep(0.05)
    assert srv.started
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        thread.join(timeout=60)
        app.state.engine.dispose()


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    """The Playwright driver of the module (one; both browsers come from it)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p


def _launch(driver: Any, args: list[str]) -> Any:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("Debian's chromium is not installed (apt-get install chromium; .ci/run does it)")
    return driver.chromium.launch(executable_path=chromium, args=args)


@pytest.fixture(scope="module")
def browser(driver: Any) -> Iterator[Any]:
    """One chromium with WebGL (SwiftShader) for the module (each page gets a context of its own)."""
    b = _launch(driver, CHROMIUM_ARGS)
    yield b
    b.close()


@pytest.fixture(scope="module")
def plain_browser(driver: Any) -> Iterator[Any]:
    """A chromium without GPU process, for pages whose viewers are not loaded (no software compositing)."""
    b = _launch(driver, ["--disable-gpu", "--no-sandbox"])
    yield b
    b.close()


def _page(browser: Any, base: str, name: str, seen: list[str], errors: list[str], viewers: bool = True) -> Any:
    """A new context logged in as ``name``; ``viewers=False`` serves the vendored viewers as empty scripts."""
    page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
    if not viewers:
        page.route("**/static/vendor/*.js", lambda route: route.fulfill(content_type="text/javascript", body=""))
    page.set_default_timeout(180_000)  # a decision re-solves the case: seconds on a loaded 2-core machine, not 30
    page.on("request", lambda r: seen.append(r.url))
    page.on("pageerror", lambda e: errors.append(f"{name}: {e}"))
    page.goto(base + "/login")
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(base + "/")
    return page


def _shot(page: Any, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    page.screenshot(path=str(path))
    extra = os.environ.get("NECKMATCH_SCREENSHOTS")
    if extra:
        Path(extra).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(extra) / name)
    return path


def _same_origin_only(server: str, seen: list[str], pages: tuple[Any, ...]) -> None:
    assert seen and all(u.startswith(server) for u in seen)  # nothing from another host
    for page in pages:
        srcs = page.eval_on_selector_all("script[src], link[href]", "els => els.map(e => e.src || e.href)")
        assert all(s.startswith(server) for s in srcs)


def test_item_page_draws_the_mr_image_under_the_label_map_and_the_3d_map_on_demand(server, browser, tmp_path):
    seen: list[str] = []
    errors: list[str] = []
    rad = _page(browser, server, "rad", seen, errors)
    rad.keyboard.press("n")  # the first item of the queue
    rad.wait_for_url(re.compile(r".*/cases/\d+/items/\d+$"))
    rad.wait_for_selector('#mr-viewer[data-ready="1"]', timeout=120_000)  # niivue drew the label map (WebGL)
    assert rad.get_attribute("#mr-viewer", "data-error") is None
    assert rad.get_attribute("#mr-viewer", "data-layers") == "2"  # the MR image under the label map (SYN001)
    assert any(u.endswith("/image.nii.gz") for u in seen)
    assert "Shortcuts" in rad.content()
    assert _shot(rad, tmp_path, "review-item.png").stat().st_size > 10_000
    with rad.expect_response(lambda r: r.url.endswith("/map.glb"), timeout=300_000) as glb:
        rad.keyboard.press("m")  # the 3-D map (vendored model-viewer), made on demand
    assert glb.value.status == 200  # the body again through the page's own session (the browser may drop it)
    assert rad.request.get(glb.value.url).body()[:4] == b"glTF"
    assert rad.is_visible("#map3d")
    assert errors == []
    _same_origin_only(server, seen, (rad,))
    rad.context.close()


def test_keyboard_review_blind_adjudication_and_audit(server, plain_browser, tmp_path):
    browser = plain_browser
    seen: list[str] = []
    errors: list[str] = []
    rad = _page(browser, server, "rad", seen, errors, viewers=False)
    rad.keyboard.press("n")  # the first item of the queue
    rad.wait_for_url(re.compile(r".*/cases/\d+/items/\d+$"))
    first = rad.url
    choice = rad.get_attribute('button[data-key="1"]', "value")
    rad.keyboard.press("1")  # candidate 1 is the same node
    rad.wait_for_url(lambda url: url != first)
    second = rad.url
    rad.keyboard.press("c")  # cannot tell ...
    rad.wait_for_url(lambda url: url != second)
    rad.goto(second)
    assert "cannot_tell" in rad.inner_text(".decisions")
    with rad.expect_navigation():
        rad.keyboard.press("z")  # ... undone before it settles
    rad.goto(second)
    assert rad.locator(".decisions").count() == 0

    path = _page(browser, server, "path", seen, errors, viewers=False)
    path.goto(first)
    assert path.locator(".decisions").count() == 0  # blind: nothing of the radiologist's decision
    assert choice.split(":", 1)[1] in path.inner_text(".candidates")
    path.keyboard.press("u")  # no counterpart: disagrees with the radiologist
    path.wait_for_url(lambda url: url != first)

    adj = _page(browser, server, "adj", seen, errors, viewers=False)
    queue = adj.inner_text("table.queue")
    assert "link " + choice.split(":", 1)[1] in queue and "unmatched" in queue  # both decisions
    _shot(adj, tmp_path, "review-adjudicator.png")
    adj.keyboard.press("n")
    adj.wait_for_url(first)
    with adj.expect_navigation():
        adj.keyboard.press("1")
    adj.goto(first)
    assert "adjudicated" in adj.inner_text("h1")
    case = re.search(r"/cases/(\d+)/", first).group(1)
    adj.goto(f"{server}/cases/{case}/audit")
    audit = adj.inner_text("table.audit")
    for word in ("disagree", "settle", "adjudicated", "undo"):
        assert word in audit
    assert errors == []
    _same_origin_only(server, seen, (rad, path, adj))
    for page in (rad, path, adj):
        page.context.close()
