"""The JavaScript clients the service exists for, in Node, against a real `python -m api`.

- `graphql-ws` (what web apps and GraphiQL use for subscriptions): events from every surface,
  in order, to their owner only; a bad token refused; a reconnect after the token expired,
  with a fresh token from `connectionParams`; queries and mutations over the socket.
- Apollo Client (core, over HTTP): Relay-style `fetchMore`, the normalized cache updated by a
  mutation's result, errors with their `extensions.code`.
- The README's own example, run as written (Node's WebSocket stands in for the browser's).

On PostgreSQL two instances share the database: subscribers connect to one, writes go to the
other. The scripts are in tests/js, installed from its lock file (the `js_clients` fixture).
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from tests.conftest import TEST_SECRET, token_for
from tests.live import service, service_log
from tests.node import node, run_node

README = Path(__file__).resolve().parent.parent / "README.md"
# Long enough that a loaded machine still connects, and subscribes, before the token expires
# (an expired token at connection_init is refused, not expired).
EXPIRING_SECONDS = 8


@dataclass
class Instances:
    """The running service: one instance on SQLite, two on one PostgreSQL database."""

    bases: list[str]

    @property
    def ws(self) -> str:
        """Where subscribers connect: the first instance."""
        return self.bases[0].replace("http://", "ws://", 1) + "/graphql"

    @property
    def writes(self) -> list[str]:
        """Where writes go: the other instance first, when there is one."""
        return list(reversed(self.bases))


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def instances(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Instances]:
    work = tmp_path_factory.mktemp(f"js-clients-{request.param}")
    env = {
        "BETTER_AUTH_SECRET": TEST_SECRET,
        "RATE_LIMIT_PER_ADDRESS": "100000/minute",
        "RATE_LIMIT_PER_EMAIL": "100000/minute",
    }
    if request.param == "sqlite":
        with service(work, DATABASE_URL=f"sqlite:///{work / 'todo.db'}", **env) as (base, proc):
            yield Instances([base])
            logs = [service_log(proc)]
    else:
        database_url = request.getfixturevalue("postgres_url")
        with (
            service(work / "a", DATABASE_URL=database_url, **env) as (first, proc_a),
            service(work / "b", DATABASE_URL=database_url, **env) as (second, proc_b),
        ):
            yield Instances([first, second])
            logs = [service_log(proc_a), service_log(proc_b)]
    for log in logs:  # refused tokens and expiry closes are expected, never an error
        assert "Traceback" not in log and " ERROR " not in log, log


def _signup(base: str) -> tuple[str, str, str]:
    """A new account: (email, token, user id)."""
    email = f"js-{uuid.uuid4().hex[:10]}@example.com"
    response = httpx.post(
        f"{base}/api/auth/signup", json={"email": email, "password": "password123"}, timeout=10
    )
    assert response.status_code == 201, response.text
    body = response.json()
    return email, body["token"], body["user"]["id"]


def _create(base: str, token: str, title: str) -> str:
    response = httpx.post(
        f"{base}/api/tasks",
        json={"title": title},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    return str(response.json()["task"]["id"])


def _titles(base: str, token: str) -> list[str]:
    response = httpx.get(
        f"{base}/api/tasks", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert response.status_code == 200, response.text
    return [task["title"] for task in response.json()["tasks"]]


def _event(kind: str, task_id: str, title: str | None = None, done: bool = False) -> dict:
    task = None if title is None else {"id": task_id, "title": title, "completed": done}
    return {"type": kind, "taskId": task_id, "task": task}


# --- graphql-ws ----------------------------------------------------------------------------


def test_graphql_ws_subscribers_get_their_own_events_in_commit_order(
    instances: Instances, js_clients: Path
) -> None:
    _, alice, _ = _signup(instances.bases[0])
    _, bob, _ = _signup(instances.bases[0])
    outcome = run_node(
        js_clients / "graphql_ws_client.mjs",
        "events",
        {"ws": instances.ws, "http": instances.writes, "alice": alice, "bob": bob},
    )
    first, second = outcome["ids"]["first"], outcome["ids"]["second"]
    assert outcome["alice"] == [
        _event("CREATED", first, "from REST"),
        _event("CREATED", second, "from GraphQL"),
        _event("UPDATED", first, "from REST", done=True),
        _event("UPDATED", second, "renamed"),
        _event("DELETED", first),
        _event("DELETED", second),
    ]
    assert outcome["bob"] == [_event("CREATED", outcome["ids"]["bob"], "bob's")]
    assert outcome["deletedOverSocket"] == {"data": {"deleteTask": first}}
    assert outcome["errors"] == [] and outcome["closes"] == []
    assert set(_titles(instances.bases[0], alice)) == {"marker"}  # both tasks are gone
    assert _titles(instances.bases[0], bob) == ["bob's", "marker"]


def test_graphql_ws_reconnects_with_a_fresh_token_after_expiry_and_resubscribes(
    instances: Instances, js_clients: Path
) -> None:
    _, fresh, user_id = _signup(instances.bases[0])
    outcome = run_node(
        js_clients / "graphql_ws_client.mjs",
        "reconnect",
        {
            "ws": instances.ws,
            "http": instances.writes,
            "expiring": token_for(user_id, expires_in=EXPIRING_SECONDS),
            "fresh": fresh,
        },
    )
    assert outcome["closes"][0] == {"code": 4403, "reason": "Token expired"}
    assert outcome["connects"] == 2 and outcome["connectionParamsCalls"] == 2
    assert outcome["errors"] == [] and outcome["completed"] is False
    assert outcome["event"]["type"] == "CREATED"
    assert outcome["event"]["task"]["title"] == "after reconnect"


@pytest.mark.parametrize("token", ["not-a-token", "other-secret"])
def test_graphql_ws_refuses_a_bad_token(instances: Instances, js_clients: Path, token: str) -> None:
    if token == "other-secret":
        token = jwt.encode(
            {"sub": str(uuid.uuid4()), "exp": int(time.time()) + 600},
            "another-secret-that-is-long-enough-000000",
            algorithm="HS256",
        )
    outcome = run_node(
        js_clients / "graphql_ws_client.mjs", "refused", {"ws": instances.ws, "token": token}
    )
    assert outcome == {
        "errors": [{"code": 4403, "reason": "Forbidden"}],
        "events": [],
        "connects": 0,
    }


def test_graphql_ws_queries_and_mutations_over_the_socket_match_http(
    instances: Instances, js_clients: Path
) -> None:
    email, token, _ = _signup(instances.bases[0])
    for title in ("one", "two", "three"):
        _create(instances.bases[0], token, title)
    outcome = run_node(
        js_clients / "graphql_ws_client.mjs",
        "operations",
        {"ws": instances.ws, "http": instances.writes, "token": token},
    )
    assert outcome["created"] == {
        "data": {"createTask": {"title": "over the socket", "completed": False}}
    }
    page = {
        "totalCount": 4,
        "edges": [{"node": {"title": "over the socket"}}, {"node": {"title": "three"}}],
        "pageInfo": {"hasNextPage": True},
    }
    me = {"email": email, "tasks": {"edges": [{"node": {"title": "over the socket"}}]}}
    assert outcome["overSocket"] == {"data": {"a": page, "b": page, "me": me}}
    assert outcome["overHttp"] == outcome["overSocket"]
    assert outcome["missing"] == {"data": {"task": None}}
    assert outcome["invalid"]["data"] is None
    [error] = outcome["invalid"]["errors"]
    assert error["extensions"] == {"code": "BAD_USER_INPUT"}
    assert error["message"] == "Title is required"


# --- Apollo Client -------------------------------------------------------------------------


def test_apollo_fetch_more_pages_reach_every_task_once(
    instances: Instances, js_clients: Path
) -> None:
    _, token, _ = _signup(instances.bases[0])
    for n in range(5):
        _create(instances.bases[0], token, f"task {n}")
    outcome = run_node(
        js_clients / "apollo_client.mjs",
        "paginate",
        {"http": instances.writes[0], "token": token, "pageSize": 2},
    )
    assert outcome["titles"] == [f"task {n}" for n in (4, 3, 2, 1, 0)]
    assert outcome["totalCount"] == 5
    assert outcome["cachedSizes"] == [2, 4, 5]
    assert outcome["requests"] == ["Tasks", "Tasks", "Tasks"]


def test_apollo_cache_takes_a_mutations_result_without_a_refetch(
    instances: Instances, js_clients: Path
) -> None:
    _, token, _ = _signup(instances.bases[0])
    outcome = run_node(
        js_clients / "apollo_client.mjs",
        "cacheUpdate",
        {"http": instances.writes[0], "token": token},
    )
    assert outcome["mutationResult"]["title"] == "done in the cache"
    assert outcome["mutationResult"]["completed"] is True
    assert outcome["mutationResult"]["__typename"] == "Task"
    assert outcome["listShows"] == {"title": "done in the cache", "completed": True}
    assert outcome["requestsAfterList"] == ["Done"]
    assert outcome["allRequests"] == ["Add", "Tasks", "Done"]
    assert _titles(instances.bases[0], token) == ["done in the cache"]


def test_apollo_surfaces_errors_with_their_codes(instances: Instances, js_clients: Path) -> None:
    email, token, _ = _signup(instances.bases[0])
    outcome = run_node(
        js_clients / "apollo_client.mjs",
        "errors",
        {"http": instances.writes[0], "token": token, "email": email},
    )

    def combined(message: str, code: str) -> dict[str, Any]:
        return {"kind": "CombinedGraphQLErrors", "errors": [{"message": message, "code": code}]}

    assert outcome == {
        "unauthenticated": combined("Unauthorized", "UNAUTHENTICATED"),
        "badInput": combined("Title is required", "BAD_USER_INPUT"),
        "notFound": combined("Task not found", "NOT_FOUND"),
        "wrongPassword": combined("Invalid email or password", "UNAUTHENTICATED"),
        "conflict": combined("Email already registered", "CONFLICT"),
    }
    assert _titles(instances.bases[0], token) == []


def test_apollo_persisted_query_link_registers_once_then_sends_hashes(
    instances: Instances, js_clients: Path
) -> None:
    """Hash first, registration on a miss, then hash-only GETs, from a new client on the other
    instance too (the documents are shared through the database)."""
    _, token, _ = _signup(instances.bases[0])
    outcome = run_node(
        js_clients / "apollo_client.mjs",
        "persisted",
        {"http": instances.bases[0], "other": instances.bases[-1], "token": token},
    )
    assert outcome["firstPage"] == 0
    assert outcome["added"] == "persisted"
    assert outcome["secondPage"] == ["persisted"]

    def sent(method: str, name: str, document: bool, status: int = 200) -> dict[str, Any]:
        return {"method": method, "operationName": name, "withDocument": document, "status": status}

    first = [
        {k: request[k] for k in ("method", "operationName", "withDocument", "status")}
        for request in outcome["firstRequests"]
    ]
    # PersistedQueryNotFound is a request error: 400 with graphql-response+json, which Apollo
    # Client asks for (the link reads the error from the body either way).
    assert first == [
        sent("GET", "Tasks", False, 400),  # PersistedQueryNotFound
        sent("POST", "Tasks", True),  # registration
        sent("POST", "Add", False, 400),  # mutations never go by GET
        sent("POST", "Add", True),
    ]
    assert all(request["hash"] for request in outcome["firstRequests"])
    [again] = outcome["secondRequests"]
    assert again == {
        "method": "GET",
        "operationName": "Tasks",
        "hash": outcome["firstRequests"][0]["hash"],
        "withDocument": False,
        "status": 200,
        "cacheControl": "private, no-store",
    }


@pytest.fixture(scope="module")
def trusted_service(js_clients: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One instance that runs only the documents of a manifest built from the client."""
    work = tmp_path_factory.mktemp("trusted")
    manifest = work / "persisted-documents.json"
    manifest.write_text(json.dumps(run_node(js_clients / "apollo_client.mjs", "manifest", {})))
    with service(
        work,
        DATABASE_URL=f"sqlite:///{work / 'todo.db'}",
        BETTER_AUTH_SECRET=TEST_SECRET,
        GRAPHQL_TRUSTED_DOCUMENTS=str(manifest),
    ) as (base, _proc):
        yield base


