"""Per-request DataLoaders: related rows load in batches, never one query per row.

Built by the context getter for each request, never at import time: an aiodataloader
DataLoader binds the event loop running when it is created, and its cache must not outlive the
request (another request may belong to another user). Over a WebSocket the context, and so the
loaders, live as long as the connection: there they batch but never cache (`cache=False`), so
no event or later operation sees rows loaded for an earlier one.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass

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


@dataclass(frozen=True, slots=True)
class Loaders:
    users: DataLoader[uuid.UUID, UserRecord | None]
    task_pages: DataLoader[PageKey, TaskPage]
    task_counts: DataLoader[CountKey, int]

    def forget_tasks(self) -> None:
        """After a task changes, later fields in the same operation must not see old pages."""
        self.task_pages.clear_all()
        self.task_counts.clear_all()


def build_loaders(services: Services, *, cache: bool = True) -> Loaders:
    async def load_users(user_ids: list[uuid.UUID]) -> list[UserRecord | None]:
        found = await operations.load_users_by_ids(services=services, user_ids=user_ids)
        return [found.get(user_id) for user_id in user_ids]

    async def load_task_pages(keys: list[PageKey]) -> list[TaskPage]:
        # One statement per distinct (first, after, completed); the query bounds how many.
        groups: defaultdict[_PageArgs, list[Caller]] = defaultdict(list)
        for key in keys:
            groups[key.first, key.after, key.completed].append(key.owner)
        pages: dict[PageKey, TaskPage] = {}
        for (first, after, completed), owners in groups.items():
            loaded = await operations.load_task_pages(
                services=services, owners=owners, first=first, after=after, completed=completed
            )
            for owner in owners:
                pages[PageKey(owner, first, after, completed)] = loaded[owner.user_id]
        return [pages[key] for key in keys]

    async def load_task_counts(keys: list[CountKey]) -> list[int]:
        groups: defaultdict[bool | None, list[Caller]] = defaultdict(list)
        for key in keys:
            groups[key.completed].append(key.owner)
        counts: dict[CountKey, int] = {}
        for completed, owners in groups.items():
            loaded = await operations.count_tasks(
                services=services, owners=owners, completed=completed
            )
            for owner in owners:
                counts[CountKey(owner, completed)] = loaded[owner.user_id]
        return [counts[key] for key in keys]

    return Loaders(
        users=DataLoader(load_users, cache=cache),
        task_pages=DataLoader(load_task_pages, cache=cache),
        task_counts=DataLoader(load_task_counts, cache=cache),
    )
