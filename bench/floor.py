"""The floor: the leanest honest server for the REST contract, to measure the service against.

Not a copy of the service's design: what someone would write to serve /shared/CONTRACT.md's
REST part as cheaply as it can be served correctly. Starlette + asyncpg + orjson + PyJWT +
passlib, no SQLAlchemy, no FastAPI, no middleware, and one autocommit statement per request
wherever the contract allows (no BEGIN/COMMIT, no read before a write):

- list, get:  one SELECT (ownership in the WHERE clause)
- create:     INSERT ... RETURNING
- update:     UPDATE tasks SET <only the fields sent>, updated_at = GREATEST(now(),
              updated_at + 1 us) WHERE id = $1 AND user_id = $2 RETURNING ...
- delete:     DELETE ... WHERE id = $1 AND user_id = $2
- signup:     INSERT (a unique violation is the 409); login: one SELECT, then bcrypt

No events and no NOTIFY: the contract's REST part has no live updates, so what the service
pays for them is the service's own cost. A token is verified on every request (HS256, `exp`
required, user id from `user_id` else `sub`); that its user still exists is checked only after
a miss (no row, empty list, foreign-key violation, bad input), since deleting a user deletes
its tasks: that is all the contract's "a deleted user's token is 401" needs
(FLOOR_USER_CHECK=eager checks on every request instead). Passwords: passlib `bcrypt_sha256`
at BCRYPT_ROUNDS in a thread pool, and an unknown email verifies against a dummy hash of the
same cost (the contract wants equal work for both). Pooled connections are not reset when
they go back to the pool: no statement here changes session state.

Left out, because the benchmark turns them off or never meets them: rate limits, CORS,
/docs. Everything else the REST contract lists is answered as it says, and
tests/test_bench_floor.py compares the answers with the service's.

Configuration from the environment (the harness sets it):
  FLOOR_DATABASE_URL   postgresql://user@host:port/db (the service's migrations made the tables)
  BETTER_AUTH_SECRET   the service's signing secret; JWT_EXPIRATION_HOURS (default 24)
  BCRYPT_ROUNDS        bcrypt cost of new and dummy hashes (default 12)
  FLOOR_POOL_MIN / FLOOR_POOL_MAX   asyncpg pool (default 20 / 20, the service's DB_POOL_SIZE)
  FLOOR_USER_CHECK     lazy (default) or eager, as above

Serve with: uvicorn bench.floor:app --loop uvloop --http httptools
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from functools import lru_cache

import asyncpg
import jwt
import orjson
from passlib.context import CryptContext
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

KIND = "one-statement floor"  # what the bench's reports call this floor

ALGORITHM = "HS256"
TITLE_MAX = 255
DESCRIPTION_MAX = 1000
EMAIL_MAX = 255
PASSWORD_MIN, PASSWORD_MAX = 8, 128
MAX_BODY_BYTES = 1 << 20

_SECRET = os.environ.get("BETTER_AUTH_SECRET", "").encode()
_LIFETIME = timedelta(hours=int(os.environ.get("JWT_EXPIRATION_HOURS", "24")))
_ROUNDS = int(os.environ.get("BCRYPT_ROUNDS", "12"))
_CRYPT = CryptContext(schemes=["bcrypt_sha256"], bcrypt_sha256__rounds=_ROUNDS)
_EXECUTOR = ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 1), thread_name_prefix="bcrypt")
_DUMMY_HASH = ""  # made at start-up (the harness imports this module for KIND)

# When to check that the token's user still exists (contract: a deleted user's token is 401).
USER_CHECK = os.environ.get("FLOOR_USER_CHECK", "lazy")
if USER_CHECK not in ("lazy", "eager"):
    raise RuntimeError("FLOOR_USER_CHECK must be lazy or eager")

_COLUMNS = "id, title, description, completed, user_id, created_at, updated_at"
SQL_USER_EXISTS = "SELECT 1 FROM users WHERE id = $1"
SQL_LIST = f"SELECT {_COLUMNS} FROM tasks WHERE user_id = $1 ORDER BY created_at DESC, id DESC"
SQL_GET = f"SELECT {_COLUMNS} FROM tasks WHERE id = $1 AND user_id = $2"
SQL_INSERT = (
    "INSERT INTO tasks (id, title, description, completed, user_id, created_at, updated_at) "
    f"VALUES ($1, $2, $3, false, $4, now(), now()) RETURNING {_COLUMNS}"
)
SQL_DELETE = "DELETE FROM tasks WHERE id = $1 AND user_id = $2"
SQL_LOGIN = "SELECT id, email, password_hash FROM users WHERE email = $1"
SQL_SIGNUP = "INSERT INTO users (id, email, password_hash, created_at) VALUES ($1, $2, $3, now())"
_UPDATABLE = ("title", "description", "completed")


@lru_cache(maxsize=8)
def sql_update(fields: tuple[str, ...]) -> str:
    """One statement per set of fields sent (eight at most); `updated_at` always moves forward,
    also past a concurrent update's (the row is re-read under its lock)."""
    sets = [f"{name} = ${i}" for i, name in enumerate(fields, 3)]
    sets.append("updated_at = GREATEST(now(), updated_at + interval '1 microsecond')")
    return f"UPDATE tasks SET {', '.join(sets)} WHERE id = $1 AND user_id = $2 RETURNING {_COLUMNS}"


