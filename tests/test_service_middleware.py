"""The one outer layer (api/middleware.py) and the direct REST routes answer exactly as the
separate layers and FastAPI's routing did: same statuses, bodies, headers and header order."""

from __future__ import annotations

import gc
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import orjson
import pytest
from asyncpg.pgproto import pgproto
from starlette.middleware.cors import CORSMiddleware
from starlette.types import Message, Receive, Scope, Send

import api.app as app_module
from api.logging import request_id_from
from api.middleware import ServiceMiddleware
from core.records import TaskRecord
from rest_facade import router as rest_router
from rest_facade.router import DirectRoutes
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


def _not_a_dependency() -> None:  # pragma: no cover - only its presence matters
    pass


@pytest.fixture
def direct_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The templates of the requests DirectRoutes served."""
    calls: list[str] = []
    serve = DirectRoutes.serve

    async def counting(self: DirectRoutes, route: Any, *args: Any) -> None:
        calls.append(route.template)
        await serve(self, route, *args)

    monkeypatch.setattr(DirectRoutes, "serve", counting)
    return calls


async def both_ways(
    client: httpx.AsyncClient, app: Any, method: str, path: str, **kwargs: Any
) -> tuple[httpx.Response, httpx.Response]:
    """The same request served directly, then by FastAPI (which any dependency override
    forces)."""
    headers = {"X-Request-ID": "same-id", "Origin": FRONTEND, **kwargs.pop("headers", {})}
    direct = await client.request(method, path, headers=headers, **kwargs)
    app.dependency_overrides[_not_a_dependency] = _not_a_dependency
    try:
        through_fastapi = await client.request(method, path, headers=headers, **kwargs)
    finally:
        app.dependency_overrides.clear()
    return direct, through_fastapi


def same(
    direct: httpx.Response,
    through_fastapi: httpx.Response,
    varying: Callable[[dict], object] | None = None,
) -> None:
    """Equal but for what differs between two calls (`varying` removes it from the body)."""
    assert direct.status_code == through_fastapi.status_code
    if varying is None:
        assert direct.headers.raw == through_fastapi.headers.raw  # names, values and order
        assert direct.content == through_fastapi.content
        return
    assert [n for n, v in direct.headers.raw if n != b"content-length"] == [
        n for n, v in through_fastapi.headers.raw if n != b"content-length"
    ]
    one, other = direct.json(), through_fastapi.json()
    varying(one), varying(other)
    assert one == other


async def test_direct_routes_answer_as_fastapi_does(
    client: httpx.AsyncClient, app: Any, alice: Account, direct_calls: list[str]
) -> None:
    auth = alice.headers
    first = (await client.post("/api/tasks", json={"title": "one"}, headers=auth)).json()["task"]
    await client.post("/api/tasks", json={"title": "two", "description": "d"}, headers=auth)
    item = f"/api/tasks/{first['id']}"
    direct_calls.clear()

    cases: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", "/api/tasks", {"headers": auth}),
        ("GET", "/api/tasks/", {"headers": auth}),
        ("GET", "/api/tasks", {}),  # no token
        ("GET", "/api/tasks", {"headers": {"Authorization": "Bearer nope"}}),
        ("GET", item, {"headers": auth}),
        ("GET", "/api/tasks/not-a-uuid", {"headers": auth}),
        ("GET", f"/api/tasks/{uuid.uuid4()}", {"headers": auth}),
        ("DELETE", f"/api/tasks/{uuid.uuid4()}", {"headers": auth}),
        ("PUT", item, {"headers": auth, "content": b"{"}),
        ("PUT", item, {"headers": auth, "json": {"completed": "yes"}}),
        ("PUT", item, {"headers": {"Authorization": "Bearer x"}, "content": b"{"}),
        ("POST", "/api/tasks", {"headers": auth, "json": {"title": " "}}),
        ("POST", "/api/tasks", {"headers": auth, "content": b"x" * ((1 << 20) + 1)}),
        ("POST", "/api/tasks", {"headers": auth, "content": b"[]"}),
        ("POST", "/api/auth/login", {"json": {"email": "", "password": "x"}}),
        ("POST", "/api/auth/login", {"json": {"email": alice.email, "password": "wrong"}}),
        ("POST", "/api/auth/signup", {"json": {"email": "bad", "password": "password1"}}),
        ("POST", "/api/auth/signup", {"json": {"email": alice.email, "password": "password1"}}),
    ]
    for method, path, kwargs in cases:
        direct, through_fastapi = await both_ways(client, app, method, path, **kwargs)
        same(direct, through_fastapi)
    assert len(direct_calls) == len(cases)

    def task_without(*fields: str) -> Callable[[dict], object]:
        return lambda body: [body["task"].pop(field) for field in fields]

    direct, through_fastapi = await both_ways(
        client, app, "PUT", item, headers=auth, json={"completed": True}
    )
    same(direct, through_fastapi, task_without("updated_at"))
    assert direct.status_code == 200
    direct, through_fastapi = await both_ways(
        client, app, "POST", "/api/tasks", headers=auth, json={"title": "t", "description": None}
    )
    same(direct, through_fastapi, task_without("id", "created_at", "updated_at"))
    assert direct.status_code == 201
    credentials = {"email": alice.email, "password": alice.password}
    direct, through_fastapi = await both_ways(
        client, app, "POST", "/api/auth/login", json=credentials
    )
    same(direct, through_fastapi, lambda body: body.pop("token"))  # its iat/exp may differ
    assert direct.status_code == 200
    doomed = [
        (await client.post("/api/tasks", json={"title": "x"}, headers=auth)).json()["task"]["id"]
        for _ in range(2)
    ]
    direct = await client.delete(f"/api/tasks/{doomed[0]}", headers=auth)
    app.dependency_overrides[_not_a_dependency] = _not_a_dependency
    try:
        through_fastapi = await client.delete(f"/api/tasks/{doomed[1]}", headers=auth)
    finally:
        app.dependency_overrides.clear()
    assert direct.status_code == through_fastapi.status_code == 204
    assert direct.content == through_fastapi.content == b""
    assert [n for n, _ in direct.headers.raw if n != b"x-request-id"] == [
        n for n, _ in through_fastapi.headers.raw if n != b"x-request-id"
    ]


async def test_graphql_is_served_directly_as_fastapi_serves_it(
    client: httpx.AsyncClient, app: Any, alice: Account, direct_calls: list[str]
) -> None:
    await client.post("/api/tasks", json={"title": "one"}, headers=alice.headers)
    direct_calls.clear()
    query = "{ tasks(first: 5) { edges { node { title completed } } totalCount } }"
    cases: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", "/graphql", {"headers": alice.headers, "json": {"query": query}}),
        ("POST", "/graphql/", {"headers": alice.headers, "json": {"query": query}}),
        ("GET", "/graphql", {"headers": alice.headers, "params": {"query": query}}),
        ("POST", "/graphql", {"json": {"query": "{ me { email } }"}}),  # no token
        ("POST", "/graphql", {"json": {"query": "{ nope"}}),
        (
            "POST",
            "/graphql",
            {"content": b"\xff\xfe{", "headers": {"Content-Type": "application/json"}},
        ),
        ("POST", "/graphql", {"json": {"query": "mutation { deleteTask(id: 1) }"}}),
        ("GET", "/graphql", {"params": {"query": "mutation { __typename }"}}),
        ("GET", "/graphql", {"headers": {"Accept": "text/html"}}),  # GraphiQL
    ]
    for method, path, kwargs in cases:
        direct, through_fastapi = await both_ways(client, app, method, path, **kwargs)
        same(direct, through_fastapi)
    assert direct_calls == ["/graphql"] * len(cases)


async def test_what_no_direct_route_serves_goes_to_fastapi(
    client: httpx.AsyncClient, alice: Account, direct_calls: list[str]
) -> None:
    for method, path, status in (
        ("HEAD", "/api/tasks", 405),
        ("PATCH", "/api/tasks", 405),
        ("OPTIONS", "/api/tasks", 405),  # not a preflight: no Origin
        ("POST", f"/api/tasks/{uuid.uuid4()}", 405),
        ("GET", "/api/tasks/a/b", 404),
        ("GET", "/api/auth/login", 405),
        ("GET", "/api", 404),
        ("GET", "/health", 200),
    ):
        response = await client.request(method, path, headers=alice.headers)
        assert response.status_code == status, (method, path)
    assert direct_calls == []


def test_the_direct_table_follows_the_declarations(app: Any) -> None:
    direct = DirectRoutes(app.state.todo)
    expected = {
        ("POST", "/api/auth/signup"): ("/api/auth/signup", ""),
        ("POST", "/api/auth/login"): ("/api/auth/login", ""),
        ("GET", "/api/tasks"): ("/api/tasks", ""),
        ("POST", "/api/tasks"): ("/api/tasks", ""),
        ("GET", "/api/tasks/abc"): ("/api/tasks/{task_id}", "abc"),
        ("PUT", "/api/tasks/a b%"): ("/api/tasks/{task_id}", "a b%"),
        ("DELETE", "/api/tasks/x"): ("/api/tasks/{task_id}", "x"),
    }
    for (method, path), (template, param) in expected.items():
        route = direct.match(method, path)
        assert route is not None and (route.template, route.param) == (template, param)
    for method, path in (
        ("GET", "/api/auth/signup"),
        ("HEAD", "/api/tasks"),
        ("DELETE", "/api/tasks"),
        ("POST", "/api/tasks/x"),
        ("GET", "/api/tasks/x/y"),
        ("GET", "/api/x"),
        ("GET", "/api"),
        ("GET", "/"),
    ):
        assert direct.match(method, path) is None, (method, path)
    # Every declared REST route is served directly, by its own endpoint's handler.
    for declared in rest_router.router.routes:
        for method in declared.methods:
            route = direct.match(method, declared.path.replace("{task_id}", "some-id"))
            assert route is not None and route.handler is rest_router._DIRECT[declared.endpoint]


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
