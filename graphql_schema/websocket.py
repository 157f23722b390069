"""GraphQL over WebSocket at /graphql: who is connecting, keep-alives, and the end of a session.

Both protocols Strawberry speaks are served: `graphql-transport-ws` (the graphql-ws library;
what the contract names) and the legacy `graphql-ws` (subscriptions-transport-ws).

- The caller is authenticated once, at `connection_init` (`authenticate_connection`): a
  missing, bad or expired token closes the socket with 4403 Forbidden (legacy protocol:
  `connection_error`, then close); a database that cannot be reached closes it with 1013 Try
  Again Later. Either way no operation runs.
- When the token expires, every operation on the socket stops and it closes with 4403 and the
  reason `Token expired`. graphql-ws clients treat 4403 as retryable: they reconnect, calling
  `connectionParams` again (so a fresh token goes in), and resubscribe.
- Idle sockets get traffic every WS_KEEPALIVE_SECONDS: a `ping` message (the client answers
  `pong`; legacy protocol: `ka`), so proxies that drop quiet connections leave them alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from graphql import GraphQLError, OperationType, get_operation_ast, parse
from starlette.websockets import WebSocketDisconnect
from strawberry.asgi import ASGIWebSocketAdapter
from strawberry.exceptions import ConnectionRejectionError
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import ConnectionInitMessage
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler
from strawberry.subscriptions.protocols.graphql_ws.types import (
    ConnectionInitMessage as LegacyConnectionInitMessage,
)
from strawberry.types.unset import UNSET, UnsetType

from core.errors import DomainError, Unavailable
from graphql_schema.context import GraphQLContext

log = logging.getLogger("todo.graphql.ws")

CLOSE_FORBIDDEN = 4403
CLOSE_TRY_AGAIN_LATER = 1013
TOKEN_EXPIRED = "Token expired"
UNAVAILABLE = "Service temporarily unavailable"


class TextFrameWebSocketAdapter(ASGIWebSocketAdapter):
    """Sends every message as a text frame, as both protocols require.

    The view's `encode_json` returns bytes (HTTP bodies are bytes anyway), and Strawberry's
    adapter sends bytes as a binary frame: a browser hands those to graphql-ws as a `Blob`,
    which it cannot parse, and the client gives up with 4004.
    """

    async def send_json(self, message: Mapping[str, object]) -> None:
        encoded = self.view.encode_json(message)
        text = encoded.decode() if isinstance(encoded, bytes) else encoded
        try:
            await self.ws.send_text(text)
        except WebSocketDisconnect as exc:
            raise WebSocketDisconnected from exc


class ConnectionUnavailable(Exception):
    """The token could not be checked at `connection_init`: the database is unreachable."""


async def authenticate_connection(context: GraphQLContext) -> UnsetType:
    """The router's `on_ws_connect`: accept the connection only for a valid token."""
    try:
        await context.authenticate_connection()
    except Unavailable:
        raise ConnectionUnavailable() from None
    except DomainError as exc:
        raise ConnectionRejectionError(
            {"message": exc.message, "extensions": {"code": exc.code.value}}
        ) from None
    return UNSET


class _Session:
    """What both protocol handlers add once a connection is acknowledged."""

    context: GraphQLContext
    websocket: Any
    _session_tasks: list[asyncio.Task[None]]

    def _start_session(self, *, keep_alive: float | None) -> None:
        self._session_tasks = [asyncio.create_task(self._end_at_expiry())]
        if keep_alive is not None:
            self._session_tasks.append(asyncio.create_task(self._keep_alive(keep_alive)))

    async def _stop_session(self) -> None:
        current = asyncio.current_task()
        tasks = [task for task in getattr(self, "_session_tasks", ()) if task is not current]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _end_at_expiry(self) -> None:
        expires_at = self.context.expires_at
        if expires_at is None:
            return
        await asyncio.sleep(max(0.0, (expires_at - datetime.now(UTC)).total_seconds()))
        log.info("WebSocket connection closed: token expired")
        await self._stop_operations()
        with contextlib.suppress(Exception):
            await self.websocket.close(code=CLOSE_FORBIDDEN, reason=TOKEN_EXPIRED)

    async def _keep_alive(self, interval: float) -> None:
        with contextlib.suppress(Exception):  # the socket closed: nothing left to keep alive
            while True:
                await asyncio.sleep(interval)
                await self._send_keep_alive()

    async def _stop_operations(self) -> None:
        raise NotImplementedError

    async def _send_keep_alive(self) -> None:
        raise NotImplementedError


