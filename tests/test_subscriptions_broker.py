"""The event broker without sockets: fan-out, the slow-consumer bound, caps, the payload, and
"only writes that commit, only after the subscription started"."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime

import httpx
import orjson
import pytest
from fastapi import FastAPI

from core import events
from core.errors import ErrorCode, SubscriberTooSlow, TooManySubscriptions
from core.events import (
    Snapshot,
    TaskEvent,
    TaskEventHub,
    TaskEventKind,
    decode_notification,
    encode_body,
)
from core.records import TaskRecord
from core.validation import DESCRIPTION_MAX, TITLE_MAX
from graphql_schema.context import connection_authorization
from tests.conftest import Account

ALICE, BOB = uuid.uuid4(), uuid.uuid4()


def _task(owner: uuid.UUID, title: str = "t", description: str | None = None) -> TaskRecord:
    now = datetime.now(UTC)
    return TaskRecord(uuid.uuid4(), title, description, False, owner, now, now)


def _event(owner: uuid.UUID, xid: int | None = None) -> TaskEvent:
    task = _task(owner)
    return TaskEvent(TaskEventKind.CREATED, task.id, owner, task, xid=xid)


async def _drain(subscription: events.Subscription, count: int) -> list[TaskEvent]:
    async with asyncio.timeout(2):
        return [await subscription.next() for _ in range(count)]


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


async def test_events_a_snapshot_already_saw_are_skipped() -> None:
    hub = TaskEventHub(per_user=5, queue_size=10)
    subscription = hub.subscribe(ALICE)
    # Transactions below 100 and 105 committed before the subscription; 103 was running.
    subscription.start_after(Snapshot.parse("100:106:103"))
    seen_before = [_event(ALICE, xid) for xid in (99, 100, 105)]
    after = [_event(ALICE, xid) for xid in (103, 106, 250)]
    for event in [seen_before[0], after[0], seen_before[1], after[1], seen_before[2], after[2]]:
        hub.deliver(event)
    assert await _drain(subscription, 3) == after


def test_snapshot_text_is_parsed() -> None:
    assert Snapshot.parse("10:20:") == Snapshot(10, 20, frozenset())
    assert Snapshot.parse("10:20:12,15") == Snapshot(10, 20, frozenset({12, 15}))
    snapshot = Snapshot.parse("10:20:12,15")
    assert [x for x in range(8, 23) if snapshot.saw(x)] == [8, 9, 10, 11, 13, 14, 16, 17, 18, 19]


# --- the NOTIFY payload ------------------------------------------------------------------------


def test_the_payload_round_trips() -> None:
    task = _task(ALICE, 'Title "quoted" ✓', "a\nb")
    for event in (
        TaskEvent.created(task),
        TaskEvent.updated(task),
        TaskEvent.deleted(task.id, ALICE),
    ):
        decoded, load = decode_notification(f"4242 {encode_body(event)}")
        assert not load
        assert decoded == TaskEvent(event.kind, event.task_id, event.user_id, event.task, xid=4242)


@pytest.mark.parametrize("char", ["\x01", "😀", '"'])
def test_the_largest_task_still_fits_a_notify_payload(char: str) -> None:
    """NOTIFY payloads must stay under 8000 bytes; the worst text at the field limits fits."""
    task = _task(ALICE, char * TITLE_MAX, char * DESCRIPTION_MAX)
    body = encode_body(TaskEvent.updated(task))
    payload = f"{2**63 - 1} {body}".encode()
    assert len(payload) < 8000
    assert orjson.loads(body)["task"]["title"] == task.title


def test_a_task_that_does_not_fit_is_sent_by_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(events, "MAX_BODY_BYTES", 200)
    task = _task(ALICE, "x" * 200)
    decoded, load = decode_notification(f"7 {encode_body(TaskEvent.updated(task))}")
    assert load and decoded.task is None and decoded.task_id == task.id
    _, load = decode_notification(f"7 {encode_body(TaskEvent.deleted(task.id, ALICE))}")
    assert not load


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


async def _no_event(subscription: events.Subscription, seconds: float = 0.5) -> None:
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(seconds):
            await subscription.next()


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


async def test_an_event_of_a_rolled_back_transaction_is_never_delivered(
    app: FastAPI, client: httpx.AsyncClient, alice: Account
) -> None:
    services = app.state.services
    owner = uuid.UUID(alice.id)
    async with services.events.subscribe(owner) as subscription:
        with pytest.raises(RuntimeError):
            async with services.store.transaction() as transaction:
                await services.events.publish(transaction, _event(owner))
                raise RuntimeError("the write fails after publishing")
        await _no_event(subscription)
        committed = _event(owner)
        async with services.store.transaction() as transaction:
            await services.events.publish(transaction, committed)
        received = await _drain(subscription, 1)
        assert received[0].task_id == committed.task_id
