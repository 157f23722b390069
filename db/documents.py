"""GraphQL documents registered through automatic persisted queries, in the service's own
database: every instance finds a document any instance registered.

At most `max_documents` rows: every so many registrations the least recently used beyond the
cap go, a bounded batch at a time. A document is "used" when an instance takes it from the
table; each instance keeps the ones it uses in memory (graphql_schema/persisted.py), so the
table is read, and `used_at` written, once per instance and document, not per request.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import bindparam, text

from db.models import UTCDateTime
from db.store import Store

EVICT_EVERY_REGISTRATIONS = 50
EVICT_BATCH = 500

_NOW = bindparam("now", type_=UTCDateTime())
_GET = text("SELECT document FROM persisted_documents WHERE sha256 = :sha256")
_TOUCH = text("UPDATE persisted_documents SET used_at = :now WHERE sha256 = :sha256").bindparams(
    _NOW
)
# Both databases take ON CONFLICT; a document registered twice (two instances) is one row.
_PUT = text(
    "INSERT INTO persisted_documents (sha256, document, used_at) VALUES (:sha256, :document, :now)"
    " ON CONFLICT (sha256) DO NOTHING"
).bindparams(_NOW)
# The rows older than the `:keep`-th most recently used (`:skip` = keep - 1), at most `:batch`.
_EVICT = text(
    """
DELETE FROM persisted_documents WHERE sha256 IN (
    SELECT sha256 FROM persisted_documents
    WHERE used_at < (
        SELECT used_at FROM persisted_documents ORDER BY used_at DESC LIMIT 1 OFFSET :skip
    )
    ORDER BY used_at LIMIT :batch
)
"""
)
_CLEAR = text("DELETE FROM persisted_documents")


class DocumentTable:
    def __init__(self, store: Store, *, max_documents: int) -> None:
        self._store = store
        self._max = max_documents
        self._registrations = 0

    async def get(self, sha256: str) -> str | None:
        document = await self._store.scalar(_GET, {"sha256": sha256})
        if document is not None:
            await self._store.execute(_TOUCH, {"sha256": sha256, "now": datetime.now(UTC)})
        return document

    async def put(self, sha256: str, document: str) -> None:
        await self._store.execute(
            _PUT, {"sha256": sha256, "document": document, "now": datetime.now(UTC)}
        )
        self._registrations += 1
        if self._registrations % EVICT_EVERY_REGISTRATIONS == 0:
            await self.evict()

    async def evict(self) -> int:
        """Delete up to a batch of the least recently used past the cap; how many went."""
        return await self._store.execute(_EVICT, {"skip": self._max - 1, "batch": EVICT_BATCH})

    async def clear(self) -> None:
        await self._store.execute(_CLEAR)
