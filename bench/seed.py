"""Seeding over HTTP: sign users up and create their tasks through the service's REST API."""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass, field

import httpx

PASSWORD = "bench-password-1"


@dataclass
class SeedUser:
    email: str
    password: str
    token: str
    user_id: str
    task_ids: list[str] = field(default_factory=list)


async def _gather_limited(limit: int, coros):  # type: ignore[no-untyped-def]
    semaphore = asyncio.Semaphore(limit)

    async def one(coro):  # type: ignore[no-untyped-def]
        async with semaphore:
            return await coro

    return await asyncio.gather(*(one(c) for c in coros))


_RETRYABLE = (httpx.TransportError,)


async def _post(client: httpx.AsyncClient, path: str, **kwargs: object) -> httpx.Response:
    """POST with a few retries on transport errors (a kept-alive connection the server closed
    just as it was reused). A retried create may, rarely, leave one extra task."""
    for attempt in range(4):
        try:
            return await client.post(path, **kwargs)  # type: ignore[arg-type]
        except _RETRYABLE:
            if attempt == 3:
                raise
            await asyncio.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


async def _signup(client: httpx.AsyncClient, email: str) -> SeedUser:
    credentials = {"email": email, "password": PASSWORD}
    response = await _post(client, "/api/auth/signup", json=credentials)
    if response.status_code == 409:  # a retried signup that had gone through
        response = await _post(client, "/api/auth/login", json=credentials)
    if response.status_code not in (200, 201):
        raise RuntimeError(f"signup {email}: {response.status_code} {response.text[:200]}")
    body = response.json()
    return SeedUser(email, PASSWORD, body["token"], body["user"]["id"])


async def _create(client: httpx.AsyncClient, user: SeedUser, n: int) -> str:
    response = await _post(
        client,
        "/api/tasks",
        json={"title": f"seed task {n}", "description": "seeded by bench" if n % 2 else None},
        headers={"Authorization": f"Bearer {user.token}"},
    )
    if response.status_code != 201:
        raise RuntimeError(f"create task: {response.status_code} {response.text[:200]}")
    return str(response.json()["task"]["id"])


async def seed_users(
    base_url: str, *, prefix: str, users: int, tasks_each: int, concurrency: int = 48
) -> list[SeedUser]:
    """`users` new accounts with `tasks_each` tasks each, all through the REST API."""
    tag = secrets.token_hex(3)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, timeout=120, limits=limits) as client:
        # Signups are bcrypt-bound on the server; a few at a time keep its pool busy.
        seeded = await _gather_limited(
            8, [_signup(client, f"{prefix}-{tag}-{i}@bench.example.com") for i in range(users)]
        )
        jobs = [(user, n) for n in range(tasks_each) for user in seeded]
        ids = await _gather_limited(concurrency, [_create(client, u, n) for u, n in jobs])
        for (user, _n), task_id in zip(jobs, ids, strict=True):
            user.task_ids.append(task_id)
    return seeded


def seed(base_url: str, **kwargs: object) -> list[SeedUser]:
    return asyncio.run(seed_users(base_url, **kwargs))  # type: ignore[arg-type]
