"""The SQLAlchemy engine for a DatabaseTarget: SQLite's statements, migrations, maintenance."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from db.url import DatabaseTarget


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")  # ON DELETE CASCADE needs it
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def build_engine(
    target: DatabaseTarget,
    *,
    pool_size: int = 2,
    pool_timeout: float = 30.0,
) -> AsyncEngine:
    if target.is_sqlite:
        assert target.sqlite_path is not None
        target.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
        # One connection: SQLite allows one writer at a time, and queueing in the pool is
        # better than "database is locked" under concurrent writes.
        engine = create_async_engine(
            target.url, pool_size=1, max_overflow=0, pool_timeout=30.0, hide_parameters=True
        )
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(
        target.url,
        connect_args=target.connect_args,
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=pool_timeout,
        # No pre-ping: on asyncpg it costs three round trips (BEGIN, ping, ROLLBACK) on every
        # checkout. A connection the database dropped fails its first statement instead: that
        # request gets 503, SQLAlchemy invalidates the whole pool, and the next requests
        # reconnect. Connections idle past Neon's suspend or a proxy's timeout are recycled.
        pool_pre_ping=False,
        pool_recycle=300,
        hide_parameters=True,  # emails and password hashes stay out of logged errors
    )
