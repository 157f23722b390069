"""Attempt limits for signup and login, per client address and per email.

A moving window per action and key. Where the counters live (`RATE_LIMIT_STORAGE_URL`):
- unset (or `database`): the service's own database (db/rate_limits.py), shared by every
  worker and every instance on it, with nothing else to run (decision 15);
- a `limits` storage URL: `redis://...` (shared), or `memory://` (one process only).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Protocol

from limits import RateLimitItem, parse
from limits.aio.storage import Storage as AsyncStorage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from core.errors import ConfigError, RateLimited
from db.rate_limits import AttemptWindows, window_key
from db.store import Store

log = logging.getLogger("todo.ratelimit")

DATABASE_STORAGE = frozenset({"", "database"})
# A separate service (Redis) that does not answer must not hold sign-in up for long.
STORAGE_TIMEOUT_SECONDS = 1.0
# The database's rows of empty windows are deleted by the service itself, a bounded batch
# after every so many attempts or seconds (each attempt adds at most two rows).
SWEEP_EVERY_ATTEMPTS = 100
SWEEP_EVERY_SECONDS = 60.0
SWEEP_BATCH = 1000


class AttemptCounter(Protocol):
    async def hit(self, limit: RateLimitItem, action: str, kind: str, key: str) -> int | None:
        """Count one attempt; None when allowed, else the seconds to wait."""

    async def reset(self) -> None: ...


class LibraryCounter:
    """The `limits` library's moving window over one of its async storages."""

    def __init__(self, storage_url: str) -> None:
        url = storage_url if storage_url.startswith("async+") else f"async+{storage_url}"
        try:
            storage = storage_from_string(url)
        except Exception as exc:  # the library raises several kinds for a bad URL
            raise ConfigError(f"invalid setting RATE_LIMIT_STORAGE_URL: {exc}") from None
        # An `async+` URL always gives an async storage; the library's type says either kind.
        if not isinstance(storage, AsyncStorage):
            raise ConfigError("invalid setting RATE_LIMIT_STORAGE_URL: not an async storage")
        self._storage = storage
        self._limiter = MovingWindowRateLimiter(self._storage)

    async def hit(self, limit: RateLimitItem, action: str, kind: str, key: str) -> int | None:
        async with asyncio.timeout(STORAGE_TIMEOUT_SECONDS):
            if await self._limiter.hit(limit, action, kind, key):
                return None
            stats = await self._limiter.get_window_stats(limit, action, kind, key)
        return max(1, math.ceil(stats.reset_time - time.time()))

    async def reset(self) -> None:
        await self._storage.reset()


class DatabaseCounter:
    """Windows in the service's database. No timeout of its own: the store's (connect, pool,
    statement) bound it as they bound the login's other statements."""

    def __init__(self, windows: AttemptWindows) -> None:
        self._windows = windows
        self._since_sweep = 0
        self._swept_at = time.monotonic()

    async def hit(self, limit: RateLimitItem, action: str, kind: str, key: str) -> int | None:
        refused = await self._windows.hit(
            window_key(action, kind, key), amount=limit.amount, window_seconds=limit.get_expiry()
        )
        await self._sweep_now_and_then()
        return None if refused is None else refused.retry_after

    async def _sweep_now_and_then(self) -> None:
        self._since_sweep += 1
        now = time.monotonic()
        if self._since_sweep < SWEEP_EVERY_ATTEMPTS and now - self._swept_at < SWEEP_EVERY_SECONDS:
            return
        self._since_sweep, self._swept_at = 0, now
        try:
            await self._windows.sweep(batch=SWEEP_BATCH)
        except Exception as exc:  # the next sweep will do
            log.warning("rate-limit clean-up failed: %s: %s", type(exc).__name__, exc)

    async def reset(self) -> None:
        await self._windows.clear()


def _limit(value: str, setting: str, example: str) -> RateLimitItem:
    try:
        return parse(value)
    except ValueError:
        raise ConfigError(f"invalid setting {setting}: e.g. '{example}'") from None


class AuthRateLimiter:
    def __init__(self, *, per_address: str, per_email: str, counter: AttemptCounter) -> None:
        self._per_address = _limit(per_address, "RATE_LIMIT_PER_ADDRESS", "60/minute")
        self._per_email = _limit(per_email, "RATE_LIMIT_PER_EMAIL", "10/minute")
        self._counter = counter

    async def hit(self, *, action: str, address: str, email: str | None) -> None:
        """Count one attempt; RateLimited (with seconds to wait) when over either limit."""
        await self._hit(self._per_address, action, "address", address)
        if email:
            await self._hit(self._per_email, action, "email", email)

    async def _hit(self, limit: RateLimitItem, action: str, kind: str, key: str) -> None:
        try:
            retry_after = await self._counter.hit(limit, action, kind, key)
        except Exception as exc:
            # A counter store that is down must not take sign-in down with it: the attempt is
            # allowed and the outage logged (bcrypt still bounds guessing speed).
            log.warning("rate-limit storage unavailable, allowing: %s: %s", type(exc).__name__, exc)
            return
        if retry_after is not None:
            raise RateLimited(retry_after=retry_after)

    async def reset(self) -> None:
        await self._counter.reset()


def build_rate_limiter(
    *,
    per_address: str,
    per_email: str,
    storage_url: str,
    store: Store,
    sqlite: bool,
    workers: int = 1,
) -> AuthRateLimiter:
    """The limiter `RATE_LIMIT_STORAGE_URL` asks for (ConfigError on a bad setting)."""
    counter: AttemptCounter
    if storage_url.strip().lower() in DATABASE_STORAGE:
        counter = DatabaseCounter(AttemptWindows(store, sqlite=sqlite))
    else:
        counter = LibraryCounter(storage_url.strip())
        if workers > 1 and storage_url.strip().startswith("memory://"):
            log.warning(
                "RATE_LIMIT_STORAGE_URL=memory:// counts in each of the %d workers apart: the "
                "limits are that many times looser (unset it to count in the database)",
                workers,
            )
    return AuthRateLimiter(per_address=per_address, per_email=per_email, counter=counter)
