"""The event broker without sockets: fan-out, the slow-consumer bound, caps, cursors, and through
the app "only writes that commit, only after the subscription started", resuming, clean-up,
catching up from the log, and the snapshot batches' race."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from api.app import create_app
from core import events
from core.errors import CursorExpired, ErrorCode, SubscriberTooSlow, TooManySubscriptions
from core.events import TaskEvent, TaskEventHub, TaskEventKind
from core.records import TaskRecord
from graphql_schema.context import connection_authorization
from tests.conftest import Account, serve, signup

ALICE, BOB = uuid.uuid4(), uuid.uuid4()


def _task(owner: uuid.UUID, title: str = "t", description: str | None = None) -> TaskRecord:
    now = datetime.now(UTC)
    return TaskRecord(uuid.uuid4(), title, description, False, owner, now, now)


def _event(owner: uuid.UUID, position: int = 0) -> TaskEvent:
    task = _task(owner)
    return TaskEvent(TaskEventKind.CREATED, task.id, owner, task, position)


async def _drain(subscription: events.Subscription, count: int) -> list[TaskEvent]:
    async with asyncio.timeout(2):
        return [await subscription.next() for _ in range(count)]


async def _no_event(subscription: events.Subscription, seconds: float = 0.5) -> None:
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(seconds):
            await subscription.next()


# --- fan-out and the bounds --------------------------------------------------------------------


async def test_an_event_reaches_every_subscription_of_its_owner_and_no_other() -> None:
    hub = TaskEventHub(per_user=5, queue_size=10)
    tab1, tab2, bobs = hub.subscribe(ALICE), hub.subscribe(ALICE), hub.subscribe(BOB)
    event = _event(ALICE)
    hub.deliver(event)
    assert await _drain(tab1, 1) == [event]
    assert await _drain(tab2, 1) == [event]
    assert bobs.pending == 0


async def test_a_slow_consumer_is_ended_without_slowing_the_writer_or_the_others() -> None:
    hub = TaskEventHub(per_user=5, queue_size=3)
    slow, fast = hub.subscribe(ALICE), hub.subscribe(ALICE)
    sent = [_event(ALICE) for _ in range(50)]
    started = time.perf_counter()
    received: list[TaskEvent] = []
    for event in sent:
        hub.deliver(event)  # synchronous: a writer never waits for a subscriber
        received.extend(await _drain(fast, 1))
    assert time.perf_counter() - started < 1.0
    assert received == sent
    with pytest.raises(SubscriberTooSlow) as ended:
        await slow.next()
    assert ended.value.code is ErrorCode.UNAVAILABLE
    assert "more than 3 events were waiting" in ended.value.message
    assert hub.count(ALICE) == 1  # the slow one is gone, the fast one stays


async def test_a_waiting_consumer_wakes_up_for_the_next_event() -> None:
    hub = TaskEventHub(per_user=5, queue_size=3)
    subscription = hub.subscribe(ALICE)
    waiter = asyncio.create_task(subscription.next())
    await asyncio.sleep(0.01)
    assert not waiter.done()
    event = _event(ALICE)
    hub.deliver(event)
    async with asyncio.timeout(1):
        assert await waiter == event


async def test_subscriptions_per_user_are_capped() -> None:
    hub = TaskEventHub(per_user=2, queue_size=3)
    first, _second = hub.subscribe(ALICE), hub.subscribe(ALICE)
    with pytest.raises(TooManySubscriptions) as refused:
        hub.subscribe(ALICE)
    assert refused.value.code is ErrorCode.RATE_LIMITED
    assert refused.value.message == "Too many subscriptions for this account (at most 2)"
    hub.subscribe(BOB)  # another account has its own allowance
    first.close()
    hub.subscribe(ALICE)  # a slot freed up


async def test_events_up_to_the_start_are_skipped_and_each_event_is_handed_out_once() -> None:
    hub = TaskEventHub(per_user=5, queue_size=10)
    subscription = hub.subscribe(ALICE)
    subscription.start_at(5, replay=False)
    events_ = [_event(ALICE, position) for position in (3, 5, 6, 6, 7)]
    for event in events_:
        hub.deliver(event)
    assert [e.position for e in await _drain(subscription, 2)] == [6, 7]
    await _no_event(subscription, 0.1)


# --- cursors -----------------------------------------------------------------------------------


def test_a_cursor_round_trips_and_is_opaque() -> None:
    for position in (1, 42, 10**17):
        cursor = events.encode_cursor(position)
        assert str(position) not in cursor
        assert events.decode_cursor(cursor) == position


@pytest.mark.parametrize(
    "cursor", ["", "x", "not base64 !", "ZTE6", "ZTI6MQ", "ZTE6LTE", "a" * 65, "djF8MXwy"]
)
def test_a_malformed_cursor_is_refused_as_expired(cursor: str) -> None:
    with pytest.raises(CursorExpired) as refused:
        events.decode_cursor(cursor)
    assert refused.value.code is ErrorCode.CURSOR_EXPIRED
    assert refused.value.message.startswith("Invalid cursor")


def test_connection_init_payloads_name_the_token() -> None:
    assert connection_authorization({"Authorization": "Bearer abc"}) == "Bearer abc"
    assert connection_authorization({"authorization": "Bearer abc"}) == "Bearer abc"
    assert connection_authorization({"token": "abc"}) == "Bearer abc"
    assert connection_authorization({"token": "Bearer abc"}) == "Bearer abc"
    assert connection_authorization({"token": 12}) == ""  # present but unusable: refused
    assert connection_authorization({"Authorization": None}) == ""
    assert connection_authorization({}) is None  # fall back to the handshake's header
    assert connection_authorization(None) is None


# --- through the app (both databases): only writes that commit, in order ----------------------


async def test_rest_writes_publish_in_order_and_failed_writes_publish_nothing(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, bob: Account
) -> None:
    bus = app.state.services.events
    async with bus.subscribe(uuid.UUID(alice.id)) as mine, bus.subscribe(uuid.UUID(bob.id)) as bobs:
        created = await client.post("/api/tasks", json={"title": "a"}, headers=alice.headers)
        task_id = created.json()["task"]["id"]
        await client.put(f"/api/tasks/{task_id}", json={"completed": True}, headers=alice.headers)
        # Refused writes: no event.
        assert (
            await client.post("/api/tasks", json={"title": ""}, headers=alice.headers)
        ).status_code == 400
        assert (
            await client.put(f"/api/tasks/{task_id}", json={"title": "x"}, headers=bob.headers)
        ).status_code == 404
        assert (
            await client.delete(f"/api/tasks/{task_id}", headers=bob.headers)
        ).status_code == 404
        await client.delete(f"/api/tasks/{task_id}", headers=alice.headers)
        received = await _drain(mine, 3)
        assert [(e.kind, str(e.task_id)) for e in received] == [
            (TaskEventKind.CREATED, task_id),
            (TaskEventKind.UPDATED, task_id),
            (TaskEventKind.DELETED, task_id),
        ]
        assert received[1].task is not None and received[1].task.completed is True
        assert received[2].task is None
        await _no_event(mine)
        await _no_event(bobs, 0.1)


async def test_a_failed_write_logs_and_publishes_nothing(
    app: FastAPI, client: httpx.AsyncClient, alice: Account
) -> None:
    """A create for an account deleted after its token was checked fails (401) as one
    statement or one transaction: no task, no event in the log, none delivered."""
    services = app.state.services
    owner = uuid.UUID(alice.id)
    async with services.events.subscribe(owner) as subscription:
        async with services.engine.begin() as conn:
            await conn.exec_driver_sql("DELETE FROM users")
        refused = await client.post("/api/tasks", json={"title": "a"}, headers=alice.headers)
        assert refused.status_code == 401
        await _no_event(subscription)
    assert await services.events.log.latest(owner) == 0


async def test_positions_grow_and_a_subscription_resumes_after_a_cursor_once_each(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, bob: Account
) -> None:
    bus = app.state.services.events
    owner = uuid.UUID(alice.id)

    async def create(title: str, account: Account = alice) -> str:
        response = await client.post("/api/tasks", json={"title": title}, headers=account.headers)
        assert response.status_code == 201
        return str(response.json()["task"]["id"])

    async with bus.subscribe(owner) as first:
        ids = [await create(f"t{i}") for i in range(3)]
        await create("bob's", bob)
        seen = await _drain(first, 3)
    assert [str(e.task_id) for e in seen] == ids
    assert seen[0].position < seen[1].position < seen[2].position
    # Missed while away: two more, one of them an update; another owner's write in between.
    ids.append(await create("t3"))
    await client.put(f"/api/tasks/{ids[0]}", json={"completed": True}, headers=alice.headers)
    await create("bob's again", bob)
    async with bus.subscribe(owner, after=seen[0].cursor) as resumed:
        replayed = await _drain(resumed, 4)
        assert [(e.kind, str(e.task_id)) for e in replayed] == [
            (TaskEventKind.CREATED, ids[1]),
            (TaskEventKind.CREATED, ids[2]),
            (TaskEventKind.CREATED, ids[3]),
            (TaskEventKind.UPDATED, ids[0]),
        ]
        assert replayed[-1].task is not None and replayed[-1].task.completed
        # Then live, without a seam: the next write once, nothing replayed twice.
        ids.append(await create("t4"))
        [live] = await _drain(resumed, 1)
        assert str(live.task_id) == ids[-1] and live.position > replayed[-1].position
        await _no_event(resumed)
    # The cursor of the latest event: nothing to replay, then live.
    async with bus.subscribe(owner, after=live.cursor) as caught_up:
        await _no_event(caught_up, 0.2)
        deleted = await client.delete(f"/api/tasks/{ids[1]}", headers=alice.headers)
        assert deleted.status_code == 204
        [gone] = await _drain(caught_up, 1)
        assert (gone.kind, str(gone.task_id), gone.task) == (TaskEventKind.DELETED, ids[1], None)


async def test_old_events_are_cleaned_up_and_their_cursors_expire(
    app: FastAPI, client: httpx.AsyncClient, alice: Account
) -> None:
    bus = app.state.services.events
    owner = uuid.UUID(alice.id)
    async with bus.subscribe(owner) as subscription:
        for i in range(5):
            await client.post("/api/tasks", json={"title": f"t{i}"}, headers=alice.headers)
        seen = await _drain(subscription, 5)
    # Events older than the retention go, oldest first, in bounded batches; the rest stay.
    assert seen[2].task is not None
    as_if_later = seen[2].task.created_at + bus.log.retention
    assert await bus.log.sweep(batch=1, now=as_if_later) == 2
    assert await bus.log.sweep() == 0  # nothing is 24 hours old
    async with bus.subscribe(owner, after=seen[0].cursor) as expired:
        with pytest.raises(CursorExpired) as refused:
            await expired.next()
    assert refused.value.code is ErrorCode.CURSOR_EXPIRED
    assert refused.value.message.startswith("Cursor expired")
    # The oldest kept event's cursor still replays everything after it.
    async with bus.subscribe(owner, after=seen[2].cursor) as kept:
        assert [e.task_id for e in await _drain(kept, 2)] == [e.task_id for e in seen[3:]]
    # A well-formed cursor of no event at all is refused the same way.
    async with bus.subscribe(owner, after=events.encode_cursor(10**15)) as unknown:
        with pytest.raises(CursorExpired):
            await unknown.next()


async def test_a_subscriber_that_falls_behind_catches_up_from_the_log(
    make_settings: Any, alice: Account
) -> None:
    """Past SUBSCRIPTION_QUEUE_SIZE waiting events the buffer is dropped and the subscriber
    reads the log instead: every event once, in order, none ending the subscription."""
    app = create_app(make_settings(subscription_queue_size=3))
    async with serve(app, wipe=False) as client:
        account = await signup(client)
        owner = uuid.UUID(account.id)
        async with app.state.services.events.subscribe(owner) as subscription:
            ids = []
            for i in range(40):
                response = await client.post(
                    "/api/tasks", json={"title": f"t{i}"}, headers=account.headers
                )
                ids.append(response.json()["task"]["id"])
            await asyncio.sleep(0.3)  # let every event reach the hub (and overflow it)
            received = await _drain(subscription, 40)
            assert [str(e.task_id) for e in received] == ids
            await _no_event(subscription, 0.3)


async def test_snapshot_batches_deliver_a_lower_position_that_commits_later_exactly_once(
    app: FastAPI, client: httpx.AsyncClient, database_url: str
) -> None:
    """The outbox race: T1 takes position p1, T2 takes p2 > p1 and commits first. A reader
    that kept "the last position read" would skip p1 forever; the snapshot batches deliver p2,
    then p1 when T1 commits, each once."""
    if database_url.startswith("sqlite"):
        pytest.skip("one writer at a time on SQLite: positions are taken in commit order")
    import asyncpg
    from sqlalchemy.engine import make_url

    bus = app.state.services.events
    url = make_url(database_url)
    connect = {"host": url.host, "port": url.port or 5432, "user": url.username}
    t1 = await asyncpg.connect(database=url.database, **connect)
    t2 = await asyncpg.connect(database=url.database, **connect)
    insert = (
        "INSERT INTO task_events (xid, kind, task_id, user_id, recorded_at) "
        "VALUES (CAST(CAST(pg_current_xact_id() AS TEXT) AS BIGINT), 'DELETED', $1, $2, now()) "
        "RETURNING position"
    )
    ann, ben = uuid.uuid4(), uuid.uuid4()
    try:
        async with bus.subscribe(ann) as anns, bus.subscribe(ben) as bens:
            tx1, tx2 = t1.transaction(), t2.transaction()
            await tx1.start()
            await tx2.start()
            p1 = await t1.fetchval(insert, uuid.uuid4(), ann)
            p2 = await t2.fetchval(insert, uuid.uuid4(), ben)
            assert p1 < p2
            await t2.execute("SELECT pg_notify($1, '')", events.CHANNEL)
            await tx2.commit()
            [second] = await _drain(bens, 1)
            assert second.position == p2
            await _no_event(anns, 1.2)  # batches read meanwhile found p2 and not p1
            assert bus.batches >= 2
            await t1.execute("SELECT pg_notify($1, '')", events.CHANNEL)
            await tx1.commit()
            [first] = await _drain(anns, 1)
            assert first.position == p1
            await _no_event(anns, 1.0)
            await _no_event(bens, 0.1)
    finally:
        await t1.close()
        await t2.close()


async def test_one_owners_writes_take_positions_in_commit_order(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, database_url: str
) -> None:
    """What makes a position a cursor: a write of the owner waits for the owner's previous
    write to commit before it takes its position (PostgreSQL: the owner's advisory lock)."""
    if database_url.startswith("sqlite"):
        pytest.skip("one writer at a time on SQLite")
    import asyncpg
    from sqlalchemy.engine import make_url

    from core.tasks import _turn
    from db import event_log
    from db.store import _Compiled

    url = make_url(database_url)
    connect = {"host": url.host, "port": url.port or 5432, "user": url.username}
    compiled = _Compiled(event_log.PG_CREATE)
    owner = uuid.UUID(alice.id)

    def args() -> list[Any]:
        params = {
            "task_id": uuid.uuid4(),
            "title": "t",
            "description": None,
            "user_id": owner,
            "now": datetime.now(UTC),
            **_turn(owner),
        }
        return compiled.args(params)

    first = await asyncpg.connect(database=url.database, **connect)
    second = await asyncpg.connect(database=url.database, **connect)
    try:
        tx = first.transaction()
        await tx.start()
        p1 = await first.fetchval(compiled.sql, *args())  # holds the owner's turn until commit
        waiting = asyncio.create_task(second.fetchval(compiled.sql, *args()))
        await asyncio.sleep(0.5)
        assert not waiting.done()
        await tx.commit()
        async with asyncio.timeout(5):
            p2 = await waiting
        assert p2 > p1
    finally:
        await first.close()
        await second.close()
