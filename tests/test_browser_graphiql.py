"""GraphiQL in headless Chromium: sign up, set the token header, see your tasks.

GraphiQL's page (api/graphiql.html) loads React and GraphiQL from unpkg.com, which
this network cannot reach. The test packs exactly the package versions the page names from the
npm registry and answers the browser's requests for unpkg URLs from them (tests/browser/cdn.py,
specs/decisions.md 14); the browser still checks each file against the page's Subresource
Integrity hash, and the page's Content-Security-Policy is in force: no test may see a violation.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from tests.browser.cdn import WATCH_CSP, csp_violations, page_assets, serve_from
from tests.browser.support import ARTIFACTS, chromium, require_browser
from tests.conftest import TEST_SECRET
from tests.live import service


@pytest.fixture(scope="session")
def graphiql_assets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The files of exactly the packages (and versions) the service's GraphiQL page names."""
    require_browser()
    return page_assets("/graphql", tmp_path_factory.mktemp("graphiql-assets"))


def _open_graphiql(browser, base: str, assets: Path, errors: list[str]):  # type: ignore[no-untyped-def]
    """A new page on GraphiQL; CSP violations are kept on the page, console errors in
    `errors`."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.route("https://unpkg.com/**", serve_from(assets))
    context.add_init_script(WATCH_CSP)
    page = context.new_page()
    page.on("console", lambda message: _keep_error(message, errors))
    _load(page, f"{base}/graphql")
    return page


# GraphiQL's settings dialog says so on every page whose body hides its overflow, as
# Strawberry's page does; it is not an error here (api/graphiql.py).
_SCROLL_LOCK_NOTICE = "react-remove-scroll-bar: cannot calculate scrollbar size"


def _keep_error(message, errors: list[str]) -> None:  # type: ignore[no-untyped-def]
    """Console errors (CSP violations and integrity failures among them), on every page
    the tab shows."""
    if message.type == "error" and not message.text.startswith(_SCROLL_LOCK_NOTICE):
        errors.append(message.text)


def _load(page, url: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(url)
    page.wait_for_selector(".graphiql-query-editor .CodeMirror", timeout=20000)


def _local_storage(page) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return dict(page.evaluate("() => Object.entries(localStorage)"))


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
    """...and the token is in no localStorage key afterwards, though the history is."""
    errors: list[str] = []
    failed: list[str] = []
    with service(tmp_path) as (base, _proc), chromium() as browser:
        page = _open_graphiql(browser, base, graphiql_assets, errors)
        page.on("requestfailed", lambda request: failed.append(request.url))

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
        stored = _local_storage(page)
        violations = csp_violations(page)
    nodes = [edge["node"] for edge in listed["data"]["tasks"]["edges"]]
    assert listed["data"]["tasks"]["totalCount"] == 1
    assert [n["title"] for n in nodes] == ["Seen in GraphiQL"]
    assert nodes[0]["id"] == created["data"]["createTask"]["id"]
    assert not failed, failed
    assert violations == []
    assert errors == []
    # GraphiQL keeps its tabs and history, without the headers: nothing holds the token.
    history = json.loads(stored["graphiql:queries"])["queries"]
    assert [item["operationName"] for item in history] == ["SignUp", "Add", "MyTasks"]
    assert [item["headers"] for item in history] == [None, None, None]
    assert [key for key, value in stored.items() if token in key or token in value] == []


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
        errors: list[str] = []
        page = _open_graphiql(browser, base, graphiql_assets, errors)
        sockets: list[str] = []
        page.on("websocket", lambda ws: sockets.append(ws.url))  # opened by the first run
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
        violations = csp_violations(page)
    assert violations == []
    assert errors == []
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


def _headers_editor_text(page) -> str:  # type: ignore[no-untyped-def]
    page.get_by_role("button", name="Headers").click()
    return str(
        page.eval_on_selector(
            ".graphiql-editor-tool .graphiql-editor:not(.hidden) .CodeMirror",
            "el => el.CodeMirror.getValue()",
        )
    )


def _persist_headers(page, on: bool) -> None:  # type: ignore[no-untyped-def]
    """GraphiQL's settings dialog, "Persist headers": On or Off."""
    page.get_by_role("button", name="Open settings dialog").click()
    page.click("#enable-persist-headers" if on else "#disable-persist-headers")
    page.keyboard.press("Escape")


