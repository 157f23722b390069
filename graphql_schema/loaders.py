"""Per-request DataLoaders: related rows load in batches, never one query per row.

Built for each request (each loader when first used), never at import time: an aiodataloader
DataLoader binds the event loop running when it is created, and its cache must not outlive the
request (another request may belong to another user). Over a WebSocket the context, and so the
loaders, live as long as the connection: there they batch but never cache (`cache=False`), so
no event or later operation sees rows loaded for an earlier one.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass
from functools import partial

from aiodataloader import DataLoader

from api.services import Services
from graphql_schema import operations
from graphql_schema.operations import Caller, TaskPage, TaskPosition, UserRecord


@dataclass(frozen=True, slots=True)
class PageKey:
    owner: Caller
    first: int
    after: TaskPosition | None
    completed: bool | None


_PageArgs = tuple[int, TaskPosition | None, bool | None]


@dataclass(frozen=True, slots=True)
class CountKey:
    owner: Caller
    completed: bool | None


class Loaders:
    """The request's loaders, each built when first used: most operations need one or none,
    and building a DataLoader is most of what a context costs."""

    __slots__ = ("_cache", "_services", "_task_counts", "_task_pages", "_users")

    def __init__(self, services: Services, *, cache: bool = True) -> None:
        self._services = services
        self._cache = cache
        self._users: DataLoader[uuid.UUID, UserRecord | None] | None = None
        self._task_pages: DataLoader[PageKey, TaskPage] | None = None
        self._task_counts: DataLoader[CountKey, int] | None = None

    @property
    def users(self) -> DataLoader[uuid.UUID, UserRecord | None]:
        if self._users is None:
            self._users = DataLoader(partial(_load_users, self._services), cache=self._cache)
        return self._users

    @property
    def task_pages(self) -> DataLoader[PageKey, TaskPage]:
        if self._task_pages is None:
            self._task_pages = DataLoader(
                partial(_load_task_pages, self._services), cache=self._cache
            )
        return self._task_pages

    @property
    def task_counts(self) -> DataLoader[CountKey, int]:
        if self._task_counts is None:
            self._task_counts = DataLoader(
                partial(_load_task_counts, self._services), cache=self._cache
            )
        return self._task_counts

    def forget_tasks(self) -> None:
        """After a task changes, later fields in the same operation must not see old pages."""
        if self._task_pages is not None:
            self._task_pages.clear_all()
        if self._task_counts is not None:
            self._task_counts.clear_all()


def build_loaders(services: Services, *, cache: bool = True) -> Loaders:
    return Loaders(services, cache=cache)


async def _load_users(services: Services, user_ids: list[uuid.UUID]) -> list[UserRecord | None]:
    found = await operations.load_users_by_ids(services=services, user_ids=user_ids)
    return [found.get(user_id) for user_id in user_ids]


async def _load_task_pages(services: Services, keys: list[PageKey]) -> list[TaskPage]:
    # One statement per distinct (first, after, completed); the query bounds how many. A batch
    # may hold one key several times (aliases, over a socket whose loaders do not cache): each
    # owner goes into the statement once, or its page would get the rows of every copy.
    groups: defaultdict[_PageArgs, dict[Caller, None]] = defaultdict(dict)
    for key in keys:
        groups[key.first, key.after, key.completed][key.owner] = None
    pages: dict[PageKey, TaskPage] = {}
    for (first, after, completed), owners in groups.items():
        loaded = await operations.load_task_pages(
            services=services, owners=list(owners), first=first, after=after, completed=completed
        )
        for owner in owners:
            pages[PageKey(owner, first, after, completed)] = loaded[owner.user_id]
    return [pages[key] for key in keys]


async def _load_task_counts(services: Services, keys: list[CountKey]) -> list[int]:
    groups: defaultdict[bool | None, dict[Caller, None]] = defaultdict(dict)
    for key in keys:
        groups[key.completed][key.owner] = None
    counts: dict[CountKey, int] = {}
    for completed, owners in groups.items():
        loaded = await operations.count_tasks(
            services=services, owners=list(owners), completed=completed
        )
        for owner in owners:
            counts[CountKey(owner, completed)] = loaded[owner.user_id]
    return [counts[key] for key in keys]
