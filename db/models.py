"""The schema: users and their tasks (contract section 4), the task events' log, and the rate
limits' attempt windows."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    Uuid,
    false,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime on every backend.

    PostgreSQL stores `timestamptz`; SQLite has no time zones, so the UTC wall time is stored
    (SQLAlchemy's fixed-width text, which sorts correctly) and UTC is re-attached on the way out.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given for a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class User(Base):
    __tablename__ = "users"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    email: Mapped[str] = mapped_column(String(255), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Task(Base):
    __tablename__ = "tasks"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    title: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    completed: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="CASCADE"), index=False
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        # Serves "tasks of a user, newest first" (ties by id) and keyset pagination over it.
        Index("ix_tasks_user_id_created_at_id", "user_id", created_at.desc(), id.desc()),
    )


class RateLimitWindow(Base):
    """The signup and login attempts counted for one key in the last window (db/rate_limits.py).

    Shared by every worker and instance on the database, so the rate limits hold however the
    service is deployed (specs/decisions.md, decision 15). UNLOGGED on PostgreSQL (set by the
    migration): counters need no crash safety, and their writes then wait for no disk flush.
    """

    __tablename__ = "rate_limit_windows"

    # SHA-256 (hex) of action, kind and value: no email or client address is stored.
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    # A JSON array of the instants (ms since the epoch, the database's clock) of the attempts
    # counted in the window: at most the limit's amount.
    hits: Mapped[str] = mapped_column(Text)
    last_counted: Mapped[bool] = mapped_column(Boolean)  # whether the latest attempt counted
    # When the newest counted attempt leaves the window: the row may then be deleted.
    expires_at: Mapped[int] = mapped_column(BigInteger, index=True)


class PersistedDocument(Base):
    """A GraphQL document registered by a client through automatic persisted queries, by the
    SHA-256 of its text (graphql_schema/persisted.py, db/documents.py). Shared by every
    instance; the service keeps at most GRAPHQL_PERSISTED_QUERIES_MAX of them, evicting the
    least recently used."""

    __tablename__ = "persisted_documents"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    document: Mapped[str] = mapped_column(Text)
    # When an instance last took it from the table (each instance also caches it in memory).
    used_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class TaskEventEntry(Base):
    """One committed task write, as live updates announce it (core/events.py, decision 23).

    Written by the write's own statement (PostgreSQL) or transaction (SQLite), so an entry
    exists exactly when its write committed. `position` grows with every entry and is never
    reused (PostgreSQL: an identity column; SQLite: AUTOINCREMENT); the cursors clients resume
    from are positions. Kept for TASK_EVENTS_RETENTION_HOURS, then deleted by the service.
    """

    __tablename__ = "task_events"

    # INTEGER on SQLite: only an INTEGER PRIMARY KEY is the rowid AUTOINCREMENT keeps unique.
    position: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), Identity(), primary_key=True
    )
    # PostgreSQL: the writing transaction's id (`pg_current_xact_id()`), by which instances
    # read the log in snapshot batches; null on SQLite (one process, commit order is position
    # order there).
    xid: Mapped[int | None] = mapped_column(BigInteger, nullable=True, index=True)
    kind: Mapped[str] = mapped_column(String(7))  # CREATED, UPDATED, DELETED
    task_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid)  # no foreign key: a write pays no lookup
    # The task as the write left it; all null for DELETED.
    title: Mapped[str | None] = mapped_column(String(255), nullable=True)
    description: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    completed: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    created_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)  # when; retention counts from it

    __table_args__ = (
        # A subscriber's replay: one owner's entries after a position.
        Index("ix_task_events_user_id_position", "user_id", "position"),
        {"sqlite_autoincrement": True},
    )
