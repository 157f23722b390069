"""The floor: the cheapest honest server for the same REST contract, to measure the service against.

Starlette + asyncpg + orjson + PyJWT, no SQLAlchemy, no FastAPI, no middleware. Same tables
(the service creates them), the same statements the service sends for each operation, the same
JSON shapes, the same token check (HS256 verify with `exp` required, user id from `user_id`
else `sub`, then an existence check of the user), and the same password check for login
(passlib `bcrypt_sha256` in a thread pool of the same size). Transactions only where the
service needs one for correctness: the writes (create, update, delete) with the service's
`pg_notify` task event in the same transaction, update with `SELECT ... FOR UPDATE` first;
reads are single autocommit statements (the service wraps those in BEGIN/COMMIT too and pings
each pooled connection before use: that overhead is the service's, not the floor's).

Configuration from the environment (the harness sets it):
  FLOOR_DATABASE_URL   postgresql://user@host:port/db
  BETTER_AUTH_SECRET   the service's signing secret
  BCRYPT_ROUNDS        cost of the dummy hash for unknown emails (default 12)
  FLOOR_POOL_MIN / FLOOR_POOL_MAX   asyncpg pool (default 20 / 20, the service's DB_POOL_SIZE)

Serve with: uvicorn bench.floor:app --loop uvloop --http httptools
"""

from __future__ import annotations

import asyncio
import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import asyncpg
import jwt
import orjson
from passlib.context import CryptContext
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

ALGORITHM = "HS256"
TITLE_MAX = 255
DESCRIPTION_MAX = 1000
_ONE_MICROSECOND = timedelta(microseconds=1)

_SECRET = os.environ.get("BETTER_AUTH_SECRET", "").encode()
_LIFETIME = timedelta(hours=int(os.environ.get("JWT_EXPIRATION_HOURS", "24")))
_ROUNDS = int(os.environ.get("BCRYPT_ROUNDS", "12"))
_CRYPT = CryptContext(schemes=["bcrypt_sha256"], bcrypt_sha256__rounds=_ROUNDS)
_EXECUTOR = ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 1), thread_name_prefix="bcrypt")
_DUMMY_HASH = _CRYPT.hash(uuid.uuid4().hex)

_COLUMNS = "id, title, description, completed, user_id, created_at, updated_at"
SQL_USER_EXISTS = "SELECT 1 FROM users WHERE id = $1"
SQL_LIST = f"SELECT {_COLUMNS} FROM tasks WHERE user_id = $1 ORDER BY created_at DESC, id DESC"
SQL_GET = f"SELECT {_COLUMNS} FROM tasks WHERE id = $1 AND user_id = $2"
SQL_INSERT = (
    "INSERT INTO tasks (id, title, description, completed, user_id, created_at, updated_at) "
    "VALUES ($1, $2, $3, false, $4, $5, $5)"
)
SQL_LOCK = f"SELECT {_COLUMNS} FROM tasks WHERE id = $1 AND user_id = $2 FOR UPDATE"
SQL_DELETE = "DELETE FROM tasks WHERE id = $1 AND user_id = $2"
SQL_LOGIN = "SELECT id, email, password_hash FROM users WHERE email = $1"
# The service publishes every task write for GraphQL subscriptions in the write's transaction
# (core/events.py); the floor sends the same NOTIFY (it has no listener: no subscribers).
SQL_NOTIFY = "SELECT pg_notify($1, pg_current_xact_id()::text || ' ' || $2)"
EVENTS_CHANNEL = "todo_task_events"

# When to check that the token's user still exists (contract: a deleted user's token is 401):
# "lazy" (default) as the service does since it stopped paying a query per request: only on a
# miss (no row, empty list, FK violation, bad input), since deleting a user deletes its tasks;
# "eager": `SELECT 1 FROM users WHERE id = $1` before every task operation.
USER_CHECK = os.environ.get("FLOOR_USER_CHECK", "lazy")
if USER_CHECK not in ("lazy", "eager"):
    raise RuntimeError("FLOOR_USER_CHECK must be lazy or eager")

_pool: asyncpg.Pool | None = None


class Fail(Exception):
    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message


def _json(payload: object, status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type="application/json")


def _ts(value: datetime) -> str:
    # asyncpg returns timestamptz as aware UTC datetimes; same text as the service's strftime.
    return value.isoformat(timespec="microseconds")[:26] + "Z"


def _task(row: asyncpg.Record | tuple) -> dict:
    return {
        "id": str(row[0]),
        "title": row[1],
        "description": row[2],
        "completed": row[3],
        "user_id": str(row[4]),
        "created_at": _ts(row[5]),
        "updated_at": _ts(row[6]),
    }


