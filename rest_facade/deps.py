"""The REST routes' dependencies: the rules (`app.state["todo"]`), the caller, the address."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection
from starlette.types import Scope

from core.records import Caller
from core.service import TodoService

# `async def`: FastAPI runs plain `def` dependencies in a thread pool; these do no I/O.


async def get_service(connection: HTTPConnection) -> TodoService:
    return connection.app.state["todo"]


async def get_caller(connection: HTTPConnection) -> Caller:
    """The token's caller, checked without a database trip: the task use cases answer 401
    themselves when the account is gone (core/guards.py, `require_user`)."""
    return caller_of(connection.app.state["todo"], connection.scope)


def caller_of(service: TodoService, scope: Scope) -> Caller:
    """`get_caller` for a plain function call: the one place the REST routes read the token."""
    authorization = None
    for name, value in scope["headers"]:
        if name == b"authorization":  # the first one, as `Headers.get` takes it
            authorization = value.decode("latin-1")
            break
    return service.accounts.identify(authorization)


async def get_client_address(connection: HTTPConnection) -> str:
    return client_address(connection.app.state["todo"], connection)


def client_address(service: TodoService, connection: HTTPConnection) -> str:
    peer = connection.client.host if connection.client else None
    return service.client_address(peer, connection.headers.get("x-forwarded-for"))


ServiceDep = Annotated[TodoService, Depends(get_service)]
CallerDep = Annotated[Caller, Depends(get_caller)]
ClientAddressDep = Annotated[str, Depends(get_client_address)]
