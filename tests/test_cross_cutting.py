"""CORS, health, rate limits, security headers and concurrency (contract section 6)."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid

import httpx
import pytest

from api.app import create_app
from tests.conftest import FRONTEND, Account, serve, signup

pytestmark = pytest.mark.asyncio


async def test_preflight_for_allowed_origin(client: httpx.AsyncClient) -> None:
    response = await client.options(
        "/api/tasks",
        headers={
            "Origin": FRONTEND,
            "Access-Control-Request-Method": "PUT",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == FRONTEND
    assert response.headers["access-control-allow-credentials"] == "true"
    methods = {m.strip() for m in response.headers["access-control-allow-methods"].split(",")}
    assert {"GET", "POST", "PUT", "DELETE", "OPTIONS"} <= methods
    allowed = response.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed and "content-type" in allowed


async def test_cors_headers_on_success_and_errors(
    client: httpx.AsyncClient, alice: Account
) -> None:
    origin = {"Origin": FRONTEND}
    for method, path, headers in (
        ("GET", "/api/tasks", alice.headers),
        ("GET", "/api/tasks", {}),  # 401
        ("GET", "/api/tasks/nope", alice.headers),  # 404
        ("POST", "/api/tasks", alice.headers),  # 400 (no body)
        ("GET", "/api/none", {}),  # 404 unknown path
    ):
        response = await client.request(method, path, headers={**origin, **headers})
        assert response.headers.get("access-control-allow-origin") == FRONTEND, path
        assert response.headers.get("access-control-allow-credentials") == "true"
        assert response.headers["access-control-allow-origin"] != "*"


async def test_foreign_origin_gets_no_cors_headers(client: httpx.AsyncClient) -> None:
    response = await client.get("/health", headers={"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in response.headers
    preflight = await client.options(
        "/api/tasks",
        headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "GET"},
    )
    assert "access-control-allow-origin" not in preflight.headers


async def test_frontend_url_is_a_list(make_settings) -> None:
    settings = make_settings(frontend_url="http://a.example:3000, https://b.example/")
    async with serve(create_app(settings), wipe=False) as client:
        for origin in ("http://a.example:3000", "https://b.example"):
            response = await client.get("/health", headers={"Origin": origin})
            assert response.headers["access-control-allow-origin"] == origin
        response = await client.get("/health", headers={"Origin": FRONTEND})
        assert "access-control-allow-origin" not in response.headers


async def test_health(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "healthy"}


async def test_security_headers(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"


async def test_rate_limit_per_email_defaults(make_settings) -> None:
    settings = make_settings(rate_limit_per_address="60/minute", rate_limit_per_email="10/minute")
    async with serve(create_app(settings)) as client:
        body = {"email": "victim@example.com", "password": "wrong-password"}
        for attempt in range(10):
            response = await client.post("/api/auth/login", json=body)
            assert response.status_code == 401, attempt
        response = await client.post("/api/auth/login", json=body)
        assert response.status_code == 429
        assert response.json() == {"error": "Too many requests"}
        assert 1 <= int(response.headers["retry-after"]) <= 60
        exposed = await client.post("/api/auth/login", json=body, headers={"Origin": FRONTEND})
        assert exposed.status_code == 429
        readable = exposed.headers["access-control-expose-headers"].lower()
        assert "retry-after" in readable and "x-request-id" in readable
        # the same email in another case and with spaces is the same email
        response = await client.post(
            "/api/auth/login", json={"email": " VICTIM@example.com", "password": "x"}
        )
        assert response.status_code == 429
        # another email from the same address is still allowed
        other = await client.post(
            "/api/auth/login", json={"email": "other@example.com", "password": "wrong-password"}
        )
        assert other.status_code == 401


async def test_rate_limit_per_address(make_settings) -> None:
    settings = make_settings(rate_limit_per_address="5/minute", rate_limit_per_email="100/minute")
    async with serve(create_app(settings)) as client:
        for i in range(5):
            response = await client.post(
                "/api/auth/signup", json={"email": f"u{i}@example.com", "password": "password1"}
            )
            assert response.status_code == 201
        response = await client.post(
            "/api/auth/signup", json={"email": "u9@example.com", "password": "password1"}
        )
        assert response.status_code == 429
        assert "retry-after" in response.headers
        assert response.json() == {"error": "Too many requests"}


async def test_forwarded_for_trusted_only_from_configured_proxies(make_settings) -> None:
    settings = make_settings(rate_limit_per_address="2/minute", trusted_proxies="127.0.0.1")
    async with serve(create_app(settings)) as client:
        for client_ip in ("203.0.113.1", "203.0.113.2"):
            for _ in range(2):
                response = await client.post(
                    "/api/auth/login",
                    json={"email": "a@example.com", "password": "password1"},
                    headers={"X-Forwarded-For": client_ip},
                )
                assert response.status_code == 401
        response = await client.post(
            "/api/auth/login",
            json={"email": "a@example.com", "password": "password1"},
            headers={"X-Forwarded-For": "203.0.113.1"},
        )
        assert response.status_code == 429
    untrusted = make_settings(rate_limit_per_address="2/minute")
    async with serve(create_app(untrusted)) as client:
        codes = []
        for i in range(3):  # spoofed headers from an untrusted peer change nothing
            response = await client.post(
                "/api/auth/login",
                json={"email": "a@example.com", "password": "password1"},
                headers={"X-Forwarded-For": f"198.51.100.{i}"},
            )
            codes.append(response.status_code)
        assert codes == [401, 401, 429]


async def test_concurrent_duplicate_signups(client: httpx.AsyncClient, app) -> None:
    body = {"email": "race@example.com", "password": "password1"}
    responses = await asyncio.gather(
        *(client.post("/api/auth/signup", json=body) for _ in range(8))
    )
    codes = sorted(r.status_code for r in responses)
    assert codes == [201] + [409] * 7
    assert all(
        r.json() == {"error": "Email already registered"} for r in responses if r.status_code == 409
    )


async def test_concurrent_updates_and_delete(client: httpx.AsyncClient, alice: Account) -> None:
    task = (await client.post("/api/tasks", json={"title": "t"}, headers=alice.headers)).json()
    path = f"/api/tasks/{task['task']['id']}"
    calls = [client.put(path, json={"title": f"v{i}"}, headers=alice.headers) for i in range(6)]
    calls.append(client.delete(path, headers=alice.headers))
    calls += [client.put(path, json={"completed": True}, headers=alice.headers) for _ in range(3)]
    responses = await asyncio.gather(*calls)
    assert {r.status_code for r in responses} <= {200, 204, 404}
    assert responses[6].status_code == 204
    assert (await client.get(path, headers=alice.headers)).status_code == 404


async def test_signup_then_everything_with_a_second_client(client: httpx.AsyncClient) -> None:
    a = await signup(client, "one@example.com")
    b = await signup(client, "two@example.com")
    assert a.id != b.id and a.token != b.token


@pytest.fixture
def redis_url() -> str:
    url = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    host_port = url.split("://", 1)[1].split("/", 1)[0]
    host, _, port = host_port.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except OSError:
        if os.environ.get("CI"):
            pytest.fail(f"Redis is not reachable at {url}")
        pytest.skip(f"Redis is not reachable at {url} (set TEST_REDIS_URL)")
    return url


async def test_rate_limits_shared_through_redis(make_settings, redis_url: str) -> None:
    """Two instances with one Redis count attempts together."""
    settings = make_settings(
        rate_limit_per_address="3/minute",
        rate_limit_storage_url=redis_url,
        trusted_proxies="127.0.0.1",
    )
    client_ip = f"198.18.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}"
    headers = {"X-Forwarded-For": client_ip}
    body = {"email": "shared@example.com", "password": "password1"}
    async with serve(create_app(settings)) as one, serve(create_app(settings), wipe=False) as two:
        codes = [
            (await instance.post("/api/auth/login", json=body, headers=headers)).status_code
            for instance in (one, two, one, two)
        ]
    assert codes == [401, 401, 401, 429]


async def test_rate_limit_storage_down_fails_open(make_settings) -> None:
    settings = make_settings(
        rate_limit_per_address="1/minute", rate_limit_storage_url="redis://127.0.0.1:9/0"
    )
    async with serve(create_app(settings)) as client:
        for _ in range(3):
            response = await client.post(
                "/api/auth/login", json={"email": "a@example.com", "password": "password1"}
            )
            assert response.status_code == 401