def _event(kind: str, task: tuple | None, task_id: uuid.UUID, user_id: uuid.UUID) -> str:
    body: dict[str, object] = {"v": 1, "kind": kind, "id": str(task_id), "user": str(user_id)}
    if task is not None:
        body["task"] = {
            "title": task[1],
            "description": task[2],
            "completed": task[3],
            "created_at": task[5].isoformat(),
            "updated_at": task[6].isoformat(),
        }
    return orjson.dumps(body).decode()


def _pool_or_fail() -> asyncpg.Pool:
    assert _pool is not None
    return _pool


async def _caller(request: Request) -> uuid.UUID:
    header = request.headers.get("authorization")
    if not header:
        raise Fail(401, "Unauthorized")
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        raise Fail(401, "Unauthorized")
    try:
        claims = jwt.decode(
            token,
            _SECRET,
            algorithms=[ALGORITHM],
            options={"require": ["exp"], "verify_aud": False},
        )
        subject = claims.get("user_id", claims.get("sub"))
        user_id = uuid.UUID(subject) if isinstance(subject, str) else None
    except (jwt.PyJWTError, ValueError, TypeError):
        user_id = None
    if user_id is None:
        raise Fail(401, "Unauthorized")
    if USER_CHECK == "eager":
        await _require_user(user_id, eager=True)
    return user_id


async def _require_user(user_id: uuid.UUID, *, eager: bool = False) -> None:
    """401 when the account is gone; in lazy mode called only after a miss."""
    if (eager or USER_CHECK == "lazy") and (
        await _pool_or_fail().fetchval(SQL_USER_EXISTS, user_id) is None
    ):
        raise Fail(401, "Unauthorized")


async def _miss(user_id: uuid.UUID, status: int, message: str) -> Fail:
    await _require_user(user_id)
    return Fail(status, message)


async def _body(request: Request) -> dict:
    try:
        value = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        raise Fail(400, "Invalid JSON body") from None
    if not isinstance(value, dict):
        raise Fail(400, "Invalid JSON body")
    return value


async def _task_id(request: Request, user_id: uuid.UUID) -> uuid.UUID:
    try:
        return uuid.UUID(request.path_params["task_id"])
    except ValueError:
        raise await _miss(user_id, 404, "Task not found") from None


def _title(value: object, empty_message: str) -> str:
    if not isinstance(value, str) or "\x00" in value or not value.strip():
        raise Fail(400, empty_message)
    title = value.strip()
    if len(title) > TITLE_MAX:
        raise Fail(400, "Title must not exceed 255 characters")
    return title


