"""Swagger UI at /docs in headless Chromium, under the page's Content-Security-Policy.

The page loads swagger-ui-dist from unpkg.com, pinned with integrity hashes; the test answers
those requests from the npm package's own files (tests/browser/cdn.py). Swagger UI must show
the REST routes and run a request from "Try it out", with no CSP violation, no integrity
failure and no other console error.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser.cdn import WATCH_CSP, csp_violations, page_assets, serve_from
from tests.browser.support import ARTIFACTS, chromium, require_browser
from tests.live import service


@pytest.fixture(scope="session")
def docs_assets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_browser()
    return page_assets("/docs", tmp_path_factory.mktemp("docs-assets"))


def test_docs_show_the_routes_and_run_a_request(tmp_path: Path, docs_assets: Path) -> None:
    errors: list[str] = []
    failed: list[str] = []
    with service(tmp_path) as (base, _proc), chromium() as browser:
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        context.route("https://unpkg.com/**", serve_from(docs_assets))
        context.add_init_script(WATCH_CSP)
        page = context.new_page()
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("requestfailed", lambda request: failed.append(request.url))
        page.goto(f"{base}/docs")
        page.wait_for_selector(".opblock-summary-path", timeout=20000)
        paths = page.eval_on_selector_all(
            ".opblock-summary-path", "els => els.map(e => e.getAttribute('data-path'))"
        )

        # "Try it out" on GET /health: a fetch to the service, which connect-src allows.
        health = page.locator("#operations-operations-health_health_get")
        health.locator(".opblock-summary").click()
        health.get_by_role("button", name="Try it out").click()
        health.get_by_role("button", name="Execute").click()
        status = health.locator(".live-responses-table tr.response .response-col_status").first
        status.wait_for(timeout=10000)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "docs.png"), full_page=True)
        body = health.locator(".live-responses-table .response-col_description .microlight").first
        result = (status.inner_text().strip(), body.inner_text())
        violations = csp_violations(page)
    assert {"/api/tasks", "/api/tasks/{task_id}", "/api/auth/signup", "/api/auth/login"} <= set(
        paths
    )
    assert result[0] == "200"
    assert '"status": "healthy"' in result[1]
    assert violations == []
    assert errors == [], "\n".join(errors)
    assert failed == []
