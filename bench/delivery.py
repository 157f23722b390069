"""What one live event costs the server, against what the WebSocket transport alone costs.

    .venv/bin/python -m bench.delivery [--rounds 3] [--seconds 8] [--rate 1500] [--subscribers 120]

Two servers, each uvicorn with one worker pinned to core 0 (`--loop uvloop --http httptools`,
as `python -m bench` runs them), measured in alternating rounds:

- service: this code on a fresh PostgreSQL database (created and dropped here), with one
  `taskEvents { type taskId cursor }` subscription per user (bench/subscribers.py, on core 1).
  A writer on core 1 appends events for those users straight to the event log at `--rate`
  per second, each with the wake-up another instance's write sends, so the server does
  nothing but deliver: read the log, run each event through the subscription, send it.
- push floor: `push_app` below on the same uvicorn, pushing the same `next` message at the
  same rate, round robin, to as many WebSocket clients (the same client library, on core 1).
  No GraphQL, no database: the least a server on this stack pays to send one message.

CPU per event: the server's utime + stime (/proc, all threads) over the round divided by the
messages its clients received. Writes bench/RESULTS-delivery.md. The REST writes' own CPU is
`python -m bench`'s figure; with one subscriber per written task's owner, a write costs its
own CPU plus one event's.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import deque
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from bench import pg
from bench import subscribers as live_subscribers
from bench.procs import REPO, CoreLoad, Server, settle
from bench.seed import seed

RESULTS = Path(__file__).resolve().parent / "RESULTS-delivery.md"
ADMIN_URL = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")

# What the service sends for one event of `bench.subscribers.QUERY` (the same size).
MESSAGE = orjson.dumps(
    {
        "id": "1",
        "type": "next",
        "payload": {
            "data": {
                "taskEvents": {
                    "type": "UPDATED",
                    "taskId": str(uuid.UUID(int=1)),
                    "cursor": "ZTE6MTIzNDU2Nzg",
                }
            }
        },
    }
).decode()

# Another instance's write, as the log sees it; that instance then wakes the readers with one
# `pg_notify` per 5 ms at most (core/events.py's `_wake_others`), as `_append` does here.
APPEND = """
INSERT INTO task_events (xid, kind, task_id, user_id, title, description, completed,
    created_at, updated_at, recorded_at)
VALUES (CAST(CAST(pg_current_xact_id() AS TEXT) AS BIGINT), 'UPDATED', $1, $2,
    'a task title', NULL, true, now(), now(), now())
"""
WAKE = "SELECT pg_notify('todo_task_events', '')"


# --- the push floor ------------------------------------------------------------------------------

_queues: list[deque[str]] = []
_wakeups: list[asyncio.Event] = []
_pusher: asyncio.Task[None] | None = None


async def _push(rate: float) -> None:
    """`rate` messages a second, round robin over the connected clients, every 10 ms."""
    started, sent = time.perf_counter(), 0
    while True:
        await asyncio.sleep(0.01)
        due = int((time.perf_counter() - started) * rate)
        while sent < due:
            sent += 1
            if _queues:
                i = sent % len(_queues)
                _queues[i].append(MESSAGE)
                _wakeups[i].set()


async def push_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The push floor (`uvicorn bench.delivery:push_app`; BENCH_PUSH_RATE messages/s)."""
    global _pusher
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "http":  # readiness
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept", "subprotocol": "graphql-transport-ws"})
    queue: deque[str] = deque()
    wakeup = asyncio.Event()
    _queues.append(queue)
    _wakeups.append(wakeup)
    if _pusher is None:
        _pusher = asyncio.create_task(_push(float(os.environ.get("BENCH_PUSH_RATE", "1500"))))
    gone = False

    async def read() -> None:  # what the client sends (connection_init, subscribe, pongs)
        nonlocal gone
        while (await receive())["type"] != "websocket.disconnect":
            pass
        gone = True
        wakeup.set()

    reader = asyncio.create_task(read())
    try:
        while not gone:
            await wakeup.wait()
            wakeup.clear()
            while queue and not gone:
                await send({"type": "websocket.send", "text": queue.popleft()})
    finally:
        reader.cancel()
        _queues.remove(queue)
        _wakeups.remove(wakeup)


# --- the runs ------------------------------------------------------------------------------------


async def _append(dsn: str, users: list[uuid.UUID], rate: float, seconds: float) -> int:
    """Append `rate` events a second for `seconds`, spread over `users`; how many."""
    pool = await asyncpg.create_pool(dsn, min_size=10, max_size=10)
    written = asyncio.Event()

    async def wake_others() -> None:
        while True:
            await written.wait()
            written.clear()
            await pool.execute(WAKE)
            await asyncio.sleep(0.005)

    waker = asyncio.create_task(wake_others())
    try:
        total, started = int(rate * seconds), time.perf_counter()
        limit = asyncio.Semaphore(10)

        async def one(i: int) -> None:
            async with limit:
                await pool.execute(APPEND, uuid.uuid4(), users[i % len(users)])
            written.set()

        pending = []
        for i in range(total):
            delay = started + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            pending.append(asyncio.create_task(one(i)))
        await asyncio.gather(*pending)
        await asyncio.sleep(0.05)  # the last wake-up
        return total
    finally:
        waker.cancel()
        await pool.close()


