"""Turn the database URLs people paste into what SQLAlchemy's async drivers accept.

- `postgres://`, `postgresql://`, `postgresql+psycopg://`... become `postgresql+asyncpg://`.
- libpq query keys that asyncpg does not take as keyword arguments are translated
  (`sslmode` -> `ssl`, `connect_timeout` -> `timeout`, `application_name`/`options` ->
  `server_settings`) or dropped (`channel_binding`: asyncpg never does channel binding).
  Passed through unchanged, SQLAlchemy would hand them to `asyncpg.connect()`, which raises
  TypeError (sqlalchemy/sqlalchemy#6275).
- PgBouncer in transaction mode (Neon's `-pooler` hosts, `pgbouncer=true`, or DB_PGBOUNCER)
  breaks named prepared statements: the statement caches go off and names become unique
  (sqlalchemy/sqlalchemy#6467).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError


class DatabaseUrlError(ValueError):
    """DATABASE_URL (or a URL given in its place) cannot be used; one line naming the setting."""


_PG_SCHEMES = {
    "postgres",
    "postgresql",
    "postgresql+asyncpg",
    "postgresql+psycopg",
    "postgresql+psycopg2",
}
_SQLITE_SCHEMES = {"sqlite", "sqlite+aiosqlite", "sqlite+pysqlite"}
_SSL_MODES = {"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}
_TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class DatabaseTarget:
    url: URL
    connect_args: dict[str, Any] = field(default_factory=dict)
    sqlite_path: Path | None = None
    pgbouncer: bool = False

    @property
    def is_sqlite(self) -> bool:
        return self.url.get_backend_name() == "sqlite"

    def describe(self) -> str:
        """The URL without its password, for logs."""
        return self.url.render_as_string(hide_password=True)


def _unique_statement_name() -> str:
    return f"__asyncpg_{uuid.uuid4().hex}__"


def parse_database_url(
    raw: str,
    *,
    connect_timeout: float = 5.0,
    statement_timeout: float = 15.0,
    pgbouncer: bool = False,
) -> DatabaseTarget:
    try:
        url = make_url(raw.strip())
    except ArgumentError:
        raise DatabaseUrlError("invalid setting DATABASE_URL: not a database URL") from None
    scheme = url.drivername.lower()
    if scheme in _SQLITE_SCHEMES:
        return _sqlite_target(url)
    if scheme not in _PG_SCHEMES:
        raise DatabaseUrlError(
            f"invalid setting DATABASE_URL: unsupported scheme '{url.drivername}' "
            "(use postgresql:// or sqlite:///)"
        )
    return _postgres_target(
        url,
        connect_timeout=connect_timeout,
        statement_timeout=statement_timeout,
        pgbouncer=pgbouncer,
    )


def sqlite_url_for(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


def _sqlite_target(url: URL) -> DatabaseTarget:
    database = url.database or ""
    if not database or database == ":memory:" or database.startswith("file:"):
        raise DatabaseUrlError(
            "invalid setting DATABASE_URL: SQLite needs a file path (sqlite:///path/to/todo.db)"
        )
    return DatabaseTarget(
        url=url.set(drivername="sqlite+aiosqlite", query={}),
        sqlite_path=Path(database),
    )


def _postgres_target(
    url: URL, *, connect_timeout: float, statement_timeout: float, pgbouncer: bool
) -> DatabaseTarget:
    connect_args: dict[str, Any] = {
        "timeout": connect_timeout,
        "command_timeout": statement_timeout,
    }
    server_settings: dict[str, str] = {}
    query: dict[str, str] = {}
    for key, values in url.query.items():
        value = values if isinstance(values, str) else values[-1]
        key_lower = key.lower()
        if key_lower == "sslmode":
            if value not in _SSL_MODES:
                raise DatabaseUrlError(f"invalid setting DATABASE_URL: unknown sslmode '{value}'")
            connect_args["ssl"] = value
        elif key_lower == "ssl":
            connect_args["ssl"] = value
        elif key_lower == "channel_binding":
            continue
        elif key_lower == "connect_timeout":
            try:
                connect_args["timeout"] = float(value)
            except ValueError:
                raise DatabaseUrlError("invalid setting DATABASE_URL: connect_timeout") from None
        elif key_lower in {"application_name", "options"}:
            server_settings[key_lower] = value
        elif key_lower == "target_session_attrs":
            connect_args["target_session_attrs"] = value
        elif key_lower == "pgbouncer":
            pgbouncer = pgbouncer or value.lower() in _TRUE
        elif key_lower == "prepared_statement_cache_size":
            query[key] = value
        else:
            raise DatabaseUrlError(f"invalid setting DATABASE_URL: unsupported parameter '{key}'")
    if server_settings:
        connect_args["server_settings"] = server_settings
    if url.host and "-pooler" in url.host:
        pgbouncer = True
    if pgbouncer:
        query["prepared_statement_cache_size"] = "0"
        connect_args["statement_cache_size"] = 0
        connect_args["prepared_statement_name_func"] = _unique_statement_name
    if not url.database:
        raise DatabaseUrlError("invalid setting DATABASE_URL: no database name")
    return DatabaseTarget(
        url=url.set(drivername="postgresql+asyncpg", query=query),
        connect_args=connect_args,
        pgbouncer=pgbouncer,
    )
