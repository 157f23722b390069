"""Helpers for the GraphQL tests: one POST per call, status checked, errors explicit."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import insert

from db.models import Task
from tests.conftest import Account


async def gql(
    client: httpx.AsyncClient,
    query: str,
    variables: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    *,
    status: int = 200,
    errors: bool = False,
) -> dict[str, Any]:
    """POST one operation and return the JSON body.

    Fails on an unexpected status, and on any `errors` unless `errors=True` says the test
    expects some.
    """
    payload: dict[str, Any] = {"query": query}
    if variables is not None:
        payload["variables"] = variables
    response = await client.post("/graphql", json=payload, headers=headers)
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    if not errors:
        assert "errors" not in body, body["errors"]
    return body


def error_codes(body: dict[str, Any]) -> list[tuple[str, str]]:
    """`(code, message)` of each error, in order."""
    return [(error.get("extensions", {}).get("code"), error["message"]) for error in body["errors"]]


async def gql_error(
    client: httpx.AsyncClient,
    query: str,
    variables: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[str, str]:
    """The single error an operation is expected to fail with, as `(code, message)`."""
    body = await gql(client, query, variables, headers, errors=True)
    codes = error_codes(body)
    assert len(codes) == 1, body
    return codes[0]


CREATE_TASK = """
mutation Create($input: CreateTaskInput!) {
  createTask(input: $input) { id title description completed createdAt updatedAt }
}
"""


async def create_task(
    client: httpx.AsyncClient, account: Account, title: str, description: str | None = None
) -> dict[str, Any]:
    body = await gql(
        client,
        CREATE_TASK,
        {"input": {"title": title, "description": description}},
        account.headers,
    )
    task: dict[str, Any] = body["data"]["createTask"]
    return task


@contextmanager
def count_statements(app: FastAPI) -> Iterator[list[str]]:
    """Every SQL statement the app sends while the block runs."""
    with app.state.services.store.watch_statements() as statements:
        yield statements


async def insert_tasks(
    app: FastAPI, account: Account, count: int, *, created_at: datetime | None = None
) -> None:
    """Rows straight into the database: many at once, or several sharing one instant."""
    now = created_at or datetime.now(UTC)
    rows = [
        {
            "id": uuid.uuid4(),
            "title": f"bulk {i}",
            "description": None,
            "completed": False,
            "user_id": uuid.UUID(account.id),
            "created_at": now if created_at else now + timedelta(microseconds=i),
            "updated_at": now,
        }
        for i in range(count)
    ]
    async with app.state.services.engine.begin() as conn:
        await conn.execute(insert(Task), rows)
