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
import uuid
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from tests.browser.support import ARTIFACTS, chromium, require_browser
from tests.conftest import TEST_SECRET
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


def _result_text(page) -> str:  # type: ignore[no-untyped-def]
    return str(
        page.eval_on_selector(".result-window .CodeMirror", "el => el.CodeMirror.getValue()")
    )


def test_graphiql_subscription_shows_each_event_from_a_rest_write(
    tmp_path: Path, graphiql_assets: Path, database_url: str
) -> None:
    """GraphiQL subscribes over graphql-ws with the Headers tab as `connection_init` payload;
    each write through REST appears in the results pane (on SQLite and PostgreSQL)."""
    with (
        service(tmp_path, DATABASE_URL=database_url, BETTER_AUTH_SECRET=TEST_SECRET) as (
            base,
            _proc,
        ),
        chromium() as browser,
    ):
        signup = httpx.post(
            f"{base}/api/auth/signup",
            json={"email": f"live-{uuid.uuid4().hex[:8]}@example.com", "password": "password12"},
        )
        token = signup.json()["token"]
        auth = {"Authorization": f"Bearer {token}"}
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        context.route("https://unpkg.com/**", _serve_from(graphiql_assets))
        page = context.new_page()
        sockets: list[str] = []
        page.on("websocket", lambda ws: sockets.append(ws.url))
        page.goto(f"{base}/graphql")
        page.wait_for_selector(".graphiql-query-editor .CodeMirror", timeout=20000)
        page.get_by_role("button", name="Headers").click()
        _set_editor(
            page,
            ".graphiql-editor-tool .graphiql-editor:not(.hidden) .CodeMirror",
            json.dumps(auth),
        )
        _set_editor(
            page,
            ".graphiql-query-editor .CodeMirror",
            "subscription Live {\n  taskEvents {\n    type\n    taskId\n"
            "    task { title completed }\n  }\n}",
        )
        page.wait_for_timeout(500)  # GraphiQL re-reads the operation name after a debounce
        page.click(".graphiql-execute-button")

        # No message says a subscription has started: write until one write's event shows.
        seen = None
        for attempt in range(20):
            created = httpx.post(
                f"{base}/api/tasks", json={"title": f"from REST {attempt}"}, headers=auth
            ).json()["task"]
            try:
                page.wait_for_function(
                    "id => document.querySelector('.result-window .CodeMirror')"
                    ".CodeMirror.getValue().includes(id)",
                    arg=created["id"],
                    timeout=1000,
                )
            except PlaywrightTimeout:
                continue
            seen = created
            break
        assert seen is not None, f"no event in the results pane: {_result_text(page)!r}"
        assert json.loads(_result_text(page)) == {
            "data": {
                "taskEvents": {
                    "type": "CREATED",
                    "taskId": seen["id"],
                    "task": {"title": seen["title"], "completed": False},
                }
            }
        }

        updated = httpx.put(
            f"{base}/api/tasks/{seen['id']}", json={"completed": True}, headers=auth
        )
        assert updated.status_code == 200
        page.wait_for_function(
            "() => document.querySelector('.result-window .CodeMirror')"
            ".CodeMirror.getValue().includes('UPDATED')",
            timeout=10000,
        )
        ARTIFACTS.mkdir(exist_ok=True)
        database = database_url.split(":", 1)[0]
        page.screenshot(path=str(ARTIFACTS / f"graphiql-subscription-{database}.png"))
        pane = json.loads(_result_text(page))
    assert pane == {
        "data": {
            "taskEvents": {
                "type": "UPDATED",
                "taskId": seen["id"],
                "task": {"title": seen["title"], "completed": True},
            }
        }
    }
    assert sockets == [base.replace("http://", "ws://", 1) + "/graphql"]
