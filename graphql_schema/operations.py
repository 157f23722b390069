"""The service's use cases, one async function each, shared by GraphQL and REST.

Every function takes keyword arguments only, runs its statements through the store (db/store.py:
each read on a connection of its own, in autocommit; each write in a transaction of its own, so
sibling GraphQL resolvers never share one), enforces ownership in the query
itself (`WHERE id = :id AND user_id = :caller`: not yours and not there are the same answer),
and raises only DomainError subclasses, with database outages turned into Unavailable.
Task writes publish a TaskEvent inside their own transaction (api/events.py), so live updates
follow from REST and GraphQL alike, and only for writes that commit.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from sqlalchemy import (
    BindParameter,
    CompoundSelect,
    Select,
    and_,
    bindparam,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    text,
    union_all,
    update,
)

from api.events import TaskEvent
from api.security import bearer_token
from api.services import Services
from db.models import Task, User
from db.store import ConstraintViolation, Row, is_outage
from graphql_schema.errors import (
    Conflict,
    DomainError,
    InvalidCredentials,
    InvalidInput,
    NotFound,
    Unauthenticated,
    Unavailable,
)
from graphql_schema.validation import (
    MISSING,
    is_valid_email,
    validate_login,
    validate_new_task,
    validate_signup,
    validate_task_changes,
)

log = logging.getLogger("todo.operations")

_ONE_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class UserRecord:
    id: uuid.UUID
    email: str


@dataclass(frozen=True, slots=True)
class AuthResult:
    token: str
    user: UserRecord


@dataclass(frozen=True, slots=True)
class TaskRecord:
    id: uuid.UUID
    title: str
    description: str | None
    completed: bool
    user_id: uuid.UUID
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated user; its id only ever comes from a verified token.

    `account_checked` says the account was seen to exist for this request (`authenticate`);
    a caller from `identify` has only a valid token, and the task operations look the
    account up themselves on a miss (`_require_user`).
    """

    user_id: uuid.UUID
    # Not part of identity: loaders key on the caller, and one user is one caller.
    account_checked: bool = field(default=False, compare=False)


@dataclass(frozen=True, slots=True)
class Authentication:
    caller: Caller
    expires_at: datetime  # the token's `exp`


_TASK_COLUMNS = (
    Task.id,
    Task.title,
    Task.description,
    Task.completed,
    Task.user_id,
    Task.created_at,
    Task.updated_at,
)

# The statements, built once: the store compiles each once and reuses it (db/store.py).
# Every INSERT names all its columns, so no value comes from a SQLAlchemy-side default.
_USER_EXISTS = select(exists().where(User.id == bindparam("user_id")))
_EMAIL_TAKEN = select(exists().where(User.email == bindparam("email")))
_INSERT_USER = insert(User).values(
    id=bindparam("new_id"),
    email=bindparam("new_email"),
    password_hash=bindparam("new_password_hash"),
    created_at=bindparam("new_created_at"),
)
_CREDENTIALS = select(User.id, User.email, User.password_hash).where(
    User.email == bindparam("email")
)
_USER = select(User.id, User.email).where(User.id == bindparam("user_id"))
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


def _task(row: Row) -> TaskRecord:
    return TaskRecord(*row)


@asynccontextmanager
async def _database_errors() -> AsyncIterator[None]:
    """Database outages surface as Unavailable (503), logged with their cause."""
    try:
        yield
    except DomainError:
        raise
    except Exception as exc:
        if is_outage(exc):
            # The cause, not a stack: an outage is expected, and a stack per request would
            # bury the line that says what happened. Unexpected errors (500) keep theirs.
            log.warning("database unavailable: %s: %s", type(exc).__name__, exc)
            raise Unavailable() from exc
        raise


async def _require_user(services: Services, caller: Caller) -> None:
    """Unauthenticated when the caller's account no longer exists.

    Task operations filter by owner, and deleting a user deletes its tasks, so a deleted
    user's request always lands on a miss (no row, empty list, FK violation); only then is the
    account looked up, to tell 401 from 404 or an empty list. The common path costs nothing.
    """
    if caller.account_checked:
        return
    async with _database_errors():
        found = await services.store.scalar(_USER_EXISTS, {"user_id": caller.user_id})
    if not found:
        raise Unauthenticated()


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


