"""What the GraphQL cost check costs: `tasks(first: 20)` with the check and without, in-process.

    .venv/bin/python -m bench.cost_check [--requests 3000] [--rounds 5]

Runs the app (SQLite in a temporary directory, one user with 20 tasks) through httpx's ASGI
transport, so the figure is the service's own CPU per request with no network or load
generator in it; rounds alternate between the check on and the check replaced by a no-op,
and the medians are compared. Also times `operation_cost` alone. Writes
bench/RESULTS-cost.md.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import httpx
from graphql import parse

from api.app import create_app
from api.settings import load_settings
from graphql_schema.cost import operation_cost, paged_fields
from graphql_schema.extensions import OperationGuard

QUERY = (
    "query Tasks($first: Int!) { tasks(first: $first) { totalCount"
    " edges { cursor node { id title description completed createdAt updatedAt } }"
    " pageInfo { hasNextPage endCursor } } }"
)
RESULTS = Path(__file__).resolve().parent / "RESULTS-cost.md"


async def _measure(requests: int, rounds: int) -> dict[str, list[float]]:
    with tempfile.TemporaryDirectory() as work:
        settings = load_settings(
            database_url=f"sqlite:///{work}/todo.db",
            data_dir=Path(work) / "data",
            better_auth_secret="bench-secret-that-is-long-enough-0123456789",
            bcrypt_rounds=4,
        )
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
                signed = await http.post(
                    "/api/auth/signup",
                    json={"email": "bench@example.com", "password": "bench-password"},
                )
                headers = {"Authorization": f"Bearer {signed.json()['token']}"}
                for n in range(20):
                    await http.post("/api/tasks", json={"title": f"task {n}"}, headers=headers)
                body = {"query": QUERY, "variables": {"first": 20}}
                checked = OperationGuard._check_cost
                times: dict[str, list[float]] = {"with the check": [], "without": []}
                for _ in range(rounds):
                    for label in times:
                        OperationGuard._check_cost = (  # type: ignore[method-assign]
                            checked if label == "with the check" else lambda *_: []
                        )
                        for _ in range(50):  # warm
                            await http.post("/graphql", json=body, headers=headers)
                        start = time.process_time()
                        for _ in range(requests):
                            response = await http.post("/graphql", json=body, headers=headers)
                        times[label].append((time.process_time() - start) / requests * 1e6)
                        assert "errors" not in response.json(), response.text
                OperationGuard._check_cost = checked  # type: ignore[method-assign]
    return times


def _cost_alone(calls: int) -> float:
    from graphql_schema.schema import build_schema

    paged = paged_fields(build_schema()._schema)
    document = parse(QUERY)
    start = time.process_time()
    for _ in range(calls):
        operation_cost(document, None, {"first": 20}, paged)
    return (time.process_time() - start) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    opts = parser.parse_args()
    times = asyncio.run(_measure(opts.requests, opts.rounds))
    alone = _cost_alone(20_000)
    with_check = statistics.median(times["with the check"])
    without = statistics.median(times["without"])
    spread = max((max(v) - min(v)) / statistics.median(v) for v in times.values()) * 100
    lines = [
        "# The GraphQL cost check's overhead",
        "",
        f"`python -m bench.cost_check --requests {opts.requests} --rounds {opts.rounds}`: "
        "CPU per `tasks(first: 20)` request (20 tasks, every field), in-process through the "
        "ASGI app on SQLite, rounds alternating; medians.",
        "",
        "| | CPU per request (us) | rounds |",
        "|---|---|---|",
        *(
            f"| {label} | {statistics.median(values):.0f} | "
            f"{', '.join(f'{v:.0f}' for v in values)} |"
            for label, values in times.items()
        ),
        "",
        f"The check: {with_check - without:+.0f} us per request "
        f"({(with_check / without - 1) * 100:+.1f}%); `operation_cost` alone: {alone:.1f} us.",
        f"Rounds of one kind differ by up to {spread:.0f}%: an end-to-end difference smaller "
        "than that is noise, and `operation_cost` alone is the figure to compare with a "
        "request's CPU (about 1 ms for this query on the real server, bench/RESULTS.md).",
        "",
    ]
    RESULTS.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
