"""What every operation gets: its document, how errors reach clients, the abuse limits, the
caches, metrics.

All of it is one Strawberry `SchemaExtension` (GuardExtension, built per operation from the
schema-wide OperationGuard), so any other extension (OpenTelemetry's, Sentry's, Strawberry's
limiters) can be added beside it (`build_schema(extensions=...)`). It has two hooks per
operation (and one per streamed result), not one per concern: Strawberry sets up every hook
of every extension anew for each operation, about 7 us apiece.

- Documents: `on_operation` first puts the document a persisted-query hash or a trusted
  document's id names into the operation, or refuses it (persisted.py), and once the
  operation is over registers a document sent with its hash.
- Limits: `on_operation` does what Strawberry's `MaxTokensLimiter` (MAX_TOKENS, refused
  while parsing) and `AddValidationRules` do, with the rules of its `QueryDepthLimiter`
  (MAX_DEPTH) and `MaxAliasesLimiter` (MAX_ALIASES), and graphql-core's
  `NoSchemaIntrospectionCustomRule` when introspection is off; validation adds the cost
  limit (cost.py) and refuses over-long number literals.
- Caches: `GuardExtension.on_parse` sets `graphql_document`, and once every extension has
  parsed, `pre_execution_errors` (validation, then the cost limit), from a cache per query
  text within a memory budget (document_cache.py), as Strawberry's ParserCache and
  ValidationCache do; Strawberry's own parsing and validation then have nothing left to do.
  Validation sits at the end of `on_parse` rather than in an `on_validate` of its own (one
  hook fewer); by then every extension's `on_operation` has added its rules.
- Errors: a DomainError shows its message with `extensions.code`; a request error (syntax,
  validation, a limit, variable coercion: anything before a resolver ran) keeps graphql-core's
  message with code BAD_USER_INPUT; everything else is masked as `Internal server error` with
  code INTERNAL. The schema's `process_errors` logs the unexpected ones with their stack
  before `GuardExtension.on_operation` (or `on_stream_result`, for what a socket sends)
  replaces them, as Strawberry's MaskErrors does.
- Metrics: each operation's name and outcome go to the `report` callback the app passes in
  (api/metrics.py's `record_graphql_operation`); this package imports no app code.

Without introspection, suggestions ("Did you mean ...?") would name the types and fields it
hides: validation runs with graphql-core's `hide_suggestions` (library_internals.py), and the
request errors that arise while executing (variables coerced by graphql-core's executor,
which Strawberry gives no such option) have the suggestion cut from their message.
"""

from __future__ import annotations

import functools
import re
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

from graphql import (
    ASTValidationRule,
    DocumentNode,
    GraphQLError,
    GraphQLSchema,
    IntValueNode,
    Node,
    NoSchemaIntrospectionCustomRule,
    Visitor,
    parse,
    visit,
)
from strawberry.extensions import MaxAliasesLimiter, QueryDepthLimiter, SchemaExtension
from strawberry.types import ExecutionContext, StreamExecutionResult

from core.errors import DomainError, ErrorCode, RateLimited
from graphql_schema.cost import operation_cost, paged_fields
from graphql_schema.document_cache import DocumentCache
from graphql_schema.library_internals import validate_document
from graphql_schema.persisted import PersistedDocuments

MAX_DEPTH = 10
MAX_ALIASES = 15
MAX_TOKENS = 2000
DEFAULT_MAX_COST = 5000  # GRAPHQL_MAX_COST

INTERNAL_MESSAGE = "Internal server error"
# graphql-core's suggestions (pyutils.did_you_mean: " Did you mean 'a' or 'b'?", names only,
# which never hold a "?") name the schema's types and fields.
_SUGGESTIONS = re.compile(r" Did you mean [^?]*\?")
# Far past any Int (11 characters) or Float a client needs; Python's int() refuses 4300 digits.
MAX_NUMBER_LITERAL_CHARS = 100
_LONG_NUMBER = re.compile(rf"\d{{{MAX_NUMBER_LITERAL_CHARS + 1}}}")

