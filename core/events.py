"""Live task events: what a committed write announces, and how it reaches its owner's tabs.

A write stages its event inside its own transaction (`EventBus.publish`), so an event exists
only if the write commits, and events follow commit order:

- PostgreSQL: `pg_notify` in the write's transaction. The server delivers notifications at
  commit, in commit order, to every instance; each instance LISTENs on one dedicated
  connection (`PostgresListener`) that reconnects with backoff when it drops. The payload
  carries the task as the write left it (it always fits NOTIFY's 8000 bytes at the current
  field limits; if it ever did not, the receiving instance loads the row instead).
- SQLite: an in-process hand-off from the transaction's after-commit hook (one process owns the
  file; with several workers each sees only its own writes, and start-up says so).

Each instance fans events out to the subscriptions of the task's owner (`TaskEventHub`),
never to anyone else. A subscription buffers at most SUBSCRIPTION_QUEUE_SIZE events: a writer
only appends to a buffer, so a slow client never holds up a write or another subscriber, and
a client that falls further behind is ended (`SubscriberTooSlow`) rather than fed stale data.

A subscription receives exactly the events of writes that commit after it starts. On SQLite
that is registration order; on PostgreSQL a notification can still be in flight when a
subscriber registers, so the subscriber also takes a snapshot (`pg_current_snapshot()`) and
skips events of transactions that snapshot already saw.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

import asyncpg
import orjson
from sqlalchemy import bindparam, select, text

from core.errors import DomainError, SubscriberTooSlow, TooManySubscriptions, Unavailable
from core.records import TaskRecord
from db.models import Task
from db.store import Store, Transaction
from db.url import DatabaseTarget

log = logging.getLogger("todo.events")

CHANNEL = "todo_task_events"
LISTENER_APPLICATION_NAME = "todo-events-listener"
# NOTIFY payloads must be shorter than 8000 bytes; the transaction id and a space come first.
MAX_BODY_BYTES = 7900


class TaskEventKind(StrEnum):
    CREATED = "CREATED"
    UPDATED = "UPDATED"
    DELETED = "DELETED"


@dataclass(frozen=True, slots=True)
class TaskEvent:
    kind: TaskEventKind
    task_id: uuid.UUID
    user_id: uuid.UUID
    task: TaskRecord | None  # as the write left it; None for DELETED
    # PostgreSQL: the writing transaction's id, to tell events from before a subscription.
    xid: int | None = None

    @classmethod
    def created(cls, task: TaskRecord) -> TaskEvent:
        return cls(TaskEventKind.CREATED, task.id, task.user_id, task)

    @classmethod
    def updated(cls, task: TaskRecord) -> TaskEvent:
        return cls(TaskEventKind.UPDATED, task.id, task.user_id, task)

    @classmethod
    def deleted(cls, task_id: uuid.UUID, user_id: uuid.UUID) -> TaskEvent:
        return cls(TaskEventKind.DELETED, task_id, user_id, None)


# --- the NOTIFY payload -----------------------------------------------------------------------


def encode_body(event: TaskEvent) -> str:
    """The event as compact JSON; without the task (`"load": true`) if it would not fit."""
    body: dict[str, Any] = {
        "v": 1,
        "kind": event.kind.value,
        "id": str(event.task_id),
        "user": str(event.user_id),
    }
    if event.task is not None:
        task = event.task
        body["task"] = {
            "title": task.title,
            "description": task.description,
            "completed": task.completed,
            "created_at": task.created_at.isoformat(),
            "updated_at": task.updated_at.isoformat(),
        }
    data = orjson.dumps(body)
    if len(data) > MAX_BODY_BYTES:
        del body["task"]
        body["load"] = True
        data = orjson.dumps(body)
    return data.decode()


def decode_notification(payload: str) -> tuple[TaskEvent, bool]:
    """`"<xid> <json>"` -> the event, and whether its task must be loaded (it did not fit)."""
    xid, _, raw = payload.partition(" ")
    body = orjson.loads(raw)
    if body.get("v") != 1:
        raise ValueError(f"unknown task event version {body.get('v')!r}")
    kind = TaskEventKind(body["kind"])
    task_id, user_id = uuid.UUID(body["id"]), uuid.UUID(body["user"])
    task = None
    if (fields := body.get("task")) is not None:
        task = TaskRecord(
            id=task_id,
            title=fields["title"],
            description=fields["description"],
            completed=fields["completed"],
            user_id=user_id,
            created_at=datetime.fromisoformat(fields["created_at"]),
            updated_at=datetime.fromisoformat(fields["updated_at"]),
        )
    event = TaskEvent(kind, task_id, user_id, task, xid=int(xid))
    return event, bool(body.get("load")) and kind is not TaskEventKind.DELETED


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A PostgreSQL snapshot (`pg_current_snapshot()`): the transactions it saw as committed."""

    xmin: int
    xmax: int
    in_progress: frozenset[int]

    @classmethod
    def parse(cls, value: str) -> Snapshot:
        xmin, xmax, xip = value.split(":")
        return cls(int(xmin), int(xmax), frozenset(int(x) for x in xip.split(",") if x))

    def saw(self, xid: int) -> bool:
        return xid < self.xmin or (xid < self.xmax and xid not in self.in_progress)


