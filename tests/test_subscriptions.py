"""`Subscription.taskEvents` over a real socket: the service runs as `python -m api` (on SQLite
and on PostgreSQL) and a WebSocket client speaks graphql-transport-ws to it.

Every wait is bounded (tests/ws_helpers.py): a missing event fails in seconds, not never.
"""

from __future__ import annotations

import asyncio
import base64
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url
from websockets.exceptions import InvalidStatus

from tests.conftest import TEST_SECRET, token_for
from tests.live import service, service_log
from tests.ws_helpers import (
    LEGACY_WS,
    TASK_EVENTS,
    TASK_EVENTS_AFTER,
    TRANSPORT_WS,
    graphql,
    next_event,
    open_socket,
    rest,
    signup,
    subscribed,
    wait_until_subscribed,
)

pytestmark = pytest.mark.asyncio

PER_CONNECTION = 3
PER_USER = 4

CREATE = "mutation($title: String!) { createTask(input: {title: $title}) { id } }"
UPDATE = """
mutation($id: ID!, $title: String) { updateTask(id: $id, input: {title: $title}) { id } }
"""
DELETE = "mutation($id: ID!) { deleteTask(id: $id) }"


@dataclass
class Live:
    base: str
    work: Path
    database_url: str


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Live]:
    """One service per database for the whole module; every test signs up its own users."""
    work = tmp_path_factory.mktemp(f"subscriptions-{request.param}")
    if request.param == "sqlite":
        database_url = f"sqlite:///{work / 'todo.db'}"
    else:
        database_url = request.getfixturevalue("postgres_url")
    with service(
        work,
        DATABASE_URL=database_url,
        BETTER_AUTH_SECRET=TEST_SECRET,
        RATE_LIMIT_PER_ADDRESS="100000/minute",
        RATE_LIMIT_PER_EMAIL="100000/minute",
        SUBSCRIPTIONS_PER_CONNECTION=str(PER_CONNECTION),
        SUBSCRIPTIONS_PER_USER=str(PER_USER),
        WS_KEEPALIVE_SECONDS="0.5",
    ) as (base, proc):
        yield Live(base, work, database_url)
        log = service_log(proc)
    # Refused tokens, caps, expiry and closed sockets are all expected: none is an error.
    assert "Traceback" not in log and " ERROR " not in log, log


@pytest.fixture
async def client(live: Live) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=live.base, timeout=10) as http:
        yield http


# --- events ------------------------------------------------------------------------------------


async def test_rest_and_graphql_writes_reach_every_tab_of_the_owner_only(
    live: Live, client: httpx.AsyncClient
) -> None:
    alice, _ = await signup(client)
    bob, _ = await signup(client)
    async with (
        subscribed(live.base, alice) as (tab1, (op1,)),
        subscribed(live.base, alice) as (tab2, (op2,)),
        subscribed(live.base, bob) as (bobs_tab, _),
    ):
        # Through REST: create, update, delete.
        created = (await rest(client, "POST", "/api/tasks", alice, {"title": "via REST"})).json()
        rest_id = created["task"]["id"]
        updated = await rest(
            client, "PUT", f"/api/tasks/{rest_id}", alice, {"completed": True, "description": "d"}
        )
        assert updated.status_code == 200
        assert (await rest(client, "DELETE", f"/api/tasks/{rest_id}", alice)).status_code == 204
        # Through GraphQL: create, update, delete.
        gql_id = (await graphql(client, alice, CREATE, {"title": "via GraphQL"}))["createTask"][
            "id"
        ]
        await graphql(client, alice, UPDATE, {"id": gql_id, "title": "renamed"})
        await graphql(client, alice, DELETE, {"id": gql_id})

        for tab, op in ((tab1, op1), (tab2, op2)):
            received = [await next_event(tab, op) for _ in range(6)]
            assert [(e["type"], e["taskId"]) for e in received] == [
                ("CREATED", rest_id),
                ("UPDATED", rest_id),
                ("DELETED", rest_id),
                ("CREATED", gql_id),
                ("UPDATED", gql_id),
                ("DELETED", gql_id),
            ]
            assert received[0]["task"]["title"] == "via REST"
            assert received[0]["task"]["completed"] is False
            assert received[1]["task"]["completed"] is True
            assert received[1]["task"]["description"] == "d"
            # The same instants REST returned (GraphQL spells them with an offset).
            rest_task = updated.json()["task"]
            assert (
                received[1]["task"]["updatedAt"]
                .replace("+00:00", "Z")
                .startswith(rest_task["updated_at"].removesuffix("Z"))
            )
            assert received[2]["task"] is None
            assert received[4]["task"]["title"] == "renamed"
            assert received[3]["task"]["owner"]["id"] == received[0]["task"]["owner"]["id"]
        await bobs_tab.expect_silence(0.5)


