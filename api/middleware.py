"""The one pure-ASGI middleware every request crosses, outermost (api/app.py `ServiceApp`).

It does, with one timer and one `send` wrapper, what separate layers would do, each with its
own `send` wrapper and its own look at the headers (request log, metrics, CORS, security
headers, FastAPI's ServerErrorMiddleware). Their order holds because each guarantee needs it:

1. Request id and access log: every response (preflights and the masked 500 included)
   carries X-Request-ID and gets its line (api/logging.py).
2. Metrics: every request is counted, preflights too (api/metrics.py); the label is the
   template of the route the request matched.
3. CORS: preflights are answered here, with Starlette's own answer; every other response gets
   the CORS headers Starlette's CORSMiddleware would add, the last-resort 500 included.
4. Security headers, trailing slashes (`/api/tasks/` is `/api/tasks`, no redirect), and the
   last resort: an unhandled error becomes `{"error": "Internal server error"}` with the CORS
   headers. Were it left to a handler outside CORS, the browser would see a bare
   "Failed to fetch".

Then FastAPI's request path (api/dispatch.py): exception handlers and the one router, for
REST and GraphQL alike.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from starlette.datastructures import Headers, MutableHeaders
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
_VARY_ORIGIN = (b"vary", b"Origin")
_ALLOW_ORIGIN = b"access-control-allow-origin"


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
        # Starlette's CORSMiddleware is kept for its settings and its preflight answer; its
        # per-response work is done in `_decorate`, the same edits on the raw header list.
        self.cors = CORSMiddleware(app, **cors)
        self._simple_headers = [
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in self.cors.simple_headers.items()
        ]
        self._cors_names: Collection[bytes] = frozenset(
            [b"vary", _ALLOW_ORIGIN, *(name for name, _ in self._simple_headers)]
        )

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
        given_id = origin = None
        preflight_asked = False
        for name, value in scope["headers"]:  # one pass for everything this layer reads
            if name == RAW_REQUEST_ID_HEADER:
                if given_id is None:
                    given_id = value
            elif name == b"origin":
                if origin is None:
                    origin = value
            elif name == b"access-control-request-method":
                preflight_asked = True
        request_id = request_id_from(given_id)
        id_token = bind_request_id(request_id)
        id_header = (RAW_REQUEST_ID_HEADER, request_id.encode("ascii"))
        metrics = self.metrics
        metrics_token = bind_metrics(metrics) if metrics is not None else None
        method: str = scope["method"]
        preflight = origin is not None and method == "OPTIONS" and preflight_asked
        status = 0  # until the response starts

        async def send_decorated(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                if preflight:  # CORS answered it: nothing inside CORS touched it before
                    message["headers"] = [*message.get("headers", ()), id_header]
                else:
                    message["headers"] = self._decorate(message.get("headers"), origin, id_header)
            await send(message)

        routed = scope  # what the router sees, and marks with the route it matched
        try:
            try:
                if preflight:
                    response = self.cors.preflight_response(request_headers=Headers(scope=scope))
                    await response(scope, receive, send_decorated)
                else:
                    # Inside CORS: trailing slashes, FastAPI's request path, last resort.
                    path: str = scope["path"]
                    if len(path) > 1 and path[-1] == "/":
                        routed = dict(scope, path=path.rstrip("/") or "/")
                    try:
                        await self.app(routed, receive, send_decorated)
                    except Exception:
                        log.exception("unhandled error on %s %s", method, path)
                        if status:  # the response started: too late to answer anything else
                            raise
                        await send_decorated(dict(_INTERNAL_ERROR_START))
                        await send_decorated(
                            {"type": "http.response.body", "body": _INTERNAL_ERROR}
                        )
            except Exception:
                # The trace is logged where it is handled (above, or by the server); the id
                # stays set so that record carries it too.
                log_request(scope, status or 500, started)
                raise
            log_request(scope, status, started)
            unbind_request_id(id_token)
        finally:
            if metrics is not None:
                metrics.observe_request(
                    method,
                    route_template(routed, self.routes),
                    status or 500,  # what the client gets when nothing was sent
                    time.perf_counter() - started,
                )
            if metrics_token is not None:
                unbind_metrics(metrics_token)

    def _decorate(
        self, headers: Any, origin: bytes | None, id_header: tuple[bytes, bytes]
    ) -> list[tuple[bytes, bytes]]:
        """A response's headers plus the security headers, CORS's and the request id, in the
        order the separate layers appended them."""
        cors = self.cors
        raw = [*headers, *_SECURITY_HEADERS] if headers else [*_SECURITY_HEADERS]
        like_starlette = cors.allow_all_origins
        for name, _ in raw:
            if name in self._cors_names:
                like_starlette = True
                break
        if like_starlette:
            self._decorate_like_starlette(raw, origin)
        elif origin is None:
            raw.append(_VARY_ORIGIN)
        else:
            raw += self._simple_headers
            if cors.is_allowed_origin(origin.decode("latin-1")):
                raw.append((_ALLOW_ORIGIN, origin))
            raw.append(_VARY_ORIGIN)
        raw.append(id_header)
        return raw

    def _decorate_like_starlette(
        self, raw: list[tuple[bytes, bytes]], origin: bytes | None
    ) -> None:
        """CORSMiddleware.send's edits, word for word: for responses that already carry a CORS
        or Vary header (they are replaced or merged, not appended) and for `*` origins."""
        cors = self.cors
        headers = MutableHeaders(raw=raw)
        request_origin = origin.decode("latin-1") if origin is not None else None
        if request_origin is not None:
            headers.update(cors.simple_headers)
        if request_origin is not None and cors.allow_all_origins and cors.allow_credentials:
            cors.allow_explicit_origin(headers, request_origin)
        elif (
            request_origin is not None
            and not cors.allow_all_origins
            and cors.is_allowed_origin(origin=request_origin)
        ):
            cors.allow_explicit_origin(headers, request_origin)
        else:
            headers["Vary"] = ", ".join([*headers.getlist("Vary"), "Origin"])

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