# A pragmatic address check, the same rule the service applies (400 `Invalid email format`).
_EMAIL_RE = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
)
_BAD_CHARACTERS = re.compile("[\x00\ud800-\udfff]")  # NUL; a lone surrogate (JSON can carry one)
_OUTAGES = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
)

_pool: asyncpg.Pool | None = None


class Fail(Exception):
    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message


def _json(payload: object, status: int = 200) -> Response:
    # orjson writes aware UTC datetimes itself (`...123456Z`; without a fraction when it is 0).
    return Response(
        orjson.dumps(payload, option=orjson.OPT_UTC_Z),
        status_code=status,
        media_type="application/json",
    )


def _error(status: int, message: str) -> Response:
    return _json({"error": message}, status)


def _task(row: asyncpg.Record) -> dict:
    return {
        "id": str(row[0]),  # asyncpg's UUID subclass, which orjson does not take
        "title": row[1],
        "description": row[2],
        "completed": row[3],
        "user_id": str(row[4]),
        "created_at": row[5],
        "updated_at": row[6],
    }


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
        await _require_user(user_id)
    return user_id


async def _require_user(user_id: uuid.UUID) -> None:
    if await _pool_or_fail().fetchval(SQL_USER_EXISTS, user_id) is None:
        raise Fail(401, "Unauthorized")


async def _miss(user_id: uuid.UUID, status: int, message: str) -> Fail:
    """The answer to a miss, once the account is known to exist (else 401)."""
    if USER_CHECK == "lazy":
        await _require_user(user_id)
    return Fail(status, message)


async def _body(request: Request) -> dict:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise Fail(413, "Request body too large")
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise Fail(413, "Request body too large")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        value = _strict_json(raw)
    if not isinstance(value, dict):
        raise Fail(400, "Invalid JSON body")
    return value


def _strict_json(raw: bytes) -> object:
    """What orjson refuses but is JSON all the same (a lone surrogate, a number beyond a double,
    nesting past 1024): the contract answers those with the field's message, so decode them and
    let the validators refuse the values."""

    def no_constants(_name: str) -> object:
        raise ValueError("not JSON")

    try:
        return json.loads(raw.decode("utf-8"), parse_constant=no_constants)
    except RecursionError:
        raise Fail(400, "Invalid request body") from None
    except ValueError:
        raise Fail(400, "Invalid JSON body") from None


def _task_id(request: Request) -> uuid.UUID | None:
    value = request.path_params["task_id"]
    try:
        return uuid.UUID(value) if len(value) <= 64 else None
    except ValueError:
        return None


def _text(value: str, field: str) -> str:
    if _BAD_CHARACTERS.search(value):
        raise Fail(400, f"{field} contains invalid characters")
    return value


def _title(value: object, empty_message: str) -> str:
    if not isinstance(value, str):
        raise Fail(400, empty_message)
    title = _text(value, "Title").strip()
    if not title:
        raise Fail(400, empty_message)
    if len(title) > TITLE_MAX:
        raise Fail(400, "Title must not exceed 255 characters")
    return title


