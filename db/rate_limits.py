"""Attempt windows for the rate limits, kept in the service's own database (decision 15).

One row per key (`db.models.RateLimitWindow`) holds the instants of the attempts counted in the
last window: a moving window, as the `limits` library keeps one, so "10 per minute" means no
more than 10 in any 60 seconds and a refused attempt is not counted. Every worker and every
instance on the database share the rows.

An attempt is one statement, an upsert: `INSERT ... ON CONFLICT (key) DO UPDATE ...
RETURNING`. Its update locks the row and reads the row's latest version (PostgreSQL documents
this for READ COMMITTED; SQLite has one writer at a time), so concurrent attempts for one key
are counted one after the other and never more than the limit pass. The instants come from the
database's clock (the same for every instance), in milliseconds since the epoch; the row keeps
them as a JSON array (JSON functions exist on both databases, arrays only on PostgreSQL).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass

from sqlalchemy import text

from db.store import Store

# Now, in ms since the epoch: constant within one statement on both databases
# (statement_timestamp(); SQLite's 'now' within one sqlite3_step).
_PG_NOW = "CAST(EXTRACT(EPOCH FROM statement_timestamp()) * 1000 AS BIGINT)"
_SQLITE_NOW = "CAST(ROUND((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER)"

# :key, :window (ms), :amount. The sub-select keeps the instants still in the window, oldest
# first, and how many there are; the attempt counts (is appended) when they are fewer than
# :amount. `expires_at` is when the newest counted instant leaves the window.
_PG_HIT = text(
    f"""
INSERT INTO rate_limit_windows AS w (key, hits, last_counted, expires_at)
VALUES (:key, '[' || {_PG_NOW} || ']', true, {_PG_NOW} + :window)
ON CONFLICT (key) DO UPDATE SET (hits, last_counted, expires_at) = (
    SELECT
        CAST(CASE WHEN kept.n < :amount
            THEN kept.log || jsonb_build_array({_PG_NOW}) ELSE kept.log END AS TEXT),
        kept.n < :amount,
        CASE WHEN kept.n < :amount THEN {_PG_NOW} + :window ELSE w.expires_at END
    FROM (
        SELECT COALESCE(jsonb_agg(e.at ORDER BY e.at), '[]') AS log, count(*) AS n
        FROM (
            SELECT CAST(value AS BIGINT) AS at
            FROM jsonb_array_elements(CAST(w.hits AS JSONB))
        ) AS e
        WHERE e.at > {_PG_NOW} - :window
    ) AS kept
)
RETURNING hits, last_counted, {_PG_NOW}
"""
)
_SQLITE_HIT = text(
    f"""
INSERT INTO rate_limit_windows AS w (key, hits, last_counted, expires_at)
VALUES (:key, json_array({_SQLITE_NOW}), 1, {_SQLITE_NOW} + :window)
ON CONFLICT (key) DO UPDATE SET (hits, last_counted, expires_at) = (
    SELECT
        CASE WHEN kept.n < :amount
            THEN json_insert(kept.log, '$[#]', {_SQLITE_NOW}) ELSE kept.log END,
        kept.n < :amount,
        CASE WHEN kept.n < :amount THEN {_SQLITE_NOW} + :window ELSE w.expires_at END
    FROM (
        SELECT COALESCE(json_group_array(e.at), '[]') AS log, count(*) AS n
        FROM (
            SELECT value AS at FROM json_each(w.hits)
            WHERE value > {_SQLITE_NOW} - :window ORDER BY value
        ) AS e
    ) AS kept
)
RETURNING hits, last_counted, {_SQLITE_NOW}
"""
)

# Expired rows, oldest first, at most :batch of them. The outer condition is checked again on
# the row's latest version (PostgreSQL), so a row an attempt has just renewed stays.
_SWEEP_TEMPLATE = """
DELETE FROM rate_limit_windows
WHERE key IN (
    SELECT key FROM rate_limit_windows WHERE expires_at < {now} ORDER BY expires_at LIMIT :batch
) AND expires_at < {now}
"""
_PG_SWEEP = text(_SWEEP_TEMPLATE.format(now=_PG_NOW))
_SQLITE_SWEEP = text(_SWEEP_TEMPLATE.format(now=_SQLITE_NOW))
_CLEAR = text("DELETE FROM rate_limit_windows")


@dataclass(frozen=True)
class Refused:
    """Over the limit: the attempt was not counted; `retry_after` seconds until one more is."""

    retry_after: int


def window_key(*parts: str) -> str:
    """The stored key: a SHA-256 digest, so the table holds no email or client address."""
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


class AttemptWindows:
    """The moving windows in the `rate_limit_windows` table, through the service's store."""

    def __init__(self, store: Store, *, sqlite: bool) -> None:
        self._store = store
        self._hit = _SQLITE_HIT if sqlite else _PG_HIT
        self._sweep = _SQLITE_SWEEP if sqlite else _PG_SWEEP

    async def hit(self, key: str, *, amount: int, window_seconds: int) -> Refused | None:
        """Count one attempt for `key` (a `window_key`) unless `amount` attempts were counted
        in the last `window_seconds`; None when it counted."""
        window_ms = window_seconds * 1000
        if amount < 1:
            return Refused(retry_after=max(1, window_seconds))
        # One statement in autocommit: the upsert is atomic on its own.
        row = await self._store.row(self._hit, {"key": key, "window": window_ms, "amount": amount})
        assert row is not None  # INSERT ... RETURNING always returns the row
        hits, counted, now_ms = row
        if counted:
            return None
        oldest = min(json.loads(hits))
        return Refused(retry_after=max(1, math.ceil((oldest + window_ms - now_ms) / 1000)))

    async def sweep(self, *, batch: int) -> int:
        """Delete up to `batch` rows whose windows are empty; how many went."""
        return await self._store.execute(self._sweep, {"batch": batch})

    async def clear(self) -> None:
        await self._store.execute(_CLEAR)
