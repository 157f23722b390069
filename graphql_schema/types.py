"""GraphQL object and input types: records in, camelCase fields out, no rules here."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import Enum
from typing import Annotated

import strawberry
from strawberry.types.scalar import ScalarDefinition
from strawberry.types.unset import UNSET

from core import events
from core.errors import InvalidInput, Unauthenticated
from core.records import AuthResult, Caller, TaskRecord, UserRecord
from graphql_schema.context import GraphQLContext, GraphQLInfo
from graphql_schema.loaders import CountKey, PageKey
from graphql_schema.pagination import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    decode_cursor,
    encode_cursor,
    page_size,
)


def _serialize_datetime(value: datetime) -> str:
    # Always with microseconds (isoformat drops them when zero) and an explicit offset.
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _parse_datetime(value: object) -> datetime:
    parsed = datetime.fromisoformat(str(value))
    if parsed.tzinfo is None:
        raise ValueError("DateTime needs a UTC offset")
    return parsed


DateTimeScalar: ScalarDefinition = strawberry.scalar(
    name="DateTime",
    description=(
        "An instant in ISO 8601 with microseconds and a UTC offset, e.g. "
        "`2026-01-09T14:30:00.123456+00:00`; the same instants the REST facade returns."
    ),
    serialize=_serialize_datetime,
    parse_value=_parse_datetime,
)


@strawberry.type(description="A todo item. Only its owner can ever see it.")
class Task:
    id: strawberry.ID = strawberry.field(description="The task's UUID, as in the REST facade.")
    title: str
    description: str | None
    completed: bool
    created_at: datetime
    updated_at: datetime
    user_id: strawberry.Private[uuid.UUID]

    @strawberry.field(description="The task's owner: always the caller.")
    async def owner(self, info: GraphQLInfo) -> User:
        record = await info.context.loaders.users.load(self.user_id)
        if record is None:  # the account was deleted while this request ran
            raise Unauthenticated()
        return User.from_record(record)

    @classmethod
    def from_record(cls, record: TaskRecord) -> Task:
        return cls(
            id=strawberry.ID(str(record.id)),
            title=record.title,
            description=record.description,
            completed=record.completed,
            created_at=record.created_at,
            updated_at=record.updated_at,
            user_id=record.user_id,
        )


@strawberry.enum(description="What a write did to a task.")
class TaskEventType(Enum):
    CREATED = "CREATED"
    UPDATED = "UPDATED"
    DELETED = "DELETED"


@strawberry.type(
    description="A change to one of the caller's tasks, sent once the write has committed."
)
class TaskEvent:
    type: TaskEventType
    task_id: strawberry.ID = strawberry.field(description="The task's UUID; also for DELETED.")
    task: Task | None = strawberry.field(
        description="The task as this write left it; null for DELETED."
    )
    cursor: str = strawberry.field(
        description="Where this event is in the caller's feed: pass it as `taskEvents(after:)` "
        "to resume after it (opaque; kept for TASK_EVENTS_RETENTION_HOURS)."
    )

    @classmethod
    def from_event(cls, event: events.TaskEvent) -> TaskEvent:
        return cls(
            type=TaskEventType(event.kind.value),
            task_id=strawberry.ID(str(event.task_id)),
            task=Task.from_record(event.task) if event.task is not None else None,
            cursor=event.cursor,
        )


@strawberry.type
class TaskEdge:
    cursor: str
    node: Task


class _LazyEdge(TaskEdge):
    """A TaskEdge whose cursor is encoded when read: most pages are fetched without per-edge
    cursors (`pageInfo` has the page's own), and encoding one costs more than the rest of an
    edge. Resolving `cursor` reads the attribute, so a query that asks gets the same value."""

    def __init__(self, task: TaskRecord) -> None:  # the dataclass __init__ would set cursor
        self.node = Task.from_record(task)
        self._task = task

    @property
    def cursor(self) -> str:  # type: ignore[override]  # read-only here, on purpose
        return encode_cursor(self._task)


@strawberry.type(description="Relay page info; pages go forward only (first/after).")
class PageInfo:
    has_next_page: bool
    has_previous_page: bool = strawberry.field(
        description="Always false: pages go forward only (the Relay spec allows this)."
    )
    start_cursor: str | None
    end_cursor: str | None = strawberry.field(
        description="Pass it as `after` to get the next page; null when the page is empty."
    )


@strawberry.type(description="A page of tasks, newest first (ties broken by id).")
class TaskConnection:
    edges: list[TaskEdge]
    page_info: PageInfo
    owner: strawberry.Private[Caller]
    completed: strawberry.Private[bool | None]

    @strawberry.field(description="How many tasks match `completed`, across all pages.")
    async def total_count(self, info: GraphQLInfo) -> int:
        return await info.context.loaders.task_counts.load(CountKey(self.owner, self.completed))


async def task_connection(
    context: GraphQLContext,
    owner: Caller,
    first: int | None,
    after: str | None,
    completed: bool | None,
) -> TaskConnection:
    """`owner`'s tasks as a connection, through the request's page loader.

    `after` and `completed` default to UNSET rather than None only so the SDL shows no
    `= null`; absent and null mean the same here.
    """
    after = None if after is UNSET else after
    completed = None if completed is UNSET else completed
    try:
        key = PageKey(
            owner=owner, first=page_size(first), after=decode_cursor(after), completed=completed
        )
    except InvalidInput:
        # A gone account is UNAUTHENTICATED before any complaint about its arguments (the
        # token alone was checked: GraphQLContext.caller).
        if not owner.account_checked and await context.loaders.users.load(owner.user_id) is None:
            raise Unauthenticated() from None
        raise
    page = await context.loaders.task_pages.load(key)
    tasks = page.tasks
    return TaskConnection(
        edges=[_LazyEdge(task) for task in tasks],
        page_info=PageInfo(
            has_next_page=page.has_next_page,
            has_previous_page=False,
            start_cursor=encode_cursor(tasks[0]) if tasks else None,
            end_cursor=encode_cursor(tasks[-1]) if tasks else None,
        ),
        owner=owner,
        completed=completed,
    )


FirstArgument = Annotated[
    int | None,
    strawberry.argument(
        description=f"Page size: {DEFAULT_PAGE_SIZE} when absent or null, at most {MAX_PAGE_SIZE}."
    ),
]
AfterArgument = Annotated[
    str | None,
    strawberry.argument(description="An `endCursor` of an earlier page: continue after it."),
]
CompletedArgument = Annotated[
    bool | None,
    strawberry.argument(description="Only completed (true) or open (false) tasks; all if absent"),
]


@strawberry.type(description="An account: only ever the caller, or the one just signed in.")
class User:
    id: strawberry.ID
    email: str
    # A User is only built for the caller (me, a task's owner) or for the account a
    # signup/login just proved, so this is a verified identity.
    identity: strawberry.Private[Caller]

    @strawberry.field(description="This user's tasks, newest first.")
    async def tasks(
        self,
        info: GraphQLInfo,
        first: FirstArgument = DEFAULT_PAGE_SIZE,
        after: AfterArgument = UNSET,
        completed: CompletedArgument = UNSET,
    ) -> TaskConnection:
        return await task_connection(info.context, self.identity, first, after, completed)

    @classmethod
    def from_record(cls, record: UserRecord) -> User:
        return cls(
            id=strawberry.ID(str(record.id)),
            email=record.email,
            identity=Caller(user_id=record.id),
        )


@strawberry.type
class AuthPayload:
    token: str = strawberry.field(description="A JWT for `Authorization: Bearer <token>`.")
    user: User

    @classmethod
    def from_result(cls, result: AuthResult) -> AuthPayload:
        return cls(token=result.token, user=User.from_record(result.user))


@strawberry.input
class CreateTaskInput:
    title: str = strawberry.field(description="Required; trimmed; at most 255 characters.")
    description: str | None = strawberry.field(
        default=UNSET, description="At most 1000 characters; absent or null means none."
    )


@strawberry.input(
    description="Only the fields given change; `description: null` clears the description."
)
class UpdateTaskInput:
    title: str | None = strawberry.field(
        default=UNSET, description="Trimmed; must not be empty or null when given."
    )
    description: str | None = strawberry.field(
        default=UNSET, description="At most 1000 characters; null clears it."
    )
    completed: bool | None = strawberry.field(
        default=UNSET, description="Must not be null when given."
    )

    def present_fields(self) -> dict[str, object]:
        """The fields given, explicit nulls included, as `Tasks.update` takes them."""
        given = {
            "title": self.title,
            "description": self.description,
            "completed": self.completed,
        }
        return {name: value for name, value in given.items() if value is not UNSET}
