"""Where the operations' statements run: SQLAlchemy on SQLite, a raw asyncpg pool on PostgreSQL.

Each statement is written once, as a SQLAlchemy Core statement with named bind parameters
(core/tasks.py and core/accounts.py build them once, at import or once per shape). A store runs it:

- `SqlAlchemyStore` (SQLite) through SQLAlchemy's engine, as any Core statement.
- `AsyncpgStore` (PostgreSQL) compiles it once for the asyncpg dialect and from then on sends
  the SQL text straight to asyncpg (a prepared statement in the connection's cache). That skips
  what the profile in bench/PROFILE.md found to be a quarter to a third of a request's CPU:
  building the statement and its cache key, the execution context, the greenlet bridge and the
  result processing. asyncpg's pool also hands connections to waiters in arrival order, where
  SQLAlchemy's let newcomers overtake a waiter at 100 concurrent requests (p95 over a second).

asyncpg needs no type processing for the columns used here: it sends and returns `uuid.UUID`
(a subclass), aware UTC `datetime`, `bool` and `str` natively, as the models declare them.
Reads run in autocommit (one statement, no BEGIN/COMMIT), and so do writes that are one
statement (PostgreSQL's task writes, db/event_log.py; the rate limits' upserts); other writes
run in `transaction()`.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any, Protocol

import asyncpg
from asyncpg.pool import PoolConnectionProxy
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql import Executable

from db.url import DatabaseTarget

log = logging.getLogger("todo.db")

Params = Mapping[str, Any]


class Row(Protocol):
    """A SQLAlchemy Row or an asyncpg Record: both index by position and unpack (a Record is
    no Sequence)."""

    def __getitem__(self, index: int, /) -> Any: ...
    def __iter__(self) -> Iterator[Any]: ...
    def __len__(self) -> int: ...


StatementListener = Callable[[str], None]

# Failures that mean "the database is not reachable right now" (answered 503), not a bug.
_ASYNCPG_OUTAGES = (
    asyncpg.PostgresConnectionError,  # lost or refused connections
    asyncpg.InterfaceError,  # a closed connection or pool
    asyncpg.exceptions.OperatorInterventionError,  # shutdown, cannot connect now, cancelled
    asyncpg.exceptions.InsufficientResourcesError,  # too many connections, disk full
    asyncpg.exceptions.InternalClientError,
)
# Failures after which a pooled connection, and likely its siblings, are unusable.
_CONNECTION_LOST = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,  # e.g. killed in the middle of a statement
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.CannotConnectNowError,
    OSError,
)
_SQLALCHEMY_OUTAGE_CAUSES = {
    "CannotConnectNowError",
    "ConnectionDoesNotExistError",
    "ConnectionFailureError",
    "AdminShutdownError",
    "TooManyConnectionsError",
    "InternalClientError",
}


class ConstraintViolation(Exception):
    """A unique or foreign-key constraint refused a write."""


def is_outage(exc: BaseException) -> bool:
    """True when `exc` says the database is unreachable or overloaded, on either store."""
    if isinstance(exc, (OSError, TimeoutError, sa_exc.TimeoutError, *_ASYNCPG_OUTAGES)):
        return True
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated or isinstance(
            exc, (sa_exc.OperationalError, sa_exc.InterfaceError)
        ):
            return True
        orig = getattr(exc, "orig", None)
        cause = getattr(orig, "__cause__", None) or orig
        return type(cause).__name__ in _SQLALCHEMY_OUTAGE_CAUSES or isinstance(
            cause, (OSError, TimeoutError)
        )
    return False


class Runner(ABC):
    """Runs statements: a store (each read in autocommit) or one of its transactions."""

    @abstractmethod
    async def rows(self, statement: Executable, params: Params | None = None) -> Sequence[Row]: ...

    async def row(self, statement: Executable, params: Params | None = None) -> Row | None:
        found = await self.rows(statement, params)
        return found[0] if found else None

    async def scalar(self, statement: Executable, params: Params | None = None) -> Any:
        found = await self.row(statement, params)
        return found[0] if found is not None else None

    @abstractmethod
    async def execute(self, statement: Executable, params: Params | None = None) -> int:
        """Run a write; how many rows it changed."""


class Transaction(Runner):
    """Statements on one connection, committed together when the block ends without error."""

    def __init__(self) -> None:
        self._after_commit: list[Callable[[], None]] = []

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run `callback` right after the commit, while the connection is still held (so
        callbacks of successive transactions run in commit order); never on rollback."""
        self._after_commit.append(callback)

    def _committed(self) -> None:
        for callback in self._after_commit:
            callback()


