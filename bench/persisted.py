"""What persisted documents cost: `tasks(first: 20)` sent whole, by APQ hash (POST and GET),
and by id in trusted-documents mode, in-process.

    .venv/bin/python -m bench.persisted [--requests 2000] [--rounds 5]

The app runs on SQLite in a temporary directory (one user, 20 tasks) behind httpx's ASGI
transport, so the figure is the service's own CPU per request, no network or load generator;
rounds alternate between the ways of sending and the medians are compared. Writes
bench/RESULTS-persisted.md.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from api.app import create_app
from api.settings import load_settings

QUERY = (
    "query Tasks($first: Int!) { tasks(first: $first) { totalCount"
    " edges { cursor node { id title description completed createdAt updatedAt } }"
    " pageInfo { hasNextPage endCursor } } }"
)
HASH = hashlib.sha256(QUERY.encode()).hexdigest()
PERSISTED = {"persistedQuery": {"version": 1, "sha256Hash": HASH}}
RESULTS = Path(__file__).resolve().parent / "RESULTS-persisted.md"


def _app(work: Path, **settings: Any) -> Any:
    return create_app(
        load_settings(
            database_url=f"sqlite:///{work}/todo.db",
            data_dir=work / "data",
            better_auth_secret="bench-secret-that-is-long-enough-0123456789",
            bcrypt_rounds=4,
            rate_limit_per_address="100000/minute",
            rate_limit_per_email="100000/minute",
            **settings,
        )
    )


async def _measure(requests: int, rounds: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        manifest = work / "manifest.json"
        manifest.write_text(json.dumps({HASH: QUERY}))
        modes: dict[str, dict[str, Any]] = {
            "APQ on (default)": {},
            "trusted documents": {"graphql_trusted_documents": str(manifest)},
        }
        for mode, settings in modes.items():
            app = _app(work, **settings)
            async with app.router.lifespan_context(app):
                transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
                async with httpx.AsyncClient(transport=transport, base_url="http://b") as http:
                    email = f"bench-{len(times)}@example.com"
                    signed = await http.post(
                        "/api/auth/signup", json={"email": email, "password": "bench-password"}
                    )
                    headers = {"Authorization": f"Bearer {signed.json()['token']}"}
                    for n in range(20):
                        await http.post("/api/tasks", json={"title": f"t{n}"}, headers=headers)
                    variables = {"first": 20}
                    ways: dict[str, Any] = {
                        "whole document, POST": {"json": {"query": QUERY, "variables": variables}},
                    }
                    if mode.startswith("APQ"):
                        ways["APQ hash, POST"] = {
                            "json": {"variables": variables, "extensions": PERSISTED}
                        }
                        ways["APQ hash, GET"] = {
                            "params": {
                                "variables": json.dumps(variables),
                                "extensions": json.dumps(PERSISTED),
                            }
                        }
                        await http.post(
                            "/graphql",
                            json={"query": QUERY, "variables": variables, "extensions": PERSISTED},
                            headers=headers,
                        )
                    else:
                        ways["documentId, POST"] = {
                            "json": {"documentId": HASH, "variables": variables}
                        }
                    for _ in range(rounds):
                        for way, request in ways.items():
                            method = "GET" if "params" in request else "POST"
                            started = time.process_time()
                            for _ in range(requests):
                                response = await http.request(
                                    method, "/graphql", headers=headers, **request
                                )
                                assert response.status_code == 200, response.text
                            spent = time.process_time() - started
                            times.setdefault(f"{mode}: {way}", []).append(spent / requests * 1e6)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    times = asyncio.run(_measure(args.requests, args.rounds))
    base = statistics.median(times["APQ on (default): whole document, POST"])
    lines = [
        "# Persisted documents: CPU per request",
        "",
        f"`python -m bench.persisted --requests {args.requests} --rounds {args.rounds}`, "
        f"{time.strftime('%Y-%m-%d')}: `tasks(first: 20)` with every task field, in-process "
        "(httpx ASGI transport, SQLite), client CPU included alike in every row. Median of the "
        "rounds; the ratio is to the whole document sent by POST with APQ on.",
        "",
        "| how | µs per request (median) | ratio |",
        "|---|---:|---:|",
    ]
    for label, values in times.items():
        median = statistics.median(values)
        lines.append(f"| {label} | {median:,.0f} | {median / base:.2f} |")
    RESULTS.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