def _description(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise Fail(400, "Invalid request body")
    if len(_text(value, "Description")) > DESCRIPTION_MAX:
        raise Fail(400, "Description must not exceed 1000 characters")
    return value


def _changes(body: dict) -> dict[str, object]:
    changes: dict[str, object] = {}
    if "title" in body:
        changes["title"] = _title(body["title"], "Title cannot be empty")
    if "description" in body:
        changes["description"] = _description(body["description"])
    if "completed" in body:
        if not isinstance(body["completed"], bool):
            raise Fail(400, "Completed must be a boolean")
        changes["completed"] = body["completed"]
    return changes


def endpoint(fn):  # type: ignore[no-untyped-def]
    async def wrapped(request: Request) -> Response:
        try:
            return await fn(request)
        except Fail as exc:
            return _error(exc.status, exc.message)
        except _OUTAGES:
            return _error(503, "Service temporarily unavailable")

    return wrapped


@endpoint
async def list_tasks(request: Request) -> Response:
    user_id = await _caller(request)
    rows = await _pool_or_fail().fetch(SQL_LIST, user_id)
    if not rows and USER_CHECK == "lazy":
        await _require_user(user_id)
    return _json({"tasks": [_task(row) for row in rows]})


@endpoint
async def get_task(request: Request) -> Response:
    user_id = await _caller(request)
    task_id = _task_id(request)
    row = None if task_id is None else await _pool_or_fail().fetchrow(SQL_GET, task_id, user_id)
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
    try:
        row = await _pool_or_fail().fetchrow(SQL_INSERT, uuid.uuid4(), title, description, user_id)
    except asyncpg.ForeignKeyViolationError:  # the account is gone
        raise Fail(401, "Unauthorized") from None
    return _json({"task": _task(row)}, 201)


@endpoint
async def update_task(request: Request) -> Response:
    user_id = await _caller(request)
    body = await _body(request)
    try:
        changes = _changes(body)
    except Fail as exc:
        raise await _miss(user_id, exc.status, exc.message) from None
    task_id = _task_id(request)
    row = None
    if task_id is not None:
        sql = sql_update(tuple(changes))
        row = await _pool_or_fail().fetchrow(sql, task_id, user_id, *changes.values())
    if row is None:
        raise await _miss(user_id, 404, "Task not found")
    return _json({"task": _task(row)})


@endpoint
async def delete_task(request: Request) -> Response:
    user_id = await _caller(request)
    task_id = _task_id(request)
    status = None
    if task_id is not None:
        status = await _pool_or_fail().execute(SQL_DELETE, task_id, user_id)
    if status != "DELETE 1":
        raise await _miss(user_id, 404, "Task not found")
    return Response(status_code=204)


def _token(user_id: uuid.UUID, email: str) -> str:
    now = datetime.now(UTC)
    claims = {
        "sub": str(user_id),
        "user_id": str(user_id),
        "email": email,
        "iat": int(now.timestamp()),
        "exp": int((now + _LIFETIME).timestamp()),
    }
    return jwt.encode(claims, _SECRET, algorithm=ALGORITHM)


def _auth(user_id: uuid.UUID, email: str, status: int = 200) -> Response:
    return _json(
        {"token": _token(user_id, email), "user": {"id": str(user_id), "email": email}}, status
    )


def _verify(password: str, password_hash: str) -> bool:
    try:
        return bool(_CRYPT.verify(password, password_hash))
    except (ValueError, TypeError):  # over passlib's 4096 characters; a malformed hash
        return False


@endpoint
async def signup(request: Request) -> Response:
    body = await _body(request)
    email, password = body.get("email"), body.get("password")
    if not isinstance(email, str):
        raise Fail(400, "Invalid email format")
    email = _text(email, "Email").strip().lower()
    if len(email) > EMAIL_MAX or not _EMAIL_RE.fullmatch(email):
        raise Fail(400, "Invalid email format")
    if not isinstance(password, str) or len(_text(password, "Password")) < PASSWORD_MIN:
        raise Fail(400, "Password must be at least 8 characters")
    if len(password) > PASSWORD_MAX:
        raise Fail(400, "Password must be at most 128 characters")
    loop = asyncio.get_running_loop()
    password_hash = await loop.run_in_executor(_EXECUTOR, _CRYPT.hash, password)
    user_id = uuid.uuid4()
    try:
        await _pool_or_fail().execute(SQL_SIGNUP, user_id, email, password_hash)
    except asyncpg.UniqueViolationError:
        raise Fail(409, "Email already registered") from None
    return _auth(user_id, email, 201)


@endpoint
async def login(request: Request) -> Response:
    body = await _body(request)
    email, password = body.get("email"), body.get("password")
    if not isinstance(email, str) or not isinstance(password, str) or not email or not password:
        raise Fail(400, "Email and password required")
    email = _text(email, "Email").strip().lower()
    _text(password, "Password")
    if not email:
        raise Fail(400, "Email and password required")
    row = await _pool_or_fail().fetchrow(SQL_LOGIN, email)
    loop = asyncio.get_running_loop()
    ok = await loop.run_in_executor(_EXECUTOR, _verify, password, row[2] if row else _DUMMY_HASH)
    if not ok or row is None:
        raise Fail(401, "Invalid email or password")
    return _auth(row[0], row[1])


async def health(_request: Request) -> Response:
    try:
        healthy = await _pool_or_fail().fetchval("SELECT 1") == 1
    except _OUTAGES:
        healthy = False
    return _json({"status": "healthy" if healthy else "unhealthy"}, 200 if healthy else 503)


async def _http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        return _error(405, "Method not allowed")
    return _error(exc.status_code, "Not found" if exc.status_code == 404 else str(exc.detail))


async def _unexpected(_request: Request, _exc: Exception) -> Response:
    return _error(500, "Internal server error")


async def _keep_session(_connection: asyncpg.Connection) -> None:
    """No reset when a connection goes back to the pool (asyncpg's default is a round trip)."""


@asynccontextmanager
async def lifespan(_app: Starlette):  # type: ignore[no-untyped-def]
    global _pool, _DUMMY_HASH
    if len(_SECRET) < 32:
        raise RuntimeError("BETTER_AUTH_SECRET must be at least 32 bytes")
    _DUMMY_HASH = _CRYPT.hash(uuid.uuid4().hex)
    _pool = await asyncpg.create_pool(
        os.environ["FLOOR_DATABASE_URL"],
        min_size=int(os.environ.get("FLOOR_POOL_MIN", "20")),
        max_size=int(os.environ.get("FLOOR_POOL_MAX", "20")),
        reset=_keep_session,
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
        Route("/api/auth/signup", signup, methods=["POST"]),
        Route("/api/auth/login", login, methods=["POST"]),
        Route("/health", health, methods=["GET"]),
    ],
    exception_handlers={HTTPException: _http_error, Exception: _unexpected},
    lifespan=lifespan,
)