class Store(Runner):
    @abstractmethod
    def transaction(self) -> Any:  # an async context manager yielding a Transaction
        ...

    pool_capacity: int  # connections the pool keeps at most (for /metrics)

    @abstractmethod
    def watch_pool(self, on_checkout: Callable[[], None], on_checkin: Callable[[], None]) -> None:
        """Call `on_checkout`/`on_checkin` as connections are taken from and returned to the
        pool (/metrics counts connections in use with them)."""

    @abstractmethod
    async def close(self) -> None: ...

    @contextmanager
    def watch_statements(self) -> Iterator[list[str]]:
        """Every SQL statement sent while the block runs (tests count round trips with it)."""
        statements: list[str] = []
        self._listeners.append(statements.append)
        try:
            yield statements
        finally:
            self._listeners.remove(statements.append)

    _listeners: list[StatementListener]


# --- SQLite (and any SQLAlchemy engine) --------------------------------------------------------


class _SqlAlchemyTransaction(Transaction):
    def __init__(self, connection: AsyncConnection) -> None:
        super().__init__()
        self._connection = connection

    async def rows(self, statement: Executable, params: Params | None = None) -> Sequence[Row]:
        return list((await self._connection.execute(statement, params)).all())

    async def execute(self, statement: Executable, params: Params | None = None) -> int:
        try:
            result = await self._connection.execute(statement, params)
        except sa_exc.IntegrityError as exc:
            raise ConstraintViolation(str(exc.orig)) from exc
        return result.rowcount


