"""GraphQL over HTTP at /graphql: Strawberry's FastAPI router with the gaps filled.

What Strawberry 0.341 already does: POST JSON, GET for queries, GraphiQL (with a headers
editor) for browsers, 400 for malformed requests. What this adds:

- `Accept: application/graphql-response+json` is honoured (GraphQL over HTTP spec): that media
  type in the response, and 400 for a request that never reached execution (syntax,
  validation, limits, variable coercion). Those responses carry no `data` key in either media
  type, as the GraphQL spec asks; with plain `application/json` they stay 200.
- A rejected request gets a JSON body `{"errors": [{"message": ...}]}` instead of plain text;
  a mutation over GET is 405 with `Allow: POST`; other methods are 405 too.
- Bodies over 1 MiB are refused (413) while they stream, as the REST facade does.
- GraphiQL is the service's own page (api/graphiql.py): pinned assets, a
  Content-Security-Policy, and the token stored in the browser only when the user asks.
- Subscriptions run over WebSocket on the same path (graphql_schema/websocket.py): the token
  comes with `connection_init`, pages on FRONTEND_URL's origins may connect, idle sockets
  get keep-alives. Over HTTP a subscription is refused (400).
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable, Iterable
from datetime import timedelta
from typing import Any

import orjson
from cross_web import AsyncHTTPRequestAdapter, HTTPException, StarletteRequestAdapter
from fastapi import BackgroundTasks
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute
from starlette.websockets import WebSocket
from strawberry.extensions import SchemaExtension
from strawberry.fastapi import GraphQLRouter
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData
from strawberry.schema.base import BaseSchema
from strawberry.schema.exceptions import InvalidOperationTypeError
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType
from strawberry.types.unset import UNSET, UnsetType

from core.errors import ErrorCode
from graphql_schema.context import GraphQLContext, get_context
from graphql_schema.extensions import OperationReport, is_presented, present
from graphql_schema.persisted import PersistedDocuments
from graphql_schema.schema import build_schema
from graphql_schema.websocket import (
    LegacyWSHandler,
    TextFrameWebSocketAdapter,
    TransportWSHandler,
    authenticate_connection,
)

GRAPHQL_PATH = "/graphql"
MAX_BODY_BYTES = 1 << 20
PUBLIC_CACHE = "public, max-age=300"
PRIVATE_CACHE = "private, no-store"
JSON = "application/json"
GRAPHQL_RESPONSE = "application/graphql-response+json"
SUBSCRIPTIONS_OVER_WEBSOCKET = (
    "Subscriptions are served over WebSocket at this path (graphql-transport-ws)"
)


def response_media_type(accept: str | None) -> str:
    """The client's preferred of our two media types; plain JSON when it names neither."""
    quality = {JSON: 0.0, GRAPHQL_RESPONSE: 0.0}
    for item in (accept or "").split(","):
        media_range, *params = (part.strip() for part in item.split(";"))
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        media_range = media_range.lower()
        if media_range == GRAPHQL_RESPONSE:
            quality[GRAPHQL_RESPONSE] = max(quality[GRAPHQL_RESPONSE], q)
        elif media_range in (JSON, "application/*", "*/*"):
            quality[JSON] = max(quality[JSON], q)
    wants_new = quality[GRAPHQL_RESPONSE] > 0 and quality[GRAPHQL_RESPONSE] >= quality[JSON]
    return GRAPHQL_RESPONSE if wants_new else JSON


def _content_type(media_type: str) -> str:
    return f"{GRAPHQL_RESPONSE}; charset=utf-8" if media_type == GRAPHQL_RESPONSE else JSON


def error_response(
    status: int, message: str, media_type: str = JSON, headers: dict[str, str] | None = None
) -> Response:
    body = {
        "errors": [{"message": message, "extensions": {"code": ErrorCode.BAD_USER_INPUT.value}}]
    }
    response = Response(
        json.dumps(body, separators=(",", ":")), status_code=status, headers=headers
    )
    response.headers["content-type"] = _content_type(media_type)
    return response