def _holding(stored: dict[str, str], secret: str) -> list[str]:
    return sorted(key for key, value in stored.items() if secret in key or secret in value)


def test_graphiql_keeps_the_token_only_when_asked(tmp_path: Path, graphiql_assets: Path) -> None:
    """Headers outlive the page only after "Persist headers" is turned on in GraphiQL's
    settings; turning it off forgets them. A browser that used Strawberry's page (which turned
    it on for everyone) has its stored token forgotten on the first visit."""
    old_token = f"old-token-{uuid.uuid4().hex}"
    old_headers = json.dumps({"Authorization": f"Bearer {old_token}"})
    strawberry_state = {
        "graphiql:shouldPersistHeaders": "true",
        "graphiql:headers": old_headers,
        "graphiql:tabState": json.dumps(
            {
                "activeTabIndex": 0,
                "tabs": [
                    {
                        "id": "old",
                        "hash": None,
                        "title": "Me",
                        "query": "query Me { me { email } }",
                        "variables": None,
                        "headers": old_headers,
                        "operationName": "Me",
                        "response": None,
                    }
                ],
            }
        ),
        "graphiql:queries": json.dumps(
            {
                "queries": [
                    {
                        "query": "query Me { me { email } }",
                        "variables": None,
                        "headers": old_headers,
                        "operationName": "Me",
                    }
                ]
            }
        ),
    }
    errors: list[str] = []
    with service(tmp_path) as (base, _proc), chromium() as browser:
        email = f"persist-{uuid.uuid4().hex[:8]}@example.com"
        token = httpx.post(
            f"{base}/api/auth/signup", json={"email": email, "password": "password12"}
        ).json()["token"]
        page = _open_graphiql(browser, base, graphiql_assets, errors)
        page.goto(f"{base}/health")  # the same origin, the same localStorage
        page.evaluate(
            "state => { localStorage.clear();"
            " for (const [k, v] of Object.entries(state)) localStorage.setItem(k, v); }",
            strawberry_state,
        )
        _load(page, f"{base}/graphql")
        after_upgrade = _local_storage(page)

        page.get_by_role("button", name="Headers").click()
        _set_editor(
            page,
            ".graphiql-editor-tool .graphiql-editor:not(.hidden) .CodeMirror",
            json.dumps({"Authorization": f"Bearer {token}"}),
        )
        assert _run_and_read(page, "query Me {\n  me { email }\n}") == {
            "data": {"me": {"email": email}}
        }
        not_asked = _local_storage(page)

        _persist_headers(page, on=True)
        asked = _local_storage(page)
        _load(page, f"{base}/graphql")
        reloaded_headers = _headers_editor_text(page)

        _persist_headers(page, on=False)
        turned_off = _local_storage(page)
        _load(page, f"{base}/graphql")
        final_headers = _headers_editor_text(page)
        violations = csp_violations(page)
    assert _holding(after_upgrade, old_token) == []
    assert after_upgrade["graphiql:shouldPersistHeaders"] == "false"
    assert "query Me" in after_upgrade["graphiql:queries"]  # the history stays
    assert _holding(not_asked, token) == []
    # Asked: the headers editor's text and the history keep it (and the open tabs, once
    # GraphiQL next saves them).
    assert {"graphiql:headers", "graphiql:queries"} <= set(_holding(asked, token))
    assert token in reloaded_headers
    assert _holding(turned_off, token) == []
    assert token not in final_headers
    assert violations == []
    assert errors == [], "\n".join(errors)
