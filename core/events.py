"""Live task events: what a committed write announces, how it reaches its owner's tabs, and how
a client resumes after a drop (decision 23).

Every task write appends an entry to the event log (`task_events`, db/event_log.py) with its
own statement (PostgreSQL) or transaction (SQLite), so an event exists exactly when its write
committed. An entry's position grows with every entry, and one owner's entries take their
positions in commit order; a position, encoded, is the cursor a client resumes from.

- SQLite (one process owns the file): the committing transaction hands the event straight to
  this process's subscribers (`LocalEventBus`).
- PostgreSQL (`PostgresEventBus`): every instance reads the log in snapshot batches, PgQ's way:
  each batch holds the entries of the transactions that committed between the snapshot of the
  previous read and this one's, whatever their positions, so an entry whose transaction commits
  after a later position's is still read exactly once. A `pg_notify` that the writing
  instance sends after its writes (coalesced, outside them) wakes the readers
  (`PostgresListener`, one LISTEN connection per instance); without it (PgBouncer, a lost
  connection) they read every TASK_EVENTS_POLL_SECONDS. Nothing is lost while the listener is
  away: the next read takes everything since the last one.

Each instance fans events out to the subscriptions of the task's owner (`TaskEventHub`), never
to anyone else. A subscription buffers at most SUBSCRIPTION_QUEUE_SIZE events; when a client
falls further behind, its buffer is dropped and it catches up from the log instead, so a
slow client never holds up a write or another subscriber, and memory stays bounded.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import random
import re
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import asyncpg

from core.errors import (
    CursorExpired,
    DomainError,
    SubscriberTooSlow,
    TooManySubscriptions,
    Unavailable,
)
from core.guards import database_errors
from core.records import TaskRecord
from db import event_log
from db.store import Row, Store
from db.url import DatabaseTarget

log = logging.getLogger("todo.events")

CHANNEL = event_log.CHANNEL
LISTENER_APPLICATION_NAME = "todo-events-listener"
# Entries read per statement: a replay, a catch-up or a batch goes page by page.
PAGE = 500


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
    position: int = 0  # in the event log; 0 only for events built outside it (tests)

    @property
    def cursor(self) -> str:
        return encode_cursor(self.position)


def event_from_row(row: Sequence[Any] | Row) -> TaskEvent:
    """(position, kind, task_id, user_id, title, description, completed, created_at,
    updated_at), as db/event_log.py's reads return them."""
    position, kind, task_id, user_id, title, description, completed, created, updated = row
    task = None
    if kind != TaskEventKind.DELETED:
        task = TaskRecord(task_id, title, description, completed, user_id, created, updated)
    return TaskEvent(TaskEventKind(kind), task_id, user_id, task, position)


# --- cursors -----------------------------------------------------------------------------------

_CURSOR = re.compile(r"e1:([0-9]{1,18})")


