"""At LOG_LEVEL=debug the log holds no password, no token or part of one, and no GraphQL
variable's value: not in GraphQL error messages, not in WebSocket frames or handshakes, not in
the stack of an unexpected error.

The real service (`python -m api`) runs on SQLite and on PostgreSQL, with text and JSON logs;
a client signs up, logs in (over REST and GraphQL, with wrong and right passwords), sends
variables of the wrong and the right type, talks graphql-transport-ws with a token, and makes
the database refuse a write. Then the whole log is searched.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.conftest import TEST_SECRET, admin_execute
from tests.live import service, service_log
from tests.ws_helpers import (
    TASK_EVENTS,
    TRANSPORT_WS,
    GraphQLSocket,
    open_socket,
    wait_until_subscribed,
)

pytestmark = pytest.mark.asyncio

LOGIN = "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { token } }"
TASKS = "query($first: Int) { tasks(first: $first) { totalCount } }"
CREATE = "mutation($t: String!) { createTask(input: {title: $t}) { id title } }"
UPDATE = "mutation($id: ID!, $t: String) { updateTask(id: $id, input: {title: $t}) { id } }"
# The database refuses titles holding this (a CHECK constraint, a trigger on SQLite): the
# refusal is an unexpected error, logged with its stack.
REFUSED = "Refused-By-The-Database"
CHECK = "log_privacy_no_refused_titles"


@dataclass
class DebugService:
    base: str
    proc: Any
    database_url: str
    work: Path
    stop: Callable[[], None]  # stops the service: its log is complete
    secrets: set[str] = field(default_factory=set)  # passwords and variables' values
    tokens: list[str] = field(default_factory=list)

    def secret(self, prefix: str) -> str:
        value = f"{prefix}-{uuid.uuid4().hex[:12]}"
        self.secrets.add(value)
        return value


@pytest.fixture(
    params=[("sqlite", "text"), ("sqlite", "json"), ("postgresql", "text"), ("postgresql", "json")],
    ids=lambda p: "-".join(p),
)
def debug_service(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DebugService]:
    database, log_format = request.param
    if database == "sqlite":
        database_url = f"sqlite:///{tmp_path / 'todo.db'}"
    else:
        database_url = request.getfixturevalue("postgres_url")
    with ExitStack() as stack:
        base, proc = stack.enter_context(
            service(
                tmp_path,
                DATABASE_URL=database_url,
                BETTER_AUTH_SECRET=TEST_SECRET,
                LOG_LEVEL="debug",
                LOG_FORMAT=log_format,
                RATE_LIMIT_PER_ADDRESS="100000/minute",
                RATE_LIMIT_PER_EMAIL="100000/minute",
            )
        )
        try:
            yield DebugService(base, proc, database_url, tmp_path, stop=stack.close)
        finally:
            stack.close()
            if database != "sqlite":  # the session's database is shared with other tests
                asyncio.run(
                    admin_execute(
                        database_url, f"ALTER TABLE tasks DROP CONSTRAINT IF EXISTS {CHECK}"
                    )
                )


async def _refuse_titles_in_the_database(running: DebugService) -> None:
    if running.database_url.startswith("sqlite"):
        with sqlite3.connect(running.work / "todo.db") as db:
            db.executescript(
                f"CREATE TRIGGER {CHECK} BEFORE UPDATE OF title ON tasks"
                f" WHEN NEW.title LIKE '%{REFUSED}%'"
                " BEGIN SELECT RAISE(ABORT, 'refused by a test trigger'); END;"
            )
    else:
        await admin_execute(
            running.database_url,
            f"ALTER TABLE tasks ADD CONSTRAINT {CHECK} CHECK (title NOT LIKE '%{REFUSED}%')",
        )


async def _graphql(
    client: httpx.AsyncClient,
    query: str,
    variables: dict[str, Any] | None = None,
    token: str | None = None,
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = await client.post(
        "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
    )
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def _until_complete(socket: GraphQLSocket, op_id: str) -> list[dict[str, Any]]:
    """The messages up to `op_id`'s `complete` (those of other operations included)."""
    messages = []
    while True:
        message = await socket.receive()
        messages.append(message)
        if message.get("id") == op_id and message["type"] in ("complete", "error"):
            return messages


