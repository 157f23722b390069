"""Fixtures: every app-level test runs once on SQLite and once on PostgreSQL.

PostgreSQL comes from TEST_DATABASE_URL (an admin URL; a fresh database is created for the
session and dropped after). Without it those cases skip, unless REQUIRE_POSTGRES=1 (CI), where
they fail instead.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from fastapi import FastAPI
from sqlalchemy.engine import make_url

from api.app import create_app
from api.settings import Settings, load_settings

TEST_SECRET = "test-secret-that-is-long-enough-0123456789"
FRONTEND = "http://localhost:3000"
JS_CLIENTS = Path(__file__).resolve().parent / "js"


def token_for(user_id: str, *, expires_in: float, secret: str = TEST_SECRET) -> str:
    """A token as the service issues them, for `user_id`, expiring in `expires_in` seconds."""
    now = time.time()
    claims = {"sub": user_id, "user_id": user_id, "iat": int(now), "exp": int(now + expires_in)}
    return jwt.encode(claims, secret, algorithm="HS256")


def _postgres_admin_url() -> str | None:
    return os.environ.get("TEST_DATABASE_URL") or None


async def admin_execute(admin_url: str, sql: str) -> None:
    import asyncpg

    url = make_url(admin_url)
    conn = await asyncpg.connect(
        host=url.host or "127.0.0.1",
        port=url.port or 5432,
        user=url.username,
        password=url.password,
        database=url.database or "postgres",
    )
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def postgres_url() -> Any:
    admin = _postgres_admin_url()
    if admin is None:
        if os.environ.get("REQUIRE_POSTGRES") == "1":
            pytest.fail("REQUIRE_POSTGRES=1 but TEST_DATABASE_URL is not set")
        pytest.skip(
            "PostgreSQL cases need TEST_DATABASE_URL (e.g. postgresql://postgres@127.0.0.1/test)"
        )
    name = f"todo_test_{uuid.uuid4().hex[:12]}"
    try:
        asyncio.run(admin_execute(admin, f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # pragma: no cover - environment problem, said plainly
        pytest.fail(f"cannot create a test database through TEST_DATABASE_URL: {exc}")
    yield make_url(admin).set(database=name).render_as_string(hide_password=False)
    asyncio.run(admin_execute(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def js_clients() -> Path:
    """tests/js with its node_modules installed exactly as package-lock.json says (`npm ci`,
    again whenever the lock file changed). Without Node.js and npm the tests that need them
    skip, or fail in CI."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        if os.environ.get("CI"):
            pytest.fail("Node.js and npm are needed for the JavaScript client tests")
        pytest.skip("Node.js and npm are needed for the JavaScript client tests")
    lock = hashlib.sha256((JS_CLIENTS / "package-lock.json").read_bytes()).hexdigest()
    stamp = JS_CLIENTS / "node_modules" / ".installed-from-lock"
    if not stamp.is_file() or stamp.read_text() != lock:
        installed = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=JS_CLIENTS,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if installed.returncode != 0:
            pytest.fail(f"npm ci in {JS_CLIENTS} failed:\n{installed.stderr}")
        stamp.write_text(lock)
    return JS_CLIENTS


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'todo.db'}"
    return request.getfixturevalue("postgres_url")  # type: ignore[no-any-return]


@pytest.fixture
def make_settings(database_url: str, tmp_path: Path) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "database_url": database_url,
            "data_dir": tmp_path / "data",
            "better_auth_secret": TEST_SECRET,
            "bcrypt_rounds": 4,
            "rate_limit_per_address": "100000/minute",
            "rate_limit_per_email": "100000/minute",
            "frontend_url": FRONTEND,
        }
        values.update(overrides)
        return load_settings(**values)

    return make


@asynccontextmanager
async def serve(app: FastAPI, *, wipe: bool = True) -> AsyncIterator[httpx.AsyncClient]:
    """Run the app's lifespan and give an HTTP client bound to it (127.0.0.1 as the peer)."""
    async with app.router.lifespan_context(app):
        if wipe:
            async with app.state.services.engine.begin() as conn:
                await conn.exec_driver_sql("DELETE FROM tasks")
                await conn.exec_driver_sql("DELETE FROM users")
                # Rate-limit counters live in the database too (a fresh app, fresh counters).
                await conn.exec_driver_sql("DELETE FROM rate_limit_windows")
                await conn.exec_driver_sql("DELETE FROM persisted_documents")
                await conn.exec_driver_sql("DELETE FROM task_events")
        transport = httpx.ASGITransport(
            app=app, raise_app_exceptions=False, client=("127.0.0.1", 50000)
        )
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


@pytest.fixture
async def app(make_settings: Callable[..., Settings]) -> FastAPI:
    return create_app(make_settings())


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(app) as c:
        yield c


class Account:
    def __init__(self, email: str, password: str, token: str, user_id: str) -> None:
        self.email = email
        self.password = password
        self.token = token
        self.id = user_id

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def signup(
    client: httpx.AsyncClient, email: str | None = None, password: str = "correct-horse-1"
) -> Account:
    email = email or f"user-{uuid.uuid4().hex[:10]}@example.com"
    response = await client.post("/api/auth/signup", json={"email": email, "password": password})
    assert response.status_code == 201, response.text
    body = response.json()
    return Account(body["user"]["email"], password, body["token"], body["user"]["id"])


@pytest.fixture
async def alice(client: httpx.AsyncClient) -> Account:
    return await signup(client, "alice@example.com")


@pytest.fixture
async def bob(client: httpx.AsyncClient) -> Account:
    return await signup(client, "bob@example.com")
