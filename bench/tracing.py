"""What tracing costs: server CPU per request with tracing off, on, and as it was before it.

    .venv/bin/python -m bench.tracing [--rounds 8] [--duration 4] [--connections 10]

Four copies of the service on one fresh PostgreSQL database (created and dropped here, as
`python -m bench` does), each uvicorn with one worker pinned to core 0:

- before: the code without tracing (`--before`, default the merge base with main), from
  `git archive`;
- off: this code with no OTEL_* variable (tracing off, the default);
- on: this code exporting every request's trace (no `traceparent`: each request is a new
  trace, sampled) over OTLP/HTTP to a receiver on 127.0.0.1, pinned to core 1 with wrk, that
  reads and discards what it is sent, as a collector would take it;
- on + resolver spans (GraphQL only): `bench/tracing_app.py`, Strawberry's span per resolver
  kept, to price the choice api/tracing.py made.

Users with 20 tasks each are seeded over HTTP; then wrk (`bench/lua/scenario.lua`, pinned to
core 1) sends REST `GET /api/tasks` (mode `list`) and GraphQL
`{ tasks(first: 20) { edges { node { id title completed createdAt } } } }` (mode
`gql_tasks`), each request with the next user's token, in rounds whose order rotates. CPU per
request: the server's utime + stime (/proc, all threads, so the exporter's too) over the round
divided by the requests wrk counted. Writes bench/RESULTS-tracing.md, and the ratios that
bench/RESULTS.md quotes to bench/RESULTS-tracing.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bench import pg
from bench.__main__ import git_head, machine_info
from bench.procs import REPO, CoreLoad, Server, free_port, settle, stop_process
from bench.report import TRACING_SUMMARY
from bench.seed import seed
from bench.wrk import WrkRun, check_tools

RESULTS = Path(__file__).resolve().parent / "RESULTS-tracing.md"
BEFORE, OFF, ON, RESOLVERS = "before", "off", "on", "on + resolver spans"
SCENARIOS = {
    "list": "REST `GET /api/tasks` (20 tasks)",
    "gql_tasks": "GraphQL `tasks(first: 20)`",
}


def log(message: str) -> None:
    print(f"[bench.tracing] {message}", file=sys.stderr, flush=True)


def receive(port: int) -> None:
    """An OTLP/HTTP endpoint that takes every export and keeps nothing (`--receive PORT`)."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


@dataclass
class Copy(Server):
    """A Server run from another directory (the code before tracing)."""

    cwd: Path = REPO

    def start(self, python: str, log_dir: Path) -> None:
        self.log_path = log_dir / f"{self.name.replace(' ', '_')}.log"
        with open(self.log_path, "wb") as sink:
            self.proc = subprocess.Popen(
                self.command(python),
                cwd=self.cwd,
                env=self.env,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )


def one_round(server: Server, others: list[Server], mode: str, data: Path, conns: int,
              secs: float) -> dict:  # fmt: skip
    run = WrkRun(server.url, mode, data, conns, secs)
    settle([server, *others])
    cpu_before, load = server.cpu(), CoreLoad(0)
    result = run.run()
    cpu = server.cpu() - cpu_before
    result["cpu_us_per_req"] = cpu * 1e6 / result["requests"] if result["requests"] else 0.0
    result["core0_others"] = load.others(cpu) or 0.0
    return result


def spread(values: list[float]) -> float:
    return (max(values) - min(values)) / statistics.median(values) * 100


def summary(opts: argparse.Namespace, meta: dict, runs: dict) -> dict:
    """The ratios bench/RESULTS.md quotes (bench/report.py `tracing_section`)."""
    conns = min(conns for _mode, conns in runs)
    rows = []
    for (mode, c), by_copy in runs.items():
        if c != conns:
            continue
        off_cpu = statistics.median(r["cpu_us_per_req"] for r in by_copy[OFF])
        off_rps = statistics.median(r["rps"] for r in by_copy[OFF])
        for copy, rounds in by_copy.items():
            cpu = statistics.median(r["cpu_us_per_req"] for r in rounds)
            rps = statistics.median(r["rps"] for r in rounds)
            rows.append(
                {
                    "scenario": SCENARIOS[mode],
                    "copy": copy,
                    "cpu_us": cpu,
                    "cpu_x_off": cpu / off_cpu,
                    "rps": rps,
                    "rps_x_off": rps / off_rps,
                }
            )
    return {
        "command": meta["command"],
        "date": meta["machine"]["date"],
        "git": meta["git"],
        "connections": conns,
        "rounds": opts.rounds,
        "rows": rows,
    }


