"""The service's use cases, one async function each, shared by GraphQL and REST.

Every function takes keyword arguments only, opens its own short-lived session (sibling
GraphQL resolvers run concurrently and must never share one), enforces ownership in the query
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
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import Select, and_, delete, exists, func, insert, or_, select, union_all
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from api.events import TaskEvent
from api.security import bearer_token
from api.services import Services
from db.models import Task, User
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


def _task(row: object) -> TaskRecord:
    return TaskRecord(*row)  # type: ignore[misc]


def _is_outage(exc: BaseException) -> bool:
    if isinstance(exc, (OSError, TimeoutError, sa_exc.TimeoutError)):
        return True
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated or isinstance(
            exc, (sa_exc.OperationalError, sa_exc.InterfaceError)
        ):
            return True
        orig = getattr(exc, "orig", None)
        cause = getattr(orig, "__cause__", None) or orig
        name = type(cause).__name__
        return name in {
            "CannotConnectNowError",
            "ConnectionDoesNotExistError",
            "ConnectionFailureError",
            "AdminShutdownError",
            "TooManyConnectionsError",
            "InternalClientError",
        } or isinstance(cause, (OSError, TimeoutError))
    return False


@asynccontextmanager
async def _database_errors() -> AsyncIterator[None]:
    """Database outages surface as Unavailable (503), logged with their stack."""
    try:
        yield
    except DomainError:
        raise
    except Exception as exc:
        if _is_outage(exc):
            # The cause, not a stack: an outage is expected, and a stack per request would
            # bury the line that says what happened. Unexpected errors (500) keep theirs.
            log.warning("database unavailable: %s: %s", type(exc).__name__, exc)
            raise Unavailable() from exc
        raise


@asynccontextmanager
async def _transaction(services: Services) -> AsyncIterator[AsyncSession]:
    """A session in a transaction, for writes."""
    async with _database_errors(), services.sessions() as session, session.begin():
        yield session


@asynccontextmanager
async def _reading(services: Services) -> AsyncIterator[AsyncConnection]:
    """A connection in autocommit mode for single-statement reads: no BEGIN/COMMIT trips."""
    async with _database_errors(), services.reader.connect() as connection:
        yield connection


async def _require_user(services: Services, caller: Caller) -> None:
    """Unauthenticated when the caller's account no longer exists.

    Task operations filter by owner, and deleting a user deletes its tasks, so a deleted
    user's request always lands on a miss (no row, empty list, FK violation); only then is the
    account looked up, to tell 401 from 404 or an empty list. The common path costs nothing.
    """
    if caller.account_checked:
        return
    async with _reading(services) as connection:
        found = await connection.scalar(select(exists().where(User.id == caller.user_id)))
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
    async with _reading(services) as connection:
        taken = await connection.scalar(select(exists().where(User.email == credentials.email)))
    if taken:
        raise Conflict()
    password_hash = await services.passwords.hash(credentials.password)
    user = UserRecord(id=uuid.uuid4(), email=credentials.email)
    try:
        async with _transaction(services) as session:
            await session.execute(
                insert(User).values(
                    id=user.id,
                    email=user.email,
                    password_hash=password_hash,
                    created_at=_now(),
                )
            )
    except sa_exc.IntegrityError:
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
        async with _reading(services) as connection:
            row = (
                await connection.execute(
                    select(User.id, User.email, User.password_hash).where(
                        User.email == credentials.email
                    )
                )
            ).first()
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
    async with _reading(services) as connection:
        row = (
            await connection.execute(select(User.id, User.email).where(User.id == caller.user_id))
        ).first()
    if row is None:
        raise Unauthenticated()
    return UserRecord(id=row[0], email=row[1])


# --- tasks ------------------------------------------------------------------------------------


async def list_tasks(*, services: Services, caller: Caller) -> list[TaskRecord]:
    """All of the caller's tasks, newest first, ties broken by id (descending)."""
    query = (
        select(*_TASK_COLUMNS)
        .where(Task.user_id == caller.user_id)
        .order_by(Task.created_at.desc(), Task.id.desc())
    )
    async with _reading(services) as connection:
        rows = (await connection.execute(query)).all()
    if not rows:
        await _require_user(services, caller)
    return [_task(row) for row in rows]