def test_trusted_documents_refuse_what_the_manifest_lacks(
    trusted_service: str, js_clients: Path
) -> None:
    _, token, _ = _signup(trusted_service)
    outcome = run_node(
        js_clients / "apollo_client.mjs", "trusted", {"http": trusted_service, "token": token}
    )
    assert outcome["allowed"] == {
        "data": {
            "tasks": {
                "__typename": "TaskConnection",
                "totalCount": 0,
                "edges": [],
                "pageInfo": {"__typename": "PageInfo", "hasNextPage": False, "endCursor": None},
            }
        }
    }
    assert outcome["refused"] == {
        "kind": "CombinedGraphQLErrors",
        "errors": [
            {
                "message": "Only the documents of this service's manifest may run here",
                "code": "UNTRUSTED_DOCUMENT",
            }
        ],
    }
    # The manifest's document by hash alone; the other by hash, then with its text: refused.
    assert [(r["operationName"], r["withDocument"]) for r in outcome["requests"]] == [
        ("Tasks", False),
        ("Other", False),
        ("Other", True),
    ]


# --- the README's example ------------------------------------------------------------------

README_HARNESS = """
import {{ finish, rest, untilLive, waitFor }} from "{lib}";

const CONFIG = JSON.parse(process.argv[2]);
let tokensGiven = 0;
async function getToken() {{
  tokensGiven += 1;
  return tokensGiven === 1 ? CONFIG.expiring : CONFIG.fresh;
}}
const changes = [];
function applyChange(change) {{
  changes.push(change);
}}
let refetches = 0;
function refetchAll() {{
  refetches += 1;
}}

// ---- the README's example, as written ----
{example}
// ---- end of the example ----

await untilLive(CONFIG.http, CONFIG.fresh, changes, new Set());
await waitFor("the reconnect after the token expired", () => tokensGiven >= 2, 20000);
await untilLive(CONFIG.http, CONFIG.fresh, changes, new Set());
const created = await rest(CONFIG.http, "POST", "/api/tasks", CONFIG.fresh, {{ title: "readme" }});
await waitFor("the event", () => changes.some((c) => c.taskId === created.body.task.id));
const cursors = changes.map((c) => c.cursor);
finish({{
  tokensGiven,
  refetches,
  twice: cursors.length - new Set(cursors).size,
  change: changes.find((c) => c.taskId === created.body.task.id),
}});
"""