class TransportWSHandler(_Session, BaseGraphQLTransportWSHandler[GraphQLContext, None]):
    """`graphql-transport-ws`, with close codes for outages, keep-alive pings and expiry."""

    async def handle_connection_init(self, message: ConnectionInitMessage) -> None:
        try:
            await super().handle_connection_init(message)
        except ConnectionUnavailable:
            await self.websocket.close(code=CLOSE_TRY_AGAIN_LATER, reason=UNAVAILABLE)
            return
        if self.connection_acknowledged and not getattr(self, "_session_tasks", None):
            self._start_session(keep_alive=self.view.keep_alive_interval)

    async def shutdown(self) -> None:
        await self._stop_session()
        await super().shutdown()

    async def _send_keep_alive(self) -> None:
        await self.send_message({"type": "ping"})

    async def _stop_operations(self) -> None:
        tasks = [operation.task for operation in self.operations.values() if operation.task]
        for operation_id in list(self.operations):
            await self.cleanup_operation(operation_id)
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


class LegacyWSHandler(_Session, BaseGraphQLWSHandler[GraphQLContext, None]):
    """The legacy `graphql-ws` protocol; Strawberry's own `ka` messages keep it alive."""

    async def handle_connection_init(self, message: LegacyConnectionInitMessage) -> None:
        try:
            await super().handle_connection_init(message)
        except ConnectionUnavailable:
            await self.send_message(
                {"type": "connection_error", "payload": {"message": UNAVAILABLE}}
            )
            await self.websocket.close(code=CLOSE_TRY_AGAIN_LATER, reason=UNAVAILABLE)
            return
        if self.connection_acknowledged and not getattr(self, "_session_tasks", None):
            self._start_session(keep_alive=None)

    async def cleanup(self) -> None:
        await self._stop_session()
        await super().cleanup()

    async def handle_async_results(
        self,
        operation_id: str,
        query: str,
        operation_name: str | None,
        variables: dict[str, object] | None,
    ) -> None:
        """Queries and mutations too, as subscriptions-transport-ws clients send them:
        Strawberry runs every `start` through `schema.subscribe`, which refuses them."""
        if _is_subscription(query, operation_name):
            await super().handle_async_results(operation_id, query, operation_name, variables)
            return
        try:
            result = await self.schema.execute(
                query,
                variable_values=variables,
                context_value=self.context,
                root_value=self.root_value,
                operation_name=operation_name,
            )
            if result.data is None and result.errors:
                await self.send_message(
                    {"type": "error", "id": operation_id, "payload": result.errors[0].formatted}
                )
            else:
                await self.send_data_message(result, operation_id)
            await self.send_message({"type": "complete", "id": operation_id})
        except asyncio.CancelledError:
            await self.send_message({"type": "complete", "id": operation_id})
        finally:
            self.tasks.pop(operation_id, None)

    async def _stop_operations(self) -> None:
        await BaseGraphQLWSHandler.cleanup(self)


def _is_subscription(query: str, operation_name: str | None) -> bool:
    """True also when the document does not parse or names no operation: Strawberry's own
    path reports those."""
    try:
        operation = get_operation_ast(parse(query), operation_name)
    except GraphQLError:
        return True
    return operation is None or operation.operation is OperationType.SUBSCRIPTION
