"""One service, two surfaces: what one writes the other reads identically, and both refuse
the same input with the same message."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx
import pytest

from rest_facade.errors import STATUS_BY_CODE
from tests.conftest import Account
from tests.graphql_helpers import CREATE_TASK, create_task, gql, gql_error

GRAPHQL_TASK = """
query($id: ID!) {
  task(id: $id) { id title description completed createdAt updatedAt owner { id } }
}
"""
UPDATE_TASK = """
mutation($id: ID!, $input: UpdateTaskInput!) {
  updateTask(id: $id, input: $input) { id title description completed createdAt updatedAt }
}
"""


def instant(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def assert_same_task(rest: dict[str, Any], graphql: dict[str, Any]) -> None:
    assert graphql["id"] == rest["id"]
    assert graphql["title"] == rest["title"]
    assert graphql["description"] == rest["description"]
    assert graphql["completed"] == rest["completed"]
    assert instant(graphql["createdAt"]) == instant(rest["created_at"])
    assert instant(graphql["updatedAt"]) == instant(rest["updated_at"])
    if "owner" in graphql:
        assert graphql["owner"]["id"] == rest["user_id"]


async def rest_task(client: httpx.AsyncClient, account: Account, task_id: str) -> Any:
    response = await client.get(f"/api/tasks/{task_id}", headers=account.headers)
    assert response.status_code == 200, response.text
    return response.json()["task"]


async def graphql_task(client: httpx.AsyncClient, account: Account, task_id: str) -> Any:
    return (await gql(client, GRAPHQL_TASK, {"id": task_id}, account.headers))["data"]["task"]


async def test_rest_writes_graphql_reads(client: httpx.AsyncClient, alice: Account) -> None:
    response = await client.post(
        "/api/tasks", json={"title": " via REST ", "description": "d"}, headers=alice.headers
    )
    created = response.json()["task"]
    assert_same_task(created, await graphql_task(client, alice, created["id"]))

    response = await client.put(
        f"/api/tasks/{created['id']}", json={"completed": True}, headers=alice.headers
    )
    assert_same_task(response.json()["task"], await graphql_task(client, alice, created["id"]))

    assert (
        await client.delete(f"/api/tasks/{created['id']}", headers=alice.headers)
    ).status_code == 204
    assert await graphql_task(client, alice, created["id"]) is None


async def test_graphql_writes_rest_reads(client: httpx.AsyncClient, alice: Account) -> None:
    created = await create_task(client, alice, " via GraphQL ", None)
    rest = await rest_task(client, alice, created["id"])
    assert_same_task(rest, created)
    assert rest["user_id"] == alice.id

    body = await gql(
        client,
        UPDATE_TASK,
        {"id": created["id"], "input": {"description": "later", "completed": True}},
        alice.headers,
    )
    assert_same_task(await rest_task(client, alice, created["id"]), body["data"]["updateTask"])

    await gql(
        client, "mutation($id: ID!) { deleteTask(id: $id) }", {"id": created["id"]}, alice.headers
    )
    response = await client.get(f"/api/tasks/{created['id']}", headers=alice.headers)
    assert response.status_code == 404


async def test_both_lists_agree(client: httpx.AsyncClient, alice: Account, bob: Account) -> None:
    for i in range(4):
        await create_task(client, alice, f"graphql {i}")
        await client.post("/api/tasks", json={"title": f"rest {i}"}, headers=alice.headers)
    await create_task(client, bob, "not alice's")
    rest = (await client.get("/api/tasks", headers=alice.headers)).json()["tasks"]
    fields = "id title description completed createdAt updatedAt"
    query = f"{{ tasks(first: 100) {{ edges {{ node {{ {fields} }} }} }} }}"
    edges = (await gql(client, query, headers=alice.headers))["data"]["tasks"]["edges"]
    assert len(edges) == len(rest) == 8
    for rest_item, edge in zip(rest, edges, strict=True):
        assert_same_task(rest_item, edge["node"])


@pytest.mark.parametrize(
    "body",
    [
        {"title": ""},
        {"title": "   "},
        {"title": "x" * 256},
        {"title": "t", "description": "d" * 1001},
        {"title": "a\x00b"},
    ],
)
async def test_create_is_refused_alike(
    client: httpx.AsyncClient, alice: Account, body: dict[str, Any]
) -> None:
    rest = await client.post("/api/tasks", json=body, headers=alice.headers)
    code, message = await gql_error(client, CREATE_TASK, {"input": body}, alice.headers)
    assert rest.json() == {"error": message}
    assert rest.status_code == STATUS_BY_CODE[code]


@pytest.mark.parametrize(
    "changes",
    [{"title": None}, {"title": " "}, {"completed": None}, {"description": "d" * 1001}],
)
async def test_update_is_refused_alike(
    client: httpx.AsyncClient, alice: Account, changes: dict[str, Any]
) -> None:
    task = await create_task(client, alice, "target")
    rest = await client.put(f"/api/tasks/{task['id']}", json=changes, headers=alice.headers)
    code, message = await gql_error(
        client, UPDATE_TASK, {"id": task["id"], "input": changes}, alice.headers
    )
    assert rest.json() == {"error": message}
    assert rest.status_code == STATUS_BY_CODE[code]


async def test_not_found_and_unauthenticated_alike(
    client: httpx.AsyncClient, alice: Account, bob: Account
) -> None:
    task = await create_task(client, alice, "alice's")
    rest = await client.delete(f"/api/tasks/{task['id']}", headers=bob.headers)
    code, message = await gql_error(
        client, "mutation($id: ID!) { deleteTask(id: $id) }", {"id": task["id"]}, bob.headers
    )
    assert (rest.status_code, rest.json()) == (STATUS_BY_CODE[code], {"error": message})

    rest = await client.get("/api/tasks")
    code, message = await gql_error(client, "{ tasks { totalCount } }")
    assert (rest.status_code, rest.json()) == (STATUS_BY_CODE[code], {"error": message})

    credentials = {"email": alice.email, "password": "wrong-password"}
    rest = await client.post("/api/auth/login", json=credentials)
    code, message = await gql_error(
        client,
        "mutation($email: String!, $password: String!) "
        "{ login(email: $email, password: $password) { token } }",
        credentials,
    )
    assert (rest.status_code, rest.json()) == (STATUS_BY_CODE[code], {"error": message})