def encode_cursor(position: int) -> str:
    """Opaque to clients: base64url of `e1:<position>`, without padding."""
    return base64.urlsafe_b64encode(f"e1:{position}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The position a cursor names; CursorExpired (which tells the client to refetch) when it
    names none."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raw = ""
    match = _CURSOR.fullmatch(raw) if len(cursor) <= 64 else None
    if match is None:
        raise CursorExpired(
            "Invalid cursor: refetch, then subscribe without `after` (or with the cursor of "
            "an event this service sent)"
        )
    return int(match.group(1))


_EXPIRED = (
    "Cursor expired: the events after it are no longer kept; refetch, then subscribe without "
    "`after`"
)


# --- the log, as the rules read it -------------------------------------------------------------


class EventLog:
    """Reads of the event log through the store: replays, starting points and clean-up."""

    def __init__(self, store: Store, *, retention: timedelta) -> None:
        self._store = store
        self.retention = retention

    async def latest(self, user_id: uuid.UUID) -> int:
        """The position of the owner's latest committed event (0 if none is kept)."""
        async with database_errors():
            found = await self._store.scalar(event_log.LATEST, {"user_id": user_id})
        return int(found or 0)

    async def after(
        self, user_id: uuid.UUID, position: int, *, limit: int = PAGE
    ) -> list[TaskEvent]:
        """The owner's events after `position`, oldest first, at most `limit`. CursorExpired
        when the entry at `position` is no longer kept (others after it may be gone too)."""
        params = {"user_id": user_id, "after": position, "limit": limit}
        async with database_errors():
            rows = await self._store.rows(event_log.REPLAY, params)
            if position > 0:
                known = (
                    rows[0][-1]
                    if rows
                    else await self._store.scalar(event_log.KNOWN, {"after": position})
                )
                if not known:
                    raise CursorExpired(_EXPIRED)
        return [event_from_row(tuple(row)[:-1]) for row in rows]

    async def sweep(
        self, *, batch: int = 1000, batches: int = 50, now: datetime | None = None
    ) -> int:
        """Delete events older than the retention, oldest first, `batch` per statement; how
        many went."""
        deleted = 0
        for _ in range(batches):
            cutoff = (now or datetime.now(UTC)) - self.retention
            count = await self._store.execute(event_log.SWEEP, {"batch": batch, "cutoff": cutoff})
            deleted += count
            if count < batch:
                break
        return deleted


# --- subscriptions and the hub ------------------------------------------------------------------


class Subscription:
    """One subscriber's feed: its owner's events in position order, each once.

    Live events wait in a buffer of at most `limit`; past that the buffer is dropped and the
    subscription reads the log after its last event instead (without a log: it ends,
    `SubscriberTooSlow`). A replay (`after`) starts the same way.
    """

    def __init__(
        self, hub: TaskEventHub, user_id: uuid.UUID, limit: int, log: EventLog | None
    ) -> None:
        self.user_id = user_id
        self._hub = hub
        self._limit = limit
        self._log = log
        self._waiting: deque[TaskEvent] = deque()
        self._backlog: deque[TaskEvent] = deque()  # read from the log, before `_waiting`
        self._wakeup = asyncio.Event()
        self._ended: DomainError | None = None
        self._last = 0  # the position of the last event handed out, or where we started
        self._behind = False  # events after `_last` must be read from the log

    def start_at(self, position: int, *, replay: bool) -> None:
        """Deliver only events after `position`; `replay`: read those committed so far from
        the log first."""
        self._last = position
        self._behind = replay

    def offer(self, event: TaskEvent) -> None:
        """Called by the hub for each of the owner's events. Never blocks, never waits."""
        if self._ended is not None:
            return
        if len(self._waiting) >= self._limit:
            if self._log is None:
                self.end(
                    SubscriberTooSlow(
                        f"Subscription ended: more than {self._limit} events were waiting for "
                        "this client; subscribe again and refetch"
                    )
                )
                return
            # Every event offered so far has committed, so the log has them all.
            self._waiting.clear()
            self._behind = True
            self._wakeup.set()
            return
        self._waiting.append(event)
        self._wakeup.set()

    def end(self, error: DomainError) -> None:
        """Stop delivering; the consumer's next `next()` raises `error`."""
        if self._ended is None:
            self._ended = error
            self._waiting.clear()
            self._backlog.clear()
            self._hub.discard(self)
        self._wakeup.set()

    def close(self) -> None:
        self._waiting.clear()
        self._backlog.clear()
        self._hub.discard(self)

    @property
    def pending(self) -> int:
        return len(self._waiting) + len(self._backlog)

    async def next(self) -> TaskEvent:
        while True:
            if self._ended is not None:
                raise self._ended
            if self._backlog:
                event = self._backlog.popleft()
                self._last = event.position
                return event
            if self._behind and self._log is not None:
                # Cleared first: whatever overflows while we read is read on the next turn.
                self._behind = False
                page = await self._log.after(self.user_id, self._last)
                self._behind = len(page) == PAGE
                self._backlog.extend(page)
                continue
            while self._waiting:
                event = self._waiting.popleft()
                if event.position:
                    if event.position <= self._last:  # already read from the log
                        continue
                    self._last = event.position
                return event
            self._wakeup.clear()
            await self._wakeup.wait()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> TaskEvent:
        return await self.next()


class TaskEventHub:
    """This instance's subscriptions, by owner: an event goes to its owner's and no one else's."""

    def __init__(self, *, per_user: int, queue_size: int, log: EventLog | None = None) -> None:
        self.per_user = per_user
        self.queue_size = queue_size
        self.log = log
        self._by_user: dict[uuid.UUID, set[Subscription]] = {}

    def subscribe(self, user_id: uuid.UUID) -> Subscription:
        mine = self._by_user.get(user_id, set())
        if len(mine) >= self.per_user:
            raise TooManySubscriptions(
                f"Too many subscriptions for this account (at most {self.per_user})"
            )
        subscription = Subscription(self, user_id, self.queue_size, self.log)
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

    def owners(self) -> frozenset[uuid.UUID]:
        """The owners with a subscription here."""
        return frozenset(self._by_user)

    def count(self, user_id: uuid.UUID | None = None) -> int:
        if user_id is not None:
            return len(self._by_user.get(user_id, ()))
        return sum(len(subs) for subs in self._by_user.values())

    def end_all(self, error: Callable[[], DomainError]) -> None:
        for subs in list(self._by_user.values()):
            for subscription in list(subs):
                subscription.end(error())


# --- the buses ---------------------------------------------------------------------------------

SWEEP_EVERY_SECONDS = 60.0


class EventBus:
    """Feeds this instance's subscriptions from committed writes, and keeps the log trimmed."""

    # PostgreSQL: a write, its event and the wake-up are one statement (db/event_log.py).
    one_statement = False

    def __init__(self, hub: TaskEventHub, log: EventLog) -> None:
        self.hub = hub
        self.log = log
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Begin receiving events. Never raises: the service starts even when the database
        is down, and live updates follow when it comes back."""
        self._tasks.append(
            asyncio.create_task(self._sweep_now_and_then(), name="todo-events-sweep")
        )

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        self.hub.end_all(Unavailable)

    def committed(self, event: TaskEvent) -> None:
        """SQLite: a write's transaction has committed `event` (called in commit order)."""
        self.hub.deliver(event)

    def written(self) -> None:
        """PostgreSQL: a write statement of this instance committed an event."""

    @asynccontextmanager
    async def subscribe(
        self, user_id: uuid.UUID, after: str | None = None
    ) -> AsyncIterator[Subscription]:
        """A feed of `user_id`'s events: those after the cursor `after` (replayed from the
        log first), else those that commit from now on. TooManySubscriptions over the cap;
        CursorExpired for a cursor that names nothing kept (on the feed's first read)."""
        position = decode_cursor(after) if after is not None else None
        await self._ready()
        subscription = self.hub.subscribe(user_id)
        try:
            if position is None:
                # Registered first: an event committed after this read reaches the hub after
                # we did, and one position per owner at a time means none is skipped.
                subscription.start_at(await self.log.latest(user_id), replay=False)
            else:
                subscription.start_at(position, replay=True)
            yield subscription
        finally:
            subscription.close()

    async def _ready(self) -> None:
        pass

    async def _sweep_now_and_then(self) -> None:
        while True:
            # First a minute after start: start-up (and a test's short-lived app) stays quiet.
            await asyncio.sleep(SWEEP_EVERY_SECONDS)
            try:
                deleted = await self.log.sweep()
            except Exception as exc:  # the next sweep will do
                log.warning("task events clean-up failed: %s: %s", type(exc).__name__, exc)
            else:
                if deleted:
                    log.debug("task events clean-up: %d older than the retention deleted", deleted)


class LocalEventBus(EventBus):
    """SQLite: events go from the committing transaction straight to this process's hub."""

    def __init__(self, hub: TaskEventHub, log: EventLog, *, workers: int = 1) -> None:
        super().__init__(hub, log)
        self._workers = workers

    async def start(self) -> None:
        await super().start()
        if self._workers > 1:
            log.warning(
                "live updates on SQLite reach only subscribers of the worker that made the "
                "write (WEB_CONCURRENCY=%d): use PostgreSQL, or one worker",
                self._workers,
            )


class PostgresEventBus(EventBus):
    """PostgreSQL: every instance reads the log in snapshot batches, woken by NOTIFY when it
    can LISTEN (`listener_target`), else every `poll_seconds`."""

    one_statement = True

    def __init__(
        self,
        hub: TaskEventHub,
        log: EventLog,
        *,
        store: Store,
        listener_target: DatabaseTarget | None,
        poll_seconds: float,
        wait_seconds: float,
    ) -> None:
        super().__init__(hub, log)
        self._store = store
        self._poll_seconds = poll_seconds
        self._wait_seconds = wait_seconds
        self._wake = asyncio.Event()
        self._since: str | None = None  # the snapshot the last batch was read at
        self._since_at = 0.0  # when (loop time)
        self._has_snapshot = asyncio.Event()
        self.batches = 0
        self._written = asyncio.Event()
        self.listener = (
            PostgresListener(listener_target, CHANNEL, self._wake.set)
            if listener_target is not None
            else None
        )

    def written(self) -> None:
        self._wake.set()  # this instance's subscribers need no round trip
        self._written.set()  # the others', through NOTIFY (`_wake_others`)

    async def start(self) -> None:
        await super().start()
        if self.listener is None:
            log.info(
                "live updates: reading the event log every %.2f s (no LISTEN connection)",
                self._poll_seconds,
            )
        else:
            self.listener.start()
        self._tasks.append(asyncio.create_task(self._read(), name="todo-events-reader"))
        self._tasks.append(asyncio.create_task(self._wake_others(), name="todo-events-notify"))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._wait_seconds):
                await self._has_snapshot.wait()

    async def stop(self) -> None:
        if self.listener is not None:
            await self.listener.stop()
        await super().stop()

    async def _ready(self) -> None:
        """A subscription must not start before the reader's first snapshot: an event that
        committed between the two would be in no batch."""
        if not self._has_snapshot.is_set():
            try:
                async with asyncio.timeout(self._wait_seconds):
                    await self._has_snapshot.wait()
            except TimeoutError:
                log.warning("subscription refused: the event log cannot be read")
                raise Unavailable() from None

    @property
    def _listening(self) -> bool:
        return self.listener is not None and self.listener.listening.is_set()

    async def _read(self) -> None:
        failures = 0
        while True:
            try:
                if self._since is None:
                    self._since = await self._store.scalar(event_log.SNAPSHOT)
                    self._has_snapshot.set()
                else:
                    await self._read_batch()
            except Exception as exc:
                failures += 1
                if failures == 1 or failures % 60 == 0:
                    log.warning(
                        "task events: cannot read the event log (%s: %s); retrying",
                        type(exc).__name__,
                        exc,
                    )
                await asyncio.sleep(min(self._poll_seconds * failures, 5.0))
                continue
            if failures:
                log.info("task events: reading the event log again")
                failures = 0
            # Woken by a NOTIFY; else (no LISTEN, or it is lost) every poll interval. While
            # listening, a read every few seconds all the same bounds what a connection that
            # went silent before it was noticed can delay.
            timeout = _LISTENING_READ_EVERY if self._listening else self._poll_seconds
            # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a cancellation
            # that arrives as the event is set, and stop() would then wait for ever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            self._wake.clear()

    async def _wake_others(self) -> None:
        """One `pg_notify` for all the writes of a `_NOTIFY_EVERY` window, outside them: in a
        write's own transaction, PostgreSQL would serialize every write's commit behind the
        notify queue's lock (measured: 1,200 against 3,000 creates/s). A wake-up that is
        lost (an error, a crash right after a write) delays events until the next read, it
        never loses them."""
        while True:
            await self._written.wait()
            self._written.clear()
            try:
                await self._store.scalar(event_log.WAKE, {"channel": CHANNEL})
            except Exception as exc:
                log.debug("task events: wake-up not sent: %s: %s", type(exc).__name__, exc)
            await asyncio.sleep(_NOTIFY_EVERY)

    async def _read_batch(self) -> None:
        since = self._since
        assert since is not None
        owners = self.hub.owners()
        now = asyncio.get_running_loop().time()
        if not owners and now - self._since_at < _LISTENING_READ_EVERY:
            # No one to deliver to: the next subscriber starts at its owner's latest event,
            # and its first batch reads from `since`, which only has to stay recent.
            return
        until = await self._deliver_batch(since, None, owners)
        # Owners who subscribed while that was read: their part of the same batch.
        if added := self.hub.owners() - owners:
            await self._deliver_batch(since, until, added)
        self._since, self._since_at = until, now
        self.batches += 1

    async def _deliver_batch(
        self, since: str, until: str | None, owners: Iterable[uuid.UUID]
    ) -> str:
        """Deliver the batch (`since`, `until` or now] of `owners`' events; its snapshot."""
        users = list(owners)
        if not users:
            if until is not None:
                return until
            snapshot: str = await self._store.scalar(event_log.SNAPSHOT)
            return snapshot
        after = 0
        while True:
            params = {"since": since, "until": until, "users": users, "after": after, "limit": PAGE}
            rows = await self._store.rows(event_log.BATCH, params)
            until = str(rows[0][0])
            events = [event_from_row(tuple(row)[1:]) for row in rows if row[1] is not None]
            for event in events:
                self.hub.deliver(event)
            if len(events) < PAGE:
                return until
            after = events[-1].position


