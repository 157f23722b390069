"""The task events' log (`task_events`): the statements that write it and read it.

Every task write adds one entry, committed with the write (decision 23):

- PostgreSQL: one statement per write, one round trip in autocommit. Data-modifying CTEs run
  the write and append its entry (the task as the write left it). No `pg_notify` in it:
  PostgreSQL serializes the commits of notifying transactions (a global lock held through the
  commit's WAL flush), which capped writes at a third of their rate; each instance sends the
  wake-up (`WAKE`) on its own, coalesced, after its writes. Before the entry takes its
  position, the statement takes a transaction-scoped
  advisory lock on the owner (`pg_advisory_xact_lock(OWNER_LOCK_CLASS, owner_lock_key)`),
  held until commit: one owner's entries therefore take their positions in commit order, which
  is what lets a client resume from a position. The lock is the statement's last, after the
  task row's, so two writes cannot wait on each other in a cycle.
- SQLite: the core statements in one transaction (one writer at a time, so positions follow
  commit order there already).

Reads: an owner's entries after a position (a subscriber's replay and catch-up), the owner's
latest position (where a new subscription starts), and on PostgreSQL the snapshot batches
every instance reads (`BATCH`). Clean-up deletes the oldest entries, in position order, so
what remains is always every entry after some position.
"""

from __future__ import annotations

import uuid

from sqlalchemy import bindparam, delete, exists, func, insert, select, text

from db.models import TaskEventEntry

CHANNEL = "todo_task_events"
# The advisory-lock class of the owner locks ("todo" in ASCII); the two-key form, whose key
# space is apart from the migrations' one-key lock.
OWNER_LOCK_CLASS = 0x746F646F

# The xid as the `xid` column stores it (a bigint: xid8's text is its decimal value).
_XID = "CAST(CAST(pg_current_xact_id() AS TEXT) AS BIGINT)"
_ENTRY_COLUMNS = (
    "xid, kind, task_id, user_id, title, description, completed, created_at, updated_at, "
    "recorded_at"
)
# The owner's lock, taken once the task row is written (it reads `task`) and before the
# entry takes its position (the entry reads `turn`).
_TURN = "turn AS (SELECT pg_advisory_xact_lock(:lock_class, CAST(:lock_key AS INTEGER)) FROM task)"

PG_CREATE = text(
    f"""
WITH task AS (
    INSERT INTO tasks (id, title, description, completed, user_id, created_at, updated_at)
    VALUES (:task_id, :title, :description, false, :user_id, :now, :now)
    RETURNING id, title, description, completed, user_id, created_at, updated_at
), {_TURN}, entry AS (
    INSERT INTO task_events ({_ENTRY_COLUMNS})
    SELECT {_XID}, 'CREATED', task.id, task.user_id, task.title, task.description,
        task.completed, task.created_at, task.updated_at, task.created_at
    FROM task, turn
    RETURNING position
)
SELECT entry.position FROM entry
"""
)

# Only the fields flagged change; `updated_at` moves strictly forward even when the clock
# does not (the same rule as `max(now, old + 1 us)`, on the row's latest version).
PG_UPDATE = text(
    f"""
WITH task AS (
    UPDATE tasks SET
        title = CASE WHEN CAST(:set_title AS BOOLEAN)
            THEN CAST(:title AS VARCHAR) ELSE title END,
        description = CASE WHEN CAST(:set_description AS BOOLEAN)
            THEN CAST(:description AS VARCHAR) ELSE description END,
        completed = CASE WHEN CAST(:set_completed AS BOOLEAN)
            THEN CAST(:completed AS BOOLEAN) ELSE completed END,
        updated_at = GREATEST(CAST(:now AS TIMESTAMPTZ), updated_at + INTERVAL '1 microsecond')
    WHERE id = :task_id AND user_id = :user_id
    RETURNING id, title, description, completed, user_id, created_at, updated_at
), {_TURN}, entry AS (
    INSERT INTO task_events ({_ENTRY_COLUMNS})
    SELECT {_XID}, 'UPDATED', task.id, task.user_id, task.title, task.description,
        task.completed, task.created_at, task.updated_at, task.updated_at
    FROM task, turn
    RETURNING position
)
SELECT task.id, task.title, task.description, task.completed, task.user_id, task.created_at,
    task.updated_at, entry.position
FROM task, entry
"""
)

PG_DELETE = text(
    f"""
WITH task AS (
    DELETE FROM tasks WHERE id = :task_id AND user_id = :user_id RETURNING id, user_id
), {_TURN}, entry AS (
    INSERT INTO task_events ({_ENTRY_COLUMNS})
    SELECT {_XID}, 'DELETED', task.id, task.user_id, NULL, NULL, NULL, NULL, NULL,
        CAST(:now AS TIMESTAMPTZ)
    FROM task, turn
    RETURNING position
)
SELECT entry.position FROM entry
"""
)