def test_the_readme_example_works_as_written(
    instances: Instances, js_clients: Path, tmp_path: Path
) -> None:
    text = README.read_text()
    [example] = re.findall(r"with the `graphql-ws` client:\n\n```js\n(.*?)```", text, re.S)
    url = '"wss://api.example.com/graphql"'
    assert url in example, "the README's example no longer connects to its sample URL"
    script = tmp_path / "readme_example.mjs"
    script.write_text(
        README_HARNESS.format(
            lib=(js_clients / "lib.mjs").as_uri(),
            example=example.replace(url, f'"{instances.ws}"'),
        )
    )
    (tmp_path / "node_modules").symlink_to(js_clients / "node_modules")
    _, fresh, user_id = _signup(instances.bases[0])
    config = {
        "http": instances.writes[0],
        "expiring": token_for(user_id, expires_in=EXPIRING_SECONDS),
        "fresh": fresh,
    }
    # Node 20's WebSocket (the browser's API) is behind a flag; the example uses the global one.
    result = node(["--experimental-websocket", str(script)], config, cwd=tmp_path)
    assert result["tokensGiven"] == 2
    # The reconnect resubscribed with the last cursor: nothing came twice, nothing expired.
    assert result["twice"] == 0 and result["refetches"] == 0
    change = result["change"]
    assert change["type"] == "CREATED"
    assert change["task"]["title"] == "readme" and change["task"]["completed"] is False