# --- subscriptions and the hub ------------------------------------------------------------------


class Subscription:
    """One subscriber's feed: its owner's events, in commit order, at most `limit` waiting."""

    def __init__(self, hub: TaskEventHub, user_id: uuid.UUID, limit: int) -> None:
        self.user_id = user_id
        self._hub = hub
        self._limit = limit
        self._waiting: deque[TaskEvent] = deque()
        self._wakeup = asyncio.Event()
        self._ended: DomainError | None = None
        self._after: Snapshot | None = None

    def start_after(self, snapshot: Snapshot) -> None:
        """Skip events of transactions that `snapshot` saw: they committed before we started."""
        self._after = snapshot

    def offer(self, event: TaskEvent) -> None:
        """Called by the hub for each of the owner's events. Never blocks, never waits."""
        if self._ended is not None:
            return
        if len(self._waiting) >= self._limit:
            self.end(
                SubscriberTooSlow(
                    f"Subscription ended: more than {self._limit} events were waiting for this "
                    "client; subscribe again and refetch"
                )
            )
            return
        self._waiting.append(event)
        self._wakeup.set()

    def end(self, error: DomainError) -> None:
        """Stop delivering; the consumer's next `next()` raises `error`."""
        if self._ended is None:
            self._ended = error
            self._waiting.clear()
            self._hub.discard(self)
        self._wakeup.set()

    def close(self) -> None:
        self._waiting.clear()
        self._hub.discard(self)

    @property
    def pending(self) -> int:
        return len(self._waiting)

    async def next(self) -> TaskEvent:
        while True:
            if self._ended is not None:
                raise self._ended
            while self._waiting:
                event = self._waiting.popleft()
                if self._after is not None and event.xid is not None and self._after.saw(event.xid):
                    continue
                return event
            self._wakeup.clear()
            await self._wakeup.wait()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> TaskEvent:
        return await self.next()


class TaskEventHub:
    """This instance's subscriptions, by owner: an event goes to its owner's and no one else's."""

    def __init__(self, *, per_user: int, queue_size: int) -> None:
        self.per_user = per_user
        self.queue_size = queue_size
        self._by_user: dict[uuid.UUID, set[Subscription]] = {}

    def subscribe(self, user_id: uuid.UUID) -> Subscription:
        mine = self._by_user.get(user_id, set())
        if len(mine) >= self.per_user:
            raise TooManySubscriptions(
                f"Too many subscriptions for this account (at most {self.per_user})"
            )
        subscription = Subscription(self, user_id, self.queue_size)
        self._by_user.setdefault(user_id, set()).add(subscription)
        return subscription

    def discard(self, subscription: Subscription) -> None:
        mine = self._by_user.get(subscription.user_id)
        if mine is not None:
            mine.discard(subscription)
            if not mine:
                del self._by_user[subscription.user_id]

    def deliver(self, event: TaskEvent) -> None:
        for subscription in tuple(self._by_user.get(event.user_id, ())):
            subscription.offer(event)

    def count(self, user_id: uuid.UUID | None = None) -> int:
        if user_id is not None:
            return len(self._by_user.get(user_id, ()))
        return sum(len(subs) for subs in self._by_user.values())

    def end_all(self, error: Callable[[], DomainError]) -> None:
        for subs in list(self._by_user.values()):
            for subscription in list(subs):
                subscription.end(error())


