"""Live subscribers for the benchmark: one `taskEvents` subscription per token, kept open while
the rounds run, every event read and counted (`python -m bench --subscribers`).

Run as its own process pinned to wrk's core, so its work is not charged to the server:

    python -m bench.subscribers WS_URL TOKENS_FILE COUNT_FILE

It writes the number of events received to COUNT_FILE every second; SIGTERM ends it.
`start` and `stop` run it from a harness (`python -m bench --subscribers`, bench/delivery.py).
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from websockets.asyncio.client import connect

from bench.procs import REPO

QUERY = "subscription { taskEvents { type taskId cursor } }"


async def _follow(url: str, token: str, counts: list[int]) -> None:
    async with connect(url, subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
        await ws.send(json.dumps({"type": "connection_init", "payload": {"token": token}}))
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": QUERY}}))
        async for raw in ws:
            message = json.loads(raw)
            if message.get("type") == "ping":
                await ws.send(json.dumps({"type": "pong"}))
            elif message.get("type") == "next":
                counts[0] += 1


def _report(out: Path, count: int) -> None:
    out.write_text(str(count))


async def main(url: str, tokens: list[str], out: Path) -> None:
    counts = [0]
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    followers = [asyncio.create_task(_follow(url, token, counts)) for token in tokens]
    while not stop.is_set():
        _report(out, counts[0])
        await asyncio.sleep(1)
        for follower in followers:
            if follower.done() and follower.exception() is not None:
                raise follower.exception()  # type: ignore[misc]
    _report(out, counts[0])


def start(url: str, tokens: list[str], tmp: Path) -> tuple[subprocess.Popen[bytes], Path]:
    """One live subscription per token on the server at `url`, in a process on core 1 (wrk's);
    returns it and the file its count goes to."""
    tokens_file = tmp / "subscriber_tokens.tsv"
    tokens_file.write_text("".join(f"{token}\n" for token in tokens))
    count = tmp / "subscriber_events"
    ws_url = url.replace("http://", "ws://", 1) + "/graphql"
    command = ["taskset", "-c", "1", sys.executable, "-m", "bench.subscribers", ws_url]
    proc = subprocess.Popen([*command, str(tokens_file), str(count)], cwd=REPO)
    time.sleep(3)
    if proc.poll() is not None:
        raise RuntimeError(f"bench.subscribers exited with {proc.returncode}")
    return proc, count


def stop(subscribers: tuple[subprocess.Popen[bytes], Path]) -> int:
    """End the process `start` began; the events it received. Raises if it died meanwhile."""
    proc, count = subscribers
    alive = proc.poll() is None
    proc.terminate()
    proc.wait(timeout=10)
    if not alive:
        raise RuntimeError(f"bench.subscribers died during the run ({proc.returncode})")
    return read_count(count)


def read_count(count: Path) -> int:
    return int(count.read_text() or 0) if count.exists() else 0


if __name__ == "__main__":
    ws_url, tokens_file, count_file = sys.argv[1:4]
    tokens = [line.split("\t")[0] for line in Path(tokens_file).read_text().splitlines() if line]
    asyncio.run(main(ws_url, tokens, Path(count_file)))
