"""The outer layers (api/middleware.py) answer with Starlette's CORS headers in the order the
separate layers made them, and every request goes through FastAPI's one router."""

from __future__ import annotations

import gc
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Annotated, Any

import httpx
import orjson
import pytest
from asyncpg.pgproto import pgproto
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import PlainTextResponse, Response
from starlette.types import Message, Receive, Scope, Send

import api.app as app_module
from api.logging import request_id_from
from api.middleware import ServiceMiddleware
from core.records import TaskRecord
from rest_facade import router as rest_router
from rest_facade.routing import PlainCallRoute, _plain_call_plan
from rest_facade.serializers import JSON_OPTIONS, task_json
from tests.conftest import FRONTEND, Account

CORS = {
    "allow_origins": [FRONTEND],
    "allow_credentials": True,
    "allow_methods": ["GET", "POST", "PUT", "DELETE", "OPTIONS"],
    "allow_headers": ["Authorization", "Content-Type"],
    "expose_headers": ["Retry-After", "X-Request-ID"],
    "max_age": 600,
}


async def test_rest_routes_answer_through_the_router(
    client: httpx.AsyncClient, alice: Account
) -> None:
    auth = alice.headers
    first = (await client.post("/api/tasks", json={"title": "one"}, headers=auth)).json()["task"]
    item = f"/api/tasks/{first['id']}"
    bad_token = {"Authorization": "Bearer x"}
    for method, path, kwargs, status in (
        ("GET", "/api/tasks", {"headers": auth}, 200),
        ("GET", "/api/tasks/", {"headers": auth}, 200),
        ("GET", "/api/tasks", {}, 401),
        ("GET", item, {"headers": auth}, 200),
        ("GET", "/api/tasks/a b%", {"headers": auth}, 404),
        ("PUT", item, {"headers": bad_token, "content": b"{"}, 401),  # the token, then the body
        ("PUT", item, {"headers": auth, "content": b"{"}, 400),
        ("POST", "/api/auth/login", {"json": {"email": "", "password": "x"}}, 400),
        ("DELETE", item, {"headers": auth}, 204),
    ):
        response = await client.request(method, path, **kwargs)
        assert response.status_code == status, (method, path, response.text)


async def test_what_no_route_serves_is_a_404_or_405_with_every_method_allowed(
    client: httpx.AsyncClient, alice: Account
) -> None:
    for method, path, status, allow in (
        ("HEAD", "/api/tasks", 405, "GET, POST"),
        ("PATCH", "/api/tasks", 405, "GET, POST"),
        ("OPTIONS", "/api/tasks", 405, "GET, POST"),  # not a preflight: no Origin
        ("POST", f"/api/tasks/{uuid.uuid4()}", 405, "GET, PUT, DELETE"),
        ("GET", "/api/auth/login", 405, "POST"),
        ("HEAD", "/graphql", 405, "GET, POST, PUT, PATCH, DELETE"),
        ("POST", "/openapi.json", 405, "GET, HEAD"),  # a plain Starlette route
        ("GET", "/api/tasks/a/b", 404, None),
        ("GET", "/api", 404, None),
    ):
        response = await client.request(method, path, headers=alice.headers)
        assert response.status_code == status, (method, path)
        assert response.headers.get("allow") == allow, (method, path)


def test_every_rest_route_is_served_by_plain_calls(app: Any) -> None:
    """No REST endpoint falls back to FastAPI's dependency solving unnoticed."""
    for route in rest_router.router.routes:
        assert isinstance(route, PlainCallRoute)
        assert _plain_call_plan(route) is not None, route.path


def test_routes_are_declared_with_their_full_path(app: Any) -> None:
    """FastAPI marks a request with the route as declared (`scope["route"]`); the metrics and
    the 405 answer read its template, so no include may add a prefix to it."""
    for context in iter_route_contexts(app.router.routes):
        assert context.original_route.path_format == context.path_format, context.path_format


async def _path_of(request: Request) -> str:
    return request.url.path


async def plain(item_id: str, path: Annotated[str, Depends(_path_of)]) -> Response:
    return PlainTextResponse(f"{item_id} {path}")


async def with_query(item_id: int, limit: int = 3) -> dict[str, int]:
    return {"item_id": item_id, "limit": limit}


