"""The custom GraphQL executor on its own: server CPU per `tasks(first: 20)`, with and without.

    .venv/bin/python -m bench.executor [--rounds 15] [--duration 4] [--connections 10,100]

Two copies of the service on one fresh PostgreSQL database (created and dropped here, as
`python -m bench` does), each uvicorn with one worker pinned to core 0: one executing GraphQL
with `Executor` from graphql_schema/execution.py, one with Strawberry's default execution
context (graphql-core's own executor), both through `bench/executor_app.py`. Once
graphql_schema/execution.py is gone, the file is taken from the last commit that had it.
Users with 20 tasks each are seeded over HTTP and both servers must answer the same bytes;
then wrk (`bench/lua/scenario.lua`, mode `gql_tasks`, pinned to core 1) sends
`{ tasks(first: 20) { edges { node { id title completed createdAt } } } }`, each request
with the next user's token, in rounds alternating between the two (A B, B A, ...). CPU per
request: the server's utime + stime (/proc) over the round divided by the requests wrk
counted. The machine is shared, so rounds are short and many: a burst of someone else's work
falls on a few pairs of rounds rather than on one executor. Then, in this process pinned to
core 0, the execution alone: the same query on a page of 20 tasks already in memory (no
HTTP, parsing or database), on each executor. Writes bench/RESULTS-executor.md.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from inspect import isawaitable
from pathlib import Path
from typing import Any

import strawberry
from graphql import MiddlewareManager, parse
from graphql.execution import execute
from strawberry.execution import optimized_is_awaitable
from strawberry.schema.config import StrawberryConfig

from bench import pg
from bench.__main__ import git_head, machine_info
from bench.procs import REPO, CoreLoad, Server, settle
from bench.seed import seed
from bench.wrk import WrkRun, check_tools
from core.records import Caller, TaskRecord
from graphql_schema.types import DateTimeScalar, PageInfo, TaskConnection, _LazyEdge

APP = "bench.executor_app:app"
# bench/executor_app.py's log line (not imported from there: importing it builds the app).
MARKER = "bench.executor_app: execution_context_class = "
EXECUTION = "graphql_schema/execution.py"
RESULTS = Path(__file__).resolve().parent / "RESULTS-executor.md"
CUSTOM, DEFAULT = "custom", "default"
LABELS = {
    CUSTOM: "custom `Executor` (graphql_schema/execution.py)",
    DEFAULT: "Strawberry's default (graphql-core's executor)",
}
EXPECTED_CLASS = {
    CUSTOM: "bench_custom_execution.Executor",
    DEFAULT: "strawberry.schema.schema.StrawberryGraphQLCoreExecutionContext",
}
QUERY = "{ tasks(first: 20) { edges { node { id title completed createdAt } } } }"
# What both servers must answer alike: wrk's query, every field of a page, an error.
CHECK_QUERIES = [
    QUERY,
    "query Tasks($first: Int!) { tasks(first: $first) { totalCount"
    " edges { cursor node { id title description completed createdAt updatedAt"
    " owner { id email } } } pageInfo { hasNextPage endCursor } } }",
    '{ tasks(first: 2, after: "bogus") { totalCount } }',
]


def load_executor(path: str | os.PathLike[str]) -> type:
    """The `Executor` class defined in the Python file at `path`."""
    spec = importlib.util.spec_from_file_location("bench_custom_execution", path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    executor: type = module.Executor
    return executor


def log(message: str) -> None:
    print(f"[bench.executor {time.strftime('%H:%M:%S')}] {message}", flush=True)


def executor_source(tmp: Path) -> tuple[Path, str]:
    """graphql_schema/execution.py from the working tree, else as the last commit had it."""
    here = REPO / EXECUTION
    if here.exists():
        return here, "the working tree"

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(REPO), *args], capture_output=True, text=True, check=True
        ).stdout

    try:  # deleted in the working tree only: HEAD still has it
        text, name = git("show", f"HEAD:{EXECUTION}"), "HEAD"
    except subprocess.CalledProcessError:
        removed = git("log", "-1", "--format=%h", "--diff-filter=D", "--", EXECUTION).strip()
        if not removed:
            raise SystemExit(f"{EXECUTION}: not in the working tree nor git history") from None
        text, name = git("show", f"{removed}^:{EXECUTION}"), f"{removed}^"
    path = tmp / "execution.py"
    path.write_text(text)
    return path, f"commit {name} (`git show {name}:{EXECUTION}`)"


def graphql(url: str, token: str, query: str) -> bytes:
    body = json.dumps({"query": query, "variables": {"first": 20}}).encode()
    request = urllib.request.Request(
        url + "/graphql",
        data=body,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return f"{response.status} ".encode() + response.read()
    except urllib.error.HTTPError as error:
        return f"{error.code} ".encode() + error.read()


def one_round(server: Server, others: list[Server], data: Path, conns: int, secs: float) -> dict:
    run = WrkRun(server.url, "gql_tasks", data, conns, secs)
    settle([server, *others])
    cpu_before, load = server.cpu(), CoreLoad(0)
    result = run.run()
    cpu = server.cpu() - cpu_before
    result["cpu_s"] = cpu
    result["core0_others"] = load.others(cpu) or 0.0
    result["cpu_us_per_req"] = cpu * 1e6 / result["requests"] if result["requests"] else 0.0
    return result


async def _execution_alone(executor: type, calls: int, rounds: int) -> dict[str, list[float]]:
    """us of CPU per execution of QUERY on a page of 20 tasks, rounds alternating."""
    now = datetime.now(UTC)
    owner = uuid.uuid4()
    records = [
        TaskRecord(
            id=uuid.uuid4(),
            title=f"seed task {n}",
            description="seeded by bench" if n % 2 else None,
            completed=n % 3 == 0,
            user_id=owner,
            created_at=now - timedelta(seconds=n),
            updated_at=now,
        )
        for n in range(20)
    ]

    @strawberry.type
    class Query:
        @strawberry.field
        async def tasks(self, first: int = 20) -> TaskConnection:  # as the service's does
            return TaskConnection(
                edges=[_LazyEdge(record) for record in records[:first]],
                page_info=PageInfo(
                    has_next_page=False,
                    has_previous_page=False,
                    start_cursor=None,
                    end_cursor=None,
                ),
                owner=Caller(owner),
                completed=None,
            )

    config = StrawberryConfig(scalar_map={datetime: DateTimeScalar})
    schemas = {
        CUSTOM: strawberry.Schema(query=Query, config=config)._schema,
        DEFAULT: strawberry.Schema(query=Query, config=config)._schema,
    }
    classes: dict[str, Any] = {CUSTOM: executor, DEFAULT: None}
    document = parse(QUERY)

    async def once(kind: str) -> Any:
        # As Strawberry calls it (strawberry/schema/schema.py, Schema._execute_operation).
        kwargs: dict[str, Any] = {
            "middleware": MiddlewareManager(),
            "is_awaitable": optimized_is_awaitable,
        }
        if classes[kind] is not None:
            kwargs["executor_class"] = classes[kind]
        result = execute(schemas[kind], document, **kwargs)
        if isawaitable(result):
            result = await result
        return result.data, result.errors

    answers = [await once(kind) for kind in (CUSTOM, DEFAULT)]
    if answers[0] != answers[1] or answers[0][1]:
        raise RuntimeError(f"the executors answer differently: {answers}")
    times: dict[str, list[float]] = {CUSTOM: [], DEFAULT: []}
    for n in range(rounds):
        for kind in (CUSTOM, DEFAULT) if n % 2 == 0 else (DEFAULT, CUSTOM):
            for _ in range(calls // 10):  # warm
                await once(kind)
            start = time.process_time()
            for _ in range(calls):
                await once(kind)
            times[kind].append((time.process_time() - start) / calls * 1e6)
    return times


def execution_alone(executor: type, calls: int, rounds: int) -> dict[str, list[float]]:
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {0})
    try:
        return asyncio.run(_execution_alone(executor, calls, rounds))
    finally:
        os.sched_setaffinity(0, before)


def spread(values: list[float]) -> float:
    return (max(values) - min(values)) / statistics.median(values) * 100


def report(
    opts: argparse.Namespace,
    meta: dict,
    runs: dict[int, dict[str, list[dict]]],
    alone: dict[str, list[float]],
) -> str:
    machine = meta["machine"]
    lines = [
        "# The custom GraphQL executor on its own",
        "",
        f"`{meta['command']}` ({meta['minutes']:.0f} min), {machine['date']}, code "
        f"`{meta['git']}`; the executor from {meta['source']}.",
        "",
        f"- Machine: {machine['cpu_model']}, {machine['cpus']} cores"
        f"{' (' + machine['hypervisor'] + ' guest)' if machine['hypervisor'] else ''}, shared "
        f"with other work; Python {machine['python']}, PostgreSQL {machine['postgresql']}, "
        f"strawberry-graphql {machine['packages']['strawberry-graphql']}, "
        f"graphql-core {meta['graphql_core']}.",
        "- Two copies of the service (`bench/executor_app.py`), uvicorn, one worker, "
        "`--loop uvloop --http httptools`, LOG_LEVEL=warning, both pinned to core 0; wrk "
        "pinned to core 1, one thread; one fresh PostgreSQL database (unpinned, same two "
        f"cores). {opts.users} users with 20 tasks each, seeded over HTTP; both servers "
        "answered the same bytes to the check queries.",
        f"- Request: `{QUERY}` (`bench/lua/scenario.lua`, mode `gql_tasks`), each with the "
        "next user's token.",
        f"- {opts.rounds} rounds of {opts.duration:.0f} s per executor and concurrency, "
        f"alternating (A B, B A, ...), after {opts.warmup:.0f} s of warm-up each. CPU per "
        "request: the server's utime + stime (/proc/<pid>/stat, all threads) over the round "
        "divided by the requests wrk counted. Spread: (max - min) / median of the rounds. "
        "Core 0 used by others: the share of core 0 busy with anything but the server under "
        "test during its round (other people's work, PostgreSQL, steal), the noise indicator.",
        "",
        "| connections | executor | CPU us/req, median | spread | req/s, median | spread "
        "| p50 / p95 ms | core 0 used by others, median |",
        "|---:|---|---:|---:|---:|---:|---|---:|",
    ]
    summary = []
    pair_rows = []
    for conns, by_kind in runs.items():
        medians = {}
        for kind in (CUSTOM, DEFAULT):
            rounds = by_kind[kind]
            cpu = [r["cpu_us_per_req"] for r in rounds]
            rps = [r["rps"] for r in rounds]
            medians[kind] = statistics.median(cpu)
            lines.append(
                f"| {conns} | {LABELS[kind]} | **{medians[kind]:.0f}** | {spread(cpu):.0f}% | "
                f"{statistics.median(rps):.0f} | {spread(rps):.0f}% | "
                f"{statistics.median(r['p50_us'] for r in rounds) / 1000:.1f} / "
                f"{statistics.median(r['p95_us'] for r in rounds) / 1000:.1f} | "
                f"{statistics.median(r['core0_others'] for r in rounds) * 100:.0f}% |"
            )
        pairs = list(zip(by_kind[CUSTOM], by_kind[DEFAULT], strict=True))
        savings = [1 - c["cpu_us_per_req"] / d["cpu_us_per_req"] for c, d in pairs]
        for n, ((c, d), saving) in enumerate(zip(pairs, savings, strict=True), 1):
            pair_rows.append(
                f"| {conns} | {n} | {c['cpu_us_per_req']:.0f} / {d['cpu_us_per_req']:.0f} | "
                f"{saving * 100:+.1f}% | {c['rps']:.0f} / {d['rps']:.0f} | "
                f"{c['core0_others'] * 100:.0f}% / {d['core0_others'] * 100:.0f}% |"
            )
        rps_ratio = statistics.median(r["rps"] for r in by_kind[CUSTOM]) / statistics.median(
            r["rps"] for r in by_kind[DEFAULT]
        )
        summary.append(
            f"- {conns} connections: the custom executor saves "
            f"**{medians[DEFAULT] - medians[CUSTOM]:.0f} us of {medians[DEFAULT]:.0f} us = "
            f"{(1 - medians[CUSTOM] / medians[DEFAULT]) * 100:.1f}%** of the server's CPU per "
            f"request (medians); pair by pair the median saving is "
            f"{statistics.median(savings) * 100:.1f}% (from {min(savings) * 100:.1f}% to "
            f"{max(savings) * 100:.1f}%); req/s x{rps_ratio:.2f}."
        )
    errors = sum(
        int(r["non2xx"]) + int(r["gql_errors"]) + int(r["err_timeout"])
        for by_kind in runs.values()
        for rounds in by_kind.values()
        for r in rounds
    )
    alone_median = {kind: statistics.median(values) for kind, values in alone.items()}
    saved_alone = alone_median[DEFAULT] - alone_median[CUSTOM]
    first_conns = next(iter(runs))
    default_request = statistics.median(r["cpu_us_per_req"] for r in runs[first_conns][DEFAULT])
    lines += [
        "",
        *summary,
        f"- Non-2xx responses, GraphQL errors and timeouts in the measured rounds: {errors}.",
        "",
        "## Pair by pair",
        "",
        "| connections | pair | CPU us/req, custom / default | saving | req/s, custom / default "
        "| core 0 used by others, custom / default |",
        "|---:|---:|---|---:|---|---|",
        *pair_rows,
        "",
        "## The execution alone",
        "",
        f"The same query executed {opts.calls} times a round on a page of 20 tasks already in "
        "memory (the service's types, its `Task`/edge objects built per execution as its "
        "resolver does), through graphql-core's `execute` as Strawberry calls it: no HTTP, "
        f"parsing, validation or database. {opts.alone_rounds} rounds per executor, "
        "alternating, in this process pinned to core 0 while the servers were idle.",
        "",
        "| executor | CPU us per execution, median | rounds | spread |",
        "|---|---:|---|---:|",
        *(
            f"| {LABELS[kind]} | **{alone_median[kind]:.0f}** | "
            f"{', '.join(f'{v:.0f}' for v in values)} | {spread(values):.0f}% |"
            for kind, values in alone.items()
        ),
        "",
        f"The short paths save {saved_alone:.0f} us of {alone_median[DEFAULT]:.0f} us of "
        f"execution ({saved_alone / alone_median[DEFAULT] * 100:.0f}% of it): "
        f"{saved_alone / default_request * 100:.1f}% of the {default_request:.0f} us a request "
        f"cost the server with graphql-core's executor ({first_conns} connections, above).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.executor", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per round")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds per server")
    parser.add_argument("--connections", default="10,100", help="comma-separated")
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--calls", type=int, default=2000, help="executions per round alone")
    parser.add_argument("--alone-rounds", type=int, default=7)
    parser.add_argument(
        "--pg-admin-url",
        default=os.environ.get(
            "BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    opts = parser.parse_args(argv)
    connections = [int(c) for c in opts.connections.split(",")]
    missing = check_tools()
    if missing:
        print(f"missing tools: {', '.join(missing)} (apt-get install -y wrk)", file=sys.stderr)
        return 2
    if (os.cpu_count() or 1) < 2:
        print("needs at least 2 CPUs (servers on core 0, wrk on core 1)", file=sys.stderr)
        return 2
    pg.check_loopback(opts.pg_admin_url)
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    started = time.monotonic()
    git = git_head()
    tmp = Path(tempfile.mkdtemp(prefix="todo_bench_executor_"))
    db_url: str | None = None
    servers: dict[str, Server] = {}
    try:
        source, source_name = executor_source(tmp)
        db_url, pg_version = pg.create_database(opts.pg_admin_url)
        log(f"database {db_url.rsplit('/', 1)[-1]} (PostgreSQL {pg_version}); executor from "
            f"{source_name}")  # fmt: skip
        base = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "DB_"))}
        base.pop("BENCH_EXECUTOR_FILE", None)
        env = dict(
            base,
            APP_ENV="development",
            DATABASE_URL=db_url,
            BETTER_AUTH_SECRET=f"bench-executor-{os.urandom(24).hex()}",
            BCRYPT_ROUNDS="4",  # seeding only; no login is measured
            RATE_LIMIT_PER_ADDRESS="1000000000/minute",
            RATE_LIMIT_PER_EMAIL="1000000000/minute",
            LOG_LEVEL="warning",
            DATA_DIR=str(tmp / "data"),
            WEB_CONCURRENCY="1",
        )
        servers = {
            CUSTOM: Server(CUSTOM, APP, dict(env, BENCH_EXECUTOR_FILE=str(source)), core=0),
            DEFAULT: Server(DEFAULT, APP, env, core=0),
        }
        for server in servers.values():  # one after the other: the first migrates
            server.start(sys.executable, tmp)
            server.wait_ready()
        for kind, server in servers.items():
            expected = MARKER + EXPECTED_CLASS[kind]
            if expected not in server.tail(50):
                raise RuntimeError(f"{kind}: no '{expected}' in its log: {server.tail()}")
        log(f"servers: custom pid {servers[CUSTOM].pid}, default pid {servers[DEFAULT].pid}")

        users = seed(servers[CUSTOM].url, prefix="exec", users=opts.users, tasks_each=20)
        data = tmp / "tokens.tsv"
        data.write_text("".join(f"{u.token}\n" for u in users))
        for user in users[:3]:
            for query in CHECK_QUERIES:
                answers = {k: graphql(s.url, user.token, query) for k, s in servers.items()}
                if answers[CUSTOM] != answers[DEFAULT]:
                    raise RuntimeError(f"different answers to {query!r}: {answers}")
        log(f"seeded {len(users)} users x 20 tasks; both servers answer alike")

        runs: dict[int, dict[str, list[dict]]] = {}
        for conns in connections:
            runs[conns] = {CUSTOM: [], DEFAULT: []}
            for server in servers.values():
                if opts.warmup > 0:
                    WrkRun(server.url, "gql_tasks", data, conns, opts.warmup).run()
            for n in range(opts.rounds):
                for kind in (CUSTOM, DEFAULT) if n % 2 == 0 else (DEFAULT, CUSTOM):
                    others = [s for k, s in servers.items() if k != kind]
                    result = one_round(servers[kind], others, data, conns, opts.duration)
                    runs[conns][kind].append(result)
                    log(
                        f"{conns} conns, round {n + 1}, {kind}: {result['rps']:.0f} req/s, "
                        f"{result['cpu_us_per_req']:.0f} us CPU/req, others on core 0 "
                        f"{result['core0_others'] * 100:.0f}%, non-2xx {result['non2xx']}, "
                        f"GraphQL errors {result['gql_errors']}"
                    )
        settle(list(servers.values()))
        log("the execution alone")
        alone = execution_alone(load_executor(source), opts.calls, opts.alone_rounds)
        import graphql as graphql_core

        meta = {
            "machine": machine_info(pg_version),
            "git": git,
            "source": source_name,
            "graphql_core": graphql_core.__version__,
            "minutes": (time.monotonic() - started) / 60,
            "command": " ".join(["python -m bench.executor", *(argv or sys.argv[1:])]),
        }
        text = report(opts, meta, runs, alone)
        opts.out.write_text(text)
        print(text)
        return 0
    finally:
        for server in servers.values():
            server.stop()
        if db_url is not None:
            try:
                pg.drop_database(opts.pg_admin_url, db_url)
            except Exception as exc:
                log(f"could not drop the benchmark database: {exc}")
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
