"""Task queries and mutations over GraphQL: results, validation messages, ownership."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import httpx
import pytest

from tests.conftest import Account
from tests.graphql_helpers import CREATE_TASK, create_task, gql, gql_error

TASK_FIELDS = "id title description completed createdAt updatedAt owner { id email }"
GET_TASK = f"query($id: ID!) {{ task(id: $id) {{ {TASK_FIELDS} }} }}"
UPDATE_TASK = f"""
mutation($id: ID!, $input: UpdateTaskInput!) {{
  updateTask(id: $id, input: $input) {{ {TASK_FIELDS} }}
}}
"""
DELETE_TASK = "mutation($id: ID!) { deleteTask(id: $id) }"
LIST_IDS = "{ tasks { totalCount edges { node { id } } } }"


def instant(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    assert parsed.utcoffset() is not None, value
    return parsed


async def get_task(client: httpx.AsyncClient, account: Account, task_id: str) -> Any:
    body = await gql(client, GET_TASK, {"id": task_id}, account.headers)
    return body["data"]["task"]


async def update(
    client: httpx.AsyncClient, account: Account, task_id: str, changes: dict[str, Any]
) -> dict[str, Any]:
    body = await gql(client, UPDATE_TASK, {"id": task_id, "input": changes}, account.headers)
    task: dict[str, Any] = body["data"]["updateTask"]
    return task


async def test_create_task(client: httpx.AsyncClient, alice: Account) -> None:
    task = await create_task(client, alice, "  Buy milk  ", "Two litres")
    uuid.UUID(task["id"])
    assert task["title"] == "Buy milk"
    assert task["description"] == "Two litres"
    assert task["completed"] is False
    assert task["createdAt"] == task["updatedAt"]
    fetched = await get_task(client, alice, task["id"])
    assert fetched["owner"] == {"id": alice.id, "email": alice.email}
    assert {k: fetched[k] for k in task} == task


@pytest.mark.parametrize(
    ("input_", "description"),
    [
        ({"title": "t"}, None),
        ({"title": "t", "description": None}, None),
        ({"title": "t", "description": ""}, ""),
    ],
)
async def test_create_task_description_absent_null_or_empty(
    client: httpx.AsyncClient, alice: Account, input_: dict[str, Any], description: str | None
) -> None:
    body = await gql(client, CREATE_TASK, {"input": input_}, alice.headers)
    assert body["data"]["createTask"]["description"] == description


@pytest.mark.parametrize(
    ("input_", "message"),
    [
        ({"title": ""}, "Title is required"),
        ({"title": "   "}, "Title is required"),
        ({"title": "x" * 256}, "Title must not exceed 255 characters"),
        ({"title": "t", "description": "d" * 1001}, "Description must not exceed 1000 characters"),
        ({"title": "a\x00b"}, "Title contains invalid characters"),
        ({"title": "t", "description": "a\x00b"}, "Description contains invalid characters"),
    ],
)
async def test_create_task_validation_uses_the_rest_messages(
    client: httpx.AsyncClient, alice: Account, input_: dict[str, Any], message: str
) -> None:
    code, got = await gql_error(client, CREATE_TASK, {"input": input_}, alice.headers)
    assert (code, got) == ("BAD_USER_INPUT", message)
    assert (await gql(client, LIST_IDS, headers=alice.headers))["data"]["tasks"]["totalCount"] == 0


async def test_create_task_with_a_title_of_the_wrong_type_is_a_request_error(
    client: httpx.AsyncClient, alice: Account
) -> None:
    code, _message = await gql_error(client, CREATE_TASK, {"input": {"title": 5}}, alice.headers)
    assert code == "BAD_USER_INPUT"


async def test_task_is_null_without_error_when_not_the_callers(
    client: httpx.AsyncClient, alice: Account, bob: Account
) -> None:
    task = await create_task(client, alice, "private")
    for task_id in (task["id"], str(uuid.uuid4()), "not-a-uuid", "", "x" * 1000):
        body = await gql(client, GET_TASK, {"id": task_id}, bob.headers)
        assert body == {"data": {"task": None}}, task_id
    assert (await get_task(client, alice, task["id"]))["title"] == "private"


async def test_update_changes_only_the_given_fields(
    client: httpx.AsyncClient, alice: Account
) -> None:
    task = await create_task(client, alice, "title", "description")
    updated = await update(client, alice, task["id"], {"completed": True})
    assert (updated["title"], updated["description"], updated["completed"]) == (
        "title",
        "description",
        True,
    )
    assert instant(updated["updatedAt"]) > instant(task["updatedAt"])
    assert updated["createdAt"] == task["createdAt"]

    updated = await update(client, alice, task["id"], {"title": "  new title "})
    assert (updated["title"], updated["description"], updated["completed"]) == (
        "new title",
        "description",
        True,
    )
    updated = await update(client, alice, task["id"], {"description": None})
    assert (updated["title"], updated["description"]) == ("new title", None)
    updated = await update(client, alice, task["id"], {})
    assert updated["title"] == "new title"
    assert await get_task(client, alice, task["id"]) == updated


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"title": None}, "Title cannot be empty"),
        ({"title": ""}, "Title cannot be empty"),
        ({"title": "  "}, "Title cannot be empty"),
        ({"title": "x" * 256}, "Title must not exceed 255 characters"),
        ({"description": "d" * 1001}, "Description must not exceed 1000 characters"),
        ({"completed": None}, "Completed must be a boolean"),
        ({"title": "ok", "completed": None}, "Completed must be a boolean"),
    ],
)
async def test_update_validation_distinguishes_null_from_absent(
    client: httpx.AsyncClient, alice: Account, changes: dict[str, Any], message: str
) -> None:
    task = await create_task(client, alice, "keep me", "and me")
    variables = {"id": task["id"], "input": changes}
    code, got = await gql_error(client, UPDATE_TASK, variables, alice.headers)
    assert (code, got) == ("BAD_USER_INPUT", message)
    unchanged = await get_task(client, alice, task["id"])
    assert (unchanged["title"], unchanged["description"]) == ("keep me", "and me")


async def test_update_with_inline_null_literals(client: httpx.AsyncClient, alice: Account) -> None:
    task = await create_task(client, alice, "t", "d")
    query = "mutation($id: ID!) { updateTask(id: $id, input: {description: null}) { description } }"
    body = await gql(client, query, {"id": task["id"]}, alice.headers)
    assert body["data"]["updateTask"]["description"] is None
    query = "mutation($id: ID!) { updateTask(id: $id, input: {completed: null}) { id } }"
    code, message = await gql_error(client, query, {"id": task["id"]}, alice.headers)
    assert (code, message) == ("BAD_USER_INPUT", "Completed must be a boolean")


async def test_update_and_delete_of_missing_or_foreign_tasks_are_not_found(
    client: httpx.AsyncClient, alice: Account, bob: Account
) -> None:
    task = await create_task(client, alice, "alice's")
    for task_id in (task["id"], str(uuid.uuid4()), "not-a-uuid"):
        variables = {"id": task_id, "input": {"title": "stolen"}}
        assert await gql_error(client, UPDATE_TASK, variables, bob.headers) == (
            "NOT_FOUND",
            "Task not found",
        )
        assert await gql_error(client, DELETE_TASK, {"id": task_id}, bob.headers) == (
            "NOT_FOUND",
            "Task not found",
        )
    assert (await get_task(client, alice, task["id"]))["title"] == "alice's"


async def test_delete_task(client: httpx.AsyncClient, alice: Account) -> None:
    task = await create_task(client, alice, "doomed")
    body = await gql(client, DELETE_TASK, {"id": task["id"].upper()}, alice.headers)
    assert body["data"]["deleteTask"] == task["id"]
    assert await get_task(client, alice, task["id"]) is None
    assert await gql_error(client, DELETE_TASK, {"id": task["id"]}, alice.headers) == (
        "NOT_FOUND",
        "Task not found",
    )


async def test_users_see_only_their_own_tasks(
    client: httpx.AsyncClient, alice: Account, bob: Account
) -> None:
    mine = await create_task(client, alice, "alice 1")
    await create_task(client, alice, "alice 2")
    theirs = await create_task(client, bob, "bob 1")
    query = "{ me { email tasks { totalCount edges { node { id owner { email } } } } } }"
    for account, expected in ((alice, 2), (bob, 1)):
        me = (await gql(client, query, headers=account.headers))["data"]["me"]
        assert me["email"] == account.email
        assert me["tasks"]["totalCount"] == expected
        assert {e["node"]["owner"]["email"] for e in me["tasks"]["edges"]} == {account.email}
    bob_ids = {
        e["node"]["id"]
        for e in (await gql(client, LIST_IDS, headers=bob.headers))["data"]["tasks"]["edges"]
    }
    assert bob_ids == {theirs["id"]}
    assert mine["id"] not in bob_ids


async def test_later_fields_of_one_mutation_see_earlier_writes(
    client: httpx.AsyncClient, alice: Account
) -> None:
    """Task pages are cached per request; a write must drop them."""
    query = """
    mutation {
      a: createTask(input: {title: "one"}) { owner { tasks { totalCount } } }
      b: createTask(input: {title: "two"}) { owner { tasks { totalCount } } }
    }
    """
    data = (await gql(client, query, headers=alice.headers))["data"]
    assert data["a"]["owner"]["tasks"]["totalCount"] == 1
    assert data["b"]["owner"]["tasks"]["totalCount"] == 2
