"""The contract's table of errors common to every endpoint; bad input changes nothing."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from api.app import create_app
from tests.conftest import FRONTEND, Account, serve

pytestmark = pytest.mark.asyncio


async def count_rows(app, table: str) -> int:
    async with app.state.services.engine.connect() as conn:
        return (await conn.execute(text(f"SELECT COUNT(*) FROM {table}"))).scalar_one()


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"{",
        b"not json",
        b"[]",
        b'"string"',
        b"42",
        b"null",
        b"true",
        b'{"title": NaN}',
        b'{"title": Infinity}',
        b"\xff\xfe{}",
        b'{"title": "a",}',
    ],
)
async def test_invalid_json_body(
    client: httpx.AsyncClient, alice: Account, app, raw: bytes
) -> None:
    headers = {**alice.headers, "Content-Type": "application/json"}
    for method, path in (
        ("POST", "/api/tasks"),
        ("POST", "/api/auth/signup"),
        ("POST", "/api/auth/login"),
    ):
        response = await client.request(method, path, content=raw, headers=headers)
        assert response.status_code == 400, (path, raw)
        assert response.json() == {"error": "Invalid JSON body"}
    task = (await client.post("/api/tasks", json={"title": "t"}, headers=alice.headers)).json()
    response = await client.put(f"/api/tasks/{task['task']['id']}", content=raw, headers=headers)
    assert response.status_code == 400
    assert response.json() == {"error": "Invalid JSON body"}
    assert await count_rows(app, "tasks") == 1


async def test_body_too_large(client: httpx.AsyncClient, alice: Account, app) -> None:
    big = b'{"title": "' + b"x" * (1 << 20) + b'"}'
    response = await client.post(
        "/api/tasks", content=big, headers={**alice.headers, "Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json() == {"error": "Request body too large"}
    signup = await client.post("/api/auth/signup", content=big)
    assert signup.status_code == 413

    async def chunks():  # no Content-Length: refused while streaming
        for _ in range(20):
            yield b" " * 65536
        yield b"{}"

    streamed = await client.post("/api/tasks", content=chunks(), headers=alice.headers)
    assert streamed.status_code == 413
    assert streamed.json() == {"error": "Request body too large"}
    assert await count_rows(app, "tasks") == 0


async def test_body_just_under_the_limit_is_read(client: httpx.AsyncClient, alice: Account) -> None:
    padding = b" " * ((1 << 20) - 20)
    body = b'{"title": "ok"}' + padding
    assert len(body) <= 1 << 20
    response = await client.post("/api/tasks", content=body, headers=alice.headers)
    assert response.status_code == 201


@pytest.mark.parametrize(
    "path, payload, message",
    [
        ("/api/tasks", {"title": "a\x00b"}, "Title contains invalid characters"),
        (
            "/api/tasks",
            {"title": "ok", "description": "\x00"},
            "Description contains invalid characters",
        ),
        (
            "/api/auth/signup",
            {"email": "a\x00@example.com", "password": "password1"},
            "Email contains invalid characters",
        ),
        (
            "/api/auth/signup",
            {"email": "a@example.com", "password": "pass\x00word1"},
            "Password contains invalid characters",
        ),
        (
            "/api/auth/login",
            {"email": "a\x00@example.com", "password": "password1"},
            "Email contains invalid characters",
        ),
        (
            "/api/auth/login",
            {"email": "a@example.com", "password": "pass\x00word1"},
            "Password contains invalid characters",
        ),
    ],
)
async def test_nul_characters(
    client: httpx.AsyncClient, alice: Account, app, path: str, payload: dict, message: str
) -> None:
    response = await client.post(path, json=payload, headers=alice.headers)
    assert response.status_code == 400
    assert response.json() == {"error": message}
    assert await count_rows(app, "tasks") == 0
    assert await count_rows(app, "users") == 1


async def test_nul_in_update(client: httpx.AsyncClient, alice: Account) -> None:
    task = (await client.post("/api/tasks", json={"title": "t"}, headers=alice.headers)).json()
    for payload, message in (
        ({"title": "\x00"}, "Title contains invalid characters"),
        ({"description": "x\x00"}, "Description contains invalid characters"),
    ):
        response = await client.put(
            f"/api/tasks/{task['task']['id']}", json=payload, headers=alice.headers
        )
        assert response.status_code == 400
        assert response.json() == {"error": message}


@pytest.mark.parametrize(
    "raw, message",
    [
        (rb'{"title": "\ud800"}', "Title contains invalid characters"),
        (rb'{"title": "ok", "description": "x\udfff"}', "Description contains invalid characters"),
        (b'{"title": ' + b"9" * 5000 + b"}", "Title is required"),
        (b'{"title": 1e999}', "Title is required"),
        (b'{"title": "ok", "description": ' + b"9" * 400 + b"}", "Invalid request body"),
        (b'{"title": "ok", "description": 12}', "Invalid request body"),
        (b'{"title": ' + b"[" * 100000 + b"]" * 100000 + b"}", "Invalid request body"),
    ],
)
async def test_wrong_types_surrogates_numbers_nesting(
    client: httpx.AsyncClient, alice: Account, app, raw: bytes, message: str
) -> None:
    response = await client.post(
        "/api/tasks", content=raw, headers={**alice.headers, "Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json() == {"error": message}
    assert await count_rows(app, "tasks") == 0


async def test_surrogate_in_credentials(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/auth/signup", content=rb'{"email": "a\ud800@example.com", "password": "password1"}'
    )
    assert response.json() == {"error": "Email contains invalid characters"}
    response = await client.post(
        "/api/auth/signup", content=rb'{"email": "a@example.com", "password": "password\udc00"}'
    )
    assert response.json() == {"error": "Password contains invalid characters"}


async def test_completed_huge_number(client: httpx.AsyncClient, alice: Account) -> None:
    task = (await client.post("/api/tasks", json={"title": "t"}, headers=alice.headers)).json()
    response = await client.put(
        f"/api/tasks/{task['task']['id']}",
        content=b'{"completed": ' + b"1" * 5000 + b"}",
        headers=alice.headers,
    )
    assert response.status_code == 400
    assert response.json() == {"error": "Completed must be a boolean"}


async def test_unknown_paths_and_methods(client: httpx.AsyncClient, alice: Account) -> None:
    for path in ("/api/nothing", "/api", "/api/tasks/x/y", "/api/auth", "/nowhere"):
        response = await client.get(path, headers=alice.headers)
        assert response.status_code == 404, path
        assert response.json() == {"error": "Not found"}
    for method, path in (
        ("PATCH", "/api/tasks"),
        ("DELETE", "/api/tasks"),
        ("GET", "/api/auth/signup"),
        ("PUT", "/api/auth/login"),
        ("POST", f"/api/tasks/{uuid.uuid4()}"),
        ("POST", "/health"),
    ):
        response = await client.request(method, path, headers=alice.headers)
        assert response.status_code == 405, (method, path)
        assert response.json() == {"error": "Method not allowed"}


async def test_trailing_slash_is_the_same_route(client: httpx.AsyncClient, alice: Account) -> None:
    response = await client.get("/api/tasks/", headers=alice.headers)
    assert response.status_code == 200
    assert response.json() == {"tasks": []}


async def test_unexpected_error_is_masked_with_cors(
    app: Any, client: httpx.AsyncClient, alice: Account, monkeypatch, caplog
) -> None:
    async def explode(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("secret internals: SELECT * FROM users /srv/app.py")

    monkeypatch.setattr(app.state.todo.tasks, "list", explode)
    response = await client.get("/api/tasks", headers={**alice.headers, "Origin": FRONTEND})
    assert response.status_code == 500
    assert response.json() == {"error": "Internal server error"}
    assert "secret" not in response.text
    assert response.headers["access-control-allow-origin"] == FRONTEND
    assert response.headers["x-content-type-options"] == "nosniff"
    assert any("secret internals" in (r.exc_text or "") for r in caplog.records)


async def test_database_down_is_503(make_settings, tmp_path) -> None:
    settings = make_settings(
        database_url="postgresql://nobody@127.0.0.1:9/nowhere", db_connect_timeout=1.0
    )
    app = create_app(settings)
    async with serve(app, wipe=False) as client:
        for method, path, body in (
            ("POST", "/api/auth/signup", {"email": "a@example.com", "password": "password1"}),
            ("POST", "/api/auth/login", {"email": "a@example.com", "password": "password1"}),
        ):
            response = await client.request(method, path, json=body, headers={"Origin": FRONTEND})
            assert response.status_code == 503
            assert response.json() == {"error": "Service temporarily unavailable"}
            assert response.headers["access-control-allow-origin"] == FRONTEND
        health = await client.get("/health")
        assert health.status_code == 503
        assert health.json() == {"status": "unhealthy"}


async def test_405_lists_every_allowed_method(client: httpx.AsyncClient) -> None:
    collection = await client.patch("/api/tasks")
    assert collection.status_code == 405
    assert set(collection.headers["allow"].split(", ")) == {"GET", "POST"}
    item = await client.patch(f"/api/tasks/{uuid.uuid4()}")
    assert set(item.headers["allow"].split(", ")) == {"GET", "PUT", "DELETE"}


async def test_database_errors_never_carry_parameters(app, client: httpx.AsyncClient) -> None:
    """An unexpected database error is logged with its stack; its text must not hold values."""
    from sqlalchemy.exc import DBAPIError

    with pytest.raises(DBAPIError) as caught:
        async with app.state.services.engine.connect() as conn:
            await conn.execute(
                text("SELECT * FROM no_such_table WHERE email = :email"),
                {"email": "secret-address@example.com"},
            )
    assert "secret-address" not in str(caught.value)
