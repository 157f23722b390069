"""In a real browser: the frontend's cross-origin calls succeed, other origins are refused.

Headless Chromium runs a static page served on another origin; the page makes the frontend's
calls with `fetch` and a bearer token. An HTTP client would accept responses a browser refuses
(missing CORS headers on errors, failed preflights); here Chromium is the judge.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.browser.support import ARTIFACTS, chromium, require_browser, static_server
from tests.live import free_port, service

PAGE = Path(__file__).parent / "browser" / "frontend_page.html"


@pytest.fixture(autouse=True)
def _needs_browser() -> None:
    require_browser()


def _page_dir(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    site.mkdir()
    shutil.copy(PAGE, site / "index.html")
    return site


def run_page(browser, url: str, screenshot: str) -> list[dict]:  # type: ignore[no-untyped-def]
    """Open the page, wait until its calls are done, keep a screenshot, return its results."""
    page = browser.new_page()
    page.goto(url)
    page.wait_for_function("window.done === true", timeout=20000)
    results = page.evaluate("window.results")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{screenshot}.png"), full_page=True)
    return results  # type: ignore[no-any-return]


def test_frontend_calls_succeed_cross_origin(tmp_path: Path) -> None:
    page_port = free_port()
    frontend_origin = f"http://127.0.0.1:{page_port}"
    with (
        service(tmp_path / "svc", FRONTEND_URL=frontend_origin) as (api, _proc),
        static_server(_page_dir(tmp_path), page_port) as site,
        chromium() as browser,
    ):
        results = run_page(browser, f"{site}/index.html?api={api}", "frontend-cross-origin")
    steps = {r["step"]: r for r in results}
    expected = [
        "signup",
        "login",
        "create",
        "list",
        "list-content",
        "get",
        "update",
        "update-content",
        "unauthorized",
        "delete",
        "gone",
    ]
    assert list(steps) == expected
    failed = [r for r in results if not r["ok"]]
    assert not failed, failed


def test_other_origins_are_refused_by_the_browser(tmp_path: Path) -> None:
    page_port = free_port()
    with (
        service(tmp_path / "svc", FRONTEND_URL="http://127.0.0.1:1") as (api, _proc),
        static_server(_page_dir(tmp_path), page_port) as site,
        chromium() as browser,
    ):
        results = run_page(browser, f"{site}/index.html?api={api}", "frontend-refused-origin")
    fetches = [r for r in results if "->" in r["detail"]]
    assert fetches, results
    # Every call failed inside the browser (TypeError: Failed to fetch), none got a status.
    assert all("TypeError" in r["detail"] for r in fetches), fetches