# --- the buses ---------------------------------------------------------------------------------


class EventBus:
    """Publishes task events from write transactions and feeds this instance's subscriptions."""

    def __init__(self, hub: TaskEventHub) -> None:
        self.hub = hub

    async def start(self) -> None:
        """Begin receiving events. Never raises: the service starts even when the database
        is down, and live updates follow when it comes back."""

    async def stop(self) -> None:
        self.hub.end_all(Unavailable)

    async def publish(self, transaction: Transaction, event: TaskEvent) -> None:
        """Stage `event` in `transaction`: it is delivered only if that commits."""
        raise NotImplementedError

    @asynccontextmanager
    async def subscribe(self, user_id: uuid.UUID) -> AsyncIterator[Subscription]:
        """A feed of `user_id`'s events from now on; TooManySubscriptions over the cap."""
        subscription = self.hub.subscribe(user_id)
        try:
            await self._prepare(subscription)
            yield subscription
        finally:
            subscription.close()

    async def _prepare(self, subscription: Subscription) -> None:
        pass


class LocalEventBus(EventBus):
    """SQLite: events go from the committing transaction straight to this process's hub."""

    def __init__(self, hub: TaskEventHub, *, workers: int = 1) -> None:
        super().__init__(hub)
        self._workers = workers

    async def start(self) -> None:
        if self._workers > 1:
            log.warning(
                "live updates on SQLite reach only subscribers of the worker that made the "
                "write (WEB_CONCURRENCY=%d): use PostgreSQL, or one worker",
                self._workers,
            )

    async def publish(self, transaction: Transaction, event: TaskEvent) -> None:
        # Run right after the database commit, while the connection is still held, so events
        # leave in commit order; a rollback discards them.
        transaction.after_commit(lambda: self.hub.deliver(event))


_NOTIFY = text("SELECT pg_notify(:channel, pg_current_xact_id()::text || ' ' || :body)")
_SNAPSHOT = text("SELECT pg_current_snapshot()::text")
_LOAD_TASK = select(
    Task.title, Task.description, Task.completed, Task.created_at, Task.updated_at
).where(Task.id == bindparam("task_id"))


class PostgresEventBus(EventBus):
    """PostgreSQL: NOTIFY in the write's transaction, LISTEN on one connection per instance."""

    def __init__(
        self,
        hub: TaskEventHub,
        *,
        store: Store,
        listener_target: DatabaseTarget,
        wait_seconds: float,
    ) -> None:
        super().__init__(hub)
        self._store = store
        self._wait_seconds = wait_seconds
        self._inbox: asyncio.Queue[str] = asyncio.Queue()
        self._dispatcher: asyncio.Task[None] | None = None
        self.listener = PostgresListener(listener_target, CHANNEL, self._inbox.put_nowait)

    async def start(self) -> None:
        self._dispatcher = asyncio.create_task(self._dispatch(), name="todo-events-dispatch")
        self.listener.start()
        # Serve with LISTEN in place when the database is up; never wait long for it.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.listener.listening.wait(), self._wait_seconds)

    async def stop(self) -> None:
        await self.listener.stop()
        if self._dispatcher is not None:
            self._dispatcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._dispatcher
            self._dispatcher = None
        await super().stop()

    async def publish(self, transaction: Transaction, event: TaskEvent) -> None:
        await transaction.execute(_NOTIFY, {"channel": CHANNEL, "body": encode_body(event)})

    async def _prepare(self, subscription: Subscription) -> None:
        if not self.listener.listening.is_set():
            try:
                await asyncio.wait_for(self.listener.listening.wait(), self._wait_seconds)
            except TimeoutError:
                log.warning("subscription refused: the event listener is not connected")
                raise Unavailable() from None
        try:
            async with asyncio.timeout(self._wait_seconds):
                snapshot = Snapshot.parse(await self._store.scalar(_SNAPSHOT))
        except Exception as exc:
            log.warning("subscription refused: %s: %s", type(exc).__name__, exc)
            raise Unavailable() from exc
        subscription.start_after(snapshot)

    async def _dispatch(self) -> None:
        """One at a time, in the order PostgreSQL delivered them (commit order)."""
        while True:
            payload = await self._inbox.get()
            try:
                decoded, load = decode_notification(payload)
                event = await self._load(decoded) if load else decoded
            except Exception as exc:
                log.warning("task event dropped: %s: %s", type(exc).__name__, exc)
                continue
            if event is not None:
                self.hub.deliver(event)

    async def _load(self, event: TaskEvent) -> TaskEvent | None:
        row = await self._store.row(_LOAD_TASK, {"task_id": event.task_id})
        if row is None:  # deleted since; its DELETED event follows
            return None
        title, description, completed, created_at, updated_at = row
        task = TaskRecord(
            id=event.task_id,
            title=title,
            description=description,
            completed=completed,
            user_id=event.user_id,
            created_at=created_at,
            updated_at=updated_at,
        )
        return replace(event, task=task)