class SqlAlchemyStore(Store):
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._reader = engine.execution_options(isolation_level="AUTOCOMMIT")
        size = getattr(engine.pool, "size", None)
        self.pool_capacity = size() if callable(size) else 0
        self._listeners = []
        event.listen(engine.sync_engine, "before_cursor_execute", self._heard)

    def _heard(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        for listener in self._listeners:
            listener(statement)

    async def rows(self, statement: Executable, params: Params | None = None) -> Sequence[Row]:
        async with self._reader.connect() as connection:
            return list((await connection.execute(statement, params)).all())

    async def execute(self, statement: Executable, params: Params | None = None) -> int:
        async with self.transaction() as transaction:
            return await transaction.execute(statement, params)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        async with self._engine.connect() as connection:
            transaction = _SqlAlchemyTransaction(connection)
            await connection.begin()
            try:
                yield transaction
            except BaseException:
                await connection.rollback()
                raise
            await connection.commit()
            transaction._committed()

    def watch_pool(self, on_checkout: Callable[[], None], on_checkin: Callable[[], None]) -> None:
        # Every checkout has its checkin (also for an invalidated connection).
        event.listen(self._engine.sync_engine, "checkout", lambda *_: on_checkout())
        event.listen(self._engine.sync_engine, "checkin", lambda *_: on_checkin())

    async def close(self) -> None:
        event.remove(self._engine.sync_engine, "before_cursor_execute", self._heard)


# --- PostgreSQL ---------------------------------------------------------------------------------

_DIALECT = asyncpg_dialect()
# connect_args that are SQLAlchemy's asyncpg dialect options, not asyncpg.connect()'s.
_SQLALCHEMY_ONLY = {"prepared_statement_name_func", "prepared_statement_cache_size"}


class _Compiled:
    __slots__ = ("_defaults", "names", "sql")

    def __init__(self, statement: Executable) -> None:
        compiled = statement.compile(dialect=_DIALECT)  # type: ignore[attr-defined]
        self.sql: str = compiled.string
        self.names: tuple[str, ...] = tuple(compiled.positiontup or ())
        # Only a bind parameter that carries its own value may be left out: one that requires
        # a value is refused when missing, as SQLAlchemy refuses it on SQLite (it would
        # otherwise be sent as NULL here).
        self._defaults = {
            name: compiled.binds[name].value
            for name in self.names
            if not compiled.binds[name].required
        }

    def args(self, params: Params | None) -> list[Any]:
        try:
            if params is None:
                return [self._defaults[name] for name in self.names]
            return [params[name] if name in params else self._defaults[name] for name in self.names]
        except KeyError as missing:
            message = f"A value is required for bind parameter {missing.args[0]!r}"
            raise sa_exc.StatementError(
                message, self.sql, params, sa_exc.InvalidRequestError(message)
            ) from None


def _rowcount(status: str) -> int:
    """Rows changed, from a command tag such as `UPDATE 1`, `DELETE 0` or `INSERT 0 1`."""
    last = status.rpartition(" ")[2]
    return int(last) if last.isdigit() else 0


class _AsyncpgRunner:
    """Compiles each statement once (by identity: they are built once) and runs the SQL."""

    def __init__(self) -> None:
        self._compiled: dict[int, tuple[Executable, _Compiled]] = {}
        self._listeners: list[StatementListener] = []

    def _compile(self, statement: Executable) -> _Compiled:
        entry = self._compiled.get(id(statement))
        if entry is None or entry[0] is not statement:
            entry = (statement, _Compiled(statement))  # the statement is kept: ids stay unique
            if len(self._compiled) > 2048:  # only statements built per call would grow it
                self._compiled.clear()
            self._compiled[id(statement)] = entry
        compiled = entry[1]
        for listener in self._listeners:
            listener(compiled.sql)
        return compiled


class _AsyncpgTransaction(Transaction):
    def __init__(self, connection: PoolConnectionProxy, runner: _AsyncpgRunner) -> None:
        super().__init__()
        self._connection = connection
        self._runner = runner

    async def rows(self, statement: Executable, params: Params | None = None) -> Sequence[Row]:
        compiled = self._runner._compile(statement)
        return await self._connection.fetch(compiled.sql, *compiled.args(params))

    async def execute(self, statement: Executable, params: Params | None = None) -> int:
        compiled = self._runner._compile(statement)
        try:
            status = await self._connection.execute(compiled.sql, *compiled.args(params))
        except asyncpg.IntegrityConstraintViolationError as exc:
            raise ConstraintViolation(str(exc)) from exc
        return _rowcount(status)


async def _keep_session(_connection: asyncpg.Connection) -> None:
    """Nothing to reset when a connection goes back to the pool: the store's statements never
    change session state (no SET, LISTEN, session advisory lock or cursor; task writes take
    transaction-scoped advisory locks and NOTIFY, the listener has a connection of its own).
    asyncpg's default sends `SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET
    ALL` on every release, a round trip per request; it still rolls back a transaction left
    open, with or without this."""


class AsyncpgStore(Store):
    """A pool of up to `pool_size` persistent connections, opened as they are needed."""

    def __init__(self, target: DatabaseTarget, *, pool_size: int, pool_timeout: float) -> None:
        url = target.url
        self._connect_kwargs: dict[str, Any] = {
            key: value for key, value in target.connect_args.items() if key not in _SQLALCHEMY_ONLY
        }
        self._connect_kwargs.update(
            host=url.host,
            port=url.port,
            user=url.username,
            password=url.password,
            database=url.database,
        )
        self.pool_capacity = pool_size
        self._pool_watchers: list[tuple[Callable[[], None], Callable[[], None]]] = []
        self._pool_timeout = pool_timeout
        self._pool: asyncpg.Pool | None = None
        self._pool_lock = asyncio.Lock()
        # First come, first served: asyncpg's pool waits on an asyncio.Queue, where a request
        # arriving just as a connection comes back takes it before the waiter that was woken
        # for it, and that waiter queues again at the back. Under load (writes hold their
        # connection for four round trips) that pushed p95 to 10x p50 at 100 connections.
        # asyncio.Semaphore hands a released slot to the longest waiter, and newcomers queue
        # behind waiters; with at most pool_size holders the pool itself never makes anyone
        # wait.
        self._gate = asyncio.Semaphore(pool_size)
        self._runner = _AsyncpgRunner()
        self._listeners = self._runner._listeners

    async def _get_pool(self) -> asyncpg.Pool:
        # Created on first use, not at start-up: the service starts (and answers 503) while
        # the database is down, and tests may use an app without running its lifespan.
        if self._pool is None:
            async with self._pool_lock:
                if self._pool is None:
                    self._pool = await asyncpg.create_pool(
                        reset=_keep_session,
                        min_size=0,
                        max_size=self.pool_capacity,
                        # Recycle connections idle past Neon's suspend or a proxy's timeout.
                        max_inactive_connection_lifetime=300,
                        **self._connect_kwargs,
                    )
        return self._pool

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[PoolConnectionProxy]:
        pool = await self._get_pool()
        gate = self._gate
        if gate.locked():  # every connection is in use: wait in line
            async with asyncio.timeout(self._pool_timeout):
                await gate.acquire()
        else:
            await gate.acquire()  # returns at once
        try:
            async with pool.acquire(timeout=self._pool_timeout) as connection:
                for on_checkout, _ in self._pool_watchers:
                    on_checkout()
                try:
                    yield connection
                except _CONNECTION_LOST:
                    # When one connection is found dead, the others (opened alike, idle
                    # alike) usually are too, as after a database restart, and asyncpg may
                    # not have noticed yet: replace them all on their next use, so that the
                    # outage costs this request, not one request per pooled connection.
                    await pool.expire_connections()
                    raise
                finally:
                    for _, on_checkin in self._pool_watchers:
                        on_checkin()
        finally:
            gate.release()

    async def rows(self, statement: Executable, params: Params | None = None) -> Sequence[Row]:
        compiled = self._runner._compile(statement)
        async with self._connection() as connection:
            try:
                return await connection.fetch(compiled.sql, *compiled.args(params))
            except asyncpg.IntegrityConstraintViolationError as exc:
                # A one-statement write (INSERT ... RETURNING) in autocommit.
                raise ConstraintViolation(str(exc)) from exc

    async def execute(self, statement: Executable, params: Params | None = None) -> int:
        async with self.transaction() as transaction:
            return await transaction.execute(statement, params)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        async with self._connection() as connection:
            transaction = _AsyncpgTransaction(connection, self._runner)
            async with connection.transaction():
                yield transaction
            transaction._committed()

    def watch_pool(self, on_checkout: Callable[[], None], on_checkin: Callable[[], None]) -> None:
        self._pool_watchers.append((on_checkout, on_checkin))

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            await asyncio.wait_for(pool.close(), timeout=10)
        except Exception as exc:  # shutting down: connections still busy are cut
            log.warning("closing the database pool: %s: %s", type(exc).__name__, exc)
            pool.terminate()


def build_store(
    target: DatabaseTarget, engine: AsyncEngine, *, pool_size: int, pool_timeout: float
) -> Store:
    if target.is_sqlite:
        return SqlAlchemyStore(engine)
    return AsyncpgStore(target, pool_size=pool_size, pool_timeout=pool_timeout)
