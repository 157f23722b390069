"""The service executes GraphQL on graphql-core's own executor (specs/decisions.md, 19).

graphql_schema/execution.py, an executor with short paths for plain fields built on
graphql-core internals, saved under the 20% of a `tasks(first: 20)` request's server CPU it
had to earn (bench/RESULTS-executor.md) and was removed. Its tests, which compared its answers
with graphql-core's on awkward values, went with it: the answers are now graphql-core's own,
and the service's answers stay checked by the other GraphQL tests (test_graphql_tasks.py,
test_graphql_errors.py, test_graphql_pagination.py, test_graphql_parity.py, ...).
"""

from __future__ import annotations

from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from graphql_schema.schema import build_schema


def test_the_service_schema_uses_strawberrys_default_executor() -> None:
    """Strawberry's executor, with one addition made when it is built (the hook that breaks
    graphql-core's reference cycle, library_internals.ExecutorWithoutCycle): no execution
    code of its own."""
    executor = build_schema().execution_context_class
    assert issubclass(executor, StrawberryGraphQLCoreExecutionContext)
    assert [name for name, value in vars(executor).items() if callable(value)] == ["__init__"]
