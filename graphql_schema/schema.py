"""The GraphQL schema: root fields that translate arguments, call one use case, wrap records.

Every root field except `signup` and `login` starts with `info.context.caller()`, which
raises UNAUTHENTICATED (`Unauthorized`) without a valid token; tests check that for every
field of the schema, so a new field cannot forget it silently.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Callable, Iterable
from datetime import datetime
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.extensions import SchemaExtension
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext, ExecutionResult
from strawberry.types.graphql import OperationType
from strawberry.types.unset import UNSET

from core.errors import NotFound, Unauthenticated
from core.validation import MISSING
from graphql_schema.context import GraphQLInfo
from graphql_schema.extensions import (
    DEFAULT_MAX_COST,
    OperationGuard,
    OperationReport,
    is_unexpected,
)
from graphql_schema.library_internals import ExecutorWithoutCycle, core_schema
from graphql_schema.pagination import DEFAULT_PAGE_SIZE
from graphql_schema.persisted import PersistedDocuments
from graphql_schema.privacy import loggable_error_message
from graphql_schema.types import (
    AfterArgument,
    AuthPayload,
    CompletedArgument,
    CreateTaskInput,
    DateTimeScalar,
    FirstArgument,
    Task,
    TaskConnection,
    TaskEvent,
    UpdateTaskInput,
    User,
    task_connection,
)

log = logging.getLogger("todo.graphql")


@strawberry.type
class Query:
    @strawberry.field(description="The caller's account.")
    async def me(self, info: GraphQLInfo) -> User:
        caller = await info.context.caller()
        # Through the loader, so `me` and every task's `owner` share one query.
        record = await info.context.loaders.users.load(caller.user_id)
        if record is None:  # the account was deleted after its token was checked
            raise Unauthenticated()
        return User.from_record(record)

    @strawberry.field(
        description="One of the caller's tasks; null (no error) when missing, another "
        "user's, or not a UUID."
    )
    async def task(self, info: GraphQLInfo, id: strawberry.ID) -> Task | None:
        caller = await info.context.caller()
        try:
            record = await info.context.service.tasks.get(caller, id)
        except NotFound:
            return None
        return Task.from_record(record)

    @strawberry.field(description="The caller's tasks, newest first (ties broken by id).")
    async def tasks(
        self,
        info: GraphQLInfo,
        first: FirstArgument = DEFAULT_PAGE_SIZE,
        after: AfterArgument = UNSET,
        completed: CompletedArgument = UNSET,
    ) -> TaskConnection:
        caller = await info.context.caller()
        return await task_connection(info.context, caller, first, after, completed)


@strawberry.type
class Mutation:
    @strawberry.mutation(description="Create an account; the email is trimmed and lower-cased.")
    async def signup(self, info: GraphQLInfo, email: str, password: str) -> AuthPayload:
        result = await info.context.service.accounts.signup(
            client_address=info.context.client_address,
            email=email,
            password=password,
        )
        return AuthPayload.from_result(result)

    @strawberry.mutation(description="Exchange email and password for a token.")
    async def login(self, info: GraphQLInfo, email: str, password: str) -> AuthPayload:
        result = await info.context.service.accounts.login(
            client_address=info.context.client_address,
            email=email,
            password=password,
        )
        return AuthPayload.from_result(result)

    @strawberry.mutation(description="Create a task for the caller.")
    async def create_task(self, info: GraphQLInfo, input: CreateTaskInput) -> Task:
        caller = await info.context.caller()
        record = await info.context.service.tasks.create(
            caller,
            title=input.title,
            description=MISSING if input.description is UNSET else input.description,
        )
        info.context.loaders.forget_tasks()
        return Task.from_record(record)

    @strawberry.mutation(description="Change any of title, description, completed.")
    async def update_task(
        self, info: GraphQLInfo, id: strawberry.ID, input: UpdateTaskInput
    ) -> Task:
        caller = await info.context.caller()
        record = await info.context.service.tasks.update(caller, id, input.present_fields())
        info.context.loaders.forget_tasks()
        return Task.from_record(record)

    @strawberry.mutation(description="Delete one of the caller's tasks; returns its id.")
    async def delete_task(self, info: GraphQLInfo, id: strawberry.ID) -> strawberry.ID:
        caller = await info.context.caller()
        deleted = await info.context.service.tasks.delete(caller, id)
        info.context.loaders.forget_tasks()
        return strawberry.ID(str(deleted))


@strawberry.type
class Subscription:
    @strawberry.subscription(
        description="The caller's own task changes (from REST or GraphQL, on any instance), "
        "in commit order: those committed after `after` (an event's cursor; replayed first, "
        "then live, each once), else from the moment this subscription starts. A cursor no "
        "longer kept fails with CURSOR_EXPIRED: refetch, then subscribe without it. Over "
        "WebSocket only."
    )
    async def task_events(
        self, info: GraphQLInfo, after: str | None = None
    ) -> AsyncGenerator[TaskEvent, None]:
        caller = await info.context.caller()
        async with info.context.task_events(caller, after) as subscription:
            async for event in subscription:
                yield TaskEvent.from_event(event)


class TodoSchema(strawberry.Schema):
    def __init__(self, *args: Any, guard: OperationGuard, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        guard.bind(core_schema(self))
        self.guard = guard

    async def execute(
        self,
        query: str | None,
        variable_values: dict[str, Any] | None = None,
        context_value: Any | None = None,
        root_value: Any | None = None,
        operation_name: str | None = None,
        allowed_operation_types: Iterable[OperationType] | None = None,
        operation_extensions: dict[str, Any] | None = None,
    ) -> ExecutionResult:
        """Subscriptions are refused here: `execute` serves GraphQL over HTTP, where no
        streaming transport is enabled (WebSocket operations go through `stream`)."""
        allowed = set(allowed_operation_types or OperationType) - {OperationType.SUBSCRIPTION}
        return await super().execute(
            query,
            variable_values=variable_values,
            context_value=context_value,
            root_value=root_value,
            operation_name=operation_name,
            allowed_operation_types=allowed,
            operation_extensions=operation_extensions,
        )

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        """Log what will be masked, with its stack; known errors are the client's business.

        Neither line quotes the request: a request error's message is cut before the value
        it refused (`loggable_error_message`), and the stack's messages are written by
        api.logging's formatters, which leave such values out too."""
        for error in errors:
            if is_unexpected(error):
                log.error(
                    "unexpected error in GraphQL field %s",
                    ".".join(str(p) for p in error.path or ()) or "(operation)",
                    exc_info=error.original_error or error,
                )
            elif log.isEnabledFor(logging.DEBUG):
                log.debug("GraphQL error: %s", loggable_error_message(error.message))


def build_schema(
    *,
    introspection: bool = True,
    max_cost: int = DEFAULT_MAX_COST,
    report: OperationReport | None = None,
    extensions: Iterable[type[SchemaExtension] | Callable[[], SchemaExtension]] = (),
    documents: PersistedDocuments | None = None,
) -> TodoSchema:
    """The service's schema. `report` is told each operation's name and outcome (the app's
    metrics). `extensions` (tracing, say) run inside the service's own extension, which
    comes first: they see errors before they are presented, and the document a request
    named by hash or id (`documents`, persisted.py) already in place."""
    guard = OperationGuard(
        introspection=introspection, max_cost=max_cost, report=report, documents=documents
    )
    return TodoSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        extensions=[guard.extension, *extensions],
        guard=guard,
        # An operation's objects go when it ends, not at the next garbage collection.
        execution_context_class=ExecutorWithoutCycle,
        config=StrawberryConfig(scalar_map={datetime: DateTimeScalar}),
    )
