"""Every REST error is `{"error": "<message>"}`; the status comes from one table."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi import routing as fastapi_routing
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import BaseRoute

from core.errors import DomainError, ErrorCode, RateLimited

log = logging.getLogger("todo.rest")

STATUS_BY_CODE: dict[ErrorCode, int] = {
    ErrorCode.UNAUTHENTICATED: 401,
    ErrorCode.BAD_USER_INPUT: 400,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.CONFLICT: 409,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.UNAVAILABLE: 503,
    ErrorCode.INTERNAL: 500,
    # GraphQL's alone: no REST request can raise them.
    ErrorCode.PERSISTED_QUERY_NOT_FOUND: 400,
    ErrorCode.PERSISTED_QUERY_NOT_SUPPORTED: 400,
    ErrorCode.UNTRUSTED_DOCUMENT: 400,
    ErrorCode.CURSOR_EXPIRED: 410,  # a subscription's `after`
}

_MESSAGE_BY_STATUS = {
    400: "Invalid request body",
    401: "Unauthorized",
    404: "Not found",
    405: "Method not allowed",
    413: "Request body too large",
    429: "Too many requests",
    500: "Internal server error",
    503: "Service temporarily unavailable",
}


class HttpError(Exception):
    """A transport-level failure (body too large, not JSON) with its contracted message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(
        content=orjson.dumps({"error": message}),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def domain_error_response(exc: DomainError) -> Response:
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, RateLimited) else None
    return error_response(STATUS_BY_CODE[exc.code], exc.message, headers)


# The handlers are `async def` only so that Starlette runs them inline: a plain `def` handler
# is run in the thread pool, a thread hand-off per 404 or 405.


async def _domain_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DomainError)
    return domain_error_response(exc)


async def _http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HttpError)
    return error_response(exc.status, exc.message)


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def _allowed_methods(request: Request, exc: StarletteHTTPException) -> str:
    """Every method served on the path, whichever route serves it (Starlette's `Allow` names
    only the route it matched): the methods of every route with the matched one's template.
    A plain Starlette route leaves no `scope["route"]`; its own `Allow` is the answer."""
    template = getattr(request.scope.get("route"), "path_format", None)
    if template:
        methods: set[str] = set()
        for route in _flattened(request.app.router.routes):
            if getattr(route, "path_format", None) == template:
                methods.update(getattr(route, "methods", None) or ())
    else:
        given = (exc.headers or {}).get("Allow", "")
        methods = {method.strip() for method in given.split(",")}
    return ", ".join(method for method in _METHODS if method in methods)


def _flattened(routes: Sequence[BaseRoute]) -> Iterable[Any]:
    # FastAPI 0.165+ keeps included routers lazily; this public helper yields their routes
    # with the full path. Older versions copy them into the app's routes.
    iter_route_contexts = getattr(fastapi_routing, "iter_route_contexts", None)
    return iter_route_contexts(routes) if iter_route_contexts is not None else routes


async def _starlette_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    message = _MESSAGE_BY_STATUS.get(exc.status_code)
    if message is None:
        message = exc.detail if isinstance(exc.detail, str) else "Error"
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = _allowed_methods(request, exc)
    return error_response(exc.status_code, message, headers or None)


async def _validation_error(_request: Request, _exc: Exception) -> Response:
    return error_response(400, "Invalid request body")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(DomainError, _domain_error)
    app.add_exception_handler(HttpError, _http_error)
    app.add_exception_handler(StarletteHTTPException, _starlette_http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
