"""The pure-ASGI layers every request crosses, outermost (api/app.py `ServiceApp`).

Their order holds because each guarantee needs it:

1. Request id and access log: every response (preflights and the masked 500 included)
   carries X-Request-ID and gets its line (api/logging.py).
2. Metrics: every request is counted, preflights too (api/metrics.py); the label is the
   template of the route the request matched.
3. Trailing slashes: `/api/tasks/` is `/api/tasks`, no redirect.
4. CORS: Starlette's CORSMiddleware answers preflights and adds its headers to every other
   response, the last-resort 500 included.
5. Security headers, and the last resort: an unhandled error becomes
   `{"error": "Internal server error"}` with the CORS headers. Were it left to a handler
   outside CORS, the browser would see a bare "Failed to fetch".

Then FastAPI's stack: exception handlers and the one router, for REST and GraphQL alike.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from starlette.middleware.cors import CORSMiddleware
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.logging import (
    RAW_REQUEST_ID_HEADER,
    bind_request_id,
    log_request,
    request_id_from,
    unbind_request_id,
)
from api.metrics import AppMetrics, bind_metrics, route_template, unbind_metrics

log = logging.getLogger("todo.errors")

_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]
_INTERNAL_ERROR = b'{"error":"Internal server error"}'
_INTERNAL_ERROR_START: Message = {
    "type": "http.response.start",
    "status": 500,
    "headers": [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(_INTERNAL_ERROR)).encode()),
    ],
}


class ServiceMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        cors: Mapping[str, Any],
        metrics: AppMetrics | None,
        routes: Sequence[BaseRoute] = (),
    ) -> None:
        """`app` is FastAPI's stack below its ServerErrorMiddleware; `cors` are
        CORSMiddleware's arguments; `routes` the app's (live) route list, for the metrics
        labels of what the router did not label (api/metrics.py `route_template`)."""
        self.app = app
        self.metrics = metrics
        self.routes = routes
        self.cors = CORSMiddleware(self._secured, **cors)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        given_id = None
        for name, value in scope["headers"]:
            if name == RAW_REQUEST_ID_HEADER:
                given_id = value
                break
        request_id = request_id_from(given_id)
        id_token = bind_request_id(request_id)
        id_header = (RAW_REQUEST_ID_HEADER, request_id.encode("ascii"))
        metrics = self.metrics
        metrics_token = bind_metrics(metrics) if metrics is not None else None
        status = 0  # until the response starts

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), id_header]
            await send(message)

        routed = scope  # what the router sees, and marks with the route it matched
        path: str = scope["path"]
        if len(path) > 1 and path[-1] == "/":
            routed = dict(scope, path=path.rstrip("/") or "/")
        try:
            try:
                await self.cors(routed, receive, send_with_id)
            except Exception:
                # The trace is logged where it is handled (below, or by the server); the id
                # stays set so that record carries it too.
                log_request(scope, status or 500, started)
                raise
            log_request(scope, status, started)
            unbind_request_id(id_token)
        finally:
            if metrics is not None:
                metrics.observe_request(
                    scope["method"],
                    route_template(routed, self.routes),
                    status or 500,  # what the client gets when nothing was sent
                    time.perf_counter() - started,
                )
            if metrics_token is not None:
                unbind_metrics(metrics_token)

    async def _secured(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Inside CORS: the security headers on every response, and the last resort."""
        started = False

        async def send_secured(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", ()), *_SECURITY_HEADERS]
            await send(message)

        try:
            await self.app(scope, receive, send_secured)
        except Exception:
            log.exception("unhandled error on %s %s", scope["method"], scope["path"])
            if started:  # the response started: too late to answer anything else
                raise
            await send_secured(dict(_INTERNAL_ERROR_START))
            await send_secured({"type": "http.response.body", "body": _INTERNAL_ERROR})

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A websocket gets a request id and one line (status 101 when accepted, 403 when
        closed before), and its operations are counted in this app's metrics."""
        given_id = None
        for name, value in scope["headers"]:
            if name == RAW_REQUEST_ID_HEADER:
                given_id = value
                break
        id_token = bind_request_id(request_id_from(given_id))
        status = 0
        started = time.perf_counter()

        async def send_with_status(message: Message) -> None:
            nonlocal status
            message_type = message["type"]
            if message_type == "websocket.accept":
                status = 101
            elif message_type == "websocket.close" and status == 0:
                status = 403
            elif message_type == "websocket.http.response.start":
                status = message["status"]
            await send(message)

        metrics = self.metrics
        try:
            metrics_token = bind_metrics(metrics) if metrics is not None else None
            try:
                await self.app(scope, receive, send_with_status)
            finally:
                if metrics_token is not None:
                    unbind_metrics(metrics_token)
        except Exception:
            log_request(scope, status or 500, started)
            raise
        log_request(scope, status, started)
        unbind_request_id(id_token)