async def test_endpoints_that_take_more_are_solved_by_fastapi() -> None:
    router = APIRouter(route_class=PlainCallRoute)
    router.add_api_route("/plain/{item_id}", plain, methods=["GET"])
    router.add_api_route("/query/{item_id}", with_query, methods=["GET"])
    planned = [_plain_call_plan(route) is not None for route in router.routes]
    assert planned == [True, False]
    app = FastAPI()
    app.include_router(router)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        assert (await client.get("/plain/a%20b")).text == "a b /plain/a b"
        assert (await client.get("/query/7?limit=2")).json() == {"item_id": 7, "limit": 2}
        assert (await client.get("/query/x")).status_code == 422


async def test_a_route_with_a_body_limit_is_served_by_fastapi() -> None:
    """A plain endpoint with its own body limit keeps FastAPI's app, which enforces it."""
    router = APIRouter(route_class=PlainCallRoute)
    router.add_api_route("/limited/{item_id}", plain, methods=["POST"], max_body_size=8)
    assert _plain_call_plan(router.routes[0]) is None
    app = FastAPI()
    app.router.routes.extend(router.routes)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        assert (await client.post("/limited/a", content=b"1234")).text == "a /limited/a"
        assert (await client.post("/limited/a", content=b"123456789")).status_code == 413


async def _probe() -> dict[str, str]:
    return {"probe": "ok"}


async def test_routes_added_after_the_first_request_are_served(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """FastAPI's own route handlers need the exit stack that only prepared routes open
    (api/dispatch.py): a route added later, or a router included later, is served too."""
    assert (await client.get("/health")).status_code == 200
    app.add_api_route("/test-late", _probe, methods=["GET"])
    assert (await client.get("/test-late")).json() == {"probe": "ok"}
    included = APIRouter(prefix="/test-included")
    included.add_api_route("/probe", _probe, methods=["GET"])
    app.include_router(included)
    assert (await client.get("/test-included/probe")).json() == {"probe": "ok"}
    assert (await client.get("/test-late")).json() == {"probe": "ok"}
    assert (await client.get("/health")).status_code == 200


@pytest.mark.parametrize("root_path", ["", "/prefix"])
@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE", "PATCH"])
@pytest.mark.parametrize(
    "path",
    [
        "/api/tasks",
        "/api/tasks/abc",
        "/api/tasks/a%20b",
        "/api/tasks/a/b",
        "/api/auth/login",
        "/api/tasks/",
        "/graphql",
        "/",
        "/prefix/api/tasks/x",
    ],
)
def test_plain_call_routes_match_as_fastapi_does(path: str, method: str, root_path: str) -> None:
    """`PlainCallRoute.matches` answers sooner, and what `APIRoute.matches` answers."""
    router = APIRouter(route_class=PlainCallRoute)
    router.add_api_route("/plain/{item_id}", plain, methods=["GET"])
    routes = [*rest_router.router.routes, *router.routes]
    for route in routes:
        for path_params in ({}, {"outer": "1"}):
            scope = {
                "type": "http",
                "method": method,
                "path": path,
                "root_path": root_path,
                "path_params": path_params,
            }
            assert route.matches(dict(scope)) == APIRoute.matches(route, dict(scope))


# --- the layer's headers against Starlette's CORSMiddleware and the old layers ---------------


def emitting(headers: list[tuple[bytes, bytes]], status: int = 200) -> Callable[..., Any]:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": status, "headers": list(headers)})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


SECURITY = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]