# The readers' wake-up, sent by the writing instance after its writes (coalesced).
WAKE = text("SELECT CAST(pg_notify(:channel, '') AS TEXT)")


def owner_lock_key(user_id: uuid.UUID) -> int:
    """The owner's advisory-lock key: 32 bits of the UUID (a collision only serializes two
    owners' writes, it never mixes their events)."""
    return int.from_bytes(user_id.bytes[:4], "big", signed=True)


# SQLite: appended inside the write's transaction.
APPEND = (
    insert(TaskEventEntry)
    .values(
        kind=bindparam("kind"),
        task_id=bindparam("task_id"),
        user_id=bindparam("user_id"),
        title=bindparam("title"),
        description=bindparam("description"),
        completed=bindparam("completed"),
        created_at=bindparam("created_at"),
        updated_at=bindparam("updated_at"),
        recorded_at=bindparam("recorded_at"),
    )
    .returning(TaskEventEntry.position)
)

# What an event is made of, in this order (after the position) in every read below.
EVENT_COLUMNS = (
    TaskEventEntry.position,
    TaskEventEntry.kind,
    TaskEventEntry.task_id,
    TaskEventEntry.user_id,
    TaskEventEntry.title,
    TaskEventEntry.description,
    TaskEventEntry.completed,
    TaskEventEntry.created_at,
    TaskEventEntry.updated_at,
)

# An owner's entries after :after, oldest first, at most :limit; `known` says whether the entry
# at :after is still kept (read in the same statement, so the same snapshot): if it is not,
# entries after it may have been deleted too.
_anchor = exists().where(TaskEventEntry.position == bindparam("after"))
REPLAY = (
    select(*EVENT_COLUMNS, _anchor.label("known"))
    .where(
        TaskEventEntry.user_id == bindparam("user_id"),
        TaskEventEntry.position > bindparam("after"),
    )
    .order_by(TaskEventEntry.position)
    .limit(bindparam("limit"))
)
KNOWN = select(_anchor)
LATEST = select(func.max(TaskEventEntry.position)).where(
    TaskEventEntry.user_id == bindparam("user_id")
)

# PostgreSQL, every instance: the entries of transactions that committed between two snapshots
# (PgQ's batches). `:since` is the snapshot the previous batch was read at; the batch's own is
# `:until` when given (the next page of a batch), else this statement's (returned as `snap`).
# Every transaction visible in `snap` and not in `:since` committed in between, whatever its
# entries' positions; the xid index bounds the scan to transactions not older than `:since`'s
# oldest in-progress one. Only the owners in `:users` (those with subscribers here) are read.
_SINCE = "CAST(CAST(:since AS TEXT) AS pg_snapshot)"
BATCH = text(
    f"""
SELECT CAST(s.snap AS TEXT) AS snap, e.position, e.kind, e.task_id, e.user_id, e.title,
    e.description, e.completed, e.created_at, e.updated_at
FROM (
    SELECT COALESCE(CAST(CAST(:until AS TEXT) AS pg_snapshot), pg_current_snapshot()) AS snap
) AS s
LEFT JOIN LATERAL (
    SELECT * FROM task_events
    WHERE xid >= CAST(CAST(pg_snapshot_xmin({_SINCE}) AS TEXT) AS BIGINT)
        AND NOT pg_visible_in_snapshot(CAST(CAST(xid AS TEXT) AS xid8), {_SINCE})
        AND pg_visible_in_snapshot(CAST(CAST(xid AS TEXT) AS xid8), s.snap)
        AND user_id = ANY(:users)
        AND position > :after
    ORDER BY position
    LIMIT :limit
) AS e ON true
ORDER BY e.position
"""
)
SNAPSHOT = text("SELECT CAST(pg_current_snapshot() AS TEXT)")

# Clean-up: among the :batch oldest entries, those recorded before :cutoff up to the first
# that is not (so what remains is always a suffix of the log: a kept entry has every later
# entry kept too, which is what makes "the cursor's own entry is kept" mean "nothing after it
# was deleted").
_head = (
    select(TaskEventEntry.position, TaskEventEntry.recorded_at)
    .order_by(TaskEventEntry.position)
    .limit(bindparam("batch"))
    .subquery("head")
)
_first_kept = (
    select(func.min(_head.c.position))
    .where(_head.c.recorded_at >= bindparam("cutoff"))
    .correlate(None)
    .scalar_subquery()
)
SWEEP = delete(TaskEventEntry).where(
    TaskEventEntry.position.in_(
        select(_head.c.position).where(_head.c.position < func.coalesce(_first_kept, 2**62))
    )
)