async def get_task(*, services: Services, caller: Caller, task_id: object) -> TaskRecord:
    task_uuid = await _task_id(services, caller, task_id)
    async with _reading(services) as connection:
        row = (
            await connection.execute(
                select(*_TASK_COLUMNS).where(Task.id == task_uuid, Task.user_id == caller.user_id)
            )
        ).first()
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
        async with _transaction(services) as session:
            await session.execute(
                insert(Task).values(
                    id=task.id,
                    title=task.title,
                    description=task.description,
                    completed=False,
                    user_id=task.user_id,
                    created_at=now,
                    updated_at=now,
                )
            )
            await services.events.publish(session, TaskEvent.created(task))
    except sa_exc.IntegrityError:
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
    async with _transaction(services) as session:
        task = await session.scalar(
            select(Task)
            .where(Task.id == task_uuid, Task.user_id == caller.user_id)
            .with_for_update()
        )
        if task is not None:
            for name, value in changes.items():
                setattr(task, name, value)
            task.updated_at = max(_now(), task.updated_at + _ONE_MICROSECOND)
            await session.flush()
            record = TaskRecord(
                id=task.id,
                title=task.title,
                description=task.description,
                completed=task.completed,
                user_id=task.user_id,
                created_at=task.created_at,
                updated_at=task.updated_at,
            )
            await services.events.publish(session, TaskEvent.updated(record))
    if record is None:
        # Outside the transaction: SQLite's single pooled connection is free again.
        await _require_user(services, caller)
        raise NotFound()
    return record


async def delete_task(*, services: Services, caller: Caller, task_id: object) -> uuid.UUID:
    task_uuid = await _task_id(services, caller, task_id)
    async with _transaction(services) as session:
        result = await session.execute(
            delete(Task).where(Task.id == task_uuid, Task.user_id == caller.user_id)
        )
        if result.rowcount:  # type: ignore[attr-defined]
            await services.events.publish(session, TaskEvent.deleted(task_uuid, caller.user_id))
    if result.rowcount == 0:  # type: ignore[attr-defined]
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


def _page_query(
    owner: Caller, first: int, after: TaskPosition | None, completed: bool | None
) -> Select:  # type: ignore[type-arg]
    query = select(*_TASK_COLUMNS).where(Task.user_id == owner.user_id)
    if completed is not None:
        query = query.where(Task.completed == completed)
    if after is not None:
        query = query.where(
            or_(
                Task.created_at < after.created_at,
                and_(Task.created_at == after.created_at, Task.id < after.id),
            )
        )
    # One row more than asked tells whether another page follows.
    return query.order_by(Task.created_at.desc(), Task.id.desc()).limit(first + 1)


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
    """
    if not owners:
        return {}
    branches = [_page_query(owner, first, after, completed) for owner in owners]
    if len(branches) == 1:
        statement = branches[0]
    else:
        # SQLite refuses ORDER BY/LIMIT directly inside a compound select: wrap each branch.
        subqueries = [branch.subquery() for branch in branches]
        statement = union_all(*(select(*sub.c) for sub in subqueries))
    async with _reading(services) as connection:
        rows = (await connection.execute(statement)).all()
    by_owner: dict[uuid.UUID, list[TaskRecord]] = {owner.user_id: [] for owner in owners}
    for row in rows:
        task = _task(row)
        by_owner[task.user_id].append(task)
    pages = {}
    for user_id, tasks in by_owner.items():
        # UNION ALL keeps no order across branches; each list is small (first + 1).
        tasks.sort(key=lambda t: (t.created_at, t.id), reverse=True)
        pages[user_id] = TaskPage(tasks=tasks[:first], has_next_page=len(tasks) > first)
    return pages


async def count_tasks(
    *, services: Services, owners: Sequence[Caller], completed: bool | None
) -> dict[uuid.UUID, int]:
    """How many tasks each owner has (optionally only completed or open ones)."""
    if not owners:
        return {}
    query = (
        select(Task.user_id, func.count())
        .where(Task.user_id.in_([owner.user_id for owner in owners]))
        .group_by(Task.user_id)
    )
    if completed is not None:
        query = query.where(Task.completed == completed)
    async with _reading(services) as connection:
        rows = (await connection.execute(query)).all()
    counts = {owner.user_id: 0 for owner in owners}
    counts.update({row[0]: row[1] for row in rows})
    return counts


async def load_users_by_ids(
    *, services: Services, user_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, UserRecord]:
    """The users that exist among `user_ids`; missing ones are simply absent.

    GraphQL only ever asks for the caller (`me`, the owner of the caller's own tasks).
    """
    if not user_ids:
        return {}
    async with _reading(services) as connection:
        rows = (
            await connection.execute(select(User.id, User.email).where(User.id.in_(user_ids)))
        ).all()
    return {row[0]: UserRecord(id=row[0], email=row[1]) for row in rows}


# --- health -----------------------------------------------------------------------------------


async def database_is_healthy(*, services: Services, within_seconds: float = 3.0) -> bool:
    try:
        async with asyncio.timeout(within_seconds), services.engine.connect() as conn:
            await conn.exec_driver_sql("SELECT 1")
    except Exception as exc:
        log.warning("health check failed: %s: %s", type(exc).__name__, exc)
        return False
    return True
