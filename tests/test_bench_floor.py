"""The benchmark's floor (bench/floor.py) answers the REST contract as the service does.

Its ratios mean something only while it serves the same contract: the same script runs against
the service (in process) and the floor (uvicorn, as the harness starts it) on one PostgreSQL
database whose tables the service's migrations made, and the two transcripts (statuses and
bodies, with ids, timestamps and tokens replaced by what they must look like) must be equal.
"""

from __future__ import annotations

import re
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from api.app import create_app
from api.settings import load_settings
from bench.procs import Server
from tests.conftest import TEST_SECRET, serve, token_for

_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z")


def _instant(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


class Transcript:
    """What one server answered, in a form two servers can be compared in."""

    def __init__(self, client: httpx.AsyncClient, tag: str) -> None:
        self.client = client
        self.tag = tag
        self.lines: list[tuple[str, object]] = []
        self._names: dict[str, str] = {}

    def _normal(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: self._normal(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._normal(v) for v in value]
        if not isinstance(value, str):
            return value
        try:
            key = str(uuid.UUID(value))
        except ValueError:
            pass
        else:  # the n-th distinct id seen: which entity, not its value
            return self._names.setdefault(key, f"<id{len(self._names)}>")
        if _TIMESTAMP.fullmatch(value):
            return "<timestamp>"
        if value.count(".") == 2 and value.startswith("eyJ"):
            claims = jwt.decode(value, TEST_SECRET, algorithms=["HS256"])
            return {"<jwt>": sorted(claims), "user": self._normal(claims["user_id"])}
        return value.replace(self.tag, "<tag>")

    async def call(
        self, label: str, method: str, path: str, token: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        headers = kwargs.pop("headers", {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        response = await self.client.request(method, path, headers=headers, **kwargs)
        body = response.json() if response.content else None
        self.lines.append((label, (response.status_code, self._normal(body))))
        return response

    def note(self, label: str, value: object) -> None:
        self.lines.append((label, value))


async def _script(t: Transcript) -> None:
    tag = t.tag
    email = f"  Alice-{tag}@Example.com "
    r = await t.call(
        "signup", "POST", "/api/auth/signup", json={"email": email, "password": "p" * 8}
    )
    alice = r.json()["token"]
    await t.call(
        "signup taken", "POST", "/api/auth/signup", json={"email": email, "password": "p" * 9}
    )
    await t.call(
        "signup bad email", "POST", "/api/auth/signup", json={"email": "no", "password": "p" * 8}
    )
    await t.call(
        "signup short", "POST", "/api/auth/signup", json={"email": f"x{tag}@e.io", "password": "p"}
    )
    await t.call("login", "POST", "/api/auth/login", json={"email": email, "password": "p" * 8})
    await t.call(
        "login wrong", "POST", "/api/auth/login", json={"email": email, "password": "q" * 8}
    )
    await t.call(
        "login unknown",
        "POST",
        "/api/auth/login",
        json={"email": f"n{tag}@e.io", "password": "p" * 8},
    )
    await t.call("login empty", "POST", "/api/auth/login", json={"email": "", "password": "p"})
    r = await t.call(
        "signup bob",
        "POST",
        "/api/auth/signup",
        json={"email": f"bob-{tag}@example.com", "password": "p" * 8},
    )
    bob = r.json()["token"]

    await t.call("list empty", "GET", "/api/tasks", alice)
    r = await t.call(
        "create", "POST", "/api/tasks", alice, json={"title": "  one  ", "description": "d"}
    )
    task = r.json()["task"]
    t.note("create: created_at == updated_at", task["created_at"] == task["updated_at"])
    await t.call("create no description", "POST", "/api/tasks", alice, json={"title": "two"})
    await t.call(
        "create description null",
        "POST",
        "/api/tasks",
        alice,
        json={
            "title": "three",
            "description": None,
            "completed": True,
            "user_id": str(uuid.uuid4()),
        },
    )
    await t.call(
        "create description empty",
        "POST",
        "/api/tasks",
        alice,
        json={"title": "four", "description": ""},
    )
    for label, body in [
        ("title missing", {}),
        ("title null", {"title": None}),
        ("title blank", {"title": "   "}),
        ("title number", {"title": 5}),
        ("title too long", {"title": "x" * 256}),
        ("title NUL", {"title": "a\x00b"}),
        ("description too long", {"title": "t", "description": "x" * 1001}),
        ("description number", {"title": "t", "description": 5}),
    ]:
        await t.call(f"create {label}", "POST", "/api/tasks", alice, json=body)
    await t.call("create not JSON", "POST", "/api/tasks", alice, content=b"{nope")
    await t.call("create array", "POST", "/api/tasks", alice, json=["title"])
    await t.call(
        "create lone surrogate", "POST", "/api/tasks", alice, content=b'{"title": "\\ud800"}'
    )
    await t.call("create huge number", "POST", "/api/tasks", alice, content=b'{"title": 1e400}')

    tid = task["id"]
    await t.call("get", "GET", f"/api/tasks/{tid}", alice)
    await t.call("get foreign", "GET", f"/api/tasks/{tid}", bob)
    await t.call("get missing", "GET", f"/api/tasks/{uuid.uuid4()}", alice)
    await t.call("get not a UUID", "GET", "/api/tasks/not-a-uuid", alice)

    before = task["updated_at"]
    r = await t.call(
        "update completed", "PUT", f"/api/tasks/{tid}", alice, json={"completed": True}
    )
    after = r.json()["task"]["updated_at"]
    t.note("update: updated_at moves forward", _instant(after) > _instant(before))
    await t.call("update title", "PUT", f"/api/tasks/{tid}", alice, json={"title": " renamed "})
    await t.call(
        "update description null", "PUT", f"/api/tasks/{tid}", alice, json={"description": None}
    )
    await t.call(
        "update nothing", "PUT", f"/api/tasks/{tid}", alice, json={"id": str(uuid.uuid4())}
    )
    for label, body in [
        ("completed string", {"completed": "true"}),
        ("completed null", {"completed": None}),
        ("completed 1", {"completed": 1}),
        ("title empty", {"title": ""}),
        ("title null", {"title": None}),
        ("description too long", {"description": "x" * 1001}),
    ]:
        await t.call(f"update {label}", "PUT", f"/api/tasks/{tid}", alice, json=body)
    await t.call("update foreign", "PUT", f"/api/tasks/{tid}", bob, json={"title": "mine"})
    await t.call("update not a UUID", "PUT", "/api/tasks/42", alice, json={"title": "x"})
    await t.call("get after updates", "GET", f"/api/tasks/{tid}", alice)

    await t.call("delete foreign", "DELETE", f"/api/tasks/{tid}", bob)
    await t.call("delete", "DELETE", f"/api/tasks/{tid}", alice)
    await t.call("delete again", "DELETE", f"/api/tasks/{tid}", alice)
    await t.call("get deleted", "GET", f"/api/tasks/{tid}", alice)
    await t.call("delete not a UUID", "DELETE", "/api/tasks/nope", alice)
    await t.call("list", "GET", "/api/tasks", alice)  # newest first
    await t.call("list of another user", "GET", "/api/tasks", bob)

    await t.call("no token", "GET", "/api/tasks")
    await t.call("not bearer", "GET", "/api/tasks", headers={"Authorization": "Basic x"})
    bad = jwt.encode({"user_id": str(uuid.uuid4()), "exp": 2**31}, "x" * 40, algorithm="HS256")
    await t.call("bad signature", "GET", "/api/tasks", bad)
    expired = token_for(str(uuid.uuid4()), expires_in=-10)
    await t.call("expired", "GET", "/api/tasks", expired)
    gone = token_for(str(uuid.uuid4()), expires_in=600)  # a valid token, no such account
    await t.call("gone: list", "GET", "/api/tasks", gone)
    await t.call("gone: create", "POST", "/api/tasks", gone, json={"title": "t"})
    await t.call("gone: create invalid", "POST", "/api/tasks", gone, json={"title": ""})
    await t.call("gone: get", "GET", f"/api/tasks/{uuid.uuid4()}", gone)
    await t.call("gone: update", "PUT", f"/api/tasks/{uuid.uuid4()}", gone, json={"title": "t"})
    await t.call("gone: delete", "DELETE", "/api/tasks/nope", gone)

    await t.call("unknown path", "GET", "/api/nothing-here", alice)
    await t.call("method not allowed", "PATCH", "/api/tasks", alice)


@pytest.fixture
async def service(postgres_url: str, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = load_settings(
        database_url=postgres_url,
        data_dir=tmp_path / "data",
        better_auth_secret=TEST_SECRET,
        bcrypt_rounds=4,
        rate_limit_per_address="100000/minute",
        rate_limit_per_email="100000/minute",
    )
    async with serve(create_app(settings), wipe=False) as client:  # migrates the database
        yield client


@pytest.fixture
async def floor(
    service: httpx.AsyncClient, postgres_url: str, tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    env = {
        "PATH": "/usr/bin:/bin",
        "FLOOR_DATABASE_URL": postgres_url,
        "BETTER_AUTH_SECRET": TEST_SECRET,
        "BCRYPT_ROUNDS": "4",
        "FLOOR_POOL_MIN": "1",
        "FLOOR_POOL_MAX": "4",
    }
    server = Server("floor", "bench.floor:app", env, core=None)
    server.start(sys.executable, tmp_path)
    try:
        server.wait_ready(timeout=30)
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            yield client
    finally:
        server.stop()


async def test_the_floor_answers_the_rest_contract_as_the_service_does(
    service: httpx.AsyncClient, floor: httpx.AsyncClient
) -> None:
    transcripts = {}
    for name, client in (("service", service), ("floor", floor)):
        transcript = Transcript(client, uuid.uuid4().hex[:8])
        await _script(transcript)
        transcripts[name] = transcript.lines
    service_lines, floor_lines = transcripts["service"], transcripts["floor"]
    assert [label for label, _ in floor_lines] == [label for label, _ in service_lines]
    differing = [
        (label, answer, floor_answer)
        for (label, answer), (_, floor_answer) in zip(service_lines, floor_lines, strict=True)
        if answer != floor_answer
    ]
    assert not differing, "\n".join(f"{d[0]}: service {d[1]!r}, floor {d[2]!r}" for d in differing)
    # The script's answers are the contract's (a floor and service agreeing on a wrong answer
    # would not do): spot checks.
    answers = dict(service_lines)
    assert answers["create"][0] == 201
    assert answers["update description null"][1]["task"]["description"] is None
    assert answers["update completed string"] == (400, {"error": "Completed must be a boolean"})
    assert answers["get foreign"] == (404, {"error": "Task not found"})
    assert answers["delete"] == (204, None)
    assert answers["gone: delete"] == (401, {"error": "Unauthorized"})
    assert answers["update: updated_at moves forward"] is True
    assert [t["title"] for t in answers["list"][1]["tasks"]] == ["four", "three", "two"]
