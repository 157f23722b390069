"""Live updates that lose nothing, black-box: two `python -m api` instances on one PostgreSQL,
a stream of 1,000 writes through both, while the instances' LISTEN connections are killed
several times and one goes silent behind a TCP proxy for 10 s, and one client drops its own
socket for 5 s and resumes with its last cursor. Every subscriber must receive every event of
its owner exactly once, in order. Then PgBouncer in transaction mode, where instances cannot
LISTEN and read the event log on an interval instead.

The module has a database of its own, so killing listener connections touches no other test.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import AsyncExitStack, ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from subprocess import Popen
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url

from core.events import LISTENER_APPLICATION_NAME
from tests.conftest import TEST_SECRET, admin_execute
from tests.live import free_port, service, service_log
from tests.tcp_proxy import TcpProxy
from tests.ws_helpers import (
    TASK_EVENTS_AFTER,
    Closed,
    GraphQLSocket,
    graphql,
    open_socket,
    rest,
    signup,
    wait_until_subscribed,
)

pytestmark = pytest.mark.asyncio

USERS = 5
WRITES_PER_USER = 200  # 1,000 in all
SECONDS = 22.0  # the stream's length, paced so that every disruption falls inside it

UPDATE = "mutation($id: ID!) { updateTask(id: $id, input: {completed: true}) { id } }"
DELETE = "mutation($id: ID!) { deleteTask(id: $id) }"


@pytest.fixture(scope="module")
def database(postgres_url: str) -> Iterator[str]:
    admin = make_url(postgres_url).set(database="postgres").render_as_string(hide_password=False)
    name = f"todo_stream_{uuid.uuid4().hex[:12]}"
    asyncio.run(admin_execute(admin, f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(admin_execute(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _env(database_url: str, **extra: str) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "BETTER_AUTH_SECRET": TEST_SECRET,
        "RATE_LIMIT_PER_ADDRESS": "100000/minute",
        "RATE_LIMIT_PER_EMAIL": "100000/minute",
        **extra,
    }


async def _admin(database_url: str, sql: str, *args: Any) -> Any:
    url = make_url(database_url)
    conn = await asyncpg.connect(
        host=url.host, port=url.port or 5432, user=url.username, database=url.database
    )
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


async def _kill_listeners(database_url: str) -> int:
    killed: int = await _admin(
        database_url,
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE application_name = $1 AND datname = current_database()) AS t",
        LISTENER_APPLICATION_NAME,
    )
    return killed


@dataclass
class Tab:
    """One subscriber: what it received, (type, taskId), and the last cursor."""

    events: list[tuple[str, str]] = field(default_factory=list)
    cursor: str | None = None
    latencies: list[float] = field(default_factory=list)


async def _subscribe(base: str, token: str, after: str | None = None) -> tuple[GraphQLSocket, Any]:
    stack = AsyncExitStack()
    socket = await stack.enter_async_context(open_socket(base))
    ack = await socket.init({"Authorization": f"Bearer {token}"})
    assert ack["type"] == "connection_ack", ack
    await socket.subscribe(TASK_EVENTS_AFTER, variables={"after": after})
    await wait_until_subscribed(socket)
    return socket, stack


async def _listen(socket: GraphQLSocket, tab: Tab, written_at: dict[str, float]) -> None:
    """Receive until the socket closes (or the task is cancelled)."""
    while True:
        try:
            message = await socket.receive(wait=3600)
        except Closed:
            return
        assert message["type"] == "next", message
        assert "errors" not in message["payload"], message
        event = message["payload"]["data"]["taskEvents"]
        key = f"{event['type']} {event['taskId']}"
        tab.events.append((event["type"], event["taskId"]))
        tab.cursor = event["cursor"]
        if key in written_at:
            tab.latencies.append(time.monotonic() - written_at[key])


async def _write_stream(
    clients: list[httpx.AsyncClient],
    token: str,
    expected: list[tuple[str, str]],
    written_at: dict[str, float],
    started: float,
) -> None:
    """One owner's writes, one at a time (so their order is the order acknowledged), through
    both instances in turn, REST and GraphQL, creates, updates and deletes, paced over
    SECONDS."""
    open_tasks: list[str] = []
    for i in range(WRITES_PER_USER):
        client = clients[i % 2]
        if not open_tasks or i % 4 in (0, 2):
            response = await rest(client, "POST", "/api/tasks", token, {"title": f"w{i}"})
            assert response.status_code == 201, response.text
            kind, task_id = "CREATED", response.json()["task"]["id"]
            open_tasks.append(task_id)
        elif i % 4 == 1:
            task_id = open_tasks[-1]
            if i % 8 == 1:
                await graphql(client, token, UPDATE, {"id": task_id})
            else:
                response = await rest(
                    client, "PUT", f"/api/tasks/{task_id}", token, {"title": f"u{i}"}
                )
                assert response.status_code == 200, response.text
            kind = "UPDATED"
        else:
            task_id = open_tasks.pop(0)
            if i % 8 == 3:
                await graphql(client, token, DELETE, {"id": task_id})
            else:
                response = await rest(client, "DELETE", f"/api/tasks/{task_id}", token)
                assert response.status_code == 204, response.text
            kind = "DELETED"
        expected.append((kind, task_id))
        written_at[f"{kind} {task_id}"] = time.monotonic()
        # Paced: the i-th write not before its share of SECONDS.
        delay = started + SECONDS * (i + 1) / WRITES_PER_USER - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)


async def test_a_stream_of_1000_writes_through_listener_kills_a_silent_listener_and_a_client_drop(
    database: str, tmp_path: Path
) -> None:
    real = make_url(database)
    proxy = TcpProxy(real.host or "127.0.0.1", real.port or 5432)
    await proxy.start()
    # The second instance LISTENs through the proxy (its requests go straight to PostgreSQL).
    through_proxy = real.set(port=proxy.port).render_as_string(hide_password=False)
    stack = ExitStack()
    sockets = AsyncExitStack()
    try:
        (base_a, proc_a), (base_b, proc_b) = await asyncio.gather(
            asyncio.to_thread(stack.enter_context, service(tmp_path / "a", **_env(database))),
            asyncio.to_thread(
                stack.enter_context,
                service(
                    tmp_path / "b",
                    **_env(database, EVENTS_DATABASE_URL=through_proxy, DB_CONNECT_TIMEOUT="2"),
                ),
            ),
        )
        clients = [
            await sockets.enter_async_context(httpx.AsyncClient(base_url=base, timeout=30))
            for base in (base_a, base_b)
        ]
        tokens = [(await signup(clients[0]))[0] for _ in range(USERS)]
        written_at: dict[str, float] = {}
        expected: dict[str, list[tuple[str, str]]] = {token: [] for token in tokens}
        # Every owner has a subscriber on each instance; user 0's on A will drop and resume.
        tabs: dict[tuple[str, str], Tab] = {}
        listeners: list[asyncio.Task[None]] = []
        dropping: tuple[GraphQLSocket, AsyncExitStack, asyncio.Task[None]] | None = None
        for token in tokens:
            for base in (base_a, base_b):
                tab = tabs[(token, base)] = Tab()
                socket, socket_stack = await _subscribe(base, token)
                sockets.push_async_callback(socket_stack.aclose)
                task = asyncio.create_task(_listen(socket, tab, written_at))
                listeners.append(task)
                if token == tokens[0] and base == base_a:
                    dropping = (socket, socket_stack, task)

        async def disrupt(started: float) -> dict[str, Any]:
            """Kill both LISTEN connections three times, black-hole B's for 10 s, and drop
            user 0's socket on A for 5 s, resuming on B with its last cursor."""
            seen: dict[str, Any] = {"killed": []}

            async def at(offset: float) -> None:
                await asyncio.sleep(max(0.0, started + offset - time.monotonic()))

            await at(1.5)
            seen["killed"].append(await _kill_listeners(database))
            assert dropping is not None
            socket, socket_stack, task = dropping
            await at(2.5)
            await socket_stack.aclose()  # the client's own socket drops
            await task
            await at(3.5)
            seen["killed"].append(await _kill_listeners(database))
            await at(5.0)
            proxy.black_hole()  # B's listener goes silent: no error, no answer
            seen["hole_at"] = time.monotonic()
            await at(7.5)
            resumed_tab = tabs[(tokens[0], base_a)]
            socket, socket_stack = await _subscribe(base_b, tokens[0], after=resumed_tab.cursor)
            sockets.push_async_callback(socket_stack.aclose)
            listeners.append(asyncio.create_task(_listen(socket, resumed_tab, written_at)))
            await at(10.0)
            seen["killed"].append(await _kill_listeners(database))  # A's (B's is in the hole)
            await at(15.0)
            await proxy.restore()
            return seen

        started = time.monotonic()
        disruptions = asyncio.create_task(disrupt(started))
        await asyncio.gather(
            *(
                _write_stream(clients, token, expected[token], written_at, started)
                for token in tokens
            )
        )
        seen = await disruptions
        assert sum(len(events) for events in expected.values()) == USERS * WRITES_PER_USER

        deadline = time.monotonic() + 15
        while any(tab.events != expected[token] for (token, _), tab in tabs.items()):
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        for (token, base), tab in tabs.items():
            where = f"user {tokens.index(token)} on {'A' if base == base_a else 'B'}"
            assert len(tab.events) == len(set(tab.events)), f"{where}: a duplicate"
            assert tab.events == expected[token], (
                f"{where}: {len(tab.events)} of {len(expected[token])} events, "
                f"first difference at {_first_difference(tab.events, expected[token])}"
            )
        for task in listeners:
            task.cancel()

        log_a, log_b = service_log(proc_a), service_log(proc_b)
        assert seen["killed"][:2] == [2, 2] and seen["killed"][2] >= 1
        assert log_a.count("event listener: reconnected") >= 3, log_a[-3000:]
        assert "no answer to a heartbeat" in log_b, log_b[-3000:]
        assert log_b.count("event listener: reconnected") >= 3, log_b[-3000:]
        for log in (log_a, log_b):
            assert "Traceback" not in log and " ERROR " not in log, log[-3000:]
        latencies = sorted(x for tab in tabs.values() for x in tab.latencies)
        # Within a few seconds even for events written while B's listener was silent and not
        # yet found out (a heartbeat every 2 s, answered within 2 s), and at once otherwise.
        assert latencies[-1] < 6.0, latencies[-20:]
        assert latencies[len(latencies) // 2] < 0.5, latencies[len(latencies) // 2]
    finally:
        await sockets.aclose()
        await asyncio.to_thread(stack.close)
        await proxy.close()


def _first_difference(got: list[Any], wanted: list[Any]) -> int:
    for i, (a, b) in enumerate(zip(got, wanted, strict=False)):
        if a != b:
            return i
    return min(len(got), len(wanted))


# --- PgBouncer in transaction mode ----------------------------------------------------------


PGBOUNCER = shutil.which("pgbouncer") or (
    "/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").exists() else None
)


