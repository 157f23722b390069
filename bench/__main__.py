"""`python -m bench`: the service against its floor, on PostgreSQL, one worker on one core.

    .venv/bin/python -m bench            # full run (about half an hour), writes bench/RESULTS.md
    .venv/bin/python -m bench --quick    # smoke run: short rounds, one round each
    .venv/bin/python -m bench --profile  # also profile the service (py-spy) on its worst REST case

See the "Benchmarks" section of the README, bench/RESULTS.md and bench/PROFILE.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import secrets
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bench import pg, report
from bench import subscribers as live_subscribers
from bench.procs import REPO, CoreLoad, Server, settle
from bench.scenarios import BY_KEY, PHASES, SCENARIOS, UNDER_LOGIN, WORKERS, Scenario
from bench.seed import SeedUser, seed
from bench.wrk import WrkRun, check_tools

BENCH = Path(__file__).resolve().parent
SERVICE_APP = "api.main:app"
FLOOR_APP = "bench.floor:app"
TARGETS = ("service", "floor")


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


@dataclass
class Options:
    duration: float
    warmup: float
    rounds: int
    bcrypt_rounds: int
    list_users: int
    write_users: int
    big_tasks: int
    login_duration: float
    only: list[str]
    profile: bool
    profile_seconds: float
    workers_phase: bool
    admin_url: str
    floor_user_check: str
    out: Path
    quick: bool
    command: str
    subscribers: bool = False


@dataclass
class Bench:
    opts: Options
    tmp: Path
    servers: dict[str, Server]
    datasets: dict[str, Path] = field(default_factory=dict)
    token_by_user: dict[str, str] = field(default_factory=dict)
    delete_pool: deque[tuple[str, str]] = field(default_factory=deque)
    rates: dict[tuple[str, str], float] = field(default_factory=dict)  # (target, mode) -> rps
    results: dict[str, dict] = field(default_factory=dict)
    counter: int = 0

    # --- data --------------------------------------------------------------------------

    def write_dataset(self, name: str, rows: list[tuple[str, ...]]) -> Path:
        path = self.tmp / f"{name}.tsv"
        path.write_text("".join("\t".join(row) + "\n" for row in rows))
        self.datasets[name] = path
        return path

    def _next_path(self, stem: str) -> Path:
        self.counter += 1
        return self.tmp / f"{stem}-{self.counter}"

    def _collect_created(self, record: Path) -> int:
        added = 0
        for part in sorted(record.parent.glob(record.name + ".*")):
            for line in part.read_text().splitlines():
                user_id, _, task_id = line.partition("\t")
                token = self.token_by_user.get(user_id)
                if token and len(task_id) == 36:
                    self.delete_pool.append((token, task_id))
                    added += 1
            part.unlink()
        return added

    def _top_up_delete_pool(self, wanted: int) -> None:
        """Create tasks (through the floor's POST /api/tasks, the fastest) until `wanted`."""
        floor = self.servers["floor"]
        for _ in range(6):
            deficit = wanted - len(self.delete_pool)
            if deficit <= 0:
                return
            rate = max(self.rates.get(("floor", "create"), 1000.0), 300.0)
            seconds = min(60, math.ceil(deficit / rate * 1.3) + 1)
            log(f"  delete pool: {len(self.delete_pool)} of {wanted}; creating for {seconds}s")
            record = self._next_path("created")
            run = WrkRun(
                floor.url, "create", self.datasets["write_tokens"], 100, seconds, record=record
            )
            result = run.run()
            self.rates.setdefault(("floor", "create"), result["rps"])
            self._collect_created(record)
        if len(self.delete_pool) < wanted:
            raise RuntimeError(f"could not seed {wanted} tasks to delete")

    def data_for(self, target: str, mode: str, name: str, connections: int, seconds: float):  # type: ignore[no-untyped-def]
        """The data file for one run, and a callback to run after it (delete pool bookkeeping)."""
        if name != "delete_pool":
            return self.datasets[name], lambda result: None
        rate = max(
            self.rates.get((target, "delete"), 0.0),
            self.rates.get((target, "create"), 0.0),
            self.rates.get(("floor", "create"), 0.0) if target == "floor" else 0.0,
            500.0,
        )
        wanted = int(rate * seconds * 1.6) + 4 * connections + 100
        self._top_up_delete_pool(wanted)
        items = [self.delete_pool.popleft() for _ in range(wanted)]
        path = self._next_path("delete")
        path.write_text("".join(f"{t}\t{i}\n" for t, i in items))

        def give_back(result: dict) -> None:
            # One wrk thread takes the items in order: the ones past what it sent (plus every
            # connection's last in-flight request) were never used.
            used = int(result["requests"]) + int(result["err_timeout"]) + 2 * connections + 10
            self.delete_pool.extendleft(reversed(items[used:]))
            if result.get("exhausted"):
                log(f"  WARNING: delete pool exhausted ({result['exhausted']} reused ids)")

        return path, give_back

    # --- runs -----------------------------------------------------------------------------

    def one_run(
        self,
        target: str,
        mode: str,
        data: str,
        connections: int,
        seconds: float,
        timeout: float,
        *,
        measured: bool,
    ) -> dict:
        server = self.servers[target]
        path, after = self.data_for(target, mode, data, connections, seconds)
        record = self._next_path("created") if mode == "create" else None
        run = WrkRun(server.url, mode, path, connections, seconds, timeout=timeout, record=record)
        settle(list(self.live_servers()))
        cpu_before, load = server.cpu(), CoreLoad(0)
        result = run.run()
        cpu = server.cpu() - cpu_before
        result["core0_others"] = load.others(cpu)
        after(result)
        if record is not None:
            self._collect_created(record)
        result["cpu_s"] = cpu
        result["cpu_ms_per_req"] = cpu * 1000 / result["requests"] if result["requests"] else None
        if measured or (target, mode) not in self.rates:
            self.rates[target, mode] = result["rps"]
        return result

    def live_servers(self):  # type: ignore[no-untyped-def]
        return (s for s in self.servers.values() if s.alive())

    def run_scenario(self, scenario: Scenario) -> None:
        opts = self.opts
        seconds = opts.login_duration if scenario.is_login else opts.duration
        log(f"scenario {scenario.key}: {scenario.title}, {scenario.connections} connections")
        plan = {
            "service": (scenario.service_mode, scenario.service_data),
            "floor": (scenario.floor_mode, scenario.floor_data),
        }
        rounds: dict[str, list[dict]] = {t: [] for t in TARGETS}
        warm: dict[str, dict] = {}
        if opts.warmup > 0 and not scenario.is_login:  # bcrypt needs no warming
            for target in TARGETS:
                mode, data = plan[target]
                warm[target] = self.one_run(
                    target,
                    mode,
                    data,
                    scenario.connections,
                    opts.warmup,
                    scenario.timeout,
                    measured=False,
                )
        for r in range(opts.rounds):
            order = TARGETS if r % 2 == 0 else TARGETS[::-1]  # A B, B A, A B ...
            for target in order:
                mode, data = plan[target]
                result = self.one_run(
                    target,
                    mode,
                    data,
                    scenario.connections,
                    seconds,
                    scenario.timeout,
                    measured=True,
                )
                rounds[target].append(result)
                log(f"  {target:7} round {r + 1}: {report.brief(result)}")
        self.results[scenario.key] = {
            "key": scenario.key,
            "title": scenario.title,
            "surface": scenario.surface,
            "connections": scenario.connections,
            "service_mode": scenario.service_mode,
            "floor_mode": scenario.floor_mode,
            "seconds": seconds,
            "rounds": rounds,
            "warmup": warm,
            "median": {t: median_result(rounds[t]) for t in TARGETS},
        }

    def run_under_login(self) -> None:
        """REST list at 10 connections while 50 more hammer login, on each target in turn."""
        opts = self.opts
        log("phase list_under_login: REST list (10 connections) while 50 connections log in")
        rounds: dict[str, list[dict]] = {t: [] for t in TARGETS}
        for r in range(opts.rounds):
            order = TARGETS if r % 2 == 0 else TARGETS[::-1]
            for target in order:
                server = self.servers[target]
                settle(list(self.live_servers()))
                login = WrkRun(
                    server.url, "login", self.datasets["logins"], 50, opts.duration + 3, timeout=120
                )
                listing = WrkRun(
                    server.url, "list", self.datasets["list_tokens"], 10, opts.duration
                )
                login_proc = login.start()
                try:
                    time.sleep(1.5)  # let the bcrypt pool fill up first
                    cpu_before = server.cpu()
                    result = listing.run()
                    result["cpu_s"] = server.cpu() - cpu_before
                    result["cpu_ms_per_req"] = None  # shared with login: not per list request
                finally:
                    login_result = login.finish(login_proc)
                result["login"] = login_result
                rounds[target].append(result)
                log(
                    f"  {target:7} round {r + 1}: list {report.brief(result)}; "
                    f"login {login_result['rps']:.1f} req/s"
                )
        self.results[UNDER_LOGIN] = {
            "key": UNDER_LOGIN,
            "rounds": rounds,
            "median": {t: median_result(rounds[t]) for t in TARGETS},
            "login_rps": {
                t: statistics.median(x["login"]["rps"] for x in rounds[t]) for t in TARGETS
            },
        }

    def run_workers(self, service_env: dict[str, str], floor_env: dict[str, str]) -> None:
        """REST list at 100 connections: 1 vs 2 workers, servers not pinned.

        The pinned servers are stopped first. The service's two configurations alternate in
        rounds, then the floor's (four servers at once would need more PostgreSQL connections
        than a default server allows).
        """
        opts = self.opts
        for server in self.servers.values():
            server.stop()
        phase: dict[str, list[dict]] = {}
        for kind, app, env in (
            ("service", SERVICE_APP, service_env),
            ("floor", FLOOR_APP, floor_env),
        ):
            configs = {}
            for workers in (1, 2):
                name = f"{kind}-{workers}w"
                wenv = dict(env, WEB_CONCURRENCY=str(workers))
                configs[name] = Server(name, app, wenv, workers=workers, core=None)
            log(f"phase workers: {kind} with 1 and 2 workers, not pinned")
            try:
                for server in configs.values():
                    server.start(sys.executable, self.tmp)
                for server in configs.values():
                    server.wait_ready()
                self.servers = dict(configs)
                for name, server in configs.items():
                    phase[name] = []
                    if opts.warmup > 0:
                        self._list_run(server, opts.warmup)
                for r in range(opts.rounds):
                    names = list(configs) if r % 2 == 0 else list(configs)[::-1]
                    for name in names:
                        result = self._list_run(configs[name], opts.duration)
                        phase[name].append(result)
                        log(f"  {name:10} round {r + 1}: {report.brief(result)}")
            finally:
                for server in configs.values():
                    server.stop()
        self.results[WORKERS] = {
            "key": WORKERS,
            "rounds": phase,
            "median": {name: median_result(rs) for name, rs in phase.items()},
        }

    def _list_run(self, server: Server, seconds: float) -> dict:
        settle(list(self.live_servers()))
        run = WrkRun(server.url, "list", self.datasets["list_tokens"], 100, seconds)
        cpu_before = server.cpu()
        result = run.run()
        cpu = server.cpu() - cpu_before
        result["cpu_s"] = cpu
        result["cpu_ms_per_req"] = cpu * 1000 / result["requests"] if result["requests"] else None
        return result

    def run_profile(self, scenario: Scenario) -> dict:
        """py-spy on the pinned service while wrk drives `scenario` (raw stacks + flame graph)."""
        py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if not Path(py_spy).exists():
            raise RuntimeError("py-spy is not installed (pip install py-spy)")
        out_dir = BENCH / "profile"
        out_dir.mkdir(exist_ok=True)
        server = self.servers["service"]
        outputs = {}
        for fmt, suffix in (("raw", "txt"), ("flamegraph", "svg")):
            output = out_dir / f"{scenario.key}.{suffix}"
            settle(list(self.live_servers()))
            path, after = self.data_for(
                "service",
                scenario.service_mode,
                scenario.service_data,
                scenario.connections,
                self.opts.profile_seconds + 2,
            )
            run = WrkRun(
                server.url,
                scenario.service_mode,
                path,
                scenario.connections,
                self.opts.profile_seconds + 2,
                timeout=scenario.timeout,
            )
            log(f"profile {scenario.key} ({fmt}) -> {output.relative_to(REPO)}")
            wrk_proc = run.start()
            spy = None
            try:
                time.sleep(1)
                spy = subprocess.Popen(
                    [
                        py_spy,
                        "record",
                        "--pid",
                        str(server.pid),
                        "--duration",
                        str(int(self.opts.profile_seconds)),
                        "--rate",
                        "250",
                        "--nonblocking",
                        "--format",
                        fmt,
                        "--output",
                        str(output),
                    ],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                    start_new_session=True,
                )
                spy_out, _ = spy.communicate(timeout=self.opts.profile_seconds + 60)
                if spy.returncode != 0:
                    log(f"  py-spy failed: {spy_out.strip()[-400:]}")
            finally:
                if spy is not None and spy.poll() is None:
                    spy.kill()
                    spy.wait()
                result = run.finish(wrk_proc)
                after(result)
            outputs[fmt] = str(output.relative_to(REPO))
            outputs[f"{fmt}_rps"] = result["rps"]
            if fmt == "raw" and output.exists():
                from bench.profile_summary import summarize

                summary = output.with_suffix(".md")
                summary.write_text(f"# py-spy: `{scenario.key}`\n\n" + summarize(output))
                outputs["summary"] = str(summary.relative_to(REPO))
        return outputs


def median_result(results: list[dict]) -> dict:
    """Each metric's median over the rounds; error counts summed."""
    if not results:
        return {}
    summed = (
        "non2xx",
        "gql_errors",
        "err_connect",
        "err_read",
        "err_write",
        "err_timeout",
        "requests",
        "exhausted",
    )
    out: dict = {}
    for name in results[0]:
        values = [r[name] for r in results if isinstance(r.get(name), (int, float))]
        if not values:
            continue
        out[name] = sum(values) if name in summed else statistics.median(values)
    return out


# --- setup ------------------------------------------------------------------------------------


def bcrypt_rate(rounds: int, seconds: float) -> dict:
    out = subprocess.run(
        [
            "taskset",
            "-c",
            "0",
            sys.executable,
            "-m",
            "bench.bcrypt_rate",
            "--rounds",
            str(rounds),
            "--seconds",
            str(seconds),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=seconds * 4 + 60,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def machine_info(pg_version: str) -> dict:
    def run(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    lscpu = {}
    for line in run(["lscpu"]).splitlines():
        key, _, value = line.partition(":")
        lscpu[key.strip()] = value.strip()
    mem_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kb = int(line.split()[1])
    versions = {}
    for dist in (
        "fastapi",
        "starlette",
        "strawberry-graphql",
        "sqlalchemy",
        "asyncpg",
        "uvicorn",
        "uvloop",
        "httptools",
        "orjson",
        "pyjwt",
        "libpass",
        "bcrypt",
    ):
        try:
            from importlib.metadata import version

            versions[dist] = version(dist)
        except Exception:
            versions[dist] = "?"
    return {
        "cpu_model": lscpu.get("Model name", platform.processor()),
        "cpus": os.cpu_count(),
        "hypervisor": lscpu.get("Hypervisor vendor", ""),
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "postgresql": pg_version,
        "wrk": (run(["wrk", "-v"]).splitlines() or ["?"])[0].split(" [")[0],
        "packages": versions,
        "git": git_head(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def floor_kind() -> dict[str, str]:
    """Which floor the figures are measured against: its kind, and the commit that last
    changed bench/floor.py (marked when the file differs from it)."""
    from bench.floor import KIND

    def run(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    path = "bench/floor.py"
    commit = run(["git", "-C", str(REPO), "log", "-1", "--format=%h", "--", path]) or "?"
    dirty = bool(run(["git", "-C", str(REPO), "status", "--porcelain", "--", path]))
    code = f"{path} at {commit}{' with uncommitted changes' if dirty else ''}"
    return {"kind": KIND, "code": code, "description": f"{KIND} ({code})"}


def git_head() -> str:
    """The checked-out commit, and whether tracked files differ from it."""

    def run(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    commit = run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"]) or "?"
    # The run's own output (results, profiles) does not make the code under test dirty.
    status = ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no", "--", "."]
    outputs = [":!bench/RESULTS.md", ":!bench/RESULTS.json", ":!bench/profile"]
    dirty = bool(run(status + outputs))
    return f"{commit}{' (with uncommitted changes)' if dirty else ''}"


def parse_args(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 3 s rounds, 1 round, 1 s warm-up, fewer users",
    )
    parser.add_argument("--duration", type=float, help="seconds per round (default 10)")
    parser.add_argument("--warmup", type=float, help="warm-up seconds per target (default 2)")
    parser.add_argument("--rounds", type=int, help="A/B rounds per scenario (default 3)")
    parser.add_argument(
        "--bcrypt-rounds",
        type=int,
        default=12,
        help="BCRYPT_ROUNDS for service and floor (default 12)",
    )
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated scenario keys or prefixes (e.g. rest_list,gql_) "
        f"and phases ({', '.join(PHASES)}); default: all",
    )
    parser.add_argument("--no-workers", action="store_true", help="skip the 1 vs 2 workers phase")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="py-spy the service on its worst REST scenario (needs py-spy)",
    )
    parser.add_argument("--profile-seconds", type=float, default=15)
    parser.add_argument(
        "--pg-admin-url",
        default=os.environ.get(
            "BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
        help="where to create (and drop) the benchmark database; loopback only",
    )
    parser.add_argument(
        "--floor-user-check",
        choices=("lazy", "eager"),
        default="lazy",
        help="when the floor checks that the token's user exists: only after a "
        "miss, as the service does (lazy, default), or on every request",
    )
    parser.add_argument(
        "--subscribers",
        action="store_true",
        help="keep a live taskEvents subscription open on the service for every seeded user "
        "during the rounds (a separate process on wrk's core, reading every event)",
    )
    parser.add_argument("--out", type=Path, default=BENCH / "RESULTS.md")
    args = parser.parse_args(argv)
    quick = args.quick
    duration = args.duration or (3.0 if quick else 10.0)
    return Options(
        duration=duration,
        warmup=args.warmup if args.warmup is not None else (1.0 if quick else 2.0),
        rounds=args.rounds or (1 if quick else 3),
        bcrypt_rounds=args.bcrypt_rounds,
        list_users=20 if quick else 100,
        write_users=10 if quick else 20,
        big_tasks=10_000,
        login_duration=duration if quick else max(duration, 15.0),
        only=[x.strip() for x in args.only.split(",") if x.strip()],
        profile=args.profile,
        profile_seconds=args.profile_seconds,
        workers_phase=not args.no_workers,
        admin_url=args.pg_admin_url,
        floor_user_check=args.floor_user_check,
        out=args.out,
        quick=quick,
        subscribers=args.subscribers,
        command=" ".join(["python -m bench", *(shlex.quote(a) for a in (argv or sys.argv[1:]))]),
    )


def selected(opts: Options, key: str) -> bool:
    return not opts.only or any(key == o or key.startswith(o) for o in opts.only)


def _terminate(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    missing = check_tools()
    if missing:
        print(
            f"missing tools: {', '.join(missing)} (apt-get install -y wrk util-linux)",
            file=sys.stderr,
        )
        return 2
    if (os.cpu_count() or 1) < 2:
        print("needs at least 2 CPUs (server on core 0, wrk on core 1)", file=sys.stderr)
        return 2
    pg.check_loopback(opts.admin_url)
    signal.signal(signal.SIGTERM, _terminate)
    started = time.monotonic()
    git_start = git_head()  # the code the servers load; the tree may change during a run
    floor = floor_kind()
    tmp = Path(tempfile.mkdtemp(prefix="todo_bench_"))
    db_url: str | None = None
    bench: Bench | None = None
    subscribers: tuple[subprocess.Popen[bytes], Path] | None = None
    try:
        db_url, pg_version = pg.create_database(opts.admin_url)
        log(f"database {db_url.rsplit('/', 1)[-1]} (PostgreSQL {pg_version}); work dir {tmp}")
        secret = secrets.token_urlsafe(48)
        base_env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "DB_"))}
        service_env = dict(
            base_env,
            APP_ENV="development",
            DATABASE_URL=db_url,
            BETTER_AUTH_SECRET=secret,
            BCRYPT_ROUNDS=str(opts.bcrypt_rounds),
            RATE_LIMIT_PER_ADDRESS="1000000000/minute",
            RATE_LIMIT_PER_EMAIL="1000000000/minute",
            LOG_LEVEL="warning",
            DATA_DIR=str(tmp / "data"),
            WEB_CONCURRENCY="1",
        )
        # The service's pool size (DB_POOL_SIZE, default 20) is the floor's too.
        pool_size = int(os.environ.get("DB_POOL_SIZE", "20"))
        floor_env = dict(
            base_env,
            FLOOR_DATABASE_URL=db_url,
            BETTER_AUTH_SECRET=secret,
            BCRYPT_ROUNDS=str(opts.bcrypt_rounds),
            FLOOR_POOL_MIN=str(pool_size),
            FLOOR_POOL_MAX=str(pool_size),
            FLOOR_USER_CHECK=opts.floor_user_check,
        )
        servers = {
            "service": Server("service", SERVICE_APP, service_env, core=0),
            "floor": Server("floor", FLOOR_APP, floor_env, core=0),
        }
        bench = Bench(opts, tmp, servers)
        servers["service"].start(sys.executable, tmp)
        servers["service"].wait_ready()  # it creates the tables the floor uses
        servers["floor"].start(sys.executable, tmp)
        servers["floor"].wait_ready()
        log(
            f"service pid {servers['service'].pid} on {servers['service'].url}, "
            f"floor pid {servers['floor'].pid} on {servers['floor'].url}, both on core 0"
        )

        log(f"bcrypt rate (cost {opts.bcrypt_rounds}, one thread on core 0)")
        rate = bcrypt_rate(opts.bcrypt_rounds, 3.0)
        rate["samples"] = [rate["per_second"]]
        log(f"  {rate['per_second']:.2f} verifies/s")

        log(
            f"seeding over HTTP: {opts.list_users} users x 20 tasks, {opts.write_users} writers, "
            f"1 user x {opts.big_tasks} tasks"
        )
        t0 = time.monotonic()
        url = servers["service"].url
        list_users = seed(url, prefix="list", users=opts.list_users, tasks_each=20)
        write_users = seed(url, prefix="write", users=opts.write_users, tasks_each=0)
        big = seed(url, prefix="big", users=1, tasks_each=0)[0]
        if any(selected(opts, s.key) for s in SCENARIOS if "10k" in s.key):
            # 10,000 creates through the floor's POST /api/tasks (the same rows, made faster
            # than the service makes them; the list users' tasks went through the service).
            big.task_ids = seed_big(servers["floor"].url, big, opts.big_tasks)
        log(f"  seeded in {time.monotonic() - t0:.0f}s")
        prepare_datasets(bench, list_users, write_users, big)
        if opts.subscribers:
            subscribers = live_subscribers.start(
                servers["service"].url, [u.token for u in list_users + write_users], tmp
            )
            log(
                f"  {len(list_users) + len(write_users)} live subscriptions on the service "
                f"(pid {subscribers[0].pid}, core 1)"
            )

        for scenario in SCENARIOS:
            if selected(opts, scenario.key):
                if scenario.is_login:
                    # The machine is shared: measure the ceiling again next to the login rounds.
                    rate["samples"].append(bcrypt_rate(opts.bcrypt_rounds, 3.0)["per_second"])
                bench.run_scenario(scenario)
                if scenario.is_login:
                    settle(list(bench.live_servers()))
                    rate["samples"].append(bcrypt_rate(opts.bcrypt_rounds, 3.0)["per_second"])
                    rate["per_second"] = statistics.median(rate["samples"])
                    log(
                        f"  bcrypt rate around login: {rate['samples']} -> median "
                        f"{rate['per_second']:.2f}/s"
                    )
        if selected(opts, UNDER_LOGIN):
            bench.run_under_login()
        if opts.profile:
            profiles = [
                {"scenario": scenario.key, **bench.run_profile(scenario)}
                for scenario in choose_profile_scenarios(bench)
            ]
            bench.results["profile"] = {"runs": profiles}
        if opts.workers_phase and selected(opts, WORKERS):
            bench.run_workers(service_env, floor_env)

        subscribed = None
        if subscribers is not None:
            subscribed = {
                "count": len(list_users) + len(write_users),
                "events": live_subscribers.stop(subscribers),
            }
            subscribers = None
            log(f"  subscribers: {subscribed['count']}, {subscribed['events']} events received")
        elapsed = time.monotonic() - started
        data = {
            "subscribers": subscribed,
            "machine": machine_info(pg_version),
            "floor": floor,
            "options": {
                **{k: (str(v) if isinstance(v, Path) else v) for k, v in vars(opts).items()},
                "pool_size": pool_size,
            },
            "bcrypt": rate,
            "seed": {
                "list_users": len(list_users),
                "write_users": len(write_users),
                "big_user_tasks": len(big.task_ids),
            },
            "results": bench.results,
            "elapsed_s": elapsed,
            "git_start": git_start,
        }
        json_path = opts.out.with_suffix(".json")
        json_path.write_text(json.dumps(data, indent=1, default=str) + "\n")
        opts.out.write_text(report.markdown(data))
        log(f"wrote {opts.out} and {json_path} in {elapsed / 60:.1f} min")
        print(report.summary_text(data))
        return 0
    finally:
        if subscribers is not None:
            subscribers[0].terminate()
        if bench is not None:
            for server in bench.servers.values():
                server.stop()
        if db_url is not None:
            try:
                pg.drop_database(opts.admin_url, db_url)
            except Exception as exc:
                log(f"could not drop the benchmark database: {exc}")
        shutil.rmtree(tmp, ignore_errors=True)


def seed_big(url: str, user: SeedUser, n: int) -> list[str]:
    """n tasks for one user, through the REST API."""
    import asyncio

    from bench.seed import _create, _gather_limited

    async def go() -> list[str]:
        import httpx

        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
            return await _gather_limited(64, [_create(client, user, i) for i in range(n)])

    return asyncio.run(go())


def prepare_datasets(
    bench: Bench, list_users: list[SeedUser], write_users: list[SeedUser], big: SeedUser
) -> None:
    rng = random.Random(7)
    pairs = [(u.token, t) for u in list_users for t in u.task_ids]
    rng.shuffle(pairs)
    bench.write_dataset("list_tokens", [(u.token,) for u in list_users])
    bench.write_dataset("list_pairs", pairs)
    bench.write_dataset("write_tokens", [(u.token,) for u in write_users])
    bench.write_dataset("logins", [(u.email, u.password) for u in list_users])
    bench.write_dataset("big_token", [(big.token,)])
    bench.token_by_user = {u.user_id: u.token for u in write_users}


def choose_profile_scenarios(bench: Bench) -> list[Scenario]:
    """The slowest REST scenario at 100 connections, the one furthest below its floor, and
    GraphQL tasks(first: 20) (the GraphQL target)."""
    measured = []
    for key in (
        "rest_list_100",
        "rest_get_100",
        "rest_create_100",
        "rest_update_100",
        "rest_delete_100",
    ):
        result = bench.results.get(key)
        if result and result["median"]["floor"].get("rps"):
            s, f = result["median"]["service"]["rps"], result["median"]["floor"]["rps"]
            measured.append((s, s / f, key))
    if not measured:
        return [BY_KEY["rest_list_100"]]
    slowest = min(measured)[2]
    worst = min(measured, key=lambda m: m[1])[2]
    keys = [slowest, worst]
    if bench.results.get("gql_tasks_100"):
        keys.append("gql_tasks_100")
    return [BY_KEY[k] for k in dict.fromkeys(keys)]


if __name__ == "__main__":
    sys.exit(main())