# --- the listener connection --------------------------------------------------------------------

_BACKOFF_FIRST = 0.25
_BACKOFF_MAX = 5.0
# A heartbeat (`SELECT 1`) this often, answered within as long: a connection that went silent
# is noticed within twice this, one the server ended at once.
_HEARTBEAT = 2.0
_LISTENING_READ_EVERY = 5.0
# The most often an instance sends the wake-up after its writes: a delay of at most this.
_NOTIFY_EVERY = 0.005


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
    """One dedicated connection that LISTENs on `channel` and calls `wake` for every
    notification, and when it (re)connects; reconnects with backoff, and says so.

    A drop is noticed at once when the server ends the connection, and within 2 x `_HEARTBEAT`
    seconds when the network silently loses it. Nothing depends on it for correctness: the
    reader reads the log after its last batch whenever it wakes.
    """

    def __init__(self, target: DatabaseTarget, channel: str, wake: Callable[[], None]):
        self._target = target
        self._kwargs = _connect_kwargs(target)
        self._channel = channel
        self._wake = wake
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

    def _notify(self, _conn: object, _pid: int, _channel: str, _payload: str) -> None:
        self._wake()

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
                    self._wake()  # read what committed while we were not listening
                    if not ever_connected:
                        log.info(
                            "event listener: LISTEN %s on %s",
                            self._channel,
                            self._target.describe(),
                        )
                    elif lost_at is not None:
                        self.reconnects += 1
                        log.warning(
                            "event listener: reconnected after %.1f s; events committed in "
                            "that time are read from the event log",
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
                    self._wake()  # the reader polls until we are back
                    conn.terminate()
            if lost_at is None:
                lost_at = loop.time()
            failures += 1
            delay = min(_BACKOFF_MAX, _BACKOFF_FIRST * 2 ** (failures - 1))
            delay *= random.uniform(0.75, 1.0)  # spread the reconnects of many instances
            log.warning(
                "event listener: %s (%s); reconnecting in %.1f s (reading the event log meanwhile)",
                "lost its database connection" if connected else "cannot connect",
                reason,
                delay,
            )
            await asyncio.sleep(delay)

    async def _watch(self, conn: asyncpg.Connection, lost: asyncio.Future[None]) -> str:
        """Returns why the connection is gone."""
        while True:
            done, _ = await asyncio.wait({lost}, timeout=_HEARTBEAT)
            if done:
                return "the connection was closed"
            try:
                async with asyncio.timeout(_HEARTBEAT):
                    await conn.execute("SELECT 1")
            except TimeoutError:
                return f"no answer to a heartbeat within {_HEARTBEAT:.0f} s"
