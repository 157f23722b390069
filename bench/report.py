"""RESULTS.md from a run's data (the same data is kept beside it as results JSON)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# Written by `python -m bench.tracing`; RESULTS.md quotes its ratios.
TRACING_SUMMARY = Path(__file__).resolve().parent / "RESULTS-tracing.json"

REST_TARGET_KEYS = ("rest_list_100", "rest_get_100", "rest_create_100", "rest_update_100")
RPS_RATIO_TARGET = 0.6
GQL_RATIO_TARGET = 0.3
P95_100_TARGET_MS = 200.0
P95_10_TARGET_MS = 20.0
LOGIN_FRACTION_TARGET = 0.9


def ms(us: float | None) -> str:
    return "-" if us is None else f"{us / 1000:.1f}"


def brief(result: dict) -> str:
    bad = int(result.get("non2xx", 0)) + int(result.get("gql_errors", 0))
    cpu = result.get("cpu_ms_per_req")
    cpu_text = f", {cpu:.2f} ms CPU/req" if cpu else ""
    errors = sum(
        int(result.get(k, 0)) for k in ("err_connect", "err_read", "err_write", "err_timeout")
    )
    return (
        f"{_rps(result['rps'])} req/s, p50 {ms(result['p50_us'])} "
        f"p95 {ms(result['p95_us'])} "
        f"p99 {ms(result['p99_us'])} ms{cpu_text}, non-2xx {bad}"
        + (f", socket errors {errors}" if errors else "")
    )


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def _fmt(value: float | None, spec: str = ".2f", suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def _rps(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.2f}"


def _bad(m: dict) -> int:
    return int(m.get("non2xx", 0)) + int(m.get("gql_errors", 0))


def _socket_errors(m: dict) -> int:
    return sum(int(m.get(k, 0)) for k in ("err_connect", "err_read", "err_write", "err_timeout"))


def _scenario_rows(results: dict, connections: int) -> list[str]:
    rows = [
        "| scenario | service req/s | floor req/s | ratio | service p50 / p95 / p99 ms "
        "| floor p50 / p95 / p99 ms | CPU ms/req service / floor | CPU ratio "
        "| non-2xx service / floor "
        "| core 0 used by others, service / floor rounds |",
        "|---|---:|---:|---:|---|---|---|---:|---|---|",
    ]
    for key, r in results.items():
        if r.get("connections") != connections or "median" not in r:
            continue
        s, f = r["median"]["service"], r["median"]["floor"]
        if not s or not f:
            continue
        rounds_s = " / ".join(_rps(x["rps"]) for x in r["rounds"]["service"])
        rows.append(
            f"| {r['title']} (`{key}`) | {_rps(s['rps'])} <sub>({rounds_s})</sub> "
            f"| {_rps(f['rps'])} "
            f"| **{_fmt(_ratio(s['rps'], f['rps']))}** "
            f"| {ms(s['p50_us'])} / {ms(s['p95_us'])} / {ms(s['p99_us'])} "
            f"| {ms(f['p50_us'])} / {ms(f['p95_us'])} / {ms(f['p99_us'])} "
            f"| {_fmt(s.get('cpu_ms_per_req'))} / {_fmt(f.get('cpu_ms_per_req'))} "
            f"| {_fmt(_ratio(s.get('cpu_ms_per_req'), f.get('cpu_ms_per_req')))} "
            f"| {_bad(s)} / {_bad(f)}"
            + (
                f" (socket errors {_socket_errors(s)} / {_socket_errors(f)})"
                if _socket_errors(s) or _socket_errors(f)
                else ""
            )
            + f" | {_pct(s.get('core0_others'))} / {_pct(f.get('core0_others'))} |"
        )
    return rows


def targets(data: dict) -> list[tuple[str, bool | None, str]]:
    """(target, met, evidence); met is None when the run did not measure it."""
    res = data["results"]
    out: list[tuple[str, bool | None, str]] = []

    def med(key: str, target: str) -> dict:
        return res.get(key, {}).get("median", {}).get(target, {}) if key in res else {}

    for key in REST_TARGET_KEYS:
        s, f = med(key, "service"), med(key, "floor")
        if not s or not f:
            out.append(
                (f"`{key}` >= {RPS_RATIO_TARGET}x floor req/s, p95 < 200 ms", None, "not run")
            )
            continue
        ratio = s["rps"] / f["rps"]
        p95 = s["p95_us"] / 1000
        met = ratio >= RPS_RATIO_TARGET and p95 < P95_100_TARGET_MS
        out.append(
            (
                f"`{key}` >= {RPS_RATIO_TARGET}x floor req/s and p95 < {P95_100_TARGET_MS:.0f} ms",
                met,
                f"{ratio:.2f}x, p95 {p95:.1f} ms",
            )
        )
    s, f = med("gql_tasks_100", "service"), med("gql_tasks_100", "floor")
    if s and f:
        ratio = s["rps"] / f["rps"]
        out.append(
            (
                f"GraphQL tasks(first: 20) >= {GQL_RATIO_TARGET}x floor (REST list)",
                ratio >= GQL_RATIO_TARGET,
                f"{ratio:.2f}x",
            )
        )
    else:
        out.append(("GraphQL tasks(first: 20) >= 0.3x floor", None, "not run"))
    tens = [(k, r) for k, r in res.items() if r.get("connections") == 10 and "median" in r]
    if tens:
        worst = [(r["median"]["service"]["p95_us"] / 1000, k) for k, r in tens]
        missed = [
            f"`{k}` {p:.1f} ms" for p, k in sorted(worst, reverse=True) if p >= P95_10_TARGET_MS
        ]
        top = max(worst)
        out.append(
            (
                f"at 10 connections p95 < {P95_10_TARGET_MS:.0f} ms for every non-login scenario",
                not missed,
                ("missed: " + ", ".join(missed)) if missed else f"worst `{top[1]}` {top[0]:.1f} ms",
            )
        )
    else:
        out.append(("at 10 connections p95 < 20 ms", None, "not run"))
    s = med("login_100", "service")
    if s:
        fraction = s["rps"] / data["bcrypt"]["per_second"]
        out.append(
            (
                f"login within 10% of the bcrypt rate on one core (>= {LOGIN_FRACTION_TARGET:.0%})",
                fraction >= LOGIN_FRACTION_TARGET,
                f"{s['rps']:.2f} req/s = {fraction:.0%} of {data['bcrypt']['per_second']:.2f}/s",
            )
        )
    else:
        out.append(("login within 10% of the bcrypt rate", None, "not run"))
    bad, where = 0, []
    for key, r in res.items():
        for target, runs in (r.get("rounds") or {}).items():
            for run in [*runs, *([r["warmup"][target]] if target in r.get("warmup", {}) else [])]:
                n = _bad(run) + _bad(run.get("login", {}))
                if n:
                    bad += n
                    where.append(f"`{key}` {target}: {n}")
    out.append(
        (
            "zero non-2xx responses (and GraphQL errors), every run including warm-ups",
            bad == 0,
            "none" if bad == 0 else f"{bad}: " + "; ".join(sorted(set(where))),
        )
    )
    return out


# What each kind of floor is, for the report (bench/floor.py says which kind it is).
FLOORS: dict[str, dict[str, str]] = {
    "one-statement floor": {
        "summary": "the leanest honest implementation of the REST contract, Starlette + "
        "asyncpg + orjson + PyJWT + passlib, one autocommit statement per request, no events",
        "notes": "The floor sends one autocommit statement per request: SELECT for reads, "
        "INSERT ... RETURNING, UPDATE ... WHERE id AND user_id RETURNING (only the fields sent, "
        "`updated_at` = GREATEST(now(), updated_at + 1 us)), DELETE ... WHERE id AND user_id; "
        "no NOTIFY (the REST contract has no live updates: the service's events are its own "
        "cost), no pool reset. It verifies every token (the service remembers verified ones). "
        "tests/test_bench_floor.py checks that it answers the contract as the service does.",
    },
    "statement-copying floor": {
        "summary": "Starlette + asyncpg + orjson + PyJWT, the same SQL, JSON shapes, token "
        "check and bcrypt",
        "notes": "The floor runs the statements the service sends for each operation: reads "
        "are single autocommit statements; writes a transaction with the service's `pg_notify` "
        "task event (update: SELECT ... FOR UPDATE, UPDATE, notify). What the service does that "
        "the floor does not (so the service can beat it): it remembers verified tokens until "
        "they expire (the floor verifies every token), hands UUIDs and datetimes to orjson as "
        "they are (the floor formats them in Python), sends no session reset when a connection "
        "goes back to the pool (the floor keeps asyncpg's default, one more round trip per "
        "request), and queues requests for connections first come, first served (db/store.py).",
    },
}


def floor_of(data: dict[str, Any]) -> dict[str, str]:
    """The floor a run measured against; runs from before floors were named copied the
    service's statements (bench/floor.py before the one-statement floor)."""
    floor = data.get("floor") or {
        "kind": "statement-copying floor",
        "description": f"statement-copying floor (bench/floor.py at {data['machine']['git']})",
    }
    return {**FLOORS.get(floor["kind"], {"summary": floor["kind"], "notes": ""}), **floor}


