"""A valid token whose account is gone is UNAUTHENTICATED on every field that uses the caller.

Over HTTP the GraphQL context verifies the token only (no database trip); the operations and
the resolvers that load the caller's user answer for a gone account themselves. These cases
pin that down field by field, arguments and inputs that are wrong as well: the account comes
first, as it did when the context looked the account up before any resolver ran.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import jwt
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from tests.conftest import TEST_SECRET, Account
from tests.graphql_helpers import create_task, error_codes, gql

UNAUTHORIZED = ("UNAUTHENTICATED", "Unauthorized")
TASK_ID = "TASK_ID"  # replaced by the id of a task the account had

CASES: list[tuple[str, str, dict[str, Any] | None, dict[str, Any] | None]] = [
    ("me", "{ me { id email } }", None, None),
    ("me.tasks", "{ me { tasks { totalCount } } }", None, None),
    ("tasks", "{ tasks { edges { node { id title } } } }", None, None),
    ("totalCount", "{ tasks { totalCount } }", None, None),
    ("tasks first out of range", "{ tasks(first: 1000) { totalCount } }", None, None),
    ("tasks bad cursor", '{ tasks(after: "junk") { totalCount } }', None, None),
    (
        "task",
        "query($id: ID!) { task(id: $id) { id owner { id } } }",
        {"id": TASK_ID},
        {"task": None},
    ),
    ("task not a uuid", '{ task(id: "not-a-uuid") { id } }', None, {"task": None}),
    ("task unknown", f'{{ task(id: "{uuid.uuid4()}") {{ id }} }}', None, {"task": None}),
    ("createTask", 'mutation { createTask(input: {title: "t"}) { id } }', None, None),
    ("createTask bad input", 'mutation { createTask(input: {title: " "}) { id } }', None, None),
    (
        "updateTask",
        "mutation($id: ID!) { updateTask(id: $id, input: {completed: true}) { id } }",
        {"id": TASK_ID},
        None,
    ),
    (
        "updateTask bad input",
        'mutation($id: ID!) { updateTask(id: $id, input: {title: ""}) { id } }',
        {"id": TASK_ID},
        None,
    ),
    ("deleteTask", "mutation($id: ID!) { deleteTask(id: $id) }", {"id": TASK_ID}, None),
    ("deleteTask not a uuid", 'mutation { deleteTask(id: "x") }', None, None),
]


@pytest.fixture
async def gone(app: FastAPI, client: httpx.AsyncClient, alice: Account) -> tuple[Account, str]:
    """Alice with one task, then her account deleted (her token still verifies)."""
    task = await create_task(client, alice, "one")
    async with app.state.services.engine.begin() as conn:
        await conn.execute(text("DELETE FROM users"))
    return alice, task["id"]


@pytest.mark.parametrize(
    ("query", "variables", "data"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
async def test_a_deleted_accounts_token_is_unauthenticated(
    client: httpx.AsyncClient,
    gone: tuple[Account, str],
    query: str,
    variables: dict[str, Any] | None,
    data: dict[str, Any] | None,
) -> None:
    account, task_id = gone
    if variables is not None:
        variables = {k: task_id if v == TASK_ID else v for k, v in variables.items()}
    body = await gql(client, query, variables, account.headers, errors=True)
    assert body["data"] == data
    assert error_codes(body) == [UNAUTHORIZED]


async def test_an_unknown_accounts_token_is_unauthenticated(
    client: httpx.AsyncClient, alice: Account
) -> None:
    claims = {"user_id": str(uuid.uuid4()), "exp": int(time.time()) + 60}
    headers = {"Authorization": f"Bearer {jwt.encode(claims, TEST_SECRET, algorithm='HS256')}"}
    body = await gql(
        client, "{ tasks { totalCount edges { node { id } } } }", headers=headers, errors=True
    )
    assert body["data"] is None
    assert error_codes(body) == [UNAUTHORIZED]