class BoundedRequestAdapter(StarletteRequestAdapter):
    """Reads the body with a size cap, so a huge POST never sits in memory whole."""

    def __init__(self, request: Request) -> None:
        super().__init__(request)
        self.request = request
        self.body: bytes | None = None

    async def get_body(self) -> bytes:
        declared = self.request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            raise HTTPException(413, "Request body too large")
        if self.body is not None:
            return self.body
        chunks: list[bytes] = []
        size = 0
        async for chunk in self.request.stream():
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise HTTPException(413, "Request body too large")
            chunks.append(chunk)
        self.body = b"".join(chunks)
        return self.body


MAX_JSON_DEPTH = 32  # this schema's variables nest 3 deep; graphql-core recurses per level
_MAX_NUMBER_CHARS = 100


def _not_json(_constant: str) -> object:
    raise ValueError("NaN and Infinity are not JSON")


def _bounded_int(text: str) -> int:
    if len(text) > _MAX_NUMBER_CHARS:
        raise ValueError("number too long")
    return int(text)


def _bounded_float(text: str) -> float:
    value = float(text) if len(text) <= _MAX_NUMBER_CHARS else math.inf
    if not math.isfinite(value):
        raise ValueError("number too long")
    return value


def decode_strict_json(data: str | bytes) -> object:
    """`json.loads`, refusing what is not JSON or would cost more than any real request:
    NaN/Infinity, text that is not UTF-8 (or UTF-16/32, which `json.loads` also detects),
    numbers over 100 characters, nesting deeper than MAX_JSON_DEPTH, and more than
    MAX_BODY_BYTES: HTTP bodies are cut off while they stream, a WebSocket message arrives
    whole (uvicorn stops one over the same size itself: `todo-api serve` sets ws_max_size)."""
    if len(data) > MAX_BODY_BYTES:
        raise json.JSONDecodeError("message too large", "", 0)
    try:
        value = json.loads(
            data,
            parse_constant=_not_json,
            parse_int=_bounded_int,
            parse_float=_bounded_float,
        )
    except json.JSONDecodeError:
        raise
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise json.JSONDecodeError(f"not acceptable JSON: {type(exc).__name__}", "", 0) from exc
    if _depth_exceeds(value, MAX_JSON_DEPTH):
        raise json.JSONDecodeError("JSON nested too deep", "", 0)
    return value


