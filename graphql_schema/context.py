"""The typed GraphQL context, built once per HTTP request by a FastAPI dependency."""

from __future__ import annotations

import asyncio
from typing import TypeAlias

from starlette.requests import HTTPConnection
from strawberry.fastapi import BaseContext
from strawberry.types import Info

from api.deps import ClientAddressDep, ServicesDep
from api.services import Services
from graphql_schema import operations
from graphql_schema.errors import DomainError
from graphql_schema.loaders import Loaders, build_loaders
from graphql_schema.operations import Caller


class GraphQLContext(BaseContext):
    """What resolvers get as `info.context`: services, the caller, the request's loaders."""

    def __init__(
        self, *, services: Services, client_address: str, authorization: str | None
    ) -> None:
        super().__init__()
        self.services = services
        self.client_address = client_address
        self.loaders: Loaders = build_loaders(services)
        self._authorization = authorization
        # Sibling resolvers ask concurrently; the lock makes the token check (and its
        # database query) happen once, and a failure is remembered like a success.
        self._caller_lock = asyncio.Lock()
        self._caller: Caller | DomainError | None = None

    async def caller(self) -> Caller:
        """The authenticated caller; Unauthenticated (`Unauthorized`) without a valid token."""
        async with self._caller_lock:
            if self._caller is None:
                try:
                    self._caller = await operations.authenticate(
                        services=self.services, authorization=self._authorization
                    )
                except DomainError as exc:
                    self._caller = exc
        if isinstance(self._caller, DomainError):
            raise self._caller
        return self._caller


GraphQLInfo: TypeAlias = Info[GraphQLContext, None]


async def get_context(
    connection: HTTPConnection, services: ServicesDep, client_address: ClientAddressDep
) -> GraphQLContext:
    return GraphQLContext(
        services=services,
        client_address=client_address,
        authorization=connection.headers.get("authorization"),
    )
