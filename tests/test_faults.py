"""Database faults: PostgreSQL goes away under load, comes back, and nothing acknowledged is lost.

A TCP proxy sits between the service and PostgreSQL; the test cuts it while clients keep
writing, checks that requests fail fast with 503 (never 500) and /health says unhealthy, then
restores it and checks that the service recovers by itself and every task it acknowledged with
201 is in the database.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from api.app import create_app
from tests.conftest import serve, signup
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.asyncio

WRITERS = 8


@pytest.fixture
def database_url(postgres_url: str) -> str:  # PostgreSQL only: SQLite has no network to cut
    return postgres_url


async def test_outage_under_load_gives_503_then_recovers_losing_nothing(
    make_settings, postgres_url: str
) -> None:
    real = make_url(postgres_url)
    proxy = TcpProxy(real.host or "127.0.0.1", real.port or 5432)
    await proxy.start()
    proxied = real.set(port=proxy.port).render_as_string(hide_password=False)
    settings = make_settings(
        database_url=proxied, db_connect_timeout=1.0, db_statement_timeout=2.0, db_pool_size=4
    )
    acknowledged: set[str] = set()
    statuses: list[int] = []
    slowest_failure = 0.0
    stop = asyncio.Event()

    async with serve(create_app(settings)) as client:
        account = await signup(client)

        async def writer(n: int) -> None:
            nonlocal slowest_failure
            i = 0
            while not stop.is_set():
                started = time.monotonic()
                response = await client.post(
                    "/api/tasks", json={"title": f"w{n}-{i}"}, headers=account.headers
                )
                elapsed = time.monotonic() - started
                statuses.append(response.status_code)
                if response.status_code == 201:
                    acknowledged.add(response.json()["task"]["id"])
                else:
                    assert response.json() == {"error": "Service temporarily unavailable"}
                    slowest_failure = max(slowest_failure, elapsed)
                    await asyncio.sleep(0.05)
                i += 1

        writers = [asyncio.create_task(writer(n)) for n in range(WRITERS)]
        await asyncio.sleep(1.0)
        before_cut = len(acknowledged)
        assert before_cut > 0

        await proxy.cut()
        await asyncio.sleep(2.0)
        health = await client.get("/health")
        assert health.status_code == 503
        assert health.json() == {"status": "unhealthy"}
        during_cut = statuses.count(503)
        assert during_cut > 0

        await proxy.restore()
        deadline = time.monotonic() + 15
        while (await client.get("/health")).status_code != 200:
            assert time.monotonic() < deadline, "service did not recover within 15 s"
            await asyncio.sleep(0.2)
        recovered_at = len(acknowledged)
        await asyncio.sleep(1.0)
        stop.set()
        await asyncio.gather(*writers)
        assert len(acknowledged) > recovered_at, "writes did not resume after recovery"

        listed = await client.get("/api/tasks", headers=account.headers)
        assert listed.status_code == 200
        listed_ids = {t["id"] for t in listed.json()["tasks"]}

    await proxy.close()
    assert set(statuses) <= {201, 503}, sorted(set(statuses))
    assert slowest_failure < 5.0, f"a 503 took {slowest_failure:.1f} s"
    assert acknowledged <= listed_ids
    conn = await asyncpg.connect(
        host=real.host, port=real.port or 5432, user=real.username, database=real.database
    )
    try:
        stored = {
            str(r["id"])
            for r in await conn.fetch(
                "SELECT id FROM tasks WHERE user_id = $1", uuid.UUID(account.id)
            )
        }
    finally:
        await conn.close()
    lost = acknowledged - stored
    assert not lost, f"{len(lost)} acknowledged tasks lost"
    print(
        f"\nfaults: {len(statuses)} requests, {len(acknowledged)} acknowledged, "
        f"{statuses.count(503)} x 503, slowest 503 {slowest_failure:.2f} s, 0 lost"
    )


async def test_database_restart_costs_at_most_one_request(make_settings, postgres_url: str) -> None:
    """Every pooled connection dies at once (as when PostgreSQL restarts): the first request to
    meet a dead connection gets 503, the pool is invalidated, and the next ones reconnect."""
    settings = make_settings(database_url=postgres_url, db_pool_size=4)
    async with serve(create_app(settings)) as client:
        account = await signup(client)
        # Fill the pool with several open connections.
        warm = await asyncio.gather(
            *(client.get("/api/tasks", headers=account.headers) for _ in range(8))
        )
        assert {r.status_code for r in warm} == {200}
        real = make_url(postgres_url)
        conn = await asyncpg.connect(
            host=real.host, port=real.port or 5432, user=real.username, database=real.database
        )
        try:
            killed = await conn.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = $1 AND pid <> pg_backend_pid()",
                real.database,
            )
        finally:
            await conn.close()
        assert killed >= 1
        statuses = [
            (await client.get("/api/tasks", headers=account.headers)).status_code for _ in range(6)
        ]
    assert set(statuses) <= {200, 503}, statuses
    assert statuses.count(503) <= 1, statuses
    assert statuses[-1] == 200


async def test_waiting_for_a_pooled_connection_ends_in_503_after_db_pool_timeout(
    make_settings, postgres_url: str
) -> None:
    """Every connection busy for longer than DB_POOL_TIMEOUT: the request waiting in line gets
    the contract's 503, and the next one, once a connection is free, is served."""
    settings = make_settings(database_url=postgres_url, db_pool_size=1, db_pool_timeout=0.5)
    app = create_app(settings)
    async with serve(app) as client:
        account = await signup(client)
        store = app.state.services.store
        async with store.transaction():  # holds the only connection
            started = time.monotonic()
            response = await client.get("/api/tasks", headers=account.headers)
            waited = time.monotonic() - started
        assert response.status_code == 503
        assert response.json() == {"error": "Service temporarily unavailable"}
        assert 0.4 <= waited < 5
        assert (await client.get("/api/tasks", headers=account.headers)).status_code == 200
