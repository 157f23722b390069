"""A small GraphQL-over-WebSocket client for the subscription tests; every wait is bounded.

Speaks `graphql-transport-ws` (and, for one test, the legacy `graphql-ws`) with the
`websockets` library that uvicorn[standard] already brings.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

TRANSPORT_WS = "graphql-transport-ws"
LEGACY_WS = "graphql-ws"
TIMEOUT = 5.0

TASK_EVENTS = """
subscription { taskEvents { type taskId task { id title description completed createdAt
  updatedAt owner { id } } } }
"""
# Resumable: each event's cursor, and `after` the cursor of the last event seen.
TASK_EVENTS_AFTER = """
subscription($after: String) { taskEvents(after: $after) { type taskId cursor } }
"""


class Closed(Exception):
    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"closed with {code} {reason!r}")
        self.code = code
        self.reason = reason


class GraphQLSocket:
    """One WebSocket connection; `receive` answers and skips keep-alive pings by default."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.pings = 0

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(message))

    async def receive(self, wait: float = TIMEOUT, *, skip_pings: bool = True) -> dict[str, Any]:
        async with asyncio.timeout(wait):
            while True:
                try:
                    raw = await self.ws.recv()
                except ConnectionClosed as exc:
                    frame = exc.rcvd
                    raise Closed(
                        frame.code if frame else None, frame.reason if frame else ""
                    ) from None
                # Both protocols' messages are JSON text: a binary frame reaches a browser's
                # graphql-ws client as a Blob it cannot read.
                assert isinstance(raw, str), f"a binary frame: {raw[:80]!r}"
                message: dict[str, Any] = json.loads(raw)
                if message.get("type") == "ping":
                    self.pings += 1
                    try:
                        await self.send({"type": "pong"})
                    except ConnectionClosed as exc:
                        # The server closed right after its ping (say, as the token expired):
                        # the close is the answer, not the failed pong.
                        frame = exc.rcvd
                        raise Closed(
                            frame.code if frame else None, frame.reason if frame else ""
                        ) from None
                    if skip_pings:
                        continue
                if message.get("type") == "ka" and skip_pings:
                    self.pings += 1
                    continue
                return message

    async def init(self, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        await self.send({"type": "connection_init", "payload": payload or {}})
        return await self.receive()

    async def subscribe(
        self,
        query: str = TASK_EVENTS,
        op_id: str | None = None,
        variables: dict[str, Any] | None = None,
    ) -> str:
        op_id = op_id or uuid.uuid4().hex[:8]
        payload: dict[str, Any] = {"query": query}
        if variables is not None:
            payload["variables"] = variables
        await self.send({"id": op_id, "type": "subscribe", "payload": payload})
        return op_id

    async def complete(self, op_id: str) -> None:
        await self.send({"id": op_id, "type": "complete"})

    async def expect_close(self, wait: float = TIMEOUT) -> Closed:
        try:
            message = await self.receive(wait)
        except Closed as closed:
            return closed
        raise AssertionError(f"expected the socket to close, got {message}")

    async def expect_silence(self, seconds: float) -> None:
        """Nothing but keep-alives for `seconds`."""
        try:
            message = await self.receive(seconds)
        except TimeoutError:
            return
        raise AssertionError(f"expected nothing, got {message}")


@asynccontextmanager
async def open_socket(
    base_url: str,
    *,
    subprotocol: str = TRANSPORT_WS,
    headers: dict[str, str] | None = None,
    origin: str | None = None,
) -> AsyncIterator[GraphQLSocket]:
    url = base_url.replace("http://", "ws://", 1) + "/graphql"
    async with asyncio.timeout(TIMEOUT):
        ws = await connect(
            url,
            subprotocols=[subprotocol],  # type: ignore[list-item]
            additional_headers=headers,
            origin=origin,  # type: ignore[arg-type]
            open_timeout=TIMEOUT,
            close_timeout=1,
        )
    try:
        yield GraphQLSocket(ws)
    finally:
        await ws.close()


@asynccontextmanager
async def subscribed(
    base_url: str, token: str, *, subscriptions: int = 1
) -> AsyncIterator[tuple[GraphQLSocket, list[str]]]:
    """A connection authenticated with `token` and `subscriptions` taskEvents subscriptions."""
    async with open_socket(base_url) as socket:
        ack = await socket.init({"Authorization": f"Bearer {token}"})
        assert ack["type"] == "connection_ack", ack
        ids = [await socket.subscribe() for _ in range(subscriptions)]
        await wait_until_subscribed(socket)
        yield socket, ids


async def wait_until_subscribed(socket: GraphQLSocket) -> None:
    """graphql-transport-ws has no "subscribed" message; a ping/pong round trip over the same
    socket shows the server has read our subscribe messages, and a short pause lets the
    subscriptions register (and, on PostgreSQL, take their snapshot)."""
    await socket.send({"type": "ping"})
    message = await socket.receive()
    assert message["type"] == "pong", message
    await asyncio.sleep(0.3)


async def next_event(
    socket: GraphQLSocket, op_id: str | None = None, wait: float = TIMEOUT
) -> dict[str, Any]:
    message = await socket.receive(wait)
    assert message["type"] == "next", message
    if op_id is not None:
        assert message["id"] == op_id, message
    assert "errors" not in message["payload"], message
    event: dict[str, Any] = message["payload"]["data"]["taskEvents"]
    return event


async def rest(
    client: httpx.AsyncClient, method: str, path: str, token: str, body: Any = None
) -> httpx.Response:
    return await client.request(
        method, path, json=body, headers={"Authorization": f"Bearer {token}"}
    )


async def graphql(
    client: httpx.AsyncClient, token: str, query: str, variables: dict[str, Any] | None = None
) -> dict[str, Any]:
    response = await client.post(
        "/graphql",
        json={"query": query, "variables": variables or {}},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert "errors" not in body, body
    return body["data"]  # type: ignore[no-any-return]


async def signup(client: httpx.AsyncClient) -> tuple[str, str]:
    """A new account: (token, user id)."""
    email = f"live-{uuid.uuid4().hex[:10]}@example.com"
    response = await client.post(
        "/api/auth/signup", json={"email": email, "password": "correct-horse-1"}
    )
    assert response.status_code == 201, response.text
    body = response.json()
    return body["token"], body["user"]["id"]
