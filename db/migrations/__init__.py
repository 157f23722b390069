"""Schema migrations with Alembic, configured in code (no alembic.ini); the scripts ship inside.

`todo-api migrate` and the service's start-up (`DB_AUTO_MIGRATE`) both come here. Every run
- reads the same URL forms as the service (`db.url.parse_database_url`);
- uses its own short-lived engine: without the service's SQLite `foreign_keys=ON` pragma (a
  batch-mode table rebuild would otherwise cascade-delete rows) and without its statement
  timeout (building an index on a large table may take longer than a request may);
- runs in one transaction, so a failed migration leaves nothing half-done, and one run at a
  time (several workers starting at once): PostgreSQL takes a transaction-scoped advisory lock
  (safe behind PgBouncer), SQLite begins with `BEGIN IMMEDIATE`;
- adopts a database created before migrations existed (both tables present, no
  `alembic_version`, as the service's former `create_all` left it) by stamping it at the
  initial revision first.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event, inspect
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from db.url import DatabaseTarget

log = logging.getLogger("todo.migrations")

MIGRATIONS_DIR = Path(__file__).resolve().parent
INITIAL_REVISION = "0001"
# Any constant bigint serves; this one is "todomigr" in ASCII.
_ADVISORY_LOCK_KEY = 0x746F646F6D696772
_APP_TABLES = frozenset({"users", "tasks"})

T = TypeVar("T")


@dataclass(frozen=True)
class UpgradeResult:
    before: str | None
    after: str | None


def alembic_config(database: DatabaseTarget | None = None) -> Config:
    config = Config()
    # ConfigParser interpolates '%': a path holding one must be escaped.
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    config.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    if database is not None:
        config.attributes["database"] = database
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def _sqlite_driver_autocommit(dbapi_connection: Any, _record: Any) -> None:
    # pysqlite's own transaction handling would not put DDL in a transaction; SQLAlchemy's
    # "begin" event below does instead (the SQLAlchemy documentation's recipe).
    dbapi_connection.isolation_level = None


def _sqlite_begin_immediate(connection: Connection) -> None:
    # Take the write lock first: a concurrent migration waits here instead of failing midway.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def migration_engine(database: DatabaseTarget) -> AsyncEngine:
    if database.is_sqlite:
        assert database.sqlite_path is not None
        database.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(
            database.url, poolclass=NullPool, connect_args={"timeout": 60.0}
        )
        event.listen(engine.sync_engine, "connect", _sqlite_driver_autocommit)
        event.listen(engine.sync_engine, "begin", _sqlite_begin_immediate)
        return engine
    connect_args = {k: v for k, v in database.connect_args.items() if k != "command_timeout"}
    return create_async_engine(database.url, poolclass=NullPool, connect_args=connect_args)


async def run_in_migration_transaction(
    database: DatabaseTarget, work: Callable[[Connection], T]
) -> T:
    """Run `work` on a connection inside the one locked migration transaction, then commit."""
    engine = migration_engine(database)
    try:
        async with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                await conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_ADVISORY_LOCK_KEY})")
            return await conn.run_sync(work)
    finally:
        await engine.dispose()


def _configured(connection: Connection, database: DatabaseTarget) -> Config:
    config = alembic_config(database)
    config.attributes["connection"] = connection  # env.py runs on it, in our transaction
    return config


def _current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def _adopt_unversioned(connection: Connection, config: Config) -> None:
    tables = set(inspect(connection).get_table_names())
    if "alembic_version" in tables or not _APP_TABLES <= tables:
        return
    log.warning(
        "the database has the service's tables but no migration history (it predates "
        "migrations): recording it at revision %s",
        INITIAL_REVISION,
    )
    command.stamp(config, INITIAL_REVISION)


async def upgrade(database: DatabaseTarget, revision: str = "head") -> UpgradeResult:
    def work(connection: Connection) -> UpgradeResult:
        config = _configured(connection, database)
        _adopt_unversioned(connection, config)
        before = _current(connection)
        command.upgrade(config, revision)
        return UpgradeResult(before=before, after=_current(connection))

    return await run_in_migration_transaction(database, work)


async def downgrade(database: DatabaseTarget, revision: str) -> UpgradeResult:
    def work(connection: Connection) -> UpgradeResult:
        before = _current(connection)
        command.downgrade(_configured(connection, database), revision)
        return UpgradeResult(before=before, after=_current(connection))

    return await run_in_migration_transaction(database, work)


async def current_revision(database: DatabaseTarget) -> str | None:
    return await run_in_migration_transaction(database, _current)


async def create_revision(
    database: DatabaseTarget, message: str, *, autogenerate: bool
) -> list[Path]:
    """Write a new revision file `NNNN_<slug>.py` (for developers, in a source checkout).

    With `autogenerate`, the database must be at head; the file holds what the models add.
    """

    def work(connection: Connection) -> list[Path]:
        config = _configured(connection, database)
        existing = list(ScriptDirectory.from_config(config).walk_revisions())
        scripts = command.revision(
            config, message=message, autogenerate=autogenerate, rev_id=f"{len(existing) + 1:04d}"
        )
        items = scripts if isinstance(scripts, list) else [scripts]
        return [Path(s.path) for s in items if s is not None]

    return await run_in_migration_transaction(database, work)


async def prepare_schema(database: DatabaseTarget, *, auto_migrate: bool) -> None:
    """At start-up: migrate to head, or (DB_AUTO_MIGRATE off) only say when that is needed."""
    head = head_revision()
    if auto_migrate:
        result = await upgrade(database)
        if result.before != result.after:
            log.info(
                "database schema migrated from %s to %s", result.before or "base", result.after
            )
        return
    current = await current_revision(database)
    if current != head:
        log.error(
            "database schema is at revision %s but this version needs %s: run `todo-api "
            "migrate` (DB_AUTO_MIGRATE is off)",
            current or "none (no tables)",
            head,
        )
