"""The one module that reaches past Strawberry's documented API; the rest uses its hooks.

Three things, each behind a feature check with a fallback, and pinned by pyproject.toml's upper
bounds (strawberry-graphql <0.342, graphql-core <3.4); tests/test_graphql_extensions.py checks
that these versions take the preferred path.

- `core_schema`: the graphql-core schema behind a Strawberry schema (`schema._schema`, which
  Strawberry's own ValidationCache validates against; Strawberry has no public accessor). No
  fallback exists: without it the schema fails to build, at start-up, saying why.
- `validate_document`: what Strawberry's validation step runs (graphql-core's documented
  `validate` with Strawberry's own two rules appended), plus graphql-core's documented
  `hide_suggestions`, which Strawberry 0.341 does not pass on. Fallback, when Strawberry's
  rules are not where this module looks or graphql-core lacks the option: Strawberry's own
  `validate_document`, the function its ValidationCache extension calls; errors then carry
  "Did you mean" suggestions, which `extensions.present` cuts when introspection is off.
- `ExecutorWithoutCycle`: the executor class (Strawberry's documented `execution_context_class`
  argument) that breaks graphql-core 3.3's one reference cycle per operation. Its executor
  keeps `async_helpers`, bound methods of itself, so an operation's executor, and with it
  everything the operation reached (the request's context and loaders, the rows, the
  result), outlived the operation until the cyclic garbage collector found it: 77 objects a
  request, and under load a quarter of the server's CPU went to collections (decision 24).
  graphql-core's documented `ExecutionHooks.async_work_finished` hook, run once everything
  the operation started has settled, drops the helpers. Fallback, when the executor does not
  have them or the hooks: graphql-core's executor as it is (the collector frees the cycle).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

from graphql import (
    ASTValidationRule,
    DocumentNode,
    GraphQLError,
    GraphQLSchema,
    OperationType,
    validate,
)
from strawberry.schema.base import BaseSchema
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

try:
    from graphql.execution.executor import AsyncWorkFinishedInfo, ExecutionHooks, Executor
except ImportError:  # pragma: no cover - graphql-core changed
    ExecutionHooks = None  # type: ignore[assignment,misc]


def core_schema(schema: BaseSchema) -> GraphQLSchema:
    found = getattr(schema, "_schema", None)
    if not isinstance(found, GraphQLSchema):
        raise TypeError(
            f"{type(schema).__name__} has no graphql-core schema at `_schema`: this "
            "Strawberry version is not one graphql_schema/library_internals.py supports"
        )
    return found


def _strawberry_rules() -> tuple[type[ASTValidationRule], ...] | None:
    """The rules Strawberry appends to every validation, or None when they cannot be found
    where Strawberry's own `validate_document` takes them from."""
    try:
        from strawberry.schema import schema as strawberry_schema
        from strawberry.schema.validation_rules.maybe_null import MaybeNullValidationRule
        from strawberry.schema.validation_rules.one_of import OneOfInputValidationRule
    except ImportError:
        return None
    rules = (MaybeNullValidationRule, OneOfInputValidationRule)
    # The module that validates must use exactly these (a rule added or renamed upstream
    # would otherwise be skipped silently).
    if any(getattr(strawberry_schema, rule.__name__, None) is not rule for rule in rules):
        return None
    if "hide_suggestions" not in inspect.signature(validate).parameters:
        return None
    return rules


_STRAWBERRY_RULES = _strawberry_rules()
HIDES_SUGGESTIONS = _STRAWBERRY_RULES is not None


def validate_document(
    schema: GraphQLSchema,
    document: DocumentNode,
    rules: Sequence[type[ASTValidationRule]],
    *,
    hide_suggestions: bool,
) -> list[GraphQLError]:
    """The document's validation errors, as Strawberry's validation step would find them;
    with `hide_suggestions`, graphql-core leaves "Did you mean ...?" out of them."""
    if _STRAWBERRY_RULES is None:
        from strawberry.schema.schema import validate_document as strawberry_validate

        return strawberry_validate(schema, document, tuple(rules))
    return validate(
        schema, document, (*rules, *_STRAWBERRY_RULES), hide_suggestions=hide_suggestions
    )


def _drop_helpers(info: AsyncWorkFinishedInfo) -> None:
    executor = info.executor
    # A subscription's own executor is copied for every event (the copies share its
    # helpers): it stays whole, and its one cycle goes with the subscription.
    if executor.operation.operation is not OperationType.SUBSCRIPTION:
        executor.async_helpers = None  # type: ignore[assignment]


BREAKS_EXECUTOR_CYCLE = (
    ExecutionHooks is not None
    and issubclass(StrawberryGraphQLCoreExecutionContext, Executor)
    and "hooks" in inspect.signature(Executor.__init__).parameters
)
_DROP_HELPERS = ExecutionHooks(async_work_finished=_drop_helpers) if BREAKS_EXECUTOR_CYCLE else None


class ExecutorWithoutCycle(StrawberryGraphQLCoreExecutionContext):
    """Strawberry's executor, whose `async_helpers` go once the operation's work has settled."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not BREAKS_EXECUTOR_CYCLE or not hasattr(self, "async_helpers"):
            return  # pragma: no cover - graphql-core changed: its own path, cycle and all
        if self.hooks is None:  # Strawberry passes none; any it did pass would stay as they are
            self.hooks = _DROP_HELPERS