# (operation name or None, outcome: "ok" or the first error's code)
OperationReport = Callable[[str | None, str], None]


def is_unexpected(error: GraphQLError) -> bool:
    """True for errors that must be masked (and logged): not a domain or request error."""
    original = error.original_error
    if isinstance(original, DomainError):
        return False
    # Request errors never have a path; their original error, if any, is graphql-core's own.
    return error.path is not None or not (original is None or isinstance(original, GraphQLError))


def present(error: GraphQLError, *, hide_suggestions: bool = False) -> GraphQLError:
    """The error as clients see it: a known message and code, or the masked one. With
    `hide_suggestions` (introspection off) a request error's "Did you mean ...?" is cut."""
    original = error.original_error
    extensions: dict[str, Any]
    if isinstance(original, DomainError):
        message, extensions = original.message, {"code": original.code.value}
        if isinstance(original, RateLimited):
            extensions["retryAfter"] = original.retry_after
    elif is_unexpected(error):
        message, extensions = INTERNAL_MESSAGE, {"code": ErrorCode.INTERNAL.value}
    else:
        message, extensions = error.message, {"code": ErrorCode.BAD_USER_INPUT.value}
        if hide_suggestions:
            message = _SUGGESTIONS.sub("", message)
    # A new error each time: validation errors are cached and shared between requests.
    return GraphQLError(
        message,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        extensions=extensions,
    )


def is_presented(error: GraphQLError) -> bool:
    return error.extensions is not None and "code" in error.extensions


def _long_number_literals(document: DocumentNode) -> list[Node]:
    """Int and Float literals of the document longer than MAX_NUMBER_LITERAL_CHARS."""
    found: list[Node] = []

    class Finder(Visitor):
        def enter_int_value(self, node: IntValueNode, *_: object) -> None:
            if len(node.value) > MAX_NUMBER_LITERAL_CHARS:
                found.append(node)

        enter_float_value = enter_int_value

    visit(document, Finder())
    return found


class OperationGuard:
    """The limits, caches, error presentation and metrics every operation of one schema gets.

    Built once per schema; `extension` makes the GuardExtension that applies it to one
    operation (Strawberry calls it for each).
    """

    def __init__(
        self,
        *,
        introspection: bool,
        max_cost: int = DEFAULT_MAX_COST,
        report: OperationReport | None = None,
        documents: PersistedDocuments | None = None,
    ) -> None:
        self.validation_rules = _LIMIT_RULES if introspection else _CLOSED_LIMIT_RULES
        # Suggestions would name the types and fields that introspection hides.
        self.hide_suggestions = not introspection
        self.max_cost = max_cost
        # Told each operation's name and outcome (the app's metrics: api/metrics.py).
        self.report = report
        # Where a request may name its document instead of sending it (persisted.py).
        self.persisted = documents
        self.cache = DocumentCache()  # parsed and validated documents by query text
        self._schema: GraphQLSchema | None = None
        self._paged: dict[str, int] | None = None  # the schema's paged fields

    def bind(self, schema: GraphQLSchema) -> None:
        """The graphql-core schema the guard validates against (known once it is built)."""
        self._schema = schema
        self._paged = paged_fields(schema)

    def extension(self) -> GuardExtension:
        return GuardExtension(self)

    def parse(self, query: str, options: Any) -> DocumentNode:
        return self.cache.parse(query, functools.partial(parse, **options))

    def validate(self, context: ExecutionContext, document: DocumentNode) -> list[GraphQLError]:
        query = context.query
        if isinstance(query, str) and _LONG_NUMBER.search(query):
            too_long = _long_number_literals(document)
            if too_long:  # graphql-core's int() of such a literal would raise, unhandled
                return [GraphQLError("Number literal too long", nodes=too_long[:1])]
        schema = self._schema
        assert schema is not None, "OperationGuard.bind was not called"
        rules = context.validation_rules

        def run() -> list[GraphQLError]:
            return validate_document(
                schema, document, rules, hide_suggestions=self.hide_suggestions
            )

        if not isinstance(query, str):
            errors = run()
        else:
            errors = self.cache.validate(query, document, rules, run)
        if errors:
            return errors
        return self._check_cost(schema, context, document)

    def _check_cost(
        self, schema: GraphQLSchema, context: ExecutionContext, document: DocumentNode
    ) -> list[GraphQLError]:
        """The cost limit, once the document is valid: it depends on the variables (page sizes
        may come from them), so it is computed for each operation, never cached."""
        if self._paged is None:
            self._paged = paged_fields(schema)
        variables = context.variables if isinstance(context.variables, dict) else None
        cost = operation_cost(document, context.operation_name, variables, self._paged)
        if cost <= self.max_cost:
            return []
        return [
            GraphQLError(
                f"Query cost {cost} exceeds the limit of {self.max_cost}: request smaller pages "
                "(first) or fewer nested fields"
            )
        ]

    def present_all(self, errors: Sequence[GraphQLError]) -> list[GraphQLError]:
        hide = self.hide_suggestions
        return [
            error if is_presented(error) else present(error, hide_suggestions=hide)
            for error in errors
        ]