def with_security_headers(app: Callable[..., Any]) -> Callable[..., Any]:
    """What the old ServiceMiddleware did to the headers, inside CORS."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY]
            await send(message)

        await app(scope, receive, send_with)

    return wrapped


async def run(app: Callable[..., Any], method: str, headers: list[tuple[bytes, bytes]]) -> list:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": method,
        "path": "/x",
        "root_path": "",
        "headers": headers,
        "query_string": b"",
    }
    await app(scope, receive, send)
    return [(m["status"], m["headers"]) if "status" in m else m["body"] for m in sent]


@pytest.mark.parametrize(
    "cors",
    [CORS, {**CORS, "allow_origins": ["*"]}, {**CORS, "allow_credentials": False}],
    ids=["service", "any-origin", "no-credentials"],
)
@pytest.mark.parametrize(
    "response_headers",
    [
        [],
        [(b"content-length", b"2"), (b"content-type", b"application/json")],
        [(b"vary", b"Accept"), (b"content-type", b"text/plain")],
        [(b"access-control-allow-origin", b"http://other"), (b"vary", b"A"), (b"vary", b"B")],
        [(b"access-control-expose-headers", b"X-Other")],
    ],
)
@pytest.mark.parametrize("origin", [None, FRONTEND.encode(), b"http://evil.example", b""])
async def test_response_headers_are_what_the_separate_layers_made(
    cors: dict, response_headers: list, origin: bytes | None
) -> None:
    request = [(b"host", b"x")] + ([(b"origin", origin)] if origin is not None else [])
    request.append((b"x-request-id", b"rid-1"))
    old = CORSMiddleware(with_security_headers(emitting(response_headers)), **cors)
    new = ServiceMiddleware(emitting(response_headers), cors=cors, metrics=None, routes=[])
    expected = await run(old, "GET", request)
    expected[0] = (expected[0][0], [*expected[0][1], (b"x-request-id", b"rid-1")])
    assert await run(new, "GET", request) == expected


@pytest.mark.parametrize(
    "request_headers",
    [
        [(b"origin", FRONTEND.encode()), (b"access-control-request-method", b"PUT")],
        [
            (b"origin", FRONTEND.encode()),
            (b"access-control-request-method", b"GET"),
            (b"access-control-request-headers", b"authorization, content-type"),
        ],
        [(b"origin", b"http://evil.example"), (b"access-control-request-method", b"GET")],
        [(b"origin", FRONTEND.encode()), (b"access-control-request-method", b"PATCH")],
        [
            (b"origin", FRONTEND.encode()),
            (b"access-control-request-method", b"GET"),
            (b"access-control-request-headers", b"x-secret"),
        ],
    ],
)
async def test_preflights_are_starlettes_answers(request_headers: list) -> None:
    headers = [*request_headers, (b"x-request-id", b"rid-2")]
    old = CORSMiddleware(emitting([]), **CORS)
    new = ServiceMiddleware(emitting([]), cors=CORS, metrics=None, routes=[])
    expected = await run(old, "OPTIONS", headers)
    expected[0] = (expected[0][0], [*expected[0][1], (b"x-request-id", b"rid-2")])
    assert await run(new, "OPTIONS", headers) == expected


async def test_an_error_through_fastapi_is_masked_with_every_header(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def explode(*_args: object, **_kwargs: object) -> bool:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(app_module, "database_is_healthy", explode)
    response = await client.get("/health/", headers={"Origin": FRONTEND, "X-Request-ID": "r9"})
    assert response.status_code == 500
    assert response.content == b'{"error":"Internal server error"}'
    assert response.headers.raw == [
        (b"content-type", b"application/json"),
        (b"content-length", b"33"),
        *SECURITY,
        (b"access-control-allow-credentials", b"true"),
        (b"access-control-expose-headers", b"Retry-After, X-Request-ID"),
        (b"access-control-allow-origin", FRONTEND.encode()),
        (b"vary", b"Origin"),
        (b"x-request-id", b"r9"),
    ]


# --- the pieces the layer is made of --------------------------------------------------------


def test_generated_request_ids_are_uuid4_hex() -> None:
    for _ in range(1000):
        made = request_id_from(None)
        assert uuid.UUID(hex=made).version == 4 and uuid.UUID(hex=made).hex == made
    assert request_id_from(b"abc-1") == "abc-1"
    assert len(request_id_from(b"bad id")) == 32


@pytest.mark.parametrize(
    "instant",
    [
        datetime(2026, 1, 9, 14, 30, 0, 123456, tzinfo=UTC),
        datetime(2026, 1, 9, 14, 30, 0, 1, tzinfo=UTC),
        datetime(2026, 1, 9, 14, 30, 0, 0, tzinfo=UTC),  # orjson would drop the fraction
        datetime(2026, 1, 9, 14, 30, 0, 5, tzinfo=timezone(timedelta(hours=2))),
        datetime(2026, 1, 9, 14, 30, 0, 5),  # naive
        datetime(999, 1, 9, 14, 30, 0, 5, tzinfo=UTC),
    ],
)
@pytest.mark.parametrize("make_id", [uuid.uuid4, lambda: pgproto.UUID(uuid.uuid4().bytes)])
def test_tasks_serialize_as_formatted_by_hand(instant: datetime, make_id: Callable) -> None:
    task = TaskRecord(
        id=make_id(),
        title="t",
        description=None,
        completed=False,
        user_id=make_id(),
        created_at=instant,
        updated_at=instant + timedelta(microseconds=1),
    )
    by_hand = {
        "id": str(task.id),
        "title": "t",
        "description": None,
        "completed": False,
        "user_id": str(task.user_id),
        "created_at": task.created_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "updated_at": task.updated_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }
    assert orjson.dumps(task_json(task), option=JSON_OPTIONS) == orjson.dumps(by_hand)


async def test_start_up_objects_are_frozen(client: httpx.AsyncClient) -> None:
    assert gc.get_freeze_count() > 0
