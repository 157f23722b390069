"""What every operation gets: how errors reach clients, the abuse limits, the caches.

Errors: a DomainError shows its message with `extensions.code`; a request error (syntax,
validation, a limit, variable coercion: anything before a resolver ran) keeps graphql-core's
message with code BAD_USER_INPUT; everything else is masked as `Internal server error` with
code INTERNAL. The schema's `process_errors` logs the unexpected ones with their stack before
the runner replaces them (see strawberry's MaskErrors for the pattern).

Limits: at most MAX_TOKENS tokens (refused while parsing), MAX_DEPTH levels and MAX_ALIASES
aliases (validation rules), no introspection when it is off, the cost limit (cost.py).
Parsing and validation are cached per query text within a memory budget (document_cache.py).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

from graphql import (
    DocumentNode,
    GraphQLError,
    GraphQLSchema,
    IntValueNode,
    Node,
    Visitor,
    parse,
    visit,
)
from strawberry.extensions import MaxAliasesLimiter, QueryDepthLimiter
from strawberry.extensions.disable_introspection import NoSchemaIntrospectionCustomRule
from strawberry.extensions.runner import SchemaExtensionsRunner
from strawberry.schema.schema import validate_document
from strawberry.types import ExecutionContext, StreamExecutionResult

from core.errors import DomainError, ErrorCode, RateLimited
from graphql_schema.cost import operation_cost, paged_fields
from graphql_schema.document_cache import DocumentCache

# (operation name or None, outcome: "ok" or the first error's code)
OperationReport = Callable[[str | None, str], None]

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


class _Phase:
    """One lifecycle phase of an operation, as a context manager for `with` and `async with`.

    `enter` runs on the way in, `leave` on a normal way out only: what a generator hook runs
    before and after its `yield` (an exception thrown in at the `yield` skips the rest).
    """

    __slots__ = ("_enter", "_leave")

    def __init__(
        self, enter: Callable[[], None] | None = None, leave: Callable[[], None] | None = None
    ) -> None:
        self._enter = enter
        self._leave = leave

    def __enter__(self) -> None:
        if self._enter is not None:
            self._enter()

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if exc_type is None and self._leave is not None:
            self._leave()

    async def __aenter__(self) -> None:
        self.__enter__()

    async def __aexit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        self.__exit__(exc_type)


_NO_HOOK = _Phase()


class OperationGuard:
    """The limits, caches and error presentation every operation gets, built once per schema.

    What five Strawberry extensions did (PresentErrors; MaxTokensLimiter; AddValidationRules
    with the depth and alias limits; ParserCache; ValidationCache), as one extensions runner:
    Strawberry set up each extension's hooks anew for every operation (a context manager per
    hook and phase), a fifth of a small query's CPU. `runner` is the schema's
    `create_extensions_runner`.
    """

    def __init__(
        self,
        *,
        introspection: bool,
        max_cost: int = DEFAULT_MAX_COST,
        report: OperationReport | None = None,
    ) -> None:
        # Told each operation's name and outcome (the app's metrics: api/metrics.py).
        self.report = report
        rules = _LIMIT_RULES if introspection else [*_LIMIT_RULES, *_NO_INTROSPECTION_RULES]
        # Suggestions would name the types and fields that introspection hides.
        self.hide_suggestions = not introspection
        self.max_cost = max_cost
        self._paged: dict[str, int] | None = None  # the schema's paged fields, when first needed
        self.validation_rules = tuple(rules)
        self.documents = DocumentCache()

    def runner(self, execution_context: ExecutionContext) -> GuardedRunner:
        return GuardedRunner(execution_context, self)

    def validate(self, context: ExecutionContext, document: DocumentNode) -> list[GraphQLError]:
        query = context.query
        if isinstance(query, str) and _LONG_NUMBER.search(query):
            too_long = _long_number_literals(document)
            if too_long:  # graphql-core's int() of such a literal would raise, unhandled
                return [GraphQLError("Number literal too long", nodes=too_long[:1])]
        schema = context.schema._schema
        rules = context.validation_rules

        def run() -> list[GraphQLError]:
            return validate_document(schema, document, rules)

        if not isinstance(query, str):
            errors = run()
        else:
            errors = self.documents.validate(query, document, rules, run)
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

    def parse(self, query: str, **options: Any) -> DocumentNode:
        return self.documents.parse(query, functools.partial(parse, **options))


class GuardedRunner(SchemaExtensionsRunner):
    """Strawberry's extensions runner, running the guard's hooks and no extension's."""

    def __init__(self, execution_context: ExecutionContext, guard: OperationGuard) -> None:
        super().__init__(execution_context, [])
        self.guard = guard

    def operation(self) -> Any:
        return _Phase(self._start_operation, self._finish_operation)

    def parsing(self) -> Any:
        return _Phase(self._parse)

    def validation(self) -> Any:
        return _Phase(self._validate)

    def executing(self) -> Any:
        return _NO_HOOK

    def on_stream_result(self, result: StreamExecutionResult) -> Any:
        return _Phase(
            functools.partial(_present_stream_errors, result, self.guard.hide_suggestions)
        )

    def get_extensions_results_sync(self) -> dict[str, Any]:
        return {}

    async def get_extensions_results(self, ctx: ExecutionContext) -> dict[str, Any]:
        return dict(ctx.extensions_results)

    def _start_operation(self) -> None:
        context = self.execution_context
        context.parse_options["max_tokens"] = MAX_TOKENS
        context.validation_rules = context.validation_rules + self.guard.validation_rules

    def _finish_operation(self) -> None:
        result = self.execution_context.result
        if result is not None and result.errors:
            hide = self.guard.hide_suggestions
            result.errors = [
                error if is_presented(error) else present(error, hide_suggestions=hide)
                for error in result.errors
            ]
        # Metrics: operations by name and outcome (the first error's code, else "ok").
        errors = result.errors if result is not None else None
        outcome = "ok"
        if errors:
            first = errors[0].extensions
            assert first is not None  # presented above: every error has its code
            outcome = str(first["code"])
        if self.guard.report is not None:
            self.guard.report(self.execution_context.operation_name, outcome)

    def _parse(self) -> None:
        # A document that does not parse is left to Strawberry: raised from this hook, a
        # syntax error would skip Strawberry's own handling and escape the operation (and
        # the presentation of errors); Strawberry re-parses the (token-bounded) document
        # itself, inside that handling, when no document is set.
        context = self.execution_context
        if context.query is None:  # Strawberry was given a document, not its text
            return
        try:
            context.graphql_document = self.guard.parse(context.query, **context.parse_options)
        except GraphQLError:
            pass

    def _validate(self) -> None:
        context = self.execution_context
        assert context.graphql_document is not None
        context.pre_execution_errors = self.guard.validate(context, context.graphql_document)


def _present_stream_errors(result: StreamExecutionResult, hide_suggestions: bool) -> None:
    # Streamed results (subscription events, any operation over a WebSocket) are sent before
    # the operation finishes: their errors are presented on the way out.
    errors = getattr(result, "errors", None)
    if errors:
        result.errors = [  # type: ignore[union-attr]  # getattr found them on this kind
            error if is_presented(error) else present(error, hide_suggestions=hide_suggestions)
            for error in errors
        ]


# Built once: the rule classes are part of the validation cache's key.
_LIMIT_RULES = [
    *QueryDepthLimiter(max_depth=MAX_DEPTH).validation_rules,
    *MaxAliasesLimiter(max_alias_count=MAX_ALIASES).validation_rules,
]
_NO_INTROSPECTION_RULES = [NoSchemaIntrospectionCustomRule]
