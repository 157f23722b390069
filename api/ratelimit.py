"""Attempt limits for signup and login, per client address and per email.

A moving window over the `limits` library's async storage: in memory by default, shared
(`RATE_LIMIT_STORAGE_URL=redis://...`) when several instances serve one user base.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time

from limits import parse
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from api.settings import ConfigError
from graphql_schema.errors import RateLimited

log = logging.getLogger("todo.ratelimit")

STORAGE_TIMEOUT_SECONDS = 1.0


class AuthRateLimiter:
    def __init__(self, *, per_address: str, per_email: str, storage_url: str) -> None:
        try:
            self._per_address = parse(per_address)
        except ValueError:
            raise ConfigError("invalid setting RATE_LIMIT_PER_ADDRESS: e.g. '60/minute'") from None
        try:
            self._per_email = parse(per_email)
        except ValueError:
            raise ConfigError("invalid setting RATE_LIMIT_PER_EMAIL: e.g. '10/minute'") from None
        url = storage_url if storage_url.startswith("async+") else f"async+{storage_url}"
        try:
            self._storage = storage_from_string(url)
        except Exception as exc:  # the library raises several kinds for a bad URL
            raise ConfigError(f"invalid setting RATE_LIMIT_STORAGE_URL: {exc}") from None
        self._limiter = MovingWindowRateLimiter(self._storage)

    async def hit(self, *, action: str, address: str, email: str | None) -> None:
        """Count one attempt; RateLimited (with seconds to wait) when over either limit."""
        await self._hit(self._per_address, action, "address", address)
        if email:
            await self._hit(self._per_email, action, "email", email)

    async def _hit(self, limit, action: str, kind: str, key: str) -> None:  # type: ignore[no-untyped-def]
        try:
            async with asyncio.timeout(STORAGE_TIMEOUT_SECONDS):
                if await self._limiter.hit(limit, action, kind, key):
                    return
                stats = await self._limiter.get_window_stats(limit, action, kind, key)
        except Exception as exc:
            # A shared counter store that is down must not take sign-in down with it: the
            # attempt is allowed and the outage logged (bcrypt still bounds guessing speed).
            log.warning("rate-limit storage unavailable, allowing: %s: %s", type(exc).__name__, exc)
            return
        raise RateLimited(retry_after=max(1, math.ceil(stats.reset_time - time.time())))

    async def reset(self) -> None:
        await self._storage.reset()