def report(opts: argparse.Namespace, meta: dict, runs: dict) -> str:
    machine = meta["machine"]
    lines = [
        "# What tracing costs",
        "",
        f"`{meta['command']}` ({meta['minutes']:.0f} min), {machine['date']}, code "
        f"`{meta['git']}`, before: `{meta['before']}`.",
        "",
        f"- Machine: {machine['cpu_model']}, {machine['cpus']} cores"
        f"{' (' + machine['hypervisor'] + ' guest)' if machine['hypervisor'] else ''}, shared "
        f"with other work; Python {machine['python']}, PostgreSQL {machine['postgresql']}.",
        "- Copies of the service, uvicorn, one worker, `--loop uvloop --http httptools`, "
        "LOG_LEVEL=warning, all pinned to core 0; wrk (one thread) and the OTLP receiver pinned "
        "to core 1; one fresh PostgreSQL database (unpinned). "
        f"{opts.users} users with 20 tasks each, seeded over HTTP.",
        "- before: the code without tracing; off: with it, no OTEL_* variable; on: "
        "`OTEL_EXPORTER_OTLP_ENDPOINT` set, every request a sampled trace exported over "
        "OTLP/HTTP (batch processor defaults); on + resolver spans: the same with Strawberry's "
        "span per resolver kept (`bench/tracing_app.py`).",
        f"- {opts.rounds} rounds of {opts.duration:.0f} s per copy, scenario and concurrency, "
        f"the order rotating each round, after {opts.warmup:.0f} s of warm-up each. CPU per "
        "request: the server's utime + stime (all threads, the exporter's included) over the "
        "round divided by the requests wrk counted. Ratios are of medians, against `off`.",
        "",
        "| scenario | connections | copy | CPU us/req, median | x off | spread | req/s, median "
        "| x off | p50 / p95 ms | core 0 used by others |",
        "|---|---:|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    for (mode, conns), by_copy in runs.items():
        off_cpu = statistics.median(r["cpu_us_per_req"] for r in by_copy[OFF])
        off_rps = statistics.median(r["rps"] for r in by_copy[OFF])
        for copy, rounds in by_copy.items():
            cpu = [r["cpu_us_per_req"] for r in rounds]
            rps = [r["rps"] for r in rounds]
            lines.append(
                f"| {SCENARIOS[mode]} | {conns} | {copy} | **{statistics.median(cpu):.0f}** | "
                f"x{statistics.median(cpu) / off_cpu:.3f} | {spread(cpu):.0f}% | "
                f"{statistics.median(rps):.0f} | x{statistics.median(rps) / off_rps:.3f} | "
                f"{statistics.median(r['p50_us'] for r in rounds) / 1000:.1f} / "
                f"{statistics.median(r['p95_us'] for r in rounds) / 1000:.1f} | "
                f"{statistics.median(r['core0_others'] for r in rounds) * 100:.0f}% |"
            )
    errors = sum(
        int(r["non2xx"]) + int(r["gql_errors"]) + int(r["err_timeout"])
        for by_copy in runs.values()
        for rounds in by_copy.values()
        for r in rounds
    )
    lines += [
        "",
        f"Non-2xx responses, GraphQL errors and timeouts in the measured rounds: {errors}.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.tracing", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per round")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds per copy")
    parser.add_argument("--connections", default="10", help="comma-separated")
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--before", default=None, help="git revision without tracing")
    parser.add_argument(
        "--pg-admin-url",
        default=os.environ.get(
            "BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--receive", type=int, help=argparse.SUPPRESS)
    opts = parser.parse_args(argv)
    if opts.receive:
        receive(opts.receive)
        return 0
    missing = check_tools()
    if missing:
        print(f"missing tools: {', '.join(missing)} (apt-get install -y wrk)", file=sys.stderr)
        return 2
    pg.check_loopback(opts.pg_admin_url)
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    connections = [int(c) for c in opts.connections.split(",")]
    started = time.monotonic()
    git = git_head()
    before = opts.before or subprocess.run(
        ["git", "-C", str(REPO), "merge-base", "HEAD", "main"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    before = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", before],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    tmp = Path(tempfile.mkdtemp(prefix="todo_bench_tracing_"))
    db_url: str | None = None
    servers: dict[str, Server] = {}
    receiver = None
    try:
        old = tmp / "before"
        old.mkdir()
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", before], capture_output=True, check=True
        )
        subprocess.run(["tar", "-x", "-C", str(old)], input=archive.stdout, check=True)
        port = free_port()
        receiver = subprocess.Popen(
            ["taskset", "-c", "1", sys.executable, "-m", "bench.tracing", "--receive", str(port)],
            cwd=REPO,
            start_new_session=True,
        )
        db_url, pg_version = pg.create_database(opts.pg_admin_url)
        log(f"database {db_url.rsplit('/', 1)[-1]} (PostgreSQL {pg_version}); before = {before}")
        base = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("DATABASE_", "DB_", "OTEL_", "PYTHONPATH"))
        }
        env = dict(
            base,
            APP_ENV="development",
            DATABASE_URL=db_url,
            BETTER_AUTH_SECRET=f"bench-tracing-{os.urandom(24).hex()}",
            BCRYPT_ROUNDS="4",  # seeding only; no login is measured
            RATE_LIMIT_PER_ADDRESS="1000000000/minute",
            RATE_LIMIT_PER_EMAIL="1000000000/minute",
            LOG_LEVEL="warning",
            DATA_DIR=str(tmp / "data"),
            WEB_CONCURRENCY="1",
        )
        traced = dict(env, OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{port}")
        servers = {
            OFF: Server(OFF, "api.main:app", env, core=0),
            BEFORE: Copy(BEFORE, "api.main:app", env, core=0, cwd=old),
            ON: Server(ON, "api.main:app", traced, core=0),
            RESOLVERS: Server("on_resolvers", "bench.tracing_app:app", traced, core=0),
        }
        for server in servers.values():  # one after the other: the first migrates
            server.start(sys.executable, tmp)
            server.wait_ready()
        users = seed(servers[OFF].url, prefix="trace", users=opts.users, tasks_each=20)
        data = tmp / "tokens.tsv"
        data.write_text("".join(f"{u.token}\n" for u in users))
        log(f"seeded {len(users)} users x 20 tasks")

        runs: dict[tuple[str, int], dict[str, list[dict]]] = {}
        for mode in SCENARIOS:
            copies = [BEFORE, OFF, ON] + ([RESOLVERS] if mode == "gql_tasks" else [])
            for conns in connections:
                runs[mode, conns] = {copy: [] for copy in copies}
                for copy in copies:
                    if opts.warmup > 0:
                        WrkRun(servers[copy].url, mode, data, conns, opts.warmup).run()
                for n in range(opts.rounds):
                    order = copies[n % len(copies) :] + copies[: n % len(copies)]
                    for copy in order:
                        others = [s for k, s in servers.items() if k != copy]
                        result = one_round(servers[copy], others, mode, data, conns, opts.duration)
                        runs[mode, conns][copy].append(result)
                        log(
                            f"{mode} {conns} conns, round {n + 1}, {copy}: "
                            f"{result['rps']:.0f} req/s, {result['cpu_us_per_req']:.0f} us "
                            f"CPU/req, others on core 0 {result['core0_others'] * 100:.0f}%"
                        )
        meta = {
            "machine": machine_info(pg_version),
            "git": git,
            "before": before,
            "minutes": (time.monotonic() - started) / 60,
            "command": " ".join(["python -m bench.tracing", *(argv or sys.argv[1:])]),
        }
        text = report(opts, meta, runs)
        opts.out.write_text(text)
        if opts.out == RESULTS:
            TRACING_SUMMARY.write_text(json.dumps(summary(opts, meta, runs), indent=1) + "\n")
        print(text)
        return 0
    finally:
        for server in servers.values():
            server.stop()
        if receiver is not None:
            stop_process(receiver)
        if db_url is not None:
            try:
                pg.drop_database(opts.pg_admin_url, db_url)
            except Exception as exc:
                log(f"could not drop the benchmark database: {exc}")
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
