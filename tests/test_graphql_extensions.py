"""The service's limits, caches, errors and metrics are Strawberry SchemaExtensions, so any
other extension can be added to the schema beside them and runs on every kind of operation.

In-process, against `build_schema(extensions=...)` with the app's service: a query and a
mutation through `execute`, a subscription through `subscribe` with one event.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from graphql import GraphQLError
from graphql.execution.executor import Executor
from strawberry.extensions import MaxTokensLimiter, QueryDepthLimiter, SchemaExtension
from strawberry.types import StreamExecutionResult

from graphql_schema import library_internals
from graphql_schema.context import GraphQLContext
from graphql_schema.schema import build_schema
from tests.conftest import Account

pytestmark = pytest.mark.asyncio

QUERY = "query Mine { tasks(first: 5) { totalCount edges { node { title } } } }"
MUTATION = 'mutation Add { createTask(input: {title: "from a mutation"}) { id } }'
SUBSCRIPTION = "subscription Events { taskEvents { type task { title } } }"


class HookLog(SchemaExtension):
    """Notes every hook Strawberry runs, with the operation it ran for."""

    def __init__(self, log: list[tuple[str | None, str]]) -> None:
        self.log = log

    def _note(self, hook: str) -> None:
        self.log.append((self.execution_context.operation_name, hook))

    def on_operation(self) -> Iterator[None]:
        self._note("on_operation")
        yield

    def on_parse(self) -> Iterator[None]:
        self._note("on_parse")
        yield

    def on_validate(self) -> Iterator[None]:
        self._note("on_validate")
        yield
        # Runs inside the service's own extension: it sees graphql-core's errors unpresented.
        for error in self.execution_context.pre_execution_errors or ():
            self.log.append((None, f"validation error: {error.message}"))

    def on_execute(self) -> Iterator[None]:
        self._note("on_execute")
        yield

    def on_stream_result(self, result: StreamExecutionResult) -> Iterator[None]:
        self._note("on_stream_result")
        yield

    def resolve(
        self, _next: Callable[..., Any], root: Any, info: Any, *args: Any, **kwargs: Any
    ) -> Any:
        self._note(f"resolve {info.field_name}")
        return _next(root, info, *args, **kwargs)

    def get_results(self) -> dict[str, Any]:
        self._note("get_results")
        return {}


def _context(app: FastAPI, account: Account, *, websocket: bool = False) -> GraphQLContext:
    return GraphQLContext(
        service=app.state.todo,
        client_address="127.0.0.1",
        authorization=f"Bearer {account.token}",
        websocket=websocket,
    )


async def _run_all_kinds(
    app: FastAPI, client: httpx.AsyncClient, account: Account, schema: Any
) -> None:
    """A query, a mutation, and a subscription that receives one event, without errors."""
    # Named explicitly, so hooks that run before parsing know the operation too.
    query = await schema.execute(QUERY, context_value=_context(app, account), operation_name="Mine")
    assert query.errors is None and query.data["tasks"]["totalCount"] == 0
    mutation = await schema.execute(
        MUTATION, context_value=_context(app, account), operation_name="Add"
    )
    assert mutation.errors is None, mutation.errors

    events = await schema.subscribe(
        SUBSCRIPTION,
        context_value=_context(app, account, websocket=True),
        operation_name="Events",
    )
    first = asyncio.ensure_future(events.__anext__())
    try:
        await asyncio.sleep(0.3)  # the subscription registers (on PostgreSQL: LISTEN)
        created = await client.post(
            "/api/tasks", json={"title": "from REST"}, headers=account.headers
        )
        assert created.status_code == 201, created.text
        event = await asyncio.wait_for(first, 5)
    finally:
        first.cancel()
        await events.aclose()
    assert event.errors is None, event.errors
    assert event.data == {"taskEvents": {"type": "CREATED", "task": {"title": "from REST"}}}


async def test_a_schema_extension_runs_its_hooks_on_every_kind_of_operation(
    app: FastAPI, client: httpx.AsyncClient, alice: Account
) -> None:
    log: list[tuple[str | None, str]] = []
    recorded: list[tuple[str | None, str]] = []
    schema = build_schema(
        extensions=[lambda: HookLog(log)],
        report=lambda name, outcome: recorded.append((name, outcome)),
    )
    await _run_all_kinds(app, client, alice, schema)

    def hooks(operation: str) -> set[str]:
        return {hook for name, hook in log if name == operation}

    lifecycle = {"on_operation", "on_parse", "on_validate", "on_execute", "get_results"}
    assert hooks("Mine") >= lifecycle | {"resolve tasks", "resolve totalCount", "resolve edges"}
    assert hooks("Add") >= lifecycle | {"resolve createTask", "resolve id"}
    assert hooks("Events") >= lifecycle | {"on_stream_result", "resolve taskEvents"}
    # The service's own hooks still ran: its metrics saw both finished operations.
    assert recorded == [("Mine", "ok"), ("Add", "ok")]


async def test_errors_are_presented_with_another_extension_in_the_schema(
    app: FastAPI, client: httpx.AsyncClient, alice: Account
) -> None:
    log: list[tuple[str | None, str]] = []
    recorded: list[tuple[str | None, str]] = []
    schema = build_schema(
        introspection=False,
        extensions=[lambda: HookLog(log)],
        report=lambda name, outcome: recorded.append((name, outcome)),
    )
    context = _context(app, alice)
    misspelt = await schema.execute("query Typo { mee { id } }", context_value=context)
    too_big = await schema.execute(
        "query Big { tasks(first: 500) { totalCount } }", context_value=context
    )
    nested = "me { tasks { edges { node { owner { %s } } } } }"
    deep = await schema.execute(
        "query Deep { " + nested % (nested % (nested % "id")) + " }", context_value=context
    )
    for result in (misspelt, too_big, deep):
        assert result.errors, result
        assert all(isinstance(error, GraphQLError) for error in result.errors)
        assert {error.extensions["code"] for error in result.errors} == {"BAD_USER_INPUT"}
    assert "Did you mean" not in misspelt.errors[0].message
    assert "exceeds maximum operation depth" in deep.errors[0].message
    # graphql-core itself left the suggestion out (its `hide_suggestions`), before any
    # presentation: the inner extension saw the raw validation error.
    assert library_internals.HIDES_SUGGESTIONS
    raw = [hook for _name, hook in log if hook.startswith("validation error: Cannot query")]
    assert raw and not any("Did you mean" in message for message in raw), raw
    assert recorded == [(name, "BAD_USER_INPUT") for name in ("Typo", "Big", "Deep")]


async def test_the_limits_of_an_added_extension_hold_too(app: FastAPI, alice: Account) -> None:
    """Strawberry's limiters set their parse options and rules in `on_operation`, after the
    service's own: the guard parses and validates only once every extension has, so a
    tighter limit holds, for a document seen before (cached) as for a new one."""
    schema = build_schema(
        extensions=[
            lambda: QueryDepthLimiter(max_depth=2),
            lambda: MaxTokensLimiter(max_token_count=40),
        ]
    )
    context = _context(app, alice)
    shallow = "query Shallow { tasks(first: 1) { totalCount } }"
    deep = "query Deep { me { tasks(first: 1) { edges { node { title } } } } }"
    long = "query Long { tasks(first: 1) { totalCount " + "__typename " * 40 + "} }"
    for _ in range(2):
        result = await schema.execute(shallow, context_value=context)
        assert result.errors is None and result.data == {"tasks": {"totalCount": 0}}
        result = await schema.execute(deep, context_value=context)
        assert result.errors is not None and result.data is None
        assert [error.message for error in result.errors] == [
            "'Deep' exceeds maximum operation depth of 2"
        ]
        assert result.errors[0].extensions == {"code": "BAD_USER_INPUT"}
        result = await schema.execute(long, context_value=context)
        assert result.errors is not None and result.data is None
        assert "more than 40 tokens" in result.errors[0].message, result.errors
        assert result.errors[0].extensions == {"code": "BAD_USER_INPUT"}


async def test_strawberrys_opentelemetry_extension_traces_every_kind_of_operation(
    app: FastAPI, client: httpx.AsyncClient, alice: Account
) -> None:
    opentelemetry_trace = pytest.importorskip("opentelemetry.trace")
    from strawberry.extensions.tracing.opentelemetry import OpenTelemetryExtension

    spans: list[str] = []

    class Tracer(opentelemetry_trace.NoOpTracer):  # type: ignore[misc]
        def start_span(self, name: str, *args: Any, **kwargs: Any) -> Any:
            spans.append(name)
            return super().start_span(name, *args, **kwargs)

        def start_as_current_span(self, name: str, *args: Any, **kwargs: Any) -> Any:
            spans.append(name)
            return super().start_as_current_span(name, *args, **kwargs)

    class Provider(opentelemetry_trace.NoOpTracerProvider):  # type: ignore[misc]
        def get_tracer(self, *args: Any, **kwargs: Any) -> Any:
            return Tracer()

    provider = Provider()
    schema = build_schema(extensions=[lambda: OpenTelemetryExtension(tracer_provider=provider)])
    await _run_all_kinds(app, client, alice, schema)
    for operation in ("Mine", "Add", "Events"):
        assert f"GraphQL Query: {operation}" in spans, spans
    assert {"GraphQL Parsing", "GraphQL Validation"} <= set(spans)
    for field in ("tasks", "createTask", "taskEvents"):
        assert f"GraphQL Resolving: {field}" in spans, spans


async def test_an_operation_leaves_no_reference_cycle_behind(app: FastAPI, alice: Account) -> None:
    """What an operation reached (its executor, the context and loaders, rows, the result)
    goes when it ends. graphql-core 3.3's executor kept itself in a reference cycle, so all of
    it waited for the cyclic garbage collector, which then took a quarter of the CPU under
    load (library_internals.ExecutorWithoutCycle)."""
    schema = build_schema()
    assert library_internals.BREAKS_EXECUTOR_CYCLE
    warm = await schema.execute(QUERY, context_value=_context(app, alice))
    assert warm.errors is None, warm.errors
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)  # what the collector finds is kept in gc.garbage
    try:
        for operation in (QUERY, MUTATION, QUERY):
            result = await schema.execute(operation, context_value=_context(app, alice))
            assert result.errors is None, result.errors
        gc.collect()
        left = [type(o).__name__ for o in gc.garbage if isinstance(o, Executor | GraphQLContext)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    assert left == []