async def test_a_subscription_sees_only_writes_after_it_started(
    live: Live, client: httpx.AsyncClient
) -> None:
    alice, _ = await signup(client)
    await rest(client, "POST", "/api/tasks", alice, {"title": "before"})
    async with subscribed(live.base, alice) as (tab, (op,)):
        after = (await rest(client, "POST", "/api/tasks", alice, {"title": "after"})).json()
        event = await next_event(tab, op)
        assert event["taskId"] == after["task"]["id"]
        await tab.expect_silence(0.3)


async def test_unsubscribing_stops_events_and_frees_the_slot(
    live: Live, client: httpx.AsyncClient
) -> None:
    alice, _ = await signup(client)
    async with subscribed(live.base, alice, subscriptions=PER_CONNECTION) as (tab, ops):
        await tab.complete(ops[0])
        await wait_until_subscribed(tab)
        await rest(client, "POST", "/api/tasks", alice, {"title": "one"})
        seen = {(await tab.receive())["id"] for _ in ops[1:]}
        assert seen == set(ops[1:])
        await tab.expect_silence(0.3)
        replacement = await tab.subscribe()  # the completed one's slot is free again
        await wait_until_subscribed(tab)
        await rest(client, "POST", "/api/tasks", alice, {"title": "two"})
        seen = {(await tab.receive())["id"] for _ in range(PER_CONNECTION)}
        assert seen == {replacement, *ops[1:]}


# --- authentication ----------------------------------------------------------------------------


async def test_a_client_that_drops_for_5_s_resumes_with_its_last_cursor_once_each(
    live: Live, client: httpx.AsyncClient
) -> None:
    """Writes keep coming while the client's socket is gone for 5 s; subscribing again with
    `after` set to the last cursor it saw replays what it missed, then goes live: every event
    once, in order."""
    token, _ = await signup(client)
    expected: list[tuple[str, str]] = []
    received: list[tuple[str, str]] = []

    async def write_for(seconds: float) -> None:
        ids: list[str] = []
        deadline = time.monotonic() + seconds
        i = 0
        while time.monotonic() < deadline:
            if i % 3 == 2:
                task_id = ids.pop(0)
                await rest(client, "DELETE", f"/api/tasks/{task_id}", token)
                expected.append(("DELETED", task_id))
            elif i % 3 == 1:
                await graphql(client, token, UPDATE, {"id": ids[-1], "title": f"u{i}"})
                expected.append(("UPDATED", ids[-1]))
            else:
                response = await rest(client, "POST", "/api/tasks", token, {"title": f"t{i}"})
                ids.append(response.json()["task"]["id"])
                expected.append(("CREATED", ids[-1]))
            i += 1
            await asyncio.sleep(0.1)

    async def receive(socket: Any, op: str, until: float) -> str | None:
        cursor = None
        while time.monotonic() < until:
            try:
                message = await socket.receive(wait=max(0.01, until - time.monotonic()))
            except TimeoutError:
                break
            assert message["id"] == op and message["type"] == "next", message
            event = message["payload"]["data"]["taskEvents"]
            received.append((event["type"], event["taskId"]))
            cursor = event["cursor"]
        return cursor

    async with subscribed(live.base, token, subscriptions=0) as (tab, _):
        op = await tab.subscribe(TASK_EVENTS_AFTER, variables={"after": None})
        await wait_until_subscribed(tab)
        writing = asyncio.create_task(write_for(8.0))
        cursor = await receive(tab, op, time.monotonic() + 1.5)
    assert cursor is not None and received
    await asyncio.sleep(5.0)  # away; the writes go on
    async with subscribed(live.base, token, subscriptions=0) as (tab, _):
        op = await tab.subscribe(TASK_EVENTS_AFTER, variables={"after": cursor})
        await writing
        await receive(tab, op, time.monotonic() + 2.0)
    assert len(expected) > 40
    assert received == expected


