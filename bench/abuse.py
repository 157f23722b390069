"""The abuse probes with figures, against a fresh `python -m api` (SQLite, or PostgreSQL).

    .venv/bin/python -m bench.abuse [--database-url postgresql://...]

1. The worst nested query (pages of 100 in pages of 100 under 15 aliases) on 1,000 tasks,
   20 times in a row and 4 at once: the answer's size and time, and RSS before and after.
2. 240 distinct 1 MB queries without a token, then 20 WebSocket messages of 15 MiB: RSS
   before and after.
Prints the figures; writes bench/RESULTS-abuse.md.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.live import rss_kib, service

RESULTS = Path(__file__).resolve().parent / "RESULTS-abuse.md"
SECRET = "bench-secret-that-is-long-enough-0123456789"


def worst_query(aliases: int = 15) -> str:
    inner = "tasks(first: 100) { edges { node { id title description completed createdAt } } }"
    page = f"tasks(first: 100) {{ edges {{ node {{ owner {{ {inner} }} }} }} }}"
    return "{ " + " ".join(f"a{i}: {page}" for i in range(aliases)) + " }"


def rss_mb(pid: int) -> float:
    return rss_kib(pid) / 1024


async def probe(base: str, pid: int) -> list[str]:
    lines = []
    async with httpx.AsyncClient(base_url=base, timeout=120) as http:
        signed = await http.post(
            "/api/auth/signup",
            json={"email": f"probe-{uuid.uuid4().hex[:8]}@example.com", "password": "probe-pass"},
        )
        headers = {"Authorization": f"Bearer {signed.json()['token']}"}
        for n in range(1000):
            await http.post("/api/tasks", json={"title": f"task {n}"}, headers=headers)
        await http.post(
            "/graphql", json={"query": "{ tasks(first: 100) { totalCount } }"}, headers=headers
        )
        body = {"query": worst_query()}
        start_rss = rss_mb(pid)
        times, sizes = [], set()
        for _ in range(20):
            started = time.perf_counter()
            answer = await http.post("/graphql", json=body, headers=headers)
            times.append((time.perf_counter() - started) * 1000)
            sizes.add(len(answer.content))
        started = time.perf_counter()
        together = await asyncio.gather(
            *(http.post("/graphql", json=body, headers=headers) for _ in range(4))
        )
        four_ms = (time.perf_counter() - started) * 1000
        sizes.update(len(a.content) for a in together)
        lines.append(
            f"| 1 | worst nested query, 1,000 tasks, 20 in a row then 4 at once | answer "
            f"{max(sizes)} bytes; median {statistics.median(times):.1f} ms, slowest "
            f"{max(times):.1f} ms; 4 at once {four_ms:.1f} ms; RSS {start_rss:.0f} -> "
            f"{rss_mb(pid):.0f} MB |"
        )

        start_rss = rss_mb(pid)
        padding = " " * ((1 << 20) - 100)
        for n in range(240):
            await http.post("/graphql", json={"query": "{ __typename }" + padding[n:]})
        after_http = rss_mb(pid)
    url = base.replace("http://", "ws://", 1) + "/graphql"
    codes = set()
    for _ in range(20):
        async with connect(url, subprotocols=["graphql-transport-ws"], max_size=None) as ws:  # type: ignore[list-item]
            try:
                await ws.send(
                    '{"type": "connection_init", "payload": {"p": "' + "x" * (15 << 20) + '"}}'
                )
                await asyncio.wait_for(ws.recv(), 10)
            except ConnectionClosed as closed:
                codes.add(closed.rcvd.code if closed.rcvd else None)
    await asyncio.sleep(1)
    lines.append(
        f"| 2 | 240 distinct 1 MB queries, no token; then 20 WebSocket messages of 15 MiB | "
        f"RSS {start_rss:.0f} -> {after_http:.0f} MB after HTTP, {rss_mb(pid):.0f} MB after "
        f"the sockets (closed with {sorted(codes, key=str)}) |"
    )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=None)
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        url = opts.database_url or f"sqlite:///{work}/todo.db"
        env = {
            "DATABASE_URL": url,
            "BETTER_AUTH_SECRET": SECRET,
            "RATE_LIMIT_PER_ADDRESS": "100000/minute",
        }
        with service(Path(work), **env) as (base, proc):
            lines = asyncio.run(probe(base, proc.pid))
    database = "PostgreSQL" if url.startswith("postgres") else "SQLite"
    text = "\n".join(
        [
            "# The abuse probes with figures",
            "",
            f"`python -m bench.abuse` against a fresh `python -m api` on {database}.",
            "",
            "| row | probe | result |",
            "|---|---|---|",
            *lines,
            "",
        ]
    )
    RESULTS.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
