"""Schema extensions: how errors reach clients, and the abuse limits.

Errors: a DomainError shows its message with `extensions.code`; a request error (syntax,
validation, a limit, variable coercion: anything before a resolver ran) keeps graphql-core's
message with code BAD_USER_INPUT; everything else is masked as `Internal server error` with
code INTERNAL. The schema's `process_errors` logs the unexpected ones with their stack before
this extension replaces them (see strawberry's MaskErrors for the pattern).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from graphql import GraphQLError
from strawberry.extensions import (
    AddValidationRules,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    SchemaExtension,
    ValidationCache,
)
from strawberry.extensions.disable_introspection import NoSchemaIntrospectionCustomRule
from strawberry.types import StreamExecutionResult

from api.metrics import record_graphql_operation
from graphql_schema.errors import DomainError, ErrorCode, RateLimited

MAX_DEPTH = 10
MAX_ALIASES = 15
MAX_TOKENS = 2000
_CACHE_SIZE = 256

INTERNAL_MESSAGE = "Internal server error"


def is_unexpected(error: GraphQLError) -> bool:
    """True for errors that must be masked (and logged): not a domain or request error."""
    original = error.original_error
    if isinstance(original, DomainError):
        return False
    # Request errors never have a path; their original error, if any, is graphql-core's own.
    return error.path is not None or not (original is None or isinstance(original, GraphQLError))


def present(error: GraphQLError) -> GraphQLError:
    """The error as clients see it: a known message and code, or the masked one."""
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
    return bool(error.extensions) and "code" in error.extensions


class PresentErrors(SchemaExtension):
    def on_operation(self) -> Iterator[None]:
        yield
        result = self.execution_context.result
        if result is not None and result.errors:
            result.errors = [
                error if is_presented(error) else present(error) for error in result.errors
            ]
        # Metrics: operations by name and outcome (the first error's code, else "ok").
        errors = result.errors if result is not None else None
        outcome = str(errors[0].extensions["code"]) if errors else "ok"
        record_graphql_operation(self.execution_context.operation_name, outcome)

    def on_stream_result(self, result: StreamExecutionResult) -> Iterator[None]:
        # Streamed results (subscription events, any operation over a WebSocket) are sent
        # before `on_operation` resumes: present their errors on the way out.
        errors = getattr(result, "errors", None)
        if errors:
            result.errors = [  # type: ignore[union-attr]
                error if is_presented(error) else present(error) for error in errors
            ]
        yield


class ParserCacheKeepingErrors(ParserCache):
    """ParserCache, except that a document that does not parse is left to Strawberry.

    Raised from this hook, a syntax error would skip Strawberry's own handling and escape the
    operation (and PresentErrors); Strawberry re-parses the (token-bounded) document itself,
    inside that handling, when no document is set.
    """

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        try:
            context.graphql_document = self.cached_parse_document(
                context.query, **context.parse_options
            )
        except GraphQLError:
            pass
        yield


# Built once: the rule classes are part of ValidationCache's key, so they must be the same
# objects on every request (a limiter built per request would make every lookup miss).
_LIMIT_RULES = [
    *QueryDepthLimiter(max_depth=MAX_DEPTH).validation_rules,
    *MaxAliasesLimiter(max_alias_count=MAX_ALIASES).validation_rules,
]
_NO_INTROSPECTION_RULES = [NoSchemaIntrospectionCustomRule]


def schema_extensions(*, introspection: bool) -> list[Callable[[], SchemaExtension]]:
    """Extension factories (strawberry builds a fresh instance per operation)."""
    rules = _LIMIT_RULES if introspection else [*_LIMIT_RULES, *_NO_INTROSPECTION_RULES]
    return [
        PresentErrors,
        lambda: MaxTokensLimiter(max_token_count=MAX_TOKENS),
        lambda: AddValidationRules(rules),
        lambda: ParserCacheKeepingErrors(maxsize=_CACHE_SIZE),
        lambda: ValidationCache(maxsize=_CACHE_SIZE),
    ]