async def test_an_expired_or_malformed_cursor_is_refused_with_cursor_expired(
    live: Live, client: httpx.AsyncClient
) -> None:
    token, _ = await signup(client)
    async with subscribed(live.base, token, subscriptions=0) as (tab, _):
        op = await tab.subscribe(TASK_EVENTS_AFTER, variables={"after": None})
        await wait_until_subscribed(tab)
        for i in range(3):
            await rest(client, "POST", "/api/tasks", token, {"title": f"t{i}"})
        cursors = [(await next_event(tab, op))["cursor"] for _ in range(3)]
    # As the retention clean-up would: the two oldest events are no longer kept.
    position = int(base64.urlsafe_b64decode(cursors[1] + "==").decode().split(":")[1])
    await _delete_events_up_to(live.database_url, position)
    refused = {
        cursors[0]: "Cursor expired",
        cursors[1]: "Cursor expired",
        "not a cursor": "Invalid cursor",
    }
    async with subscribed(live.base, token, subscriptions=0) as (tab, _):
        for after, message in refused.items():
            op = await tab.subscribe(TASK_EVENTS_AFTER, variables={"after": after})
            answer = await tab.receive()
            assert answer["id"] == op and answer["type"] == "next", answer
            [error] = answer["payload"]["errors"]
            assert error["extensions"]["code"] == "CURSOR_EXPIRED"
            assert error["message"].startswith(message), error
            assert (await tab.receive())["type"] == "complete"
        # The oldest kept event's cursor still works: nothing after it yet, then live.
        op = await tab.subscribe(TASK_EVENTS_AFTER, variables={"after": cursors[2]})
        await wait_until_subscribed(tab)
        created = await rest(client, "POST", "/api/tasks", token, {"title": "after"})
        event = await next_event(tab, op)
        assert event["taskId"] == created.json()["task"]["id"]


async def _delete_events_up_to(database_url: str, position: int) -> None:
    if database_url.startswith("sqlite"):
        with sqlite3.connect(database_url.removeprefix("sqlite:///")) as conn:
            conn.execute("DELETE FROM task_events WHERE position <= ?", (position,))
        return
    url = make_url(database_url)
    conn = await asyncpg.connect(
        host=url.host, port=url.port or 5432, user=url.username, database=url.database
    )
    try:
        await conn.execute("DELETE FROM task_events WHERE position <= $1", position)
    finally:
        await conn.close()


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"Authorization": "Bearer not.a.jwt"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"token": 12345},
        {"token": "wrong-secret"},
        {"token": "unknown-user"},
        {"token": "expired"},
    ],
    ids=[
        "none",
        "garbage",
        "not-bearer",
        "not-a-string",
        "wrong-secret",
        "no-such-user",
        "expired",
    ],
)
async def test_a_bad_token_closes_the_connection_with_4403(
    live: Live, client: httpx.AsyncClient, payload: dict[str, Any]
) -> None:
    _, user_id = await signup(client)
    minted = {
        "wrong-secret": token_for(
            user_id, expires_in=600, secret="another-secret-that-is-long-enough-000"
        ),
        "unknown-user": token_for(str(uuid.uuid4()), expires_in=600),
        "expired": token_for(user_id, expires_in=-10),
    }
    if isinstance(payload.get("token"), str):
        payload = {"token": minted[payload["token"]]}
    async with open_socket(live.base) as socket:
        await socket.send({"type": "connection_init", "payload": payload})
        closed = await socket.expect_close()
    assert (closed.code, closed.reason) == (4403, "Forbidden")


async def test_the_token_may_come_as_token_or_as_the_handshake_header(
    live: Live, client: httpx.AsyncClient
) -> None:
    alice, _ = await signup(client)
    async with open_socket(live.base) as by_token:
        assert (await by_token.init({"token": alice}))["type"] == "connection_ack"
    headers = {"Authorization": f"Bearer {alice}"}
    async with open_socket(live.base, headers=headers) as by_header:
        assert (await by_header.init())["type"] == "connection_ack"
        op = await by_header.subscribe()
        await wait_until_subscribed(by_header)
        created = await rest(client, "POST", "/api/tasks", alice, {"title": "header"})
        assert (await next_event(by_header, op))["taskId"] == created.json()["task"]["id"]


async def test_subscribing_before_connection_init_is_refused(live: Live) -> None:
    async with open_socket(live.base) as socket:
        await socket.subscribe()
        closed = await socket.expect_close()
    assert (closed.code, closed.reason) == (4401, "Unauthorized")


async def test_when_the_token_expires_the_connection_closes_with_a_reason(
    live: Live, client: httpx.AsyncClient
) -> None:
    _, user_id = await signup(client)
    short_lived = token_for(user_id, expires_in=3)
    async with subscribed(live.base, short_lived) as (tab, (op,)):
        created = await rest(client, "POST", "/api/tasks", short_lived, {"title": "in time"})
        assert (await next_event(tab, op))["taskId"] == created.json()["task"]["id"]
        started = time.monotonic()
        closed = await tab.expect_close(wait=5)
    assert (closed.code, closed.reason) == (4403, "Token expired")
    assert time.monotonic() - started < 4.5