def _description(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or "\x00" in value:
        raise Fail(400, "Invalid request body")
    if len(value) > DESCRIPTION_MAX:
        raise Fail(400, "Description must not exceed 1000 characters")
    return value


def endpoint(fn):  # type: ignore[no-untyped-def]
    async def wrapped(request: Request) -> Response:
        try:
            return await fn(request)
        except Fail as exc:
            return _json({"error": exc.message}, exc.status)

    return wrapped


@endpoint
async def list_tasks(request: Request) -> Response:
    user_id = await _caller(request)
    rows = await _pool_or_fail().fetch(SQL_LIST, user_id)
    if not rows:
        await _require_user(user_id)
    return _json({"tasks": [_task(row) for row in rows]})


@endpoint
async def get_task(request: Request) -> Response:
    user_id = await _caller(request)
    row = await _pool_or_fail().fetchrow(SQL_GET, await _task_id(request, user_id), user_id)
    if row is None:
        raise await _miss(user_id, 404, "Task not found")
    return _json({"task": _task(row)})


@endpoint
async def create_task(request: Request) -> Response:
    user_id = await _caller(request)
    body = await _body(request)
    try:
        title = _title(body.get("title"), "Title is required")
        description = _description(body.get("description"))
    except Fail as exc:
        raise await _miss(user_id, exc.status, exc.message) from None
    task_id, now = uuid.uuid4(), datetime.now(UTC)
    record = (task_id, title, description, False, user_id, now, now)
    try:
        async with _pool_or_fail().acquire() as conn, conn.transaction():
            await conn.execute(SQL_INSERT, task_id, title, description, user_id, now)
            await conn.execute(
                SQL_NOTIFY, EVENTS_CHANNEL, _event("CREATED", record, task_id, user_id)
            )
    except asyncpg.ForeignKeyViolationError:
        raise Fail(401, "Unauthorized") from None
    return _json({"task": _task(record)}, 201)


@endpoint
async def update_task(request: Request) -> Response:
    user_id = await _caller(request)
    body = await _body(request)
    changes: dict[str, object] = {}
    try:
        if "title" in body:
            changes["title"] = _title(body["title"], "Title cannot be empty")
        if "description" in body:
            changes["description"] = _description(body["description"])
        if "completed" in body:
            if not isinstance(body["completed"], bool):
                raise Fail(400, "Completed must be a boolean")
            changes["completed"] = body["completed"]
    except Fail as exc:
        raise await _miss(user_id, exc.status, exc.message) from None
    task_id = await _task_id(request, user_id)
    record = None
    async with _pool_or_fail().acquire() as conn, conn.transaction():
        row = await conn.fetchrow(SQL_LOCK, task_id, user_id)
        if row is not None:
            task = dict(
                zip(("id", "title", "description", "completed", "user_id"), row[:5], strict=True)
            )
            # Like SQLAlchemy's flush: only the columns whose value changed, plus updated_at.
            changed = {k: v for k, v in changes.items() if task[k] != v}
            task.update(changed)
            updated_at = max(datetime.now(UTC), row[6] + _ONE_MICROSECOND)
            names = [*changed, "updated_at"]
            values = [*changed.values(), updated_at]
            assignments = ", ".join(f"{name} = ${i}" for i, name in enumerate(names, 1))
            await conn.execute(
                f"UPDATE tasks SET {assignments} WHERE id = ${len(names) + 1}", *values, task_id
            )
            record = (
                task_id,
                task["title"],
                task["description"],
                task["completed"],
                user_id,
                row[5],
                updated_at,
            )
            await conn.execute(
                SQL_NOTIFY, EVENTS_CHANNEL, _event("UPDATED", record, task_id, user_id)
            )
    if record is None:
        raise await _miss(user_id, 404, "Task not found")
    return _json({"task": _task(record)})


@endpoint
async def delete_task(request: Request) -> Response:
    user_id = await _caller(request)
    task_id = await _task_id(request, user_id)
    async with _pool_or_fail().acquire() as conn, conn.transaction():
        status = await conn.execute(SQL_DELETE, task_id, user_id)
        if status == "DELETE 1":
            await conn.execute(
                SQL_NOTIFY, EVENTS_CHANNEL, _event("DELETED", None, task_id, user_id)
            )
    if status != "DELETE 1":
        raise await _miss(user_id, 404, "Task not found")
    return Response(status_code=204)


@endpoint
async def login(request: Request) -> Response:
    body = await _body(request)
    email, password = body.get("email"), body.get("password")
    if not isinstance(email, str) or not isinstance(password, str) or not email or not password:
        raise Fail(400, "Email and password required")
    email = email.strip().lower()
    row = await _pool_or_fail().fetchrow(SQL_LOGIN, email)
    loop = asyncio.get_running_loop()
    ok = await loop.run_in_executor(
        _EXECUTOR, _CRYPT.verify, password, row[2] if row else _DUMMY_HASH
    )
    if not ok or row is None:
        raise Fail(401, "Invalid email or password")
    now = datetime.now(UTC)
    claims = {
        "sub": str(row[0]),
        "user_id": str(row[0]),
        "email": row[1],
        "iat": int(now.timestamp()),
        "exp": int((now + _LIFETIME).timestamp()),
    }
    token = jwt.encode(claims, _SECRET, algorithm=ALGORITHM)
    return _json({"token": token, "user": {"id": str(row[0]), "email": row[1]}})


async def health(_request: Request) -> Response:
    healthy = await _pool_or_fail().fetchval("SELECT 1") == 1
    return _json({"status": "healthy" if healthy else "unhealthy"}, 200 if healthy else 503)


@asynccontextmanager
async def lifespan(_app: Starlette):  # type: ignore[no-untyped-def]
    global _pool
    if len(_SECRET) < 32:
        raise RuntimeError("BETTER_AUTH_SECRET must be at least 32 bytes")
    _pool = await asyncpg.create_pool(
        os.environ["FLOOR_DATABASE_URL"],
        min_size=int(os.environ.get("FLOOR_POOL_MIN", "20")),
        max_size=int(os.environ.get("FLOOR_POOL_MAX", "20")),
    )
    try:
        yield
    finally:
        await _pool.close()
        _EXECUTOR.shutdown(wait=False, cancel_futures=True)


app = Starlette(
    routes=[
        Route("/api/tasks", list_tasks, methods=["GET"]),
        Route("/api/tasks", create_task, methods=["POST"]),
        Route("/api/tasks/{task_id}", get_task, methods=["GET"]),
        Route("/api/tasks/{task_id}", update_task, methods=["PUT"]),
        Route("/api/tasks/{task_id}", delete_task, methods=["DELETE"]),
        Route("/api/auth/login", login, methods=["POST"]),
        Route("/health", health, methods=["GET"]),
    ],
    lifespan=lifespan,
)
