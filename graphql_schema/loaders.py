"""Per-request DataLoaders: fields that ask for the same rows share one query.

Every key belongs to the caller (the only owner a request can read), so a batch is a handful
of distinct page, count or user lookups; each runs once however many fields ask for it.

Built for each request (each loader when first used), never at import time: an aiodataloader
DataLoader binds the event loop running when it is created, and its cache must not outlive the
request. Over a WebSocket the context, and so the loaders, live as long as the connection:
there they batch but never cache (`cache=False`), so no event or later operation sees rows
loaded for an earlier one.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from functools import partial

from aiodataloader import DataLoader

from core.records import Caller, TaskPage, TaskPosition, UserRecord
from core.service import TodoService


@dataclass(frozen=True, slots=True)
class PageKey:
    owner: Caller
    first: int
    after: TaskPosition | None
    completed: bool | None


@dataclass(frozen=True, slots=True)
class CountKey:
    owner: Caller
    completed: bool | None


class Loaders:
    """The request's loaders, each built when first used: most operations need one or none,
    and building a DataLoader is most of what a context costs."""

    __slots__ = ("_cache", "_service", "_task_counts", "_task_pages", "_users")

    def __init__(self, service: TodoService, *, cache: bool = True) -> None:
        self._service = service
        self._cache = cache
        self._users: DataLoader[uuid.UUID, UserRecord | None] | None = None
        self._task_pages: DataLoader[PageKey, TaskPage] | None = None
        self._task_counts: DataLoader[CountKey, int] | None = None

    @property
    def users(self) -> DataLoader[uuid.UUID, UserRecord | None]:
        if self._users is None:
            self._users = DataLoader(partial(_load_users, self._service), cache=self._cache)
        return self._users

    @property
    def task_pages(self) -> DataLoader[PageKey, TaskPage]:
        if self._task_pages is None:
            self._task_pages = DataLoader(
                partial(_load_task_pages, self._service), cache=self._cache
            )
        return self._task_pages

    @property
    def task_counts(self) -> DataLoader[CountKey, int]:
        if self._task_counts is None:
            self._task_counts = DataLoader(
                partial(_load_task_counts, self._service), cache=self._cache
            )
        return self._task_counts

    def forget_tasks(self) -> None:
        """After a task changes, later fields in the same operation must not see old pages."""
        if self._task_pages is not None:
            self._task_pages.clear_all()
        if self._task_counts is not None:
            self._task_counts.clear_all()


# A batch may hold one key several times (aliases, over a socket whose loaders do not cache):
# each distinct key is looked up once.


async def _load_users(service: TodoService, user_ids: list[uuid.UUID]) -> list[UserRecord | None]:
    found = {
        user_id: await service.accounts.find_user(user_id) for user_id in dict.fromkeys(user_ids)
    }
    return [found[user_id] for user_id in user_ids]


async def _load_task_pages(service: TodoService, keys: list[PageKey]) -> list[TaskPage]:
    pages = {
        key: await service.tasks.page(
            key.owner, first=key.first, after=key.after, completed=key.completed
        )
        for key in dict.fromkeys(keys)
    }
    return [pages[key] for key in keys]


async def _load_task_counts(service: TodoService, keys: list[CountKey]) -> list[int]:
    counts = {
        key: await service.tasks.count(key.owner, completed=key.completed)
        for key in dict.fromkeys(keys)
    }
    return [counts[key] for key in keys]
