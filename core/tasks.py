"""Tasks: the caller's own, read and written one statement set at a time.

Every use case runs its statements through the store (db/store.py: each read on a connection of
its own, in autocommit), enforces ownership in the query itself (`WHERE id = :id AND user_id =
:caller`: not yours and not there are the same answer), and raises only DomainError
subclasses, with database outages turned into Unavailable. Every task write appends its event
to the event log as part of the write (core/events.py, decision 23), so live updates follow
from REST and GraphQL alike, and only for writes that commit: on PostgreSQL the write and its
event are one statement in autocommit, one round trip (db/event_log.py), after which the
instances' readers are woken; on SQLite they share one transaction, and the event goes to this
process's subscribers once it has committed.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Protocol

from sqlalchemy import (
    BindParameter,
    Select,
    and_,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    text,
    update,
)

from core.errors import InvalidInput, NotFound, Unauthenticated
from core.events import TaskEvent, TaskEventKind
from core.guards import database_errors, require_user
from core.records import Caller, TaskPage, TaskPosition, TaskRecord
from core.validation import MISSING, validate_new_task, validate_task_changes
from db import event_log
from db.models import Task
from db.store import ConstraintViolation, Row, Store, Transaction

log = logging.getLogger("todo.operations")

_ONE_MICROSECOND = timedelta(microseconds=1)

_TASK_COLUMNS = (
    Task.id,
    Task.title,
    Task.description,
    Task.completed,
    Task.user_id,
    Task.created_at,
    Task.updated_at,
)

# Built once: the store compiles each statement once and reuses it (db/store.py). Every INSERT
# names all its columns, so no value comes from a SQLAlchemy-side default.
_LIST_TASKS = (
    select(*_TASK_COLUMNS)
    .where(Task.user_id == bindparam("user_id"))
    .order_by(Task.created_at.desc(), Task.id.desc())
)
_GET_TASK = select(*_TASK_COLUMNS).where(
    Task.id == bindparam("task_id"), Task.user_id == bindparam("user_id")
)
_LOCK_TASK = _GET_TASK.with_for_update()
_INSERT_TASK = insert(Task).values(
    id=bindparam("new_id"),
    title=bindparam("new_title"),
    description=bindparam("new_description"),
    completed=bindparam("new_completed"),
    user_id=bindparam("new_user_id"),
    created_at=bindparam("new_created_at"),
    updated_at=bindparam("new_updated_at"),
)
# All mutable columns at once: one statement whatever the change (the row is locked).
_UPDATE_TASK = (
    update(Task)
    .where(Task.id == bindparam("task_id"))
    .values(
        title=bindparam("new_title"),
        description=bindparam("new_description"),
        completed=bindparam("new_completed"),
        updated_at=bindparam("new_updated_at"),
    )
)
_DELETE_TASK = delete(Task).where(
    Task.id == bindparam("task_id"), Task.user_id == bindparam("user_id")
)
_PING = text("SELECT 1")


class EventSink(Protocol):
    """Where a write's event goes once it is in the log (core/events.py's buses)."""

    # PostgreSQL: write, event and wake-up in one statement; the instances' readers deliver.
    one_statement: bool

    def committed(self, event: TaskEvent) -> None:
        """SQLite: called right after the write's commit, in commit order."""

    def written(self) -> None:
        """PostgreSQL: a write statement committed an event (the instances' readers are
        woken)."""


def parse_id(value: object) -> uuid.UUID:
    """A task id from a path or a GraphQL ID: anything that is not a UUID is simply not found."""
    if isinstance(value, uuid.UUID):
        return value
    if not isinstance(value, str) or len(value) > 64:
        raise NotFound()
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound() from None


def _task(row: Row | tuple[object, ...]) -> TaskRecord:
    return TaskRecord(*row)


def _turn(user_id: uuid.UUID) -> dict[str, object]:
    """The PostgreSQL write statements' owner lock (db/event_log.py)."""
    return {
        "lock_class": event_log.OWNER_LOCK_CLASS,
        "lock_key": event_log.owner_lock_key(user_id),
    }


def _task_values(task: TaskRecord) -> dict[str, object]:
    return {
        "new_title": task.title,
        "new_description": task.description,
        "new_completed": task.completed,
        "new_updated_at": task.updated_at,
    }