class GuardExtension(SchemaExtension):
    """The guard's hooks for one operation (see OperationGuard)."""

    def __init__(self, guard: OperationGuard) -> None:
        self.guard = guard

    async def on_operation(self) -> AsyncIterator[None]:
        # MaxTokensLimiter's and AddValidationRules' own steps.
        context = self.execution_context
        guard = self.guard
        context.parse_options["max_tokens"] = MAX_TOKENS
        context.validation_rules = context.validation_rules + guard.validation_rules
        persisted = guard.persisted
        # The document a hash or id names, before any extension sees the query.
        register = await persisted.prepare(context) if persisted is not None else None
        yield
        # Not reached when the operation raised (a missing query, a refused operation type):
        # Strawberry's integration answers those itself.
        result = context.result
        errors = getattr(result, "errors", None)
        if errors:
            errors = result.errors = self.guard.present_all(errors)  # type: ignore[union-attr]
        report = self.guard.report
        if report is not None:
            # The first error's code, else "ok"; every error has its code once presented.
            first = errors[0].extensions if errors else None
            report(context.operation_name, str(first["code"]) if first else "ok")
        if register is not None and persisted is not None:
            await persisted.finish(context, register)

    def on_parse(self) -> Iterator[None]:
        # A document that does not parse is left to Strawberry: raised from this hook, a
        # syntax error would skip Strawberry's own handling and escape the operation (and
        # the presentation of errors); Strawberry parses the (token-bounded) text itself,
        # inside that handling, when no document is set.
        context = self.execution_context
        if context.graphql_document is None and context.query is not None:
            try:
                context.graphql_document = self.guard.parse(context.query, context.parse_options)
            except GraphQLError:
                pass
        yield
        # Validation, once the document is final (every extension parsed, every rule added):
        # errors set here (even none) stand in for Strawberry's own validation. Here rather
        # than in `on_validate`: Strawberry sets up each hook anew for every operation.
        if context.pre_execution_errors is None and context.graphql_document is not None:
            context.pre_execution_errors = self.guard.validate(context, context.graphql_document)

    def on_stream_result(self, result: StreamExecutionResult) -> Iterator[None]:
        # Streamed results (subscription events, any operation over a WebSocket) are sent
        # before the operation finishes: their errors are presented on the way out.
        errors = getattr(result, "errors", None)
        if errors:
            result.errors = self.guard.present_all(errors)  # type: ignore[union-attr]
        yield


# Built once: the rule classes are part of the validation cache's key (QueryDepthLimiter and
# MaxAliasesLimiter build a new rule class for each instance).
_LIMIT_RULES: tuple[type[ASTValidationRule], ...] = (
    *QueryDepthLimiter(max_depth=MAX_DEPTH).validation_rules,
    *MaxAliasesLimiter(max_alias_count=MAX_ALIASES).validation_rules,
)
_CLOSED_LIMIT_RULES = (*_LIMIT_RULES, NoSchemaIntrospectionCustomRule)
