"""Parsed and validated documents, remembered by query text within a memory budget.

Parsing and validating a repeated operation is most of what a small query costs, so results
are kept per query text. What bounds the cache is memory, not the number of entries: every
distinct text (a byte of whitespace makes one) would otherwise keep its text and its syntax
tree, and a 1 MB query whose text is mostly blanks still parses. An entry weighs its text
plus an estimate of its tree (TOKEN_BYTES per token; graphql-core keeps every token, linked,
in the document's location). Entries heavier than a sixteenth of the budget are not kept;
the least recently used go first once the budget is full.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from graphql import ASTValidationRule, DocumentNode, GraphQLError

BUDGET_BYTES = 16 << 20
MAX_ENTRIES = 512
TOKEN_BYTES = 300  # measured: a 2,000-token document's tree is about 560 KB


@dataclass(slots=True)
class _Entry:
    document: DocumentNode
    weight: int
    rules: tuple[type[ASTValidationRule], ...] | None = None
    errors: list[GraphQLError] | None = None


def document_weight(query: str, document: DocumentNode) -> int:
    tokens = 0
    token = document.loc.start_token if document.loc is not None else None
    while token is not None:
        tokens += 1
        token = token.next
    return len(query) + TOKEN_BYTES * tokens


class DocumentCache:
    def __init__(self, *, budget: int = BUDGET_BYTES, max_entries: int = MAX_ENTRIES) -> None:
        self.budget = budget
        self.max_entries = max_entries
        self.weight = 0
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def parse(self, query: str, parse: Callable[[str], DocumentNode]) -> DocumentNode:
        entry = self._entries.get(query)
        if entry is not None:
            self._entries.move_to_end(query)
            return entry.document
        document = parse(query)  # a syntax error is raised, and nothing is kept
        weight = document_weight(query, document)
        if weight <= self.budget // 16:
            self._entries[query] = _Entry(document, weight)
            self.weight += weight
            while self.weight > self.budget or len(self._entries) > self.max_entries:
                _, evicted = self._entries.popitem(last=False)
                self.weight -= evicted.weight
        return document

    def validate(
        self,
        query: str,
        document: DocumentNode,
        rules: tuple[type[ASTValidationRule], ...],
        validate: Callable[[], list[GraphQLError]],
    ) -> list[GraphQLError]:
        """`validate()`'s errors, remembered with the entry of the same document and rules."""
        entry = self._entries.get(query)
        if entry is None or entry.document is not document:
            return validate()
        if entry.errors is None or entry.rules != rules:
            entry.errors = validate()
            entry.rules = rules
        return entry.errors