@contextmanager
def _pgbouncer(database_url: str) -> Iterator[str]:
    """PgBouncer in transaction mode in front of `database_url`; the URL through it.

    PgBouncer refuses to run as root: as root it runs as `postgres`, from a directory that
    user can read and write."""
    url = make_url(database_url)
    port = free_port()
    work = Path(tempfile.mkdtemp(prefix="todo-pgbouncer-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        pwd.getpwnam("postgres")
        work.chmod(0o777)
        as_user = ["-u", "postgres"]
    (work / "users.txt").write_text(f'"{url.username}" ""\n')
    (work / "pgbouncer.ini").write_text(
        f"""[databases]
{url.database} = host={url.host} port={url.port or 5432} dbname={url.database}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {work / "users.txt"}
pool_mode = transaction
max_client_conn = 200
default_pool_size = 10
ignore_startup_parameters = extra_float_digits,application_name,statement_timeout
logfile = {work / "pgbouncer.log"}
pidfile = {work / "pgbouncer.pid"}
"""
    )
    for path in work.iterdir():
        path.chmod(0o666)
    proc = Popen([PGBOUNCER or "pgbouncer", *as_user, str(work / "pgbouncer.ini")], cwd=work)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "pgbouncer did not start"
                time.sleep(0.1)
        yield url.set(port=port).render_as_string(hide_password=False)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)


@pytest.mark.skipif(PGBOUNCER is None, reason="needs pgbouncer")
async def test_behind_pgbouncer_in_transaction_mode_instances_read_the_log_on_an_interval(
    database: str, tmp_path: Path
) -> None:
    """No EVENTS_DATABASE_URL, not Neon: LISTEN cannot work through the pooler, so the
    instances read the event log every TASK_EVENTS_POLL_SECONDS; events still arrive, in
    order, from writes through either instance."""
    with _pgbouncer(database) as pooled:
        env = _env(f"{pooled}?pgbouncer=true", TASK_EVENTS_POLL_SECONDS="0.25")
        with ExitStack() as stack:
            (base_a, proc_a), (base_b, _proc_b) = await asyncio.gather(
                asyncio.to_thread(stack.enter_context, service(tmp_path / "a", **env)),
                asyncio.to_thread(stack.enter_context, service(tmp_path / "b", **env)),
            )
            log_a = service_log(proc_a)
            assert "where LISTEN does not work" in log_a, log_a
            assert "reading the event log every 0.25 s" in log_a, log_a
            listening = await _admin(
                database,
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 "
                "AND datname = current_database()",
                LISTENER_APPLICATION_NAME,
            )
            assert listening == 0
            async with httpx.AsyncClient(base_url=base_a, timeout=10) as writer:
                token, _ = await signup(writer)
                socket, socket_stack = await _subscribe(base_b, token)
                try:
                    tab = Tab()
                    written_at: dict[str, float] = {}
                    receiving = asyncio.create_task(_listen(socket, tab, written_at))
                    expected = []
                    for i in range(10):
                        response = await rest(
                            writer, "POST", "/api/tasks", token, {"title": f"{i}"}
                        )
                        task_id = response.json()["task"]["id"]
                        expected.append(("CREATED", task_id))
                        written_at[f"CREATED {task_id}"] = time.monotonic()
                        await asyncio.sleep(0.05)
                    deadline = time.monotonic() + 5
                    while tab.events != expected:
                        if time.monotonic() > deadline:
                            break
                        await asyncio.sleep(0.05)
                    assert tab.events == expected
                    # The interval bounds the latency (plus a read's own time).
                    assert max(tab.latencies) < 0.25 + 0.5, tab.latencies
                    receiving.cancel()
                finally:
                    await socket_stack.aclose()