async def _talk_to_the_service(running: DebugService) -> None:
    email = f"private-{uuid.uuid4().hex[:10]}@example.com"
    password = running.secret("SuperSecretPw1")
    async with httpx.AsyncClient(base_url=running.base, timeout=10) as client:
        # REST: sign up, then log in with a wrong password.
        signed_up = await client.post(
            "/api/auth/signup", json={"email": email, "password": password}
        )
        assert signed_up.status_code == 201, signed_up.text
        running.tokens.append(signed_up.json()["token"])
        wrong = await client.post(
            "/api/auth/login", json={"email": email, "password": running.secret("WrongPw")}
        )
        assert wrong.status_code == 401

        # GraphQL login: the password in a list (refused while coercing variables, with a
        # message that quotes it), then as it should be.
        refused = await _graphql(client, LOGIN, {"e": email, "p": [password]})
        assert password in refused["errors"][0]["message"]  # the client is told; the log not
        assert refused["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
        logged_in = await _graphql(client, LOGIN, {"e": email, "p": password})
        token = logged_in["data"]["login"]["token"]
        running.tokens.append(token)
        # The password as a literal of the wrong type in the document itself.
        literal = running.secret("LiteralPw1")
        inline = await _graphql(
            client, f'mutation {{ login(email: "{email}", password: ["{literal}"]) {{ token }} }}'
        )
        assert literal in inline["errors"][0]["message"]

        # Variables of the wrong type and of the right type.
        wrong_type = await _graphql(client, TASKS, {"first": running.secret("WrongType")}, token)
        assert wrong_type["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
        title = running.secret("RightType")
        created = await _graphql(client, CREATE, {"t": title}, token)
        task_id = created["data"]["createTask"]["id"]
        unknown_field = await _graphql(
            client,
            "mutation($i: CreateTaskInput!) { createTask(input: $i) { id } }",
            {"i": {"title": "t", "bogus": running.secret("UnknownField")}},
            token,
        )
        assert unknown_field["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"

        # An unexpected error: the database refuses the new title. Masked for the client,
        # logged with its stack.
        await _refuse_titles_in_the_database(running)
        failed = await _graphql(
            client, UPDATE, {"id": task_id, "t": running.secret(REFUSED)}, token
        )
        assert failed["errors"][0]["extensions"]["code"] == "INTERNAL", failed
        failed_rest = await client.put(
            f"/api/tasks/{task_id}",
            json={"title": running.secret(REFUSED)},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert failed_rest.status_code == 500

    # GraphQL over WebSocket: the token in connection_init, variables in subscribe messages.
    first_token = running.tokens[0]
    async with open_socket(running.base, subprotocol=TRANSPORT_WS) as socket:
        ack = await socket.init({"Authorization": f"Bearer {first_token}"})
        assert ack["type"] == "connection_ack", ack
        events = await socket.subscribe(TASK_EVENTS)
        await wait_until_subscribed(socket)
        await socket.send(
            {
                "id": "wrong",
                "type": "subscribe",
                "payload": {"query": TASKS, "variables": {"first": running.secret("WsWrong")}},
            }
        )
        answers = await _until_complete(socket, "wrong")
        assert "BAD_USER_INPUT" in json.dumps(answers)
        await socket.send(
            {
                "id": "create",
                "type": "subscribe",
                "payload": {"query": CREATE, "variables": {"t": running.secret("WsTitle")}},
            }
        )
        messages = await _until_complete(socket, "create")
        if not any(m.get("id") == events for m in messages):  # the event, if not yet there
            messages.append(await socket.receive())
        assert any(m.get("id") == events and m["type"] == "next" for m in messages), messages
        await socket.send(
            {
                "id": "login",
                "type": "subscribe",
                "payload": {"query": LOGIN, "variables": {"e": email, "p": [password]}},
            }
        )
        await _until_complete(socket, "login")
        await socket.complete(events)
        await wait_until_subscribed(socket)  # a round trip: the server has read everything

    # A token in the query string of the WebSocket URL (uvicorn logs the path it accepts).
    url = running.base.replace("http://", "ws://", 1)
    async with connect(
        f"{url}/graphql?token={running.tokens[1]}",
        subprotocols=[TRANSPORT_WS],  # type: ignore[list-item]
        open_timeout=5,
        close_timeout=1,
    ) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
        with pytest.raises(ConnectionClosed) as closed:  # no token in the payload: refused
            await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403


def _windows(text: str, size: int = 8) -> Iterator[str]:
    for start in range(len(text) - size + 1):
        yield text[start : start + size]


async def test_no_password_token_or_variable_reaches_the_debug_log(
    debug_service: DebugService,
) -> None:
    await _talk_to_the_service(debug_service)
    debug_service.stop()
    log = service_log(debug_service.proc)

    for secret in sorted(debug_service.secrets):
        assert secret not in log, f"{secret!r} is in the log:\n{log}"
    assert len(debug_service.tokens) == 2
    for token in debug_service.tokens:
        _header, payload, signature = token.split(".")
        for part in (payload, signature):
            for window in _windows(part):
                assert window not in log, f"{window!r} of a token is in the log:\n{log}"
    for never in (TEST_SECRET, "Bearer", "$2b$"):
        assert never not in log, never

    # What holds no request data is still there: the request lines, the GraphQL errors' kinds,
    # the WebSocket frames' kinds, the unexpected errors' stacks.
    records = _records(log.splitlines())
    access = [r["message"] for r in records if r["logger"] == "todo.access"]
    assert any(m.startswith("POST /api/auth/login 401") for m in access), access
    assert any(m.startswith("POST /graphql 200") for m in access), access
    assert any(m.startswith("PUT /api/tasks/") and " 500 " in m for m in access), access
    assert sum(m.startswith("WEBSOCKET /graphql 101") for m in access) == 2, access
    debug = [r["message"] for r in records if r["logger"] == "todo.graphql"]
    assert "GraphQL error: Variable '$p' has invalid value" in debug, debug
    assert "GraphQL error: Variable '$first' has invalid value" in debug, debug
    assert "GraphQL error: String cannot represent a non string value" in debug, debug
    unexpected = [
        r for r in records if r["message"] == "unexpected error in GraphQL field updateTask"
    ]
    assert len(unexpected) == 1 and unexpected[0]["level"] == "ERROR", records
    assert "Traceback" in unexpected[0]["exc_info"]
    assert "ConstraintViolation" in unexpected[0]["exc_info"]
    # What the database said is kept, without the row it quoted (PostgreSQL's DETAIL).
    said = f'violates check constraint "{CHECK}"', "refused by a test trigger"
    assert any(words in unexpected[0]["exc_info"] for words in said), unexpected
    assert any(r["logger"] == "todo.errors" and "Traceback" in r["exc_info"] for r in records)
    frames = [r["message"] for r in records if r["logger"] == "uvicorn.error"]
    assert any(m.startswith("< TEXT [") for m in frames), frames
    assert any('"WebSocket /graphql" [accepted]' in m for m in frames), frames


def _records(lines: list[str]) -> list[dict[str, str]]:
    """The log's records (text or JSON lines) as level, logger, message and exc_info."""
    records: list[dict[str, str]] = []
    for line in lines:
        if line.startswith("{"):
            entry = json.loads(line)
            records.append(
                {
                    "level": entry["level"].upper(),
                    "logger": entry["logger"],
                    "message": entry["message"],
                    "exc_info": entry.get("exc_info") or "",
                }
            )
            continue
        parts = line.split(" ", 5)  # date time LEVEL logger [request id] message
        if len(parts) == 6 and parts[4].startswith("[") and parts[4].endswith("]"):
            records.append(
                {"level": parts[2], "logger": parts[3], "message": parts[5], "exc_info": ""}
            )
        elif records:  # a stack trace's line
            records[-1]["exc_info"] += line + "\n"
    return records