def _now() -> datetime:
    return datetime.now(UTC)


# --- authentication ---------------------------------------------------------------------------


def identify(*, services: Services, authorization: str | None) -> Caller:
    """The caller a valid bearer token names, without a database round trip.

    Only for the task operations below, which answer Unauthenticated themselves when the
    account is gone (see `_require_user`).
    """
    return Caller(user_id=services.tokens.verify(bearer_token(authorization)))


async def authenticate(*, services: Services, authorization: str | None) -> Caller:
    """The caller named by an `Authorization: Bearer` header whose user still exists."""
    return (await authenticate_until(services=services, authorization=authorization)).caller


async def authenticate_until(*, services: Services, authorization: str | None) -> Authentication:
    """`authenticate`, and when the token expires (a WebSocket connection ends then)."""
    user_id, expires_at = services.tokens.verify_until(bearer_token(authorization))
    await _require_user(services, Caller(user_id=user_id))
    return Authentication(
        caller=Caller(user_id=user_id, account_checked=True), expires_at=expires_at
    )


async def signup(
    *, services: Services, client_address: str, email: object, password: object
) -> AuthResult:
    await services.limiter.hit(action="signup", address=client_address, email=_limit_key(email))
    credentials = validate_signup(email, password)
    async with _database_errors():
        taken = await services.store.scalar(_EMAIL_TAKEN, {"email": credentials.email})
    if taken:
        raise Conflict()
    password_hash = await services.passwords.hash(credentials.password)
    user = UserRecord(id=uuid.uuid4(), email=credentials.email)
    try:
        async with _database_errors():
            await services.store.execute(
                _INSERT_USER,
                {
                    "new_id": user.id,
                    "new_email": user.email,
                    "new_password_hash": password_hash,
                    "new_created_at": _now(),
                },
            )
    except ConstraintViolation:
        # Lost a race with a concurrent signup for the same address.
        raise Conflict() from None
    return AuthResult(token=services.tokens.issue(user.id, user.email), user=user)


async def login(
    *, services: Services, client_address: str, email: object, password: object
) -> AuthResult:
    await services.limiter.hit(action="login", address=client_address, email=_limit_key(email))
    credentials = validate_login(email, password)
    row = None
    if is_valid_email(credentials.email):
        async with _database_errors():
            row = await services.store.row(_CREDENTIALS, {"email": credentials.email})
    # Same hashing work whether the email is unknown or the password wrong.
    if not await services.passwords.verify(credentials.password, row[2] if row else None):
        raise InvalidCredentials()
    assert row is not None
    user = UserRecord(id=row[0], email=row[1])
    return AuthResult(token=services.tokens.issue(user.id, user.email), user=user)


def _limit_key(email: object) -> str | None:
    if isinstance(email, str):
        key = email.strip().lower()
        return key[:320] if key else None
    return None


async def get_user(*, services: Services, caller: Caller) -> UserRecord:
    async with _database_errors():
        row = await services.store.row(_USER, {"user_id": caller.user_id})
    if row is None:
        raise Unauthenticated()
    return UserRecord(id=row[0], email=row[1])


# --- tasks ------------------------------------------------------------------------------------


async def list_tasks(*, services: Services, caller: Caller) -> list[TaskRecord]:
    """All of the caller's tasks, newest first, ties broken by id (descending)."""
    async with _database_errors():
        rows = await services.store.rows(_LIST_TASKS, {"user_id": caller.user_id})
    if not rows:
        await _require_user(services, caller)
    return [_task(row) for row in rows]


async def get_task(*, services: Services, caller: Caller, task_id: object) -> TaskRecord:
    task_uuid = await _task_id(services, caller, task_id)
    async with _database_errors():
        row = await services.store.row(_GET_TASK, {"task_id": task_uuid, "user_id": caller.user_id})
    if row is None:
        await _require_user(services, caller)
        raise NotFound()
    return _task(row)


async def _task_id(services: Services, caller: Caller, task_id: object) -> uuid.UUID:
    try:
        return parse_id(task_id)
    except NotFound:
        await _require_user(services, caller)
        raise


