"""Persisted documents: automatic persisted queries, and trusted documents.

Automatic persisted queries (APQ), as Apollo Client's `createPersistedQueryLink` speaks them:
a request names its document by hash, `extensions.persistedQuery = {"version": 1,
"sha256Hash": "<hex>"}`, without `query`. A document the service knows runs; otherwise the
answer is the error `PersistedQueryNotFound` (code `PERSISTED_QUERY_NOT_FOUND`), and the
client sends the hash again with the document, which registers it once it has passed
validation (so only documents that can run are kept). Documents live in the service's
database (`db/documents.py`: shared by every instance, at most GRAPHQL_PERSISTED_QUERIES_MAX
of them) and in each instance's memory (`MEMORY_BUDGET_CHARS`, least recently used first).

Trusted documents (GRAPHQL_TRUSTED_DOCUMENTS, a manifest file): only the documents in the
manifest run. A request names one by `documentId` (the GraphQL-over-HTTP draft and
graphql-codegen's client preset; a `sha256:` prefix is allowed), by APQ's hash, or sends its
exact text; anything else is refused before it is parsed, with code `UNTRUSTED_DOCUMENT`.
Nothing is registered in this mode. GRAPHQL_ALLOW_UNTRUSTED_DOCUMENTS lets other documents run
too (for GraphiQL on a staging deployment, say).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from graphql import (
    DocumentNode,
    FieldNode,
    GraphQLError,
    NameNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
)
from strawberry.types import ExecutionContext

from core.errors import ConfigError, DomainError, ErrorCode, InvalidInput

APQ_VERSION = 1
# A registered document is kept in memory and in the database: past this it still runs, but
# is not kept (the token limit bounds what parsing costs; this bounds what a hash holds).
MAX_DOCUMENT_CHARS = 64 * 1024
MEMORY_BUDGET_CHARS = 8 * 1024 * 1024  # per instance
_SHA256 = re.compile(r"[0-9a-f]{64}")


class PersistedQueryNotFound(DomainError):
    """The hash names no document this service knows: send it again with the document."""

    code = ErrorCode.PERSISTED_QUERY_NOT_FOUND
    default_message = "PersistedQueryNotFound"


class PersistedQueryNotSupported(DomainError):
    code = ErrorCode.PERSISTED_QUERY_NOT_SUPPORTED
    default_message = "PersistedQueryNotSupported"


class UntrustedDocument(DomainError):
    code = ErrorCode.UNTRUSTED_DOCUMENT
    default_message = "Only the documents of this service's manifest may run here"


def sha256_hex(document: str) -> str:
    return hashlib.sha256(document.encode()).hexdigest()


class DocumentStore(Protocol):
    """Where registered documents are shared between instances (db/documents.py)."""

    async def get(self, sha256: str) -> str | None: ...

    async def put(self, sha256: str, document: str) -> None: ...


class PersistedQueries:
    """The APQ registry: documents by hash, in memory in front of the shared store."""

    def __init__(
        self, store: DocumentStore | None, *, memory_budget: int = MEMORY_BUDGET_CHARS
    ) -> None:
        self._store = store
        self._memory: OrderedDict[str, str] = OrderedDict()
        self._budget = memory_budget
        self._used = 0

    async def find(self, sha256: str) -> str | None:
        document = self._memory.get(sha256)
        if document is not None:
            self._memory.move_to_end(sha256)
            return document
        if self._store is None:
            return None
        document = await self._store.get(sha256)
        if document is not None:
            self._remember(sha256, document)
        return document

    async def register(self, sha256: str, document: str) -> None:
        if len(document) > MAX_DOCUMENT_CHARS or sha256 in self._memory:
            return
        self._remember(sha256, document)
        if self._store is not None:
            await self._store.put(sha256, document)

    def _remember(self, sha256: str, document: str) -> None:
        self._memory[sha256] = document
        self._used += len(document)
        while self._used > self._budget:
            _, evicted = self._memory.popitem(last=False)
            self._used -= len(evicted)


class TrustedDocuments:
    """The manifest: `{"<id>": "<document>", ...}`, as graphql-codegen's client preset
    (`persisted-documents.json`, ids are SHA-256 hashes) and Relay (`persisted_queries.json`)
    write it."""

    def __init__(self, documents: Mapping[str, str]) -> None:
        self._by_id = dict(documents)
        self._by_hash = {sha256_hex(document): document for document in documents.values()}

    @classmethod
    def from_file(cls, path: Path) -> TrustedDocuments:
        setting = "invalid setting GRAPHQL_TRUSTED_DOCUMENTS"
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"{setting}: cannot read {path}: {exc.strerror}") from None
        except ValueError:
            raise ConfigError(f"{setting}: {path} is not JSON") from None
        if not isinstance(loaded, dict) or not all(
            isinstance(key, str) and isinstance(value, str) for key, value in loaded.items()
        ):
            raise ConfigError(f"{setting}: {path} must map ids to documents (strings)")
        return cls(loaded)

    def __len__(self) -> int:
        return len(self._by_id)

    def by_id(self, document_id: str) -> str | None:
        found = self._by_id.get(document_id)
        if found is None and document_id.startswith("sha256:"):
            found = self._by_hash.get(document_id.removeprefix("sha256:"))
        return found

    def by_hash(self, sha256: str) -> str | None:
        return self._by_hash.get(sha256)

    def holds(self, document: str) -> bool:
        return sha256_hex(document) in self._by_hash


def _persisted_hash(extensions: Mapping[str, Any]) -> str | None:
    """APQ's hash from a request's extensions; None when it asks for no persisted query."""
    persisted = extensions.get("persistedQuery")
    if persisted is None:
        return None
    if not isinstance(persisted, Mapping) or persisted.get("version") != APQ_VERSION:
        raise PersistedQueryNotSupported()
    sha256 = persisted.get("sha256Hash")
    if not isinstance(sha256, str) or not _SHA256.fullmatch(sha256):
        raise InvalidInput("persistedQuery.sha256Hash must be a SHA-256 hash in lower-case hex")
    return sha256


class PersistedDocuments:
    """Where an operation's document comes from when the request names it; built once per
    app, applied to each operation by the guard (extensions.py: `prepare`, then `finish`)."""

    def __init__(
        self,
        *,
        queries: PersistedQueries | None,
        trusted: TrustedDocuments | None = None,
        allow_untrusted: bool = False,
    ) -> None:
        self.queries = queries
        self.trusted = trusted
        self.allow_untrusted = allow_untrusted

    async def prepare(self, context: ExecutionContext) -> str | None:
        """Before parsing: put the document the request names into the operation, or end the
        operation with the refusal (`_refuse`). The hash to register once the operation is
        over, if any (`finish`)."""
        try:
            return await self.resolve(context)
        except DomainError as error:
            _refuse(context, error)
            return None

    async def finish(self, context: ExecutionContext, sha256: str) -> None:
        """After the operation: keep the document it sent under its hash, if it validated (so
        only documents that can run are kept)."""
        if (
            self.queries is not None
            and context.query
            and context.graphql_document is not None
            and not context.pre_execution_errors
        ):
            await self.queries.register(sha256, context.query)

    async def resolve(self, context: ExecutionContext) -> str | None:
        """Put the document the request names into `context.query`, or raise; the hash to
        register once the document has validated, if any."""
        extensions = context.operation_extensions or {}
        sha256 = _persisted_hash(extensions)
        document_id = extensions.get("documentId")
        if document_id is not None and not isinstance(document_id, str):
            raise InvalidInput("documentId must be a string")
        if self.trusted is not None:
            self._resolve_trusted(context, sha256, document_id)
            return None
        if document_id is not None:
            raise UntrustedDocument("This service runs no documents by id")
        if sha256 is None:
            return None
        if self.queries is None:
            raise PersistedQueryNotSupported()
        if context.query:
            if sha256_hex(context.query) != sha256:
                raise InvalidInput("provided sha does not match query")
            return sha256
        document = await self.queries.find(sha256)
        if document is None:
            raise PersistedQueryNotFound()
        context.query = document
        return None

    def _resolve_trusted(
        self, context: ExecutionContext, sha256: str | None, document_id: str | None
    ) -> None:
        assert self.trusted is not None
        found = None
        if document_id is not None:
            found = self.trusted.by_id(document_id)
        elif sha256 is not None:
            found = self.trusted.by_hash(sha256)
        if found is not None:
            if context.query and context.query != found:
                raise InvalidInput("provided sha does not match query")
            context.query = found
        elif not context.query and (document_id is not None or sha256 is not None):
            # Apollo's link then sends the document itself, judged below.
            raise PersistedQueryNotFound()
        elif context.query and not self.allow_untrusted and not self.trusted.holds(context.query):
            raise UntrustedDocument()


def _refuse(context: ExecutionContext, error: DomainError) -> None:
    """End the operation before parsing, with `error`, the way Strawberry's ParserCache and
    ValidationCache extensions end one: a document in `graphql_document` (a stand-in query,
    named as the request names its operation, that never runs) and the error as the result of
    validation. HTTP and WebSocket then answer it as any request error."""
    name = context.operation_name
    context.graphql_document = DocumentNode(
        definitions=(
            OperationDefinitionNode(
                operation=OperationType.QUERY,
                name=NameNode(value=name) if name else None,
                variable_definitions=(),
                directives=(),
                selection_set=SelectionSetNode(
                    selections=(FieldNode(name=NameNode(value="__typename"), directives=()),)
                ),
            ),
        )
    )
    context.pre_execution_errors = [GraphQLError(error.message, original_error=error)]