class Tasks:
    def __init__(self, *, store: Store, events: EventSink) -> None:
        self._store = store
        self._events = events

    async def list(self, caller: Caller) -> list[TaskRecord]:
        """All of the caller's tasks, newest first, ties broken by id (descending)."""
        async with database_errors():
            rows = await self._store.rows(_LIST_TASKS, {"user_id": caller.user_id})
        if not rows:
            await require_user(self._store, caller)
        return [_task(row) for row in rows]

    async def get(self, caller: Caller, task_id: object) -> TaskRecord:
        task_uuid = await self._task_id(caller, task_id)
        async with database_errors():
            row = await self._store.row(
                _GET_TASK, {"task_id": task_uuid, "user_id": caller.user_id}
            )
        if row is None:
            await require_user(self._store, caller)
            raise NotFound()
        return _task(row)

    async def create(
        self, caller: Caller, *, title: object, description: object = MISSING
    ) -> TaskRecord:
        async with self._input_errors(caller):
            data = validate_new_task(title, description)
        now = datetime.now(UTC)
        task = TaskRecord(
            id=uuid.uuid4(),
            title=data.title,
            description=data.description,
            completed=False,
            user_id=caller.user_id,
            created_at=now,
            updated_at=now,
        )
        try:
            if self._events.one_statement:
                async with database_errors():
                    await self._store.row(
                        event_log.PG_CREATE,
                        {
                            "task_id": task.id,
                            "title": task.title,
                            "description": task.description,
                            "user_id": task.user_id,
                            "now": now,
                            **_turn(task.user_id),
                        },
                    )
                self._events.written()
            else:
                async with database_errors(), self._store.transaction() as transaction:
                    await transaction.execute(
                        _INSERT_TASK,
                        {
                            **_task_values(task),
                            "new_id": task.id,
                            "new_user_id": task.user_id,
                            "new_created_at": now,
                        },
                    )
                    await self._append(transaction, TaskEventKind.CREATED, task, now)
        except ConstraintViolation:
            # The caller's account was deleted after its token was checked.
            raise Unauthenticated() from None
        return task

    async def update(
        self, caller: Caller, task_id: object, fields: Mapping[str, object]
    ) -> TaskRecord:
        """Change only the fields present; `updated_at` always moves strictly forward."""
        async with self._input_errors(caller):
            changes = validate_task_changes(fields)
        task_uuid = await self._task_id(caller, task_id)
        record: TaskRecord | None = None
        if self._events.one_statement:
            params: dict[str, object] = {
                "task_id": task_uuid,
                "user_id": caller.user_id,
                "now": datetime.now(UTC),
                **_turn(caller.user_id),
            }
            for field in ("title", "description", "completed"):
                params[f"set_{field}"] = field in changes
                params[field] = changes.get(field)
            async with database_errors():
                row = await self._store.row(event_log.PG_UPDATE, params)
            if row is not None:
                record = _task(tuple(row)[:7])
                self._events.written()
        else:
            async with database_errors(), self._store.transaction() as transaction:
                row = await transaction.row(
                    _LOCK_TASK, {"task_id": task_uuid, "user_id": caller.user_id}
                )
                if row is not None:
                    current = _task(row)
                    record = replace(
                        current,
                        **changes,  # type: ignore[arg-type]
                        updated_at=max(datetime.now(UTC), current.updated_at + _ONE_MICROSECOND),
                    )
                    await transaction.execute(
                        _UPDATE_TASK, {**_task_values(record), "task_id": task_uuid}
                    )
                    await self._append(
                        transaction, TaskEventKind.UPDATED, record, record.updated_at
                    )
        if record is None:
            # Outside the transaction: SQLite's single pooled connection is free again.
            await require_user(self._store, caller)
            raise NotFound()
        return record

    async def delete(self, caller: Caller, task_id: object) -> uuid.UUID:
        task_uuid = await self._task_id(caller, task_id)
        params = {"task_id": task_uuid, "user_id": caller.user_id}
        if self._events.one_statement:
            async with database_errors():
                position = await self._store.scalar(
                    event_log.PG_DELETE,
                    {**params, "now": datetime.now(UTC), **_turn(caller.user_id)},
                )
            deleted = position is not None
            if deleted:
                self._events.written()
        else:
            async with database_errors(), self._store.transaction() as transaction:
                deleted = bool(await transaction.execute(_DELETE_TASK, params))
                if deleted:
                    gone = TaskEvent(TaskEventKind.DELETED, task_uuid, caller.user_id, None)
                    await self._append_event(transaction, gone, datetime.now(UTC))
        if not deleted:
            await require_user(self._store, caller)
            raise NotFound()
        return task_uuid

    async def _append(
        self, transaction: Transaction, kind: TaskEventKind, task: TaskRecord, at: datetime
    ) -> None:
        await self._append_event(transaction, TaskEvent(kind, task.id, task.user_id, task), at)

    async def _append_event(self, transaction: Transaction, event: TaskEvent, at: datetime) -> None:
        """SQLite: the event into the log, in the write's transaction; to this process's
        subscribers once that commits."""
        task = event.task
        position = await transaction.scalar(
            event_log.APPEND,
            {
                "kind": event.kind.value,
                "task_id": event.task_id,
                "user_id": event.user_id,
                "title": task.title if task else None,
                "description": task.description if task else None,
                "completed": task.completed if task else None,
                "created_at": task.created_at if task else None,
                "updated_at": task.updated_at if task else None,
                "recorded_at": at,
            },
        )
        logged = replace(event, position=int(position))
        transaction.after_commit(lambda: self._events.committed(logged))

    # --- pages (GraphQL connections) ------------------------------------------------------

    async def page(
        self,
        caller: Caller,
        *,
        first: int,
        after: TaskPosition | None,
        completed: bool | None,
    ) -> TaskPage:
        """One page of the caller's tasks, newest first (ties by id), in one statement that the
        (user_id, created_at, id) index serves; one row more than asked says whether another
        page follows. An empty page checks the account still exists, as `list` does."""
        params: dict[str, object] = {"user_id": caller.user_id, "limit": first + 1}
        if completed is not None:
            params["completed"] = completed
        if after is not None:
            params["after_created_at"] = after.created_at
            params["after_id"] = after.id
        statement = _page_statement(after is not None, completed is not None)
        async with database_errors():
            rows = await self._store.rows(statement, params)
        if not rows:
            await require_user(self._store, caller)
        tasks = [_task(row) for row in rows]
        return TaskPage(tasks=tasks[:first], has_next_page=len(tasks) > first)

    async def count(self, caller: Caller, *, completed: bool | None) -> int:
        """How many tasks the caller has (optionally only completed or open ones)."""
        params: dict[str, object] = {"user_id": caller.user_id}
        if completed is not None:
            params["completed"] = completed
        async with database_errors():
            total = await self._store.scalar(_count_statement(completed is not None), params)
        if not total:
            await require_user(self._store, caller)
        return int(total or 0)

    async def _task_id(self, caller: Caller, task_id: object) -> uuid.UUID:
        try:
            return parse_id(task_id)
        except NotFound:
            await require_user(self._store, caller)
            raise

    @asynccontextmanager
    async def _input_errors(self, caller: Caller) -> AsyncIterator[None]:
        """A gone account answers 401 before any complaint about its input."""
        try:
            yield
        except InvalidInput:
            await require_user(self._store, caller)
            raise


@lru_cache(maxsize=8)
def _page_statement(after: bool, completed: bool) -> Select:
    """One statement per shape (which filters), built once."""
    query = select(*_TASK_COLUMNS).where(Task.user_id == bindparam("user_id"))
    if completed:
        query = query.where(Task.completed == bindparam("completed"))
    if after:
        created_at: BindParameter[datetime] = bindparam("after_created_at")
        task_id: BindParameter[uuid.UUID] = bindparam("after_id")
        query = query.where(
            or_(
                Task.created_at < created_at,
                and_(Task.created_at == created_at, Task.id < task_id),
            )
        )
    return query.order_by(Task.created_at.desc(), Task.id.desc()).limit(bindparam("limit"))


@lru_cache(maxsize=2)
def _count_statement(completed: bool) -> Select:
    query = select(func.count()).where(Task.user_id == bindparam("user_id"))
    if completed:
        query = query.where(Task.completed == bindparam("completed"))
    return query


async def database_is_healthy(store: Store, *, within_seconds: float = 3.0) -> bool:
    try:
        async with asyncio.timeout(within_seconds):
            await store.scalar(_PING)
    except Exception as exc:
        log.warning("health check failed: %s: %s", type(exc).__name__, exc)
        return False
    return True
