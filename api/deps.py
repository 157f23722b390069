"""Typed dependencies shared by the REST routes and the GraphQL context."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection
from starlette.types import Scope

from api.services import Services
from graphql_schema.operations import Caller, identify


def _services(connection: HTTPConnection) -> Services:
    return connection.app.state.services


def client_address(connection: HTTPConnection, trusted_proxies: frozenset[str]) -> str:
    """The client's address, believing X-Forwarded-For only when a trusted proxy sent it.

    Walks the header from the right (the entries our own proxies appended) and stops at the
    first address that is not a trusted proxy.
    """
    peer = connection.client.host if connection.client else "unknown"
    if peer not in trusted_proxies:
        return peer
    forwarded = connection.headers.get("x-forwarded-for", "")
    hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
    for hop in reversed(hops):
        if hop not in trusted_proxies:
            return hop
    return hops[0] if hops else peer


# FastAPI runs plain `def` dependencies in a thread pool; these are `async def` so they run
# inline on the event loop (they do no I/O).


async def get_services(connection: HTTPConnection) -> Services:
    return _services(connection)


async def get_caller(connection: HTTPConnection) -> Caller:
    """The token's caller, checked without a database trip: the task operations answer 401
    themselves when the account is gone (graphql_schema/operations.py, `_require_user`)."""
    return caller_of(_services(connection), connection.scope)


def caller_of(services: Services, scope: Scope) -> Caller:
    """`get_caller` for a plain function call (rest_facade/router.py `DirectRoutes`): the one
    place the REST routes read the token, whichever way a request is routed."""
    authorization = None
    for name, value in scope["headers"]:
        if name == b"authorization":  # the first one, as `Headers.get` takes it
            authorization = value.decode("latin-1")
            break
    return identify(services=services, authorization=authorization)


async def get_client_address(connection: HTTPConnection) -> str:
    services = _services(connection)
    return client_address(connection, services.settings.trusted_proxy_list)


ServicesDep = Annotated[Services, Depends(get_services)]
CallerDep = Annotated[Caller, Depends(get_caller)]
ClientAddressDep = Annotated[str, Depends(get_client_address)]
