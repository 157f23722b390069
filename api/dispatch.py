"""FastAPI's request path below `ServiceMiddleware`, with only the layers this app uses.

Below its ServerErrorMiddleware (which `ServiceMiddleware` replaces), FastAPI stacks, around
its router: ExceptionTelemetryMiddleware and AppBodyLimitMiddleware (they act only when the
native telemetry or an app-wide body limit is on), the middleware added with
`add_middleware`, ExceptionMiddleware (the exception handlers) and AsyncExitStackMiddleware
(the exit stack FastAPI's own route handlers close uploaded files with). Each is a coroutine
and a wrapper per request, and ExceptionMiddleware builds a Request it only needs when
something was raised: a tenth of a small REST read.

`RequestPath` does the same for HTTP requests in one layer: it puts the exception handlers
and the exit stack where the routes look for them, calls the one router, and hands whatever
the router raised to a real ExceptionMiddleware, which answers it as it would have. Anything
else (websockets, lifespan, a request with the native telemetry on or a body limit set) goes
through FastAPI's own stack, as does every request when this FastAPI or Starlette does not
look as this module expects (`request_path` checks; versions are pinned in pyproject.toml).
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AsyncExitStack
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.middleware.body_limit import MAX_BODY_SIZE_SCOPE_KEY
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

_RAISED = "todo.dispatch.raised"  # the exception, for the ExceptionMiddleware that answers it
_HANDLERS = "starlette.exception_handlers"  # where Starlette's routes look for the handlers
_FILE_STACK = "fastapi_middleware_astack"  # where FastAPI's route handlers look for it
_TELEMETRY = "fastapi.telemetry"  # set by FastAPI.__call__ while the native telemetry is on


async def _raise_again(scope: Scope, _receive: Receive, _send: Send) -> None:
    raise scope.pop(_RAISED)


class RequestPath:
    def __init__(self, router: ASGIApp, library_stack: ASGIApp, answer: ExceptionMiddleware):
        self.router = router
        self.library_stack = library_stack
        self.answer = answer
        self.handlers = (answer._exception_handlers, answer._status_handlers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _TELEMETRY in scope or MAX_BODY_SIZE_SCOPE_KEY in scope:
            await self.library_stack(scope, receive, send)
            return
        scope[_HANDLERS] = self.handlers
        async with AsyncExitStack() as file_stack:
            scope[_FILE_STACK] = file_stack
            try:
                await self.router(scope, receive, send)
            except Exception as exc:
                # Raised outside a route's own handling (the router's 404 and 405), or passed
                # on by it (no handler, or the response had started: no handler then either).
                scope[_RAISED] = exc
                await self.answer(scope, receive, send)


def _plain_route_app(handler: Any) -> ASGIApp:
    """What `request_response` makes of a route handler, less what a plain handler does not
    use: the two exit stacks (for dependencies with `yield`, which it has none of) and the
    route's own exception handling (what is raised reaches `RequestPath`, which answers it
    with the same handlers). The response is the handler's, sent as it is."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        response = await handler(Request(scope, receive, send))
        await response(scope, receive, send)

    return app


def serve_plain_handlers(routes: Iterable[Any]) -> None:
    """Each FastAPI route whose handler declares itself plain (its `plain_handler`: the
    REST facade's `PlainCallRoute`, GraphQL's HTTP routes) is served by it directly."""
    for route in routes:
        handler = getattr(route, "plain_handler", None)
        if (
            handler is not None
            and isinstance(route, APIRoute)
            and getattr(route, "max_body_size", None) is None
            and callable(getattr(route, "app", None))
        ):
            route.app = _plain_route_app(handler)


def request_path(app: FastAPI, library_stack: ASGIApp) -> ASGIApp:
    """`library_stack` (FastAPI's stack below its ServerErrorMiddleware) as one layer, when
    nothing in it but the exception handlers and the router has work to do."""
    if app.user_middleware or getattr(app, "max_body_size", None) is not None:
        return library_stack
    handlers: dict[Any, Any] = {
        key: value for key, value in app.exception_handlers.items() if key not in (500, Exception)
    }  # as FastAPI.build_middleware_stack splits them; 500 and Exception are the last resort's
    answer = ExceptionMiddleware(_raise_again, handlers=handlers, debug=app.debug)
    if not (
        isinstance(getattr(answer, "_exception_handlers", None), dict)
        and isinstance(getattr(answer, "_status_handlers", None), dict)
    ):  # pragma: no cover - Starlette changed
        return library_stack
    serve_plain_handlers(app.router.routes)
    return RequestPath(app.router, library_stack, answer)