def markdown(data: dict[str, Any]) -> str:
    m, o, res = data["machine"], data["options"], data["results"]
    floor = floor_of(data)
    lines = [
        "# Benchmark results",
        "",
        "Generated by `bench/` (do not edit by hand; re-run to update). The service (FastAPI +",
        "Strawberry, statements on asyncpg through `db/store.py`) against its floor",
        "(`bench/floor.py`), on the same PostgreSQL database.",
        "",
        "## Machine and run",
        "",
        f"- Floor: **{floor['description']}**: {floor['summary']}.",
        f"- CPU: {m['cpu_model']}, {m['cpus']} cores"
        + (f" ({m['hypervisor']} guest)" if m.get("hypervisor") else "")
        + f", {m['memory_gib']} GiB memory, Linux {m['kernel']}",
        f"- Python {m['python']}, PostgreSQL {m['postgresql']}, {m['wrk']}",
        "- " + ", ".join(f"{k} {v}" for k, v in m["packages"].items()),
        f"- Date: {m['date']}; code: "
        + (
            f"`{m['git']}`"
            if data.get("git_start", m["git"]) == m["git"]
            else f"`{data['git_start']}` at the start (the pinned servers ran it), "
            f"`{m['git']}` at the end (the tree changed during the run: servers started "
            "later, in the workers phase, loaded the newer code)"
        ),
        f"- Command: `{o['command']}` ({data['elapsed_s'] / 60:.0f} min)",
        "- Each server: uvicorn, one worker, `--loop uvloop --http httptools`, no access log "
        "(LOG_LEVEL=warning), pinned to core 0 (`taskset -c 0`); wrk pinned to core 1, one "
        "thread; PostgreSQL unpinned on the same two cores.",
        f"- {o['rounds']} round(s) of {o['duration']:.0f} s per target (login "
        f"{o['login_duration']:.0f} s), service and floor alternating (A B, B A, ...), after "
        f"{o['warmup']:.0f} s of warm-up each; the tables show medians, service round values "
        f"in small print. BCRYPT_ROUNDS={o['bcrypt_rounds']}, rate limits off (10^9/minute), "
        f"DB pool: {o.get('pool_size', 20)} connections (asyncpg), the floor's the same.",
        f"- Data: {data['seed']['list_users']} users with 20 tasks each (list, get, update, "
        f"login), {data['seed']['write_users']} writers (create, delete), one user with "
        f"{data['seed']['big_user_tasks']} tasks; all seeded over HTTP through the REST API.",
        *(
            [
                f"- Live subscribers: one `taskEvents` subscription per seeded user "
                f"({sub['count']}) open on the service through every round, each event read "
                f"(`bench/subscribers.py`, on core 1): {sub['events']} events received."
            ]
            if (sub := data.get("subscribers"))
            else []
        ),
        "- CPU ms/req: the server process's utime + stime (/proc, all threads) over the round, "
        'divided by the responses wrk counted. "Core 0 used by others": the share of core 0 '
        "busy with anything but the server under test during its rounds (PostgreSQL backends, the "
        "idle other server, other users' processes, steal; median), the noise indicator.",
        "",
        "## Targets",
        "",
        "| target | met | measured |",
        "|---|---|---|",
    ]
    for name, met, evidence in targets(data):
        mark = "not run" if met is None else ("**met**" if met else "**missed**")
        lines.append(f"| {name} | {mark} | {evidence} |")
    lines += ["", "## 100 connections", "", *_scenario_rows(res, 100), ""]
    lines += ["## 10 connections", "", *_scenario_rows(res, 10), ""]

    lines += ["## Login and the bcrypt ceiling", ""]
    b = data["bcrypt"]
    lines.append(
        f"bcrypt_sha256 verify, cost {b['rounds']}, one thread on core 0, about 3 s a "
        f"measurement: **{b['per_second']:.2f}/s**"
        + (
            f" (median of {', '.join(f'{x:.2f}' for x in b['samples'])}: at start-up and just "
            "before and after the login rounds)."
            if len(b.get("samples", [])) > 1
            else "."
        )
    )
    if "login_100" in res:
        s, f = res["login_100"]["median"]["service"], res["login_100"]["median"]["floor"]
        lines += [
            "",
            "| | req/s | of the bcrypt rate | p50 / p95 ms | CPU ms/req |",
            "|---|---:|---:|---|---:|",
            f"| service | {s['rps']:.2f} | {s['rps'] / b['per_second']:.0%} | {ms(s['p50_us'])} / "
            f"{ms(s['p95_us'])} | {_fmt(s.get('cpu_ms_per_req'), '.0f')} |",
            f"| floor | {f['rps']:.2f} | {f['rps'] / b['per_second']:.0%} | {ms(f['p50_us'])} / "
            f"{ms(f['p95_us'])} | {_fmt(f.get('cpu_ms_per_req'), '.0f')} |",
            "",
            "At 100 connections login latency is queueing behind the hashes (about connections / "
            "rate seconds); the throughput is the number that matters.",
        ]
    lines.append("")

    if "list_under_login" in res:
        r = res["list_under_login"]
        lines += [
            "## REST list while 50 connections hammer login",
            "",
            "| | list p95 idle (10 conn.) | list p95 under login | x | list req/s idle "
            "| under login | login req/s meanwhile |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for target in ("service", "floor"):
            under = r["median"][target]
            idle = res.get("rest_list_10", {}).get("median", {}).get(target, {})
            lines.append(
                f"| {target} | {ms(idle.get('p95_us'))} ms | {ms(under['p95_us'])} ms "
                f"| {_fmt(_ratio(under['p95_us'], idle.get('p95_us')), '.1f')} "
                f"| {_fmt(idle.get('rps'), '.0f')} | {under['rps']:.0f} "
                f"| {r['login_rps'][target]:.2f} |"
            )
        lines.append("")

    if "gql_tasks_10k_100" in res or "gql_tasks_10k_10" in res:
        lines += [
            "## GraphQL tasks(first: 20): 10,000 tasks vs 20",
            "",
            "| connections | 20 tasks req/s | 10,000 tasks req/s | ratio | p95 20 / 10,000 ms |",
            "|---:|---:|---:|---:|---|",
        ]
        for c in (100, 10):
            a = res.get(f"gql_tasks_{c}", {}).get("median", {}).get("service")
            z = res.get(f"gql_tasks_10k_{c}", {}).get("median", {}).get("service")
            if a and z:
                lines.append(
                    f"| {c} | {a['rps']:.0f} | {z['rps']:.0f} | {z['rps'] / a['rps']:.2f} "
                    f"| {ms(a['p95_us'])} / {ms(z['p95_us'])} |"
                )
        lines.append("")

    if "workers" in res:
        med = res["workers"]["median"]
        lines += [
            "## 1 vs 2 workers (REST list, 100 connections, servers not pinned)",
            "",
            "Two cores in all, shared with wrk (pinned to core 1) and PostgreSQL.",
            "",
            "| server | req/s | p95 ms | CPU ms/req | 2 workers / 1 worker |",
            "|---|---:|---:|---:|---:|",
        ]
        for kind in ("service", "floor"):
            one, two = med.get(f"{kind}-1w"), med.get(f"{kind}-2w")
            for name, m_ in ((f"{kind}-1w", one), (f"{kind}-2w", two)):
                if not m_:
                    continue
                scale = (
                    _ratio(two["rps"], one["rps"])
                    if (name.endswith("2w") and one and two)
                    else None
                )
                lines.append(
                    f"| {name} | {m_['rps']:.0f} | {ms(m_['p95_us'])} "
                    f"| {_fmt(m_.get('cpu_ms_per_req'))} | {_fmt(scale)} |"
                )
        lines.append("")

    if "profile" in res:
        lines += ["## Profile", ""]
        for p in res["profile"]["runs"]:
            lines.append(
                f"- py-spy on the service during `{p['scenario']}`: `{p.get('flamegraph', '')}` "
                f"(flame graph), `{p.get('summary', '')}` (where the time goes), "
                f"`{p.get('raw', '')}` (collapsed stacks)."
            )
        lines += ["", "Findings and suggestions: `bench/PROFILE.md`.", ""]
    lines += tracing_section()
    lines += [
        "## Notes",
        "",
        f"- {floor['notes']} The check that the token's user still exists: "
        f"`{o.get('floor_user_check', 'eager')}` (lazy: only after a miss, as the service does "
        "for REST and GraphQL; eager: `SELECT 1 FROM users WHERE id = $1` on every request).",
        "- GraphQL scenarios have no floor of their own: their ratio is to the floor's REST "
        "equivalent (list, get, create).",
        "- The machine is shared and noisy; compare ratios measured in the same run rather than "
        "absolute numbers across runs.",
        "",
    ]
    return "\n".join(lines)


def tracing_section(path: Path = TRACING_SUMMARY) -> list[str]:
    """What tracing costs, from the last `python -m bench.tracing` (its own run: the main
    bench runs with tracing off)."""
    if not path.exists():
        return []
    data = json.loads(path.read_text())
    lines = [
        "## Tracing",
        "",
        f"From `{data['command']}` ({data['date']}, code `{data['git']}`; the whole run: "
        "`bench/RESULTS-tracing.md`). Server CPU per request and req/s at "
        f"{data['connections']} connections, medians of {data['rounds']} rounds, against "
        "tracing off (no OTEL_* variable); `on` exports every request's trace over OTLP/HTTP.",
        "",
        "| scenario | copy | CPU us/req | x off | req/s | x off |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for row in data["rows"]:
        lines.append(
            f"| {row['scenario']} | {row['copy']} | {row['cpu_us']:.0f} | "
            f"x{row['cpu_x_off']:.2f} | {row['rps']:.0f} | x{row['rps_x_off']:.2f} |"
        )
    return [*lines, ""]


def summary_text(data: dict) -> str:
    out = ["", "targets:"]
    for name, met, evidence in targets(data):
        mark = "n/a " if met is None else ("MET " if met else "MISS")
        out.append(f"  [{mark}] {name}: {evidence}")
    return "\n".join(out)