def _depth_exceeds(value: object, limit: int) -> bool:
    pending: list[tuple[object, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        pending.extend((child, depth + 1) for child in children)
    return False


def _is_request_error(result: ExecutionResult) -> bool:
    # Errors raised before any resolver ran have no path (field errors always do).
    return (
        result.data is None
        and bool(result.errors)
        and all(error.path is None for error in result.errors or ())
    )


# Strawberry's HTTP endpoints (GraphQLRouter.__init__); their route handlers are replaced.
_HTTP_ENDPOINTS = frozenset({"handle_http_get", "handle_http_post"})


class GraphQLHTTPRouter(GraphQLRouter[GraphQLContext, None]):
    request_adapter_class = BoundedRequestAdapter
    websocket_adapter_class = TextFrameWebSocketAdapter
    graphql_transport_ws_handler_class = TransportWSHandler
    graphql_ws_handler_class = LegacyWSHandler

    def __init__(
        self,
        schema: BaseSchema,
        *,
        graphiql_page: Callable[[Request], HTMLResponse] | None = None,
        **kwargs: Any,
    ) -> None:
        router = self
        self.graphiql_page = graphiql_page

        class Route(APIRoute):
            """Strawberry's GET and POST routes, served by `serve_http`: FastAPI routes them,
            and the handler builds the context with plain calls instead of solving the
            endpoint's dependencies (the context getter's, Strawberry's wrapper around it, the
            root value, the sub-response, background tasks). `app.dependency_overrides` do
            not reach them. `plain_handler` says the app may serve them with it directly:
            it needs none of FastAPI's per-request exit stacks (api/dispatch.py)."""

            plain_handler: Callable[[Request], Awaitable[Response]] | None = None

            def get_route_handler(self) -> Any:
                if getattr(self.endpoint, "__name__", None) in _HTTP_ENDPOINTS:
                    self.plain_handler = router.serve_http
                    return router.serve_http
                return super().get_route_handler()

        super().__init__(schema, route_class=Route, **kwargs)

    @property
    def operations_route(self) -> BaseRoute:
        """The route of `POST /graphql`."""
        for route in self.routes:
            if isinstance(route, APIRoute) and route.methods == {"POST"}:
                return route
        raise LookupError("Strawberry's router has no POST route")

    async def serve_http(self, request: Request) -> Response:
        """What Strawberry's `handle_http_get`/`handle_http_post` do once FastAPI solved their
        dependencies: the same context (`get_context`), an empty
        sub-response, background tasks that run after the response."""
        sub_response = Response()  # as FastAPI makes it: no status, no headers
        del sub_response.headers["content-length"]
        sub_response.status_code = None  # type: ignore[assignment]
        background_tasks = BackgroundTasks()
        context = await get_context(request)
        context.request = request
        context.background_tasks = background_tasks
        context.response = sub_response
        self.temporal_response = sub_response
        try:
            response: Response = await self.run(request=request, context=context, root_value=None)
        except HTTPException as exc:
            response = PlainTextResponse(exc.reason, status_code=exc.status_code)
        if response.background is None:
            response.background = background_tasks
        return response

    def decode_json(self, data: str | bytes) -> object:
        """Strict JSON for request bodies and WebSocket messages; whatever is not is answered
        like any unparsable body (HTTP 400; on a socket, close 4400), never a 500."""
        return decode_strict_json(data)

    def encode_json(self, data: object) -> bytes | str:
        """Strawberry's encoding (compact `json.dumps`), byte for byte, with orjson's speed.

        orjson writes the same bytes for what a response holds (str, int, bool, None, lists,
        dicts with str keys: no floats in this schema) except that it leaves non-ASCII
        characters and DEL unescaped; then, and for anything it refuses, json.dumps writes.
        """
        try:
            encoded = orjson.dumps(data)
        except TypeError:  # orjson.JSONEncodeError: a big int, a non-str key, ...
            return super().encode_json(data)
        if encoded.isascii() and b"\x7f" not in encoded:
            return encoded
        return super().encode_json(data)

    def should_render_graphql_ide(self, request: Any) -> bool:
        """GraphiQL for a browser's GET without an operation; a GET naming a persisted
        document (`extensions` or `documentId`, no `query`) is an operation too."""
        if not super().should_render_graphql_ide(request):  # a POST stops here, unparsed
            return False
        params = request.query_params
        return params.get("extensions") is None and params.get("documentId") is None

    async def render_graphql_ide(self, request: Request) -> HTMLResponse:
        """The service's GraphiQL page (api/graphiql.py), not Strawberry's."""
        assert self.graphiql_page is not None  # graphql_ide is None without it
        return self.graphiql_page(request)

    async def on_ws_connect(self, context: GraphQLContext) -> UnsetType:
        return await authenticate_connection(context)

    async def run(
        self,
        request: Request | WebSocket,
        context: GraphQLContext = UNSET,
        root_value: None = UNSET,
    ) -> Any:
        if self.is_websocket_request(request):
            return await super().run(request, context=context, root_value=root_value)
        assert isinstance(request, Request)
        media_type = response_media_type(request.headers.get("accept"))
        try:
            response = await super().run(request, context=context, root_value=root_value)
        except HTTPException as exc:
            cause = exc.__cause__
            if isinstance(cause, InvalidOperationTypeError):
                if cause.operation_type is OperationType.SUBSCRIPTION:
                    return error_response(400, SUBSCRIPTIONS_OVER_WEBSOCKET, media_type)
                if request.method == "GET":
                    return error_response(405, exc.reason, media_type, {"Allow": "POST"})
            return error_response(exc.status_code, exc.reason, media_type)
        if isinstance(response, HTMLResponse):  # GraphiQL
            return response
        response.headers["content-type"] = _content_type(media_type)
        if media_type == GRAPHQL_RESPONSE and getattr(request.state, "graphql_rejected", False):
            response.status_code = 400
        if request.method == "GET":
            # Queries by GET (persisted ones, say) may be cached, but never a caller's data in
            # a shared cache: only an answer without errors to a request without credentials.
            public = "authorization" not in request.headers and not getattr(
                request.state, "graphql_errors", True
            )
            response.headers["cache-control"] = PUBLIC_CACHE if public else PRIVATE_CACHE
            response.headers["vary"] = "Authorization, Accept"
        return response

    async def parse_http_body(
        self, request: AsyncHTTPRequestAdapter
    ) -> GraphQLRequestData | list[GraphQLRequestData]:
        """Strawberry's parsing, plus a top-level `documentId` (the GraphQL-over-HTTP draft's
        persisted documents), handed to graphql_schema/persisted.py in `extensions`."""
        data = await super().parse_http_body(request)
        if isinstance(data, GraphQLRequestData):
            document_id = await _document_id(self, request)
            if document_id is not None:
                data.extensions = {**(data.extensions or {}), "documentId": document_id}
        return data

    async def process_result(
        self, request: Request, result: ExecutionResult
    ) -> GraphQLHTTPResponse:
        if result.errors and not all(is_presented(error) for error in result.errors):
            # Only an exception from an extension hook escapes PresentErrors; never show it raw.
            result.errors = [
                error if is_presented(error) else present(error) for error in result.errors
            ]
        response = await super().process_result(request, result)
        request.state.graphql_errors = bool(result.errors)
        if _is_request_error(result):
            response.pop("data", None)
            request.state.graphql_rejected = True
        return response


async def _document_id(view: GraphQLHTTPRouter, request: AsyncHTTPRequestAdapter) -> object:
    if request.method == "GET":
        return request.query_params.get("documentId")
    body = await request.get_body()  # read once already: BoundedRequestAdapter keeps it
    if b"documentId" not in body:
        return None
    data = view.decode_json(body)
    return data.get("documentId") if isinstance(data, dict) else None


async def _method_not_allowed(request: Request) -> Response:
    media_type = response_media_type(request.headers.get("accept"))
    return error_response(
        405, "GraphQL only supports GET and POST requests.", media_type, {"Allow": "GET, POST"}
    )


def build_graphql_router(
    *,
    introspection: bool,
    max_cost: int,
    allowed_origins: list[str],
    keep_alive_seconds: float,
    graphiql_page: Callable[[Request], HTMLResponse] | None,
    report: OperationReport | None = None,
    extensions: Iterable[Callable[[], SchemaExtension]] = (),
    documents: PersistedDocuments | None = None,
) -> GraphQLHTTPRouter:
    """The /graphql endpoint: its routes carry the full path (the router's prefix), so they
    can join the app's route table as they are (api/app.py).

    `graphiql_page` answers browsers' GETs; without it, or without introspection (GraphiQL
    could not load the schema), there is no GraphiQL."""
    with_ide = graphiql_page is not None and introspection
    router = GraphQLHTTPRouter(
        build_schema(
            introspection=introspection,
            max_cost=max_cost,
            report=report,
            extensions=extensions,
            documents=documents,
        ),
        graphiql_page=graphiql_page if with_ide else None,
        prefix=GRAPHQL_PATH,
        context_getter=get_context,
        graphql_ide="graphiql" if with_ide else None,
        # The SDL in specs/ documents this endpoint; the OpenAPI document is the REST facade's.
        include_in_schema=False,
        # WebSocket: browsers send Origin; the frontend's pages may connect, others may not.
        allowed_origins=allowed_origins,
        keep_alive=True,  # legacy graphql-ws `ka`; graphql-transport-ws pings in the handler
        keep_alive_interval=keep_alive_seconds,
        connection_init_wait_timeout=timedelta(seconds=10),
    )
    router.add_api_route(
        "", _method_not_allowed, methods=["PUT", "PATCH", "DELETE"], include_in_schema=False
    )
    return router
