"""The typed GraphQL context, built by a FastAPI dependency once per HTTP request, or once per
WebSocket connection (then shared by every operation on that connection)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import TypeAlias

from starlette.requests import HTTPConnection
from strawberry.fastapi import BaseContext
from strawberry.types import Info

from core import events
from core.errors import DomainError, TooManySubscriptions, Unauthenticated
from core.records import Caller
from core.service import TodoService
from graphql_schema.loaders import Loaders


class GraphQLContext(BaseContext):
    """What resolvers get as `info.context`: the rules, the caller, the request's loaders."""

    def __init__(
        self,
        *,
        service: TodoService,
        client_address: str,
        authorization: str | None,
        websocket: bool = False,
    ) -> None:
        super().__init__()
        self.service = service
        self.client_address = client_address
        self.websocket = websocket
        # A WebSocket context outlives any one operation: its loaders must not cache.
        self.loaders = Loaders(service, cache=not websocket)
        self._authorization = authorization
        # The token is checked once per context; a failure is remembered like a success.
        self._caller: Caller | DomainError | None = None
        # WebSocket only: sibling resolvers ask concurrently, and the check there includes a
        # database query (`authenticate`), so the lock makes it happen once.
        self._caller_lock = asyncio.Lock()
        # WebSocket only: when the connection's token expires, and its live subscriptions.
        self.expires_at: datetime | None = None
        self.open_subscriptions = 0

    async def caller(self) -> Caller:
        """The authenticated caller; Unauthenticated (`Unauthorized`) without a valid token.

        Over HTTP the token is only verified, with no database trip (`Accounts.identify`):
        every operation that takes the caller answers Unauthenticated itself when the account
        is gone, and so do the resolvers that load the caller's user (`me`, `owner`). A
        WebSocket connection's caller was checked at `connection_init`, account included.
        """
        caller = self._caller
        if caller is None:
            if not self.websocket:
                try:
                    caller = self.service.accounts.identify(self._authorization)
                except DomainError as exc:
                    caller = exc
                self._caller = caller
            else:
                caller = await self._websocket_caller()
        if isinstance(caller, DomainError):
            raise caller
        if self.expires_at is not None and datetime.now(UTC) >= self.expires_at:
            raise Unauthenticated()
        return caller

    async def _websocket_caller(self) -> Caller | DomainError:
        async with self._caller_lock:
            if self._caller is None:
                try:
                    self._caller = await self.service.accounts.authenticate(self._authorization)
                except DomainError as exc:
                    self._caller = exc
            return self._caller

    async def authenticate_connection(self) -> None:
        """WebSocket, at `connection_init`: the caller named by the init payload's
        `Authorization` ("Bearer <jwt>") or `token` ("<jwt>"), else by the handshake's
        `Authorization` header. Unauthenticated or Unavailable when that fails."""
        authorization = connection_authorization(self.connection_params)
        if authorization is None:
            authorization = self._authorization
        authentication = await self.service.accounts.authenticate_until(authorization)
        async with self._caller_lock:
            self._caller = authentication.caller
            self.expires_at = authentication.expires_at

    @asynccontextmanager
    async def task_events(
        self, caller: Caller, after: str | None = None
    ) -> AsyncIterator[events.Subscription]:
        """The caller's task events after the cursor `after`, else from now on, within the
        per-connection and per-user caps."""
        limit = self.service.subscriptions_per_connection
        if self.open_subscriptions >= limit:
            raise TooManySubscriptions(
                f"Too many subscriptions on this connection (at most {limit})"
            )
        self.open_subscriptions += 1
        try:
            async with self.service.events.subscribe(caller.user_id, after) as subscription:
                yield subscription
        finally:
            self.open_subscriptions -= 1


def connection_authorization(params: object) -> str | None:
    """An `Authorization` value from a `connection_init` payload; None when it names none.

    `{"Authorization": "Bearer <jwt>"}` (any case of the key; what GraphiQL's headers editor
    sends) or `{"token": "<jwt>"}`. A value that is not a string is an invalid credential.
    """
    if not isinstance(params, Mapping):
        return None
    for key, value in params.items():
        if isinstance(key, str) and key.lower() == "authorization":
            return value if isinstance(value, str) else ""
    token = params.get("token")
    if token is None:
        return None
    if not isinstance(token, str):
        return ""
    return token if token[:7].lower() == "bearer " else f"Bearer {token}"


GraphQLInfo: TypeAlias = Info[GraphQLContext, None]


async def get_context(connection: HTTPConnection) -> GraphQLContext:
    service: TodoService = connection.app.state["todo"]
    peer = connection.client.host if connection.client else None
    return GraphQLContext(
        service=service,
        client_address=service.client_address(peer, connection.headers.get("x-forwarded-for")),
        authorization=connection.headers.get("authorization"),
        websocket=connection.scope["type"] == "websocket",
    )
