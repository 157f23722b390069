"""The benchmark's own PostgreSQL database: created for a run, dropped at its end."""

from __future__ import annotations

import asyncio
import secrets
from urllib.parse import urlsplit, urlunsplit

import asyncpg


def _with_database(admin_url: str, database: str) -> str:
    parts = urlsplit(admin_url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


def check_loopback(admin_url: str) -> None:
    host = urlsplit(admin_url).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit(f"--pg-admin-url must name a loopback host, not {host!r}")


async def _create(admin_url: str) -> tuple[str, str]:
    name = f"todo_bench_{secrets.token_hex(4)}"
    conn = await asyncpg.connect(admin_url, timeout=10)
    try:
        version = await conn.fetchval("SHOW server_version")
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return _with_database(admin_url, name), str(version)


async def _drop(admin_url: str, url: str) -> None:
    name = urlsplit(url).path.lstrip("/")
    assert name.startswith("todo_bench_")
    conn = await asyncpg.connect(admin_url, timeout=10)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def create_database(admin_url: str) -> tuple[str, str]:
    """A fresh database; returns its URL and the server's version."""
    return asyncio.run(_create(admin_url))


def drop_database(admin_url: str, url: str) -> None:
    asyncio.run(_drop(admin_url, url))


async def _count(url: str, sql: str) -> int:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        return int(await conn.fetchval(sql))
    finally:
        await conn.close()


def count(url: str, sql: str) -> int:
    return asyncio.run(_count(url, sql))
