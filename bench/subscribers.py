"""Live subscribers for the benchmark: one `taskEvents` subscription per token, kept open while
the rounds run, every event read and counted (`python -m bench --subscribers`).

Run as its own process pinned to wrk's core, so its work is not charged to the server:

    python -m bench.subscribers WS_URL TOKENS_FILE COUNT_FILE

It writes the number of events received to COUNT_FILE every second; SIGTERM ends it.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

from websockets.asyncio.client import connect

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


if __name__ == "__main__":
    ws_url, tokens_file, count_file = sys.argv[1:4]
    tokens = [line.split("\t")[0] for line in Path(tokens_file).read_text().splitlines() if line]
    asyncio.run(main(ws_url, tokens, Path(count_file)))