# --- limits, keep-alives, protocols, origins ---------------------------------------------------


async def test_subscriptions_are_capped_per_connection_and_per_user(
    live: Live, client: httpx.AsyncClient
) -> None:
    alice, _ = await signup(client)
    async with subscribed(live.base, alice, subscriptions=PER_CONNECTION) as (first, _ops):
        over = await first.subscribe()
        message = await first.receive()
        assert message["id"] == over and message["type"] == "next", message
        assert message["payload"]["data"] is None
        [error] = message["payload"]["errors"]
        assert (
            error["message"]
            == f"Too many subscriptions on this connection (at most {PER_CONNECTION})"
        )
        assert error["extensions"]["code"] == "RATE_LIMITED"
        assert (await first.receive())["type"] == "complete"

        # PER_USER - PER_CONNECTION more fit on another connection, then the account is full.
        async with subscribed(live.base, alice, subscriptions=PER_USER - PER_CONNECTION) as (
            second,
            _,
        ):
            over = await second.subscribe()
            message = await second.receive()
            [error] = message["payload"]["errors"]
            assert (
                error["message"] == f"Too many subscriptions for this account (at most {PER_USER})"
            )
            assert error["extensions"]["code"] == "RATE_LIMITED"
            assert (await second.receive())["type"] == "complete"
            # Another account is not affected.
            bob, _ = await signup(client)
            async with subscribed(live.base, bob):
                pass


async def test_idle_connections_get_keep_alive_pings(live: Live, client: httpx.AsyncClient) -> None:
    alice, _ = await signup(client)
    async with open_socket(live.base) as socket:
        await socket.init({"token": alice})
        message = await socket.receive(wait=3, skip_pings=False)
        assert message == {"type": "ping"}  # the helper answered it with a pong


async def test_the_legacy_graphql_ws_protocol_works_too(
    live: Live, client: httpx.AsyncClient
) -> None:
    alice, _ = await signup(client)
    async with open_socket(live.base, subprotocol=LEGACY_WS) as socket:
        await socket.send(
            {"type": "connection_init", "payload": {"Authorization": f"Bearer {alice}"}}
        )
        assert (await socket.receive())["type"] == "connection_ack"
        await socket.send({"id": "1", "type": "start", "payload": {"query": TASK_EVENTS}})
        await asyncio.sleep(0.5)
        created = await rest(client, "POST", "/api/tasks", alice, {"title": "legacy"})
        message = await socket.receive()
        assert message["type"] == "data" and message["id"] == "1", message
        assert message["payload"]["data"]["taskEvents"]["taskId"] == created.json()["task"]["id"]
    async with open_socket(live.base, subprotocol=LEGACY_WS) as socket:
        await socket.send({"type": "connection_init", "payload": {"token": "bad"}})
        message = await socket.receive()
        assert message["type"] == "connection_error", message
        assert message["payload"]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_a_subscription_over_http_is_refused(live: Live, client: httpx.AsyncClient) -> None:
    alice, _ = await signup(client)
    response = await client.post(
        "/graphql", json={"query": TASK_EVENTS}, headers={"Authorization": f"Bearer {alice}"}
    )
    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "WebSocket" in error["message"]


async def test_pages_of_the_frontend_may_connect_and_other_sites_may_not(live: Live) -> None:
    async with open_socket(live.base, origin="http://localhost:3000") as socket:
        await socket.send({"type": "connection_init", "payload": {}})
        assert (await socket.expect_close()).code == 4403  # reached the protocol: no token
    with pytest.raises(InvalidStatus) as refused:
        async with open_socket(live.base, origin="http://evil.example"):
            pass
    assert refused.value.response.status_code == 403


async def test_queries_and_mutations_run_over_the_socket_as_its_caller(
    live: Live, client: httpx.AsyncClient
) -> None:
    alice, alice_id = await signup(client)
    async with subscribed(live.base, alice) as (tab, (events_op,)):
        mutation_op = await tab.subscribe(
            'mutation { createTask(input: {title: "over the socket"}) { id } }'
        )
        received: dict[str, list[dict[str, Any]]] = {}
        while len(received.get(events_op, [])) < 1 or len(received.get(mutation_op, [])) < 2:
            message = await tab.receive()
            received.setdefault(message["id"], []).append(message)
        result, complete = received[mutation_op]
        assert complete["type"] == "complete"
        task_id = result["payload"]["data"]["createTask"]["id"]
        [event] = received[events_op]
        assert event["payload"]["data"]["taskEvents"]["taskId"] == task_id

        me_op = await tab.subscribe("{ me { id } }")
        message = await tab.receive()
        assert message["id"] == me_op
        assert message["payload"] == {"data": {"me": {"id": alice_id}}}


