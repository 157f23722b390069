"""Where the time goes, from py-spy's collapsed stacks (`py-spy record --format raw`).

    python -m bench.profile_summary bench/profile/rest_list_100.txt [--top 30]

Prints markdown: samples by library (each sample charged to the innermost frame that belongs to
a known library or to the service's own code, so stdlib work is charged to whoever asked for
it), inclusive shares of the operations that matter (token check, dependency resolution, pool
checkout, transactions, serialization...), and the hottest functions.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")

LIBRARIES = {
    "sqlalchemy": "SQLAlchemy",
    "asyncpg": "asyncpg (driver)",
    "fastapi": "FastAPI",
    "starlette": "Starlette",
    "uvicorn": "uvicorn",
    "jwt": "PyJWT",
    "strawberry": "Strawberry",
    "graphql": "graphql-core",
    "aiodataloader": "aiodataloader",
    "passlib": "passlib/bcrypt",
    "bcrypt": "passlib/bcrypt",
    "limits": "limits (rate limiter)",
    "pydantic": "pydantic",
    "prometheus_client": "prometheus_client",
    "api": "service: api/",
    "db": "service: db/",
    "rest_facade": "service: rest_facade/",
    "graphql_schema": "service: graphql_schema/",
    "bench": "bench",
}

# (label, predicate over (func, file)) - a sample counts once if any frame matches.
OPERATIONS: list[tuple[str, str, str]] = [
    ("middleware: request log (api/logging.py)", "api/logging.py", ""),
    ("middleware: metrics (api/metrics.py)", "api/metrics.py|prometheus_client/", ""),
    ("middleware: service (api/middleware.py)", "api/middleware.py", ""),
    ("Starlette CORS middleware", "starlette/middleware/cors.py", ""),
    (
        "FastAPI solve_dependencies (incl. the token check it awaits)",
        "",
        "fastapi/dependencies/utils.py:solve_dependencies",
    ),
    (
        "token check: identify (JWT only, REST) / authenticate (JWT + user query, GraphQL)",
        "",
        "core/accounts.py:identify|core/accounts.py:authenticate"
        "|core/accounts.py:authenticate_until",
    ),
    ("  PyJWT decode/verify", "jwt/", ""),
    ("SQLAlchemy: all frames", "sqlalchemy/", ""),
    ("  pool checkout/checkin", "sqlalchemy/pool/", ""),
    (
        "  pre-ping (adapter _async_ping: BEGIN, `;`, ROLLBACK)",
        "",
        "sqlalchemy/dialects/postgresql/asyncpg.py:_async_ping",
    ),
    ("  statement construction, compile, cache key", "sqlalchemy/sql/", ""),
    (
        "  ORM session / transaction bookkeeping",
        "sqlalchemy/orm/session.py|sqlalchemy/ext/asyncio/session.py|sqlalchemy/orm/state_changes.py",
        "",
    ),
    ("  result rows processing", "sqlalchemy/engine/result.py|sqlalchemy/engine/cursor.py", ""),
    ("asyncpg: all frames", "asyncpg/", ""),
    ("  BEGIN (Transaction.start)", "", "asyncpg/transaction.py:start"),
    (
        "  COMMIT / ROLLBACK",
        "",
        "asyncpg/transaction.py:__commit|asyncpg/transaction.py:__rollback|asyncpg/transaction.py:commit|asyncpg/transaction.py:rollback|asyncpg/transaction.py:_Transaction__commit|asyncpg/transaction.py:_Transaction__rollback",
    ),
    ("  the queries themselves (prepared statements)", "asyncpg/prepared_stmt.py", ""),
    ("REST body parse (rest_facade/body.py)", "rest_facade/body.py", ""),
    ("REST serializers (task_json, strftime)", "rest_facade/serializers.py", ""),
    ("task events (core/events.py: pg_notify payload)", "core/events.py", ""),
    ("GraphQL: strawberry + graphql-core", "strawberry/|graphql/", ""),
    ("logging module", "logging/", ""),
]


def parse(path: Path) -> list[tuple[list[tuple[str, str]], int]]:
    stacks = []
    for line in path.read_text(errors="replace").splitlines():
        line = line.strip()
        if not line:
            continue
        stack_text, _, count = line.rpartition(" ")
        try:
            n = int(count)
        except ValueError:
            continue
        frames = []
        for raw in stack_text.split(";"):
            m = _FRAME.match(raw.strip())
            if m:
                frames.append((m["func"].strip(), m["file"]))
            else:
                frames.append((raw.strip(), ""))
        stacks.append((frames, n))
    return stacks


def _top(file: str) -> str:
    file = file.replace("\\", "/")
    for marker in ("site-packages/", "/work/main/"):
        if marker in file:
            file = file.split(marker, 1)[1]
    return file.split("/", 1)[0].removesuffix(".py")


def library_of(frames: list[tuple[str, str]]) -> str:
    """The innermost frame's library; stdlib frames are charged to their caller's library."""
    for func, file in reversed(frames):
        top = _top(file)
        if top in LIBRARIES:
            return LIBRARIES[top]
        if file.endswith("asyncio/events.py") and func.startswith("_run"):
            return "event loop (asyncio/uvloop callbacks)"
    leaf = frames[-1][1] if frames else ""
    return f"stdlib/other: {_top(leaf) or '?'}"


def _matches(frames: list[tuple[str, str]], file_sub: str, funcs: str) -> bool:
    files = [f for f in file_sub.split("|") if f]
    targets = [t.split(":", 1) for t in funcs.split("|") if t]
    for func, file in frames:
        norm = file.replace("\\", "/")
        if any(f in norm for f in files):
            return True
        if any(norm.endswith(tf) and (func == fn or func.endswith("." + fn)) for tf, fn in targets):
            return True
    return False


def summarize(path: Path, top: int = 30) -> str:
    stacks = parse(path)
    total = sum(n for _, n in stacks) or 1
    by_lib: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for frames, n in stacks:
        by_lib[library_of(frames)] += n
        if frames:
            func, file = frames[-1]
            leaf[f"{func} ({file})"] += n
        for key in {f"{func} ({file.rsplit(':', 1)[0]})" for func, file in frames}:
            inclusive[key] += n
    out = [f"Samples: {total} (`{path.name}`)", "", "### By library (innermost known frame)", "",
           "| library | % |", "|---|---:|"]  # fmt: skip
    for name, n in by_lib.most_common():
        if n / total >= 0.003:
            out.append(f"| {name} | {100 * n / total:.1f} |")
    out += ["", "### Operations (inclusive: % of samples with the operation on the stack)", "",
            "| operation | % |", "|---|---:|"]  # fmt: skip
    for label, file_sub, funcs in OPERATIONS:
        n = sum(c for frames, c in stacks if _matches(frames, file_sub, funcs))
        out.append(f"| {label} | {100 * n / total:.1f} |")
    out += ["", f"### Top {top} functions by self time", "", "| function | self % |", "|---|---:|"]
    for name, n in leaf.most_common(top):
        out.append(f"| `{name}` | {100 * n / total:.1f} |")
    out += ["", f"### Top {top} functions by inclusive time", "", "| function | incl. % |",
            "|---|---:|"]  # fmt: skip
    for name, n in inclusive.most_common(top):
        out.append(f"| `{name}` | {100 * n / total:.1f} |")
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("path", type=Path)
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
    print(summarize(args.path, args.top))


if __name__ == "__main__":
    main()
