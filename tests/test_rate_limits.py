"""Rate limits as the service ships and deploys (contract section 6; decision 15).

Counters live in the service's database by default, so the contract's limits (the 11th login
for one email within a minute is refused) hold with several workers and several instances on
one database, with nothing else to run. `memory://` and `redis://` stay available.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.engine import make_url

import core.ratelimit
from api.app import create_app
from api.settings import Settings
from tests.conftest import TEST_SECRET, serve
from tests.graphql_helpers import gql
from tests.live import service
from tests.tcp_proxy import TcpProxy

LOGIN_PATH = "/api/auth/login"
GRAPHQL_LOGIN = (
    "mutation($email: String!, $password: String!) "
    "{ login(email: $email, password: $password) { token } }"
)
# The contract's per-email default, with the per-address limit out of the way.
LIVE_ENV = {
    "BETTER_AUTH_SECRET": TEST_SECRET,
    "RATE_LIMIT_PER_ADDRESS": "100000/minute",
    "RATE_LIMIT_PER_EMAIL": "10/minute",
}


def wrong_login(email: str | None = None) -> dict[str, str]:
    return {"email": email or f"victim-{uuid.uuid4().hex[:10]}@example.com", "password": "nope-1"}


def assert_refused(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert response.json() == {"error": "Too many requests"}
    assert 1 <= int(response.headers["retry-after"]) <= 60


async def table_rows(app: FastAPI) -> list[tuple[Any, ...]]:
    async with app.state.services.engine.connect() as conn:
        result = await conn.exec_driver_sql(
            "SELECT key, hits, last_counted, expires_at FROM rate_limit_windows"
        )
        return [tuple(row) for row in result.all()]


# --- in process, on SQLite and PostgreSQL ------------------------------------------------------


async def test_two_apps_on_one_database_share_the_counters_by_default(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(rate_limit_per_email="10/minute")
    assert settings.rate_limit_storage_url == ""  # the default: the database
    body = wrong_login()
    async with serve(create_app(settings)) as one, serve(create_app(settings), wipe=False) as two:
        codes = []
        for attempt in range(14):
            response = await (one, two)[attempt % 2].post(LOGIN_PATH, json=body)
            codes.append(response.status_code)
            if response.status_code == 429:
                assert_refused(response)
        # the same action through GraphQL shares the count
        refused = await gql(two, GRAPHQL_LOGIN, body, errors=True)
    assert codes == [401] * 10 + [429] * 4
    assert refused["errors"][0]["extensions"]["code"] == "RATE_LIMITED"


async def test_concurrent_attempts_never_pass_the_limit(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(rate_limit_per_email="10/minute", db_pool_size=10)
    body = wrong_login()
    async with serve(create_app(settings)) as client:
        responses = await asyncio.gather(*(client.post(LOGIN_PATH, json=body) for _ in range(30)))
    codes = [r.status_code for r in responses]
    assert (codes.count(401), codes.count(429)) == (10, 20), codes


async def test_the_window_moves_and_retry_after_says_when(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(rate_limit_per_email="2 per 2 seconds")
    body = wrong_login()
    async with serve(create_app(settings)) as client:
        assert (await client.post(LOGIN_PATH, json=body)).status_code == 401
        assert (await client.post(LOGIN_PATH, json=body)).status_code == 401
        refused = await client.post(LOGIN_PATH, json=body)
        assert refused.status_code == 429
        assert refused.headers["retry-after"] in ("1", "2")
        await asyncio.sleep(2.1)  # both counted attempts have left the window
        assert (await client.post(LOGIN_PATH, json=body)).status_code == 401

    settings = make_settings(rate_limit_per_email="3/minute")
    async with serve(create_app(settings)) as client:
        for _ in range(3):
            assert (await client.post(LOGIN_PATH, json=body)).status_code == 401
        refused = await client.post(LOGIN_PATH, json=body)
        # the oldest counted attempt leaves the window in just under a minute
        assert 55 <= int(refused.headers["retry-after"]) <= 60


async def test_refused_attempts_do_not_count_and_the_table_holds_no_email(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(rate_limit_per_email="2/minute")
    email = f"private-{uuid.uuid4().hex[:8]}@example.com"
    app = create_app(settings)
    async with serve(app) as client:
        for _ in range(6):
            await client.post(LOGIN_PATH, json=wrong_login(email))
        rows = await table_rows(app)
    assert len(rows) == 2  # one window for the address, one for the email
    for key, _hits, _counted, expires_at in rows:
        assert len(key) == 64 and email not in key and "127.0.0.1" not in key
        assert expires_at > 0
    by_size = sorted(rows, key=lambda row: len(json.loads(row[1])))
    email_row, address_row = by_size
    assert len(json.loads(email_row[1])) == 2  # the 4 refused attempts were not counted
    assert not email_row[2]  # the latest attempt for the email was refused
    assert len(json.loads(address_row[1])) == 6 and address_row[2]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_the_postgresql_table_is_unlogged(make_settings: Callable[..., Settings]) -> None:
    """No WAL for counters: an attempt waits for no disk flush."""
    app = create_app(make_settings())
    async with serve(app):
        async with app.state.services.engine.connect() as conn:
            persistence = await conn.exec_driver_sql(
                "SELECT CAST(relpersistence AS TEXT) FROM pg_class "
                "WHERE relname = 'rate_limit_windows'"
            )
            assert persistence.scalar_one() == "u"


async def test_expired_windows_are_deleted_in_bounded_batches(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(core.ratelimit, "SWEEP_EVERY_ATTEMPTS", 1)
    monkeypatch.setattr(core.ratelimit, "SWEEP_BATCH", 5)
    app = create_app(make_settings())
    async with serve(app) as client:
        async with app.state.services.engine.begin() as conn:
            for i in range(12):  # empty windows, long expired
                await conn.exec_driver_sql(
                    "INSERT INTO rate_limit_windows (key, hits, last_counted, expires_at) "
                    f"VALUES ('expired-{i:02d}', '[1000]', true, {1000 + i})"
                )
            await conn.exec_driver_sql(  # a window still open (in the year 2100)
                "INSERT INTO rate_limit_windows (key, hits, last_counted, expires_at) "
                "VALUES ('open', '[4102444800000]', true, 4102444800000)"
            )
        # one login: two attempts counted (address, email), each followed by a sweep of 5
        assert (await client.post(LOGIN_PATH, json=wrong_login())).status_code == 401
        keys = sorted(row[0] for row in await table_rows(app))
    assert [k for k in keys if k.startswith("expired-")] == ["expired-10", "expired-11"]
    assert "open" in keys
    assert len(keys) == 2 + 1 + 2


async def test_explicit_memory_storage_still_works(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(rate_limit_per_email="10/minute", rate_limit_storage_url="memory://")
    body = wrong_login()
    app = create_app(settings)
    async with serve(app) as client, serve(create_app(settings), wipe=False) as other:
        for attempt in range(10):
            assert (await client.post(LOGIN_PATH, json=body)).status_code == 401, attempt
        assert_refused(await client.post(LOGIN_PATH, json=body))
        # memory:// counts in one process only: another app has counters of its own
        assert (await other.post(LOGIN_PATH, json=body)).status_code == 401
        assert await table_rows(app) == []


async def test_a_database_without_the_table_allows_and_warns(
    make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    """A database not migrated yet (DB_AUTO_MIGRATE off, `todo-api migrate` not run): the
    limits cannot count, sign-in still works."""
    settings = make_settings(rate_limit_per_email="1/minute")
    app = create_app(settings)
    async with serve(app) as client:
        async with app.state.services.engine.begin() as conn:
            await conn.exec_driver_sql("ALTER TABLE rate_limit_windows RENAME TO rlw_aside")
        try:
            with caplog.at_level(logging.WARNING, logger="todo.ratelimit"):
                for _ in range(3):
                    response = await client.post(LOGIN_PATH, json=wrong_login("a@example.com"))
                    assert response.status_code == 401
        finally:
            async with app.state.services.engine.begin() as conn:
                await conn.exec_driver_sql("ALTER TABLE rlw_aside RENAME TO rate_limit_windows")
    assert "rate-limit storage unavailable, allowing" in caplog.text


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_database_outage_is_a_503_never_a_500(
    make_settings: Callable[..., Settings], postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    real = make_url(postgres_url)
    proxy = TcpProxy(real.host or "127.0.0.1", real.port or 5432)
    await proxy.start()
    proxied = real.set(port=proxy.port).render_as_string(hide_password=False)
    settings = make_settings(database_url=proxied, db_connect_timeout=1.0)
    try:
        async with serve(create_app(settings)) as client:
            assert (await client.post(LOGIN_PATH, json=wrong_login())).status_code == 401
            await proxy.cut()
            started = time.monotonic()
            with caplog.at_level(logging.WARNING, logger="todo.ratelimit"):
                response = await client.post(LOGIN_PATH, json=wrong_login())
            assert response.status_code == 503
            assert time.monotonic() - started < 5
            await proxy.restore()
    finally:
        await proxy.close()
    assert "rate-limit storage unavailable, allowing" in caplog.text


# --- as deployed: real processes ---------------------------------------------------------------


def test_two_instances_on_one_postgresql_refuse_the_11th_attempt(
    postgres_url: str, tmp_path: Path
) -> None:
    env = {**LIVE_ENV, "DATABASE_URL": postgres_url}
    with (
        service(tmp_path / "one", **env) as (one, _),
        service(tmp_path / "two", **env) as (two, _),
    ):
        body = wrong_login()
        responses = [
            httpx.post(f"{(one, two)[i % 2]}{LOGIN_PATH}", json=body, timeout=10) for i in range(30)
        ]
        assert [r.status_code for r in responses] == [401] * 10 + [429] * 20
        for response in responses[10:]:
            assert_refused(response)

        # at once, over both instances: still exactly 10
        async def burst() -> list[int]:
            body = wrong_login()
            async with httpx.AsyncClient(timeout=10) as client:
                sent = [
                    client.post(f"{(one, two)[i % 2]}{LOGIN_PATH}", json=body) for i in range(30)
                ]
                return [r.status_code for r in await asyncio.gather(*sent)]

        codes = asyncio.run(burst())
        assert (codes.count(401), codes.count(429)) == (10, 20), codes


def test_several_workers_on_sqlite_refuse_the_11th_attempt(tmp_path: Path) -> None:
    """WEB_CONCURRENCY=2, as the Docker image runs. Each request opens a new connection, which
    either worker may accept (with `memory://` this sequence let about 20 through)."""
    env = {**LIVE_ENV, "DATABASE_URL": f"sqlite:///{tmp_path / 'todo.db'}", "WEB_CONCURRENCY": "2"}
    with service(tmp_path, **env) as (base, _):
        body = wrong_login()
        responses = [httpx.post(f"{base}{LOGIN_PATH}", json=body, timeout=10) for _ in range(30)]
    assert [r.status_code for r in responses] == [401] * 10 + [429] * 20
    for response in responses[10:]:
        assert_refused(response)