@asynccontextmanager
async def _input_errors(services: Services, caller: Caller) -> AsyncIterator[None]:
    """A gone account answers 401 before any complaint about its input."""
    try:
        yield
    except InvalidInput:
        await _require_user(services, caller)
        raise


def _task_values(task: TaskRecord) -> dict[str, object]:
    return {
        "new_title": task.title,
        "new_description": task.description,
        "new_completed": task.completed,
        "new_updated_at": task.updated_at,
    }


async def create_task(
    *, services: Services, caller: Caller, title: object, description: object = MISSING
) -> TaskRecord:
    async with _input_errors(services, caller):
        data = validate_new_task(title, description)
    now = _now()
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
        async with _database_errors(), services.store.transaction() as transaction:
            await transaction.execute(
                _INSERT_TASK,
                {
                    **_task_values(task),
                    "new_id": task.id,
                    "new_user_id": task.user_id,
                    "new_created_at": now,
                },
            )
            await services.events.publish(transaction, TaskEvent.created(task))
    except ConstraintViolation:
        # The caller's account was deleted after its token was checked.
        raise Unauthenticated() from None
    return task


async def update_task(
    *, services: Services, caller: Caller, task_id: object, fields: Mapping[str, object]
) -> TaskRecord:
    """Change only the fields present; `updated_at` always moves strictly forward."""
    async with _input_errors(services, caller):
        changes = validate_task_changes(fields)
    task_uuid = await _task_id(services, caller, task_id)
    record: TaskRecord | None = None
    async with _database_errors(), services.store.transaction() as transaction:
        row = await transaction.row(_LOCK_TASK, {"task_id": task_uuid, "user_id": caller.user_id})
        if row is not None:
            current = _task(row)
            record = replace(
                current,
                **changes,  # type: ignore[arg-type]
                updated_at=max(_now(), current.updated_at + _ONE_MICROSECOND),
            )
            await transaction.execute(_UPDATE_TASK, {**_task_values(record), "task_id": task_uuid})
            await services.events.publish(transaction, TaskEvent.updated(record))
    if record is None:
        # Outside the transaction: SQLite's single pooled connection is free again.
        await _require_user(services, caller)
        raise NotFound()
    return record


async def delete_task(*, services: Services, caller: Caller, task_id: object) -> uuid.UUID:
    task_uuid = await _task_id(services, caller, task_id)
    async with _database_errors(), services.store.transaction() as transaction:
        deleted = await transaction.execute(
            _DELETE_TASK, {"task_id": task_uuid, "user_id": caller.user_id}
        )
        if deleted:
            await services.events.publish(transaction, TaskEvent.deleted(task_uuid, caller.user_id))
    if not deleted:
        await _require_user(services, caller)
        raise NotFound()
    return task_uuid


# --- pages and batches (GraphQL connections and DataLoaders) ---------------------------------


@dataclass(frozen=True, slots=True)
class TaskPosition:
    """A place in the newest-first order; a page `after` it starts strictly past it.

    Keyset, not offset: a position stays meaningful when tasks are added or deleted between
    pages, even when the task it was taken from is gone.
    """

    created_at: datetime
    id: uuid.UUID


@dataclass(frozen=True, slots=True)
class TaskPage:
    tasks: list[TaskRecord]
    has_next_page: bool


def _page_branch(index: int, after: bool, completed: bool) -> Select:
    query = select(*_TASK_COLUMNS).where(Task.user_id == bindparam(f"owner_{index}"))
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
    # One row more than asked tells whether another page follows.
    return query.order_by(Task.created_at.desc(), Task.id.desc()).limit(bindparam("limit"))


@lru_cache(maxsize=128)
def _page_statement(owners: int, after: bool, completed: bool) -> Select | CompoundSelect:
    """One statement per shape (how many owners, which filters), built once."""
    branches = [_page_branch(index, after, completed) for index in range(owners)]
    if owners == 1:
        return branches[0]
    # SQLite refuses ORDER BY/LIMIT directly inside a compound select: wrap each branch.
    subqueries = [branch.subquery() for branch in branches]
    return union_all(*(select(*sub.c) for sub in subqueries))


def _owner_param(index: int) -> BindParameter[uuid.UUID]:
    # Typed: inside IN (...) a parameter does not take the column's type (SQLite stores
    # UUIDs as text and needs it to convert).
    return bindparam(f"owner_{index}", type_=Task.user_id.type)