ALIASED_PAGES = """
{ a: tasks(first: 2) { totalCount edges { node { title } } }
  b: tasks(first: 2) { totalCount edges { node { title } } }
  me { tasks(first: 2) { edges { node { title } } } } }
"""


async def test_aliased_pages_over_the_socket_are_the_pages_over_http(
    live: Live, client: httpx.AsyncClient
) -> None:
    """The socket's loaders batch the same page several times; each alias gets it once."""
    token, _ = await signup(client)
    for title in ("one", "two", "three"):
        created = await rest(client, "POST", "/api/tasks", token, {"title": title})
        assert created.status_code == 201
    over_http = await graphql(client, token, ALIASED_PAGES)
    page = {"totalCount": 3, "edges": [{"node": {"title": "three"}}, {"node": {"title": "two"}}]}
    assert over_http["a"] == over_http["b"] == page
    async with subscribed(live.base, token, subscriptions=0) as (tab, _):
        op_id = await tab.subscribe(ALIASED_PAGES)
        message = await tab.receive()
        assert message == {"id": op_id, "type": "next", "payload": {"data": over_http}}
        assert await tab.receive() == {"id": op_id, "type": "complete"}


async def test_every_message_is_a_text_frame_on_both_protocols(
    live: Live, client: httpx.AsyncClient
) -> None:
    """ws_helpers refuses binary frames on every receive; this walks each kind of message."""
    token, _ = await signup(client)
    for subprotocol in (TRANSPORT_WS, LEGACY_WS):
        async with open_socket(live.base, subprotocol=subprotocol) as tab:
            ack = await tab.init({"Authorization": f"Bearer {token}"})
            assert ack["type"] == "connection_ack"
            start = "subscribe" if subprotocol == TRANSPORT_WS else "start"
            await tab.send({"id": "q", "type": start, "payload": {"query": "{ me { id } }"}})
            types = [(await tab.receive())["type"], (await tab.receive())["type"]]
            assert types == (["next", "complete"] if start == "subscribe" else ["data", "complete"])
            await tab.send({"id": "e", "type": start, "payload": {"query": "{ nope }"}})
            assert (await tab.receive())["type"] == "error"
            await tab.receive(skip_pings=False)  # a keep-alive (WS_KEEPALIVE_SECONDS=0.5)


@pytest.mark.parametrize(
    "raw",
    [
        '{"id": "1", "type": "subscribe", "payload": {"query": "{ me { id } }",'
        ' "variables": {"v": NaN}}}',
        '{"id": "1", "type": "subscribe", "payload": {"query": "{ me { id } }",'
        ' "variables": {"v": ' + "[" * 1000 + "]" * 1000 + "}}}",
        '{"id": "1", "type": "subscribe", "payload": {"query": "{ me { id } }",'
        ' "variables": {"v": ' + "9" * 100_000 + "}}}",
    ],
    ids=["NaN", "1,000 deep", "100,000 digits"],
)
async def test_extreme_json_messages_close_the_socket_as_invalid(
    live: Live, client: httpx.AsyncClient, raw: str
) -> None:
    token, _ = await signup(client)
    async with open_socket(live.base) as tab:
        ack = await tab.init({"Authorization": f"Bearer {token}"})
        assert ack["type"] == "connection_ack"
        await tab.ws.send(raw)
        closed = await tab.expect_close()
    assert closed.code == 4400


async def test_many_aliased_nested_pages_over_the_socket_match_http(
    live: Live, client: httpx.AsyncClient
) -> None:
    """15 aliased pages, each with its tasks' owners' pages: over the socket every batch held
    the caller once per alias (a UNION ALL branch each; on SQLite past its 500-term limit,
    answered UNAVAILABLE), now once."""
    token, _ = await signup(client)
    for n in range(6):
        created = await rest(client, "POST", "/api/tasks", token, {"title": f"task {n}"})
        assert created.status_code == 201
    pages = " ".join(
        f"a{i}: tasks(first: {1 + i % 3}) {{ edges {{ node {{ title"
        " owner { tasks(first: 5) { totalCount edges { node { title } } } } } } }"
        for i in range(15)
    )
    query = "{ " + pages + " }"
    over_http = await graphql(client, token, query)
    assert over_http["a0"]["edges"][0]["node"]["owner"]["tasks"]["totalCount"] == 6
    async with subscribed(live.base, token, subscriptions=0) as (tab, _):
        op_id = await tab.subscribe(query)
        message = await tab.receive(wait=10)
        assert message == {"id": op_id, "type": "next", "payload": {"data": over_http}}
