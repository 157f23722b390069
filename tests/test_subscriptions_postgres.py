"""Live updates across instances: two `python -m api` processes on one PostgreSQL database,
writes through one, subscriptions on the other; and the LISTEN connection surviving a drop.

The module has a database of its own, so terminating listener connections never touches
another test's service.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from subprocess import Popen

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url

from core.events import LISTENER_APPLICATION_NAME
from tests.conftest import TEST_SECRET, admin_execute
from tests.live import service, service_log
from tests.tcp_proxy import TcpProxy
from tests.ws_helpers import graphql, next_event, open_socket, rest, signup, subscribed

pytestmark = pytest.mark.asyncio

CREATE = "mutation($title: String!) { createTask(input: {title: $title}) { id } }"
UPDATE = "mutation($id: ID!) { updateTask(id: $id, input: {completed: true}) { id } }"
DELETE = "mutation($id: ID!) { deleteTask(id: $id) }"


@dataclass
class Instance:
    base: str
    proc: Popen[bytes]


@dataclass
class Cluster:
    database_url: str
    writer: Instance
    reader: Instance


@pytest.fixture(scope="module")
def cluster(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    admin = make_url(postgres_url).set(database="postgres").render_as_string(hide_password=False)
    name = f"todo_events_{uuid.uuid4().hex[:12]}"
    asyncio.run(admin_execute(admin, f'CREATE DATABASE "{name}"'))
    database_url = make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    env = {
        "DATABASE_URL": database_url,
        "BETTER_AUTH_SECRET": TEST_SECRET,
        "RATE_LIMIT_PER_ADDRESS": "100000/minute",
        "RATE_LIMIT_PER_EMAIL": "100000/minute",
    }
    work: Path = tmp_path_factory.mktemp("two-instances")
    try:
        with (
            service(work / "writer", **env) as (writer_base, writer_proc),
            service(work / "reader", **env) as (reader_base, reader_proc),
        ):
            yield Cluster(
                database_url,
                Instance(writer_base, writer_proc),
                Instance(reader_base, reader_proc),
            )
    finally:
        asyncio.run(admin_execute(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
async def writer(cluster: Cluster) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=cluster.writer.base, timeout=10) as client:
        yield client


async def _connect(database_url: str) -> asyncpg.Connection:
    url = make_url(database_url)
    return await asyncpg.connect(
        host=url.host, port=url.port or 5432, user=url.username, database=url.database
    )


async def _listeners(database_url: str) -> list[int]:
    conn = await _connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity "
            "WHERE application_name = $1 AND datname = current_database()",
            LISTENER_APPLICATION_NAME,
        )
    finally:
        await conn.close()
    return [row["pid"] for row in rows]


async def test_writes_on_one_instance_reach_owners_on_another_within_a_second_in_order(
    cluster: Cluster, writer: httpx.AsyncClient
) -> None:
    assert len(await _listeners(cluster.database_url)) == 2  # one per instance
    alice, _ = await signup(writer)
    bob, _ = await signup(writer)
    async with (
        subscribed(cluster.reader.base, alice) as (alices_tab, (alice_op,)),
        subscribed(cluster.reader.base, bob) as (bobs_tab, (bob_op,)),
    ):
        expected: dict[str, list[tuple[str, str]]] = {alice: [], bob: []}
        latencies: list[float] = []

        async def written(token: str, kind: str, task_id: str) -> None:
            """Record the write, then check its event arrives on the other instance."""
            written_at = time.monotonic()
            expected[token].append((kind, task_id))
            tab, op = (alices_tab, alice_op) if token == alice else (bobs_tab, bob_op)
            event = await next_event(tab, op, wait=1.0)
            latencies.append(time.monotonic() - written_at)
            assert (event["type"], event["taskId"]) == (kind, task_id)

        ids: dict[str, list[str]] = {alice: [], bob: []}
        for i in range(4):
            for token in (alice, bob):  # interleaved owners
                if i % 2:
                    response = await rest(writer, "POST", "/api/tasks", token, {"title": f"r{i}"})
                    task_id = response.json()["task"]["id"]
                else:
                    data = await graphql(writer, token, CREATE, {"title": f"g{i}"})
                    task_id = data["createTask"]["id"]
                ids[token].append(task_id)
                await written(token, "CREATED", task_id)
        for token in (alice, bob):
            first, second, *_ = ids[token]
            await rest(writer, "PUT", f"/api/tasks/{first}", token, {"title": "changed"})
            await written(token, "UPDATED", first)
            await graphql(writer, token, UPDATE, {"id": second})
            await written(token, "UPDATED", second)
            await graphql(writer, token, DELETE, {"id": first})
            await written(token, "DELETED", first)
            await rest(writer, "DELETE", f"/api/tasks/{second}", token)
            await written(token, "DELETED", second)
        assert max(latencies) < 1.0, latencies

        # A burst without waiting in between: every event still arrives, in commit order.
        burst = []
        for i in range(20):
            response = await rest(writer, "POST", "/api/tasks", alice, {"title": f"burst {i}"})
            burst.append(response.json()["task"]["id"])
        received = [(await next_event(alices_tab, alice_op, wait=2.0))["taskId"] for _ in burst]
        assert received == burst
        await bobs_tab.expect_silence(0.5)


async def test_the_listener_reconnects_after_its_connection_is_killed_and_says_so(
    cluster: Cluster, writer: httpx.AsyncClient
) -> None:
    alice, _ = await signup(writer)
    async with subscribed(cluster.reader.base, alice) as (tab, (op,)):
        before = await _listeners(cluster.database_url)
        assert len(before) == 2
        conn = await _connect(cluster.database_url)
        try:
            killed = await conn.fetchval(
                "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = $1 AND datname = current_database()) AS t",
                LISTENER_APPLICATION_NAME,
            )
        finally:
            await conn.close()
        assert killed == 2

        deadline = time.monotonic() + 10
        while True:
            now = await _listeners(cluster.database_url)
            log = service_log(cluster.reader.proc)
            if len(now) == 2 and not set(now) & set(before) and "reconnected" in log:
                break
            assert time.monotonic() < deadline, f"the listeners did not come back: {log[-2000:]}"
            await asyncio.sleep(0.2)
        assert "event listener: lost its database connection" in log

        # The subscription opened before the drop still delivers.
        response = await rest(writer, "POST", "/api/tasks", alice, {"title": "after the drop"})
        event = await next_event(tab, op, wait=1.0)
        assert event["taskId"] == response.json()["task"]["id"]


async def test_through_a_database_outage_connects_are_refused_then_events_resume(
    cluster: Cluster, tmp_path: Path
) -> None:
    """The database goes away (a TCP proxy cut): a new connection is told to try again later
    (1013), an open subscription stays open, and once the database is back the listener
    reconnects by itself and events flow again."""
    real = make_url(cluster.database_url)
    proxy = TcpProxy(real.host or "127.0.0.1", real.port or 5432)
    await proxy.start()
    proxied = real.set(port=proxy.port).render_as_string(hide_password=False)
    stack = ExitStack()
    try:
        # Started from a thread: the proxy serves on this event loop meanwhile.
        base, proc = await asyncio.to_thread(
            stack.enter_context,
            service(
                tmp_path,
                DATABASE_URL=proxied,
                BETTER_AUTH_SECRET=TEST_SECRET,
                DB_CONNECT_TIMEOUT="1",
            ),
        )
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            alice, _ = await signup(client)
            async with subscribed(base, alice) as (tab, (op,)):
                await proxy.cut()
                async with open_socket(base) as late:
                    await late.send({"type": "connection_init", "payload": {"token": alice}})
                    closed = await late.expect_close()
                assert (closed.code, closed.reason) == (1013, "Service temporarily unavailable")
                await tab.expect_silence(0.5)  # the open subscription is still there

                await proxy.restore()
                deadline = time.monotonic() + 15
                while "reconnected" not in service_log(proc):
                    assert time.monotonic() < deadline, service_log(proc)[-2000:]
                    await asyncio.sleep(0.2)
                created = await rest(client, "POST", "/api/tasks", alice, {"title": "back"})
                assert created.status_code == 201
                event = await next_event(tab, op, wait=1.0)
                assert event["taskId"] == created.json()["task"]["id"]
        assert "Traceback" not in service_log(proc)
    finally:
        await asyncio.to_thread(stack.close)
        await proxy.close()