@lru_cache(maxsize=128)
def _count_statement(owners: int, completed: bool) -> Select:
    query = (
        select(Task.user_id, func.count())
        .where(Task.user_id.in_([_owner_param(index) for index in range(owners)]))
        .group_by(Task.user_id)
    )
    if completed:
        query = query.where(Task.completed == bindparam("completed"))
    return query


@lru_cache(maxsize=128)
def _users_statement(count: int) -> Select:
    return select(User.id, User.email).where(
        User.id.in_([bindparam(f"user_{index}", type_=User.id.type) for index in range(count)])
    )


def _owner_params(owners: Sequence[Caller]) -> dict[str, object]:
    return {f"owner_{index}": owner.user_id for index, owner in enumerate(owners)}


async def _require_users(services: Services, owners: Sequence[Caller]) -> None:
    for owner in owners:
        await _require_user(services, owner)


async def load_task_pages(
    *,
    services: Services,
    owners: Sequence[Caller],
    first: int,
    after: TaskPosition | None,
    completed: bool | None,
) -> dict[uuid.UUID, TaskPage]:
    """One page of each owner's own tasks, newest first (ties by id), in one statement.

    Each owner gets an `ORDER BY ... LIMIT` branch that the (user_id, created_at, id) index
    serves and that stops after `first + 1` rows; the branches are joined with UNION ALL. (A
    window function over `user_id IN (...)` would read every task of every owner first.)
    An owner whose page is empty is checked to still exist, as `list_tasks` does.
    """
    if not owners:
        return {}
    params = _owner_params(owners)
    params["limit"] = first + 1
    if completed is not None:
        params["completed"] = completed
    if after is not None:
        params["after_created_at"] = after.created_at
        params["after_id"] = after.id
    statement = _page_statement(len(owners), after is not None, completed is not None)
    async with _database_errors():
        rows = await services.store.rows(statement, params)
    by_owner: dict[uuid.UUID, list[TaskRecord]] = {owner.user_id: [] for owner in owners}
    for row in rows:
        task = _task(row)
        by_owner[task.user_id].append(task)
    await _require_users(services, [owner for owner in owners if not by_owner[owner.user_id]])
    pages = {}
    for user_id, tasks in by_owner.items():
        # UNION ALL keeps no order across branches; each list is small (first + 1).
        if len(owners) > 1:
            tasks.sort(key=lambda t: (t.created_at, t.id), reverse=True)
        pages[user_id] = TaskPage(tasks=tasks[:first], has_next_page=len(tasks) > first)
    return pages


async def count_tasks(
    *, services: Services, owners: Sequence[Caller], completed: bool | None
) -> dict[uuid.UUID, int]:
    """How many tasks each owner has (optionally only completed or open ones)."""
    if not owners:
        return {}
    params = _owner_params(owners)
    if completed is not None:
        params["completed"] = completed
    statement = _count_statement(len(owners), completed is not None)
    async with _database_errors():
        rows = await services.store.rows(statement, params)
    counts = {owner.user_id: 0 for owner in owners}
    counts.update({row[0]: row[1] for row in rows})
    await _require_users(services, [owner for owner in owners if not counts[owner.user_id]])
    return counts


async def load_users_by_ids(
    *, services: Services, user_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, UserRecord]:
    """The users that exist among `user_ids`; missing ones are simply absent.

    GraphQL only ever asks for the caller (`me`, the owner of the caller's own tasks).
    """
    if not user_ids:
        return {}
    params = {f"user_{index}": user_id for index, user_id in enumerate(user_ids)}
    async with _database_errors():
        rows = await services.store.rows(_users_statement(len(user_ids)), params)
    return {row[0]: UserRecord(id=row[0], email=row[1]) for row in rows}


# --- health -----------------------------------------------------------------------------------


async def database_is_healthy(*, services: Services, within_seconds: float = 3.0) -> bool:
    try:
        async with asyncio.timeout(within_seconds):
            await services.store.scalar(_PING)
    except Exception as exc:
        log.warning("health check failed: %s: %s", type(exc).__name__, exc)
        return False
    return True