def _round(
    server: Server, tokens: list[str], tmp: Path, action: Any, seconds: float
) -> dict[str, float]:
    clients = live_subscribers.start(server.url, tokens, tmp)
    try:
        settle([server])
        received_before = live_subscribers.read_count(clients[1])
        cpu_before, load = server.cpu(), CoreLoad(0)
        action()
        time.sleep(1.0)  # the last events' delivery
        cpu = server.cpu() - cpu_before
        others = load.others(cpu)
    finally:
        received = live_subscribers.stop(clients) - received_before
    return {
        "received": received,
        "cpu_s": cpu,
        "us_per_event": 1e6 * cpu / received if received else float("nan"),
        "core0_others": others if others is not None else float("nan"),
        "seconds": seconds,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--rate", type=float, default=1500, help="events per second")
    parser.add_argument("--subscribers", type=int, default=120)
    parser.add_argument("--out", type=Path, default=RESULTS)
    opts = parser.parse_args(argv)

    pg.check_loopback(ADMIN_URL)
    tmp = Path(tempfile.mkdtemp(prefix="todo_delivery_"))
    db_url, pg_version = pg.create_database(ADMIN_URL)
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "DB_"))}
    service = Server(
        "service",
        "api.main:app",
        dict(
            base_env,
            APP_ENV="development",
            DATABASE_URL=db_url,
            BETTER_AUTH_SECRET=secrets.token_urlsafe(48),
            BCRYPT_ROUNDS="4",
            RATE_LIMIT_PER_ADDRESS="1000000000/minute",
            RATE_LIMIT_PER_EMAIL="1000000000/minute",
            LOG_LEVEL="warning",
            DATA_DIR=str(tmp / "data"),
            WEB_CONCURRENCY="1",
        ),
        core=0,
    )
    floor = Server(
        "push floor", "bench.delivery:push_app", dict(base_env, BENCH_PUSH_RATE=str(opts.rate))
    )
    results: dict[str, list[dict[str, float]]] = {"service": [], "push floor": []}
    try:
        service.start(sys.executable, tmp)
        service.wait_ready()
        floor.start(sys.executable, tmp)
        floor.wait_ready()
        users = seed(service.url, prefix="live", users=opts.subscribers, tasks_each=0)
        tokens = [u.token for u in users]
        owners = [uuid.UUID(u.user_id) for u in users]

        def write() -> None:
            asyncio.run(_append(db_url, owners, opts.rate, opts.seconds))

        def wait() -> None:
            time.sleep(opts.seconds)

        for n in range(opts.rounds):
            order = [(service, write), (floor, wait)]
            for server, action in order if n % 2 == 0 else order[::-1]:
                result = _round(server, tokens, tmp, action, opts.seconds)
                results[server.name].append(result)
                print(
                    f"[delivery] {server.name:10} round {n + 1}: {result['received']} events, "
                    f"{result['us_per_event']:.0f} us CPU/event, core 0 used by others "
                    f"{result['core0_others']:.0%}",
                    flush=True,
                )
    finally:
        for server in (service, floor):
            server.stop()
        pg.drop_database(ADMIN_URL, db_url)
    _write(opts, results, pg_version)
    return 0


def _write(opts: argparse.Namespace, results: dict[str, list[dict[str, float]]], pg: str) -> None:
    def median(name: str) -> float:
        return statistics.median(r["us_per_event"] for r in results[name])

    service, floor = median("service"), median("push floor")
    rows = "\n".join(
        f"| {name} | {median(name):.0f} | "
        + " / ".join(f"{r['us_per_event']:.0f}" for r in results[name])
        + " | "
        + " / ".join(f"{r['core0_others']:.0%}" for r in results[name])
        + " |"
        for name in results
    )
    code = subprocess.run(
        ["git", "log", "-1", "--format=%h"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    opts.out.write_text(
        f"""# What one live event costs the server

Generated by `python -m bench.delivery` (see its docstring); do not edit by hand.
{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, code `{code}`, PostgreSQL {pg}; {opts.subscribers}
subscribers, {opts.rate:.0f} events/s for {opts.seconds:.0f} s a round, {opts.rounds} rounds.

| server | CPU us per event (median) | rounds | core 0 used by others |
|---|---:|---|---|
{rows}

The service pays **{service / floor:.1f}x** what the transport alone costs per event
({service - floor:.0f} us more: reading the log, the subscription's GraphQL execution, the
graphql-transport-ws framing). A write with one subscriber costs its own CPU plus one event.
"""
    )
    print(f"[delivery] service {service:.0f} us/event, push floor {floor:.0f} us/event")
    print(f"[delivery] wrote {opts.out}")


if __name__ == "__main__":
    sys.exit(main())
