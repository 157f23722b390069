"""Alembic's environment: online migrations over the service's async drivers.

Normally `db.migrations` (`todo-api migrate`, the start-up) runs this with a connection it has
already opened, in its locked transaction (`config.attributes["connection"]`). Driven through
Alembic's own API without one, it opens its own the same way: the database comes from
`config.attributes["database"]`, the `sqlalchemy.url` option or `DATABASE_URL`, read by
`db.url.parse_database_url`, so every URL form the service takes works here too.
"""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING, Any, Literal

from alembic import context
from sqlalchemy.engine import Connection

from db.migrations import run_in_migration_transaction
from db.models import Base, UTCDateTime
from db.url import parse_database_url

if TYPE_CHECKING:
    from alembic.autogenerate.api import AutogenContext

config = context.config


def _render_item(type_: str, obj: Any, _autogen_context: AutogenContext) -> str | Literal[False]:
    # Revisions must not import application types that may change later: spell the column
    # type the way the database sees it.
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,  # carries the naming convention of db/models.py
        compare_type=True,
        # SQLite cannot ALTER most things: later revisions rebuild tables in batch mode.
        render_as_batch=connection.dialect.name == "sqlite",
        render_item=_render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


def _database() -> Any:
    database = config.attributes.get("database")
    if database is not None:
        return database
    raw = config.get_main_option("sqlalchemy.url") or os.environ.get("DATABASE_URL")
    if not raw:
        raise RuntimeError("no database to migrate: set DATABASE_URL or use `todo-api migrate`")
    return parse_database_url(raw)


if context.is_offline_mode():
    raise RuntimeError("offline (--sql) migrations are not supported; run them online")

_connection = config.attributes.get("connection")
if _connection is not None:
    run_migrations(_connection)
else:
    asyncio.run(run_in_migration_transaction(_database(), run_migrations))