# --- the listener connection --------------------------------------------------------------------

_BACKOFF_FIRST = 0.5
_BACKOFF_MAX = 30.0
_CHECK_EVERY = 10.0


def _connect_kwargs(target: DatabaseTarget) -> dict[str, Any]:
    url = target.url
    kwargs = {
        key: value
        for key, value in target.connect_args.items()
        # Statement caching and the per-statement timeout are for the pool's connections.
        if key not in {"statement_cache_size", "prepared_statement_name_func", "command_timeout"}
    }
    server_settings = dict(kwargs.get("server_settings", {}))
    server_settings["application_name"] = LISTENER_APPLICATION_NAME
    kwargs.update(
        host=url.host,
        port=url.port,
        user=url.username,
        password=url.password,
        database=url.database,
        server_settings=server_settings,
        statement_cache_size=0,
    )
    return kwargs


class PostgresListener:
    """One dedicated connection that LISTENs on `channel`; reconnects with backoff, and says so.

    A drop is noticed at once when the server ends the connection, and within `_CHECK_EVERY`
    seconds (a `SELECT 1`) when the network silently loses it. Notifications sent while the
    listener is disconnected are lost: subscriptions stay open, and the log says when that
    window was.
    """

    def __init__(self, target: DatabaseTarget, channel: str, on_payload: Callable[[str], None]):
        self._target = target
        self._kwargs = _connect_kwargs(target)
        self._channel = channel
        self._on_payload = on_payload
        self._task: asyncio.Task[None] | None = None
        self.listening = asyncio.Event()
        self.reconnects = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="todo-events-listener")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        self._on_payload(payload)

    async def _run(self) -> None:
        failures = 0
        ever_connected = False
        lost_at: float | None = None
        loop = asyncio.get_running_loop()
        while True:
            connected = False
            try:
                conn = await asyncpg.connect(**self._kwargs)
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc}"
            else:
                try:
                    lost: asyncio.Future[None] = loop.create_future()
                    conn.add_termination_listener(
                        lambda _c, lost=lost: lost.done() or lost.set_result(None)
                    )
                    await conn.add_listener(self._channel, self._notify)
                    connected = True
                    self.listening.set()
                    if not ever_connected:
                        log.info(
                            "event listener: LISTEN %s on %s",
                            self._channel,
                            self._target.describe(),
                        )
                    elif lost_at is not None:
                        self.reconnects += 1
                        log.warning(
                            "event listener: reconnected after %.1f s; task events committed "
                            "in that time (if any) were not delivered",
                            loop.time() - lost_at,
                        )
                    ever_connected = True
                    failures = 0
                    lost_at = None
                    reason = await self._watch(conn, lost)
                except Exception as exc:
                    reason = f"{type(exc).__name__}: {exc}"
                finally:
                    self.listening.clear()
                    conn.terminate()
            if lost_at is None:
                lost_at = loop.time()
            failures += 1
            delay = min(_BACKOFF_MAX, _BACKOFF_FIRST * 2 ** (failures - 1))
            delay *= random.uniform(0.75, 1.0)  # spread the reconnects of many instances
            log.warning(
                "event listener: %s (%s); reconnecting in %.1f s",
                "lost its database connection" if connected else "cannot connect",
                reason,
                delay,
            )
            await asyncio.sleep(delay)

    async def _watch(self, conn: asyncpg.Connection, lost: asyncio.Future[None]) -> str:
        """Returns why the connection is gone."""
        while True:
            done, _ = await asyncio.wait({lost}, timeout=_CHECK_EVERY)
            if done:
                return "the connection was closed"
            await asyncio.wait_for(conn.execute("SELECT 1"), timeout=_CHECK_EVERY)
