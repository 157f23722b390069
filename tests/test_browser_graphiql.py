"""GraphiQL in headless Chromium: sign up, set the token header, see your tasks.

GraphiQL's page loads React and GraphiQL from unpkg.com, which this network cannot reach. The
test installs those exact package versions from the npm registry and answers the browser's
requests for unpkg URLs from them (see specs/decisions.md, "GraphiQL assets"); the browser
still checks each file against the page's Subresource Integrity hash.
"""

from __future__ import annotations

import json
import mimetypes
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.browser.support import ARTIFACTS, chromium, require_browser
from tests.live import service

UNPKG = re.compile(r"^https://unpkg\.com/((?:@[^/@]+/)?[^/@]+)@([^/]+)/(.+)$")
STRAWBERRY_GRAPHIQL = Path(__import__("strawberry").__file__).parent / "static" / "graphiql.html"


@pytest.fixture(scope="session")
def graphiql_assets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """node_modules with exactly the packages (and versions) GraphiQL's page asks unpkg for."""
    require_browser()
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is needed to fetch GraphiQL's assets")
    wanted = sorted(
        {
            f"{m.group(1)}@{m.group(2)}"
            for m in map(
                UNPKG.match,
                re.findall(r"https://unpkg\.com/[^\"'\s]+", STRAWBERRY_GRAPHIQL.read_text()),
            )
            if m
        }
    )
    assert wanted, "GraphiQL's page names no unpkg assets any more"
    directory = tmp_path_factory.mktemp("graphiql-assets")
    (directory / "package.json").write_text('{"private": true}')
    subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", "--silent", *wanted],
        cwd=directory,
        check=True,
        capture_output=True,
        timeout=300,
    )
    return directory / "node_modules"


def _serve_from(node_modules: Path):  # type: ignore[no-untyped-def]
    def handle(route) -> None:  # type: ignore[no-untyped-def]
        match = UNPKG.match(route.request.url)
        path = node_modules / match.group(1) / match.group(3) if match else None
        if path is None or not path.is_file():
            route.fulfill(status=404, body="not installed")
            return
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        route.fulfill(
            status=200,
            body=path.read_bytes(),
            content_type=content_type,
            headers={"Access-Control-Allow-Origin": "*"},
        )

    return handle


def _set_editor(page, selector: str, text: str) -> None:  # type: ignore[no-untyped-def]
    page.eval_on_selector(selector, "(el, text) => el.CodeMirror.setValue(text)", text)


def _run_and_read(page, query: str) -> dict:  # type: ignore[no-untyped-def]
    _set_editor(page, ".graphiql-query-editor .CodeMirror", query)
    page.evaluate(
        "() => { const r = document.querySelector('.result-window .CodeMirror');"
        " if (r) r.CodeMirror.setValue(''); }"
    )
    page.wait_for_timeout(500)  # GraphiQL re-reads the operation name after a short debounce
    page.click(".graphiql-execute-button")
    page.wait_for_function(
        "() => { const r = document.querySelector('.result-window .CodeMirror');"
        " return r && r.CodeMirror.getValue().trim().length > 0; }",
        timeout=15000,
    )
    return json.loads(
        page.eval_on_selector(".result-window .CodeMirror", "el => el.CodeMirror.getValue()")
    )


def test_graphiql_signup_token_header_and_tasks(tmp_path: Path, graphiql_assets: Path) -> None:
    with service(tmp_path) as (base, _proc), chromium() as browser:
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        context.route("https://unpkg.com/**", _serve_from(graphiql_assets))
        page = context.new_page()
        failed: list[str] = []
        page.on("requestfailed", lambda request: failed.append(request.url))
        page.goto(f"{base}/graphql")
        page.wait_for_selector(".graphiql-query-editor .CodeMirror", timeout=20000)

        signup = _run_and_read(
            page,
            'mutation SignUp {\n  signup(email: "graphiql@example.com", '
            'password: "password123") {\n    token\n    user { id email }\n  }\n}',
        )
        token = signup["data"]["signup"]["token"]
        assert signup["data"]["signup"]["user"]["email"] == "graphiql@example.com"

        page.get_by_role("button", name="Headers").click()
        headers = json.dumps({"Authorization": f"Bearer {token}"})
        _set_editor(
            page, ".graphiql-editor-tool .graphiql-editor:not(.hidden) .CodeMirror", headers
        )

        created = _run_and_read(
            page,
            'mutation Add {\n  createTask(input: {title: "Seen in GraphiQL"}) {\n'
            "    id\n    title\n  }\n}",
        )
        assert created["data"]["createTask"]["title"] == "Seen in GraphiQL"
        listed = _run_and_read(
            page,
            "query MyTasks {\n  tasks(first: 10) {\n    totalCount\n"
            "    edges { node { id title completed createdAt } }\n  }\n}",
        )
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "graphiql-tasks.png"))
    nodes = [edge["node"] for edge in listed["data"]["tasks"]["edges"]]
    assert listed["data"]["tasks"]["totalCount"] == 1
    assert [n["title"] for n in nodes] == ["Seen in GraphiQL"]
    assert nodes[0]["id"] == created["data"]["createTask"]["id"]
    assert not failed, failed
