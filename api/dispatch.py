"""FastAPI's request path below `ServiceMiddleware`, with only the layers this app uses.

Below its ServerErrorMiddleware (which `ServiceMiddleware` replaces), FastAPI stacks, around
its router: ExceptionTelemetryMiddleware and AppBodyLimitMiddleware (they act only when the
native telemetry or an app-wide body limit is on), the middleware added with
`add_middleware`, ExceptionMiddleware (the exception handlers) and AsyncExitStackMiddleware
(the exit stack FastAPI's own route handlers close uploaded files with). Each is a coroutine
and a wrapper per request, and ExceptionMiddleware builds a Request it only needs when
something was raised: a tenth of a small REST read.

`RequestPath` does the same for HTTP requests in one layer: it puts the exception handlers
where the routes look for them, calls the one router, and hands whatever the router raised to
a real ExceptionMiddleware, which answers it as it would have. The exit stack is opened only
by the routes whose FastAPI handler reads it, around their own app (opened for every request,
it cost a REST read 2% of its work in-process): `prepare_routes` sets them up at the first
request, and again whenever the table has grown since. Anything else (websockets, lifespan, a
request with the native telemetry on or a body limit set) goes through FastAPI's own stack,
as does every request when this FastAPI or Starlette does not look as this module expects, or
the route table holds a kind of route it does not know (`request_path` and `prepare_routes`
check; versions are pinned in pyproject.toml).
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AsyncExitStack
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute, APIWebSocketRoute
from starlette.middleware.body_limit import MAX_BODY_SIZE_SCOPE_KEY
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.requests import Request
from starlette.routing import Route, Router, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send

_RAISED = "todo.dispatch.raised"  # the exception, for the ExceptionMiddleware that answers it
_HANDLERS = "starlette.exception_handlers"  # where Starlette's routes look for the handlers
_FILE_STACK = "fastapi_middleware_astack"  # where FastAPI's route handlers look for it
_TELEMETRY = "fastapi.telemetry"  # set by FastAPI.__call__ while the native telemetry is on


async def _raise_again(scope: Scope, _receive: Receive, _send: Send) -> None:
    raise scope.pop(_RAISED)


class RequestPath:
    def __init__(
        self,
        router: Router,
        router_app: ASGIApp,
        library_stack: ASGIApp,
        answer: ExceptionMiddleware,
    ) -> None:
        """`router_app`: the router's own app (its middleware stack when it has none)."""
        self.router = router
        self.router_app = router_app
        self.library_stack = library_stack
        self.answer = answer
        self.handlers = (answer._exception_handlers, answer._status_handlers)
        self.prepared = -1  # how many routes the table held when they were last prepared
        self.direct = False  # whether the prepared table can be served directly

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        routes = self.router.routes
        if self.prepared != len(routes):  # the first request, or routes added since
            self.direct = prepare_routes(routes)
            self.prepared = len(routes)
        if (
            not self.direct
            or scope["type"] != "http"
            or _TELEMETRY in scope
            or MAX_BODY_SIZE_SCOPE_KEY in scope
        ):
            await self.library_stack(scope, receive, send)
            return
        scope[_HANDLERS] = self.handlers
        try:
            await self.router_app(scope, receive, send)
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


def _with_file_stack(route_app: ASGIApp) -> ASGIApp:
    """A FastAPI route's app with the exit stack its handler reads, as AsyncExitStackMiddleware
    would have opened it around the router: closed once the route's app is done."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if _FILE_STACK in scope:  # opened by FastAPI's own stack, which served the request
            await route_app(scope, receive, send)
            return
        async with AsyncExitStack() as file_stack:
            scope[_FILE_STACK] = file_stack
            await route_app(scope, receive, send)

    return app


_KNOWN_ROUTES = (APIRoute, Route, APIWebSocketRoute, WebSocketRoute)
_PREPARED = "todo_dispatch_prepared"  # marks a route app this module made


def prepare_routes(routes: Iterable[Any]) -> bool:
    """Each FastAPI route whose handler declares itself plain (its `plain_handler`: GraphQL's
    HTTP routes) is served by it directly; every other FastAPI route opens its own exit stack.
    Routes already prepared are left as they are. False when a route is of a kind this does
    not know (a mount, an included router): the requests then take FastAPI's own stack."""
    routes = list(routes)
    if not all(isinstance(route, _KNOWN_ROUTES) for route in routes):
        return False
    for route in routes:
        if not isinstance(route, APIRoute) or getattr(route.app, _PREPARED, False):
            continue
        handler = getattr(route, "plain_handler", None)
        if handler is not None and getattr(route, "max_body_size", None) is None:
            route.app = _plain_route_app(handler)
        else:
            route.app = _with_file_stack(route.app)
        setattr(route.app, _PREPARED, True)
    return True


def request_path(app: FastAPI, library_stack: ASGIApp) -> ASGIApp:
    """`library_stack` (FastAPI's stack below its ServerErrorMiddleware) as one layer, when
    nothing in it but the exception handlers and the router has work to do."""
    router = app.router
    if app.user_middleware or getattr(app, "max_body_size", None) is not None:
        return library_stack
    handlers: dict[Any, Any] = {
        key: value for key, value in app.exception_handlers.items() if key not in (500, Exception)
    }  # as FastAPI.build_middleware_stack splits them; 500 and Exception are the last resort's
    answer = ExceptionMiddleware(_raise_again, handlers=handlers, debug=app.debug)
    # Router.__call__ only awaits its middleware stack, which is its `app` when it has no
    # middleware of its own.
    router_app = getattr(router, "middleware_stack", None)
    if not (
        isinstance(getattr(answer, "_exception_handlers", None), dict)
        and isinstance(getattr(answer, "_status_handlers", None), dict)
        and callable(router_app)
    ):  # pragma: no cover - Starlette changed
        return library_stack
    return RequestPath(router, router_app, library_stack, answer)
