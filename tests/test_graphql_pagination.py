"""Task connections: keyset cursors, page size rules, filters, and bounded SQL."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from core.records import Caller
from tests.conftest import Account
from tests.graphql_helpers import (
    count_statements,
    create_task,
    gql,
    gql_error,
    insert_tasks,
)

PAGE = """
query($first: Int, $after: String, $completed: Boolean) {
  tasks(first: $first, after: $after, completed: $completed) {
    totalCount
    edges { cursor node { id title completed } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}
"""


async def page(client: httpx.AsyncClient, account: Account, **variables: Any) -> dict[str, Any]:
    body = await gql(client, PAGE, variables, account.headers)
    connection: dict[str, Any] = body["data"]["tasks"]
    return connection


def ids(connection: dict[str, Any]) -> list[str]:
    return [edge["node"]["id"] for edge in connection["edges"]]


async def rest_ids(client: httpx.AsyncClient, account: Account) -> list[str]:
    response = await client.get("/api/tasks", headers=account.headers)
    return [task["id"] for task in response.json()["tasks"]]


async def all_pages(client: httpx.AsyncClient, account: Account, size: int) -> list[str]:
    seen: list[str] = []
    after = None
    while True:
        connection = await page(client, account, first=size, after=after)
        seen += ids(connection)
        if not connection["pageInfo"]["hasNextPage"]:
            return seen
        after = connection["pageInfo"]["endCursor"]


async def test_default_page_is_twenty_newest_first(
    app: FastAPI, client: httpx.AsyncClient, alice: Account
) -> None:
    await insert_tasks(app, alice, 25)
    first = await page(client, alice)
    assert len(first["edges"]) == 20
    assert first["totalCount"] == 25
    assert first["pageInfo"]["hasNextPage"] is True
    assert first["pageInfo"]["hasPreviousPage"] is False
    assert first["pageInfo"]["startCursor"] == first["edges"][0]["cursor"]
    assert first["pageInfo"]["endCursor"] == first["edges"][-1]["cursor"]
    rest = await page(client, alice, after=first["pageInfo"]["endCursor"])
    assert len(rest["edges"]) == 5
    assert rest["pageInfo"]["hasNextPage"] is False
    assert ids(first) + ids(rest) == await rest_ids(client, alice)
    assert ids(await page(client, alice, first=None)) == ids(first)


async def test_pages_of_every_size_cover_the_list_once(
    client: httpx.AsyncClient, alice: Account
) -> None:
    for i in range(7):
        await create_task(client, alice, f"task {i}")
    expected = await rest_ids(client, alice)
    for size in (1, 2, 3, 7, 100):
        assert await all_pages(client, alice, size) == expected, size


async def test_ties_on_created_at_are_broken_by_id(
    app: FastAPI, client: httpx.AsyncClient, alice: Account
) -> None:
    await insert_tasks(app, alice, 6, created_at=datetime(2026, 1, 9, 14, 30, tzinfo=UTC))
    await create_task(client, alice, "newest")
    expected = await rest_ids(client, alice)
    assert expected[1:] == sorted(expected[1:], key=uuid.UUID, reverse=True)
    assert await all_pages(client, alice, 2) == expected


async def test_cursors_survive_inserts_and_deletes_between_pages(
    client: httpx.AsyncClient, alice: Account
) -> None:
    created = [await create_task(client, alice, f"task {i}") for i in range(6)]
    newest_first = [task["id"] for task in reversed(created)]  # t5 t4 t3 t2 t1 t0

    first = await page(client, alice, first=2)
    assert ids(first) == newest_first[:2]
    cursor = first["pageInfo"]["endCursor"]

    await create_task(client, alice, "added after the first page")
    delete = "mutation($id: ID!) { deleteTask(id: $id) }"
    for gone in (newest_first[1], newest_first[3]):  # the cursor's own task, and one ahead
        await gql(client, delete, {"id": gone}, alice.headers)

    second = await page(client, alice, first=2, after=cursor)
    assert ids(second) == [newest_first[2], newest_first[4]]
    assert second["totalCount"] == 5
    third = await page(client, alice, first=2, after=second["pageInfo"]["endCursor"])
    assert ids(third) == [newest_first[5]]
    assert third["pageInfo"]["hasNextPage"] is False


async def test_completed_filter(client: httpx.AsyncClient, alice: Account) -> None:
    tasks = [await create_task(client, alice, f"task {i}") for i in range(5)]
    done = {tasks[0]["id"], tasks[2]["id"], tasks[3]["id"]}
    update = "mutation($id: ID!) { updateTask(id: $id, input: {completed: true}) { id } }"
    for task_id in done:
        await gql(client, update, {"id": task_id}, alice.headers)

    completed = await page(client, alice, completed=True, first=2)
    assert completed["totalCount"] == 3
    assert completed["pageInfo"]["hasNextPage"] is True
    rest = await page(client, alice, completed=True, after=completed["pageInfo"]["endCursor"])
    assert set(ids(completed) + ids(rest)) == done
    assert all(edge["node"]["completed"] for edge in completed["edges"] + rest["edges"])

    open_ = await page(client, alice, completed=False)
    assert open_["totalCount"] == 2
    assert set(ids(open_)) == {t["id"] for t in tasks} - done
    assert (await page(client, alice))["totalCount"] == 5


async def test_me_tasks_is_the_same_connection(client: httpx.AsyncClient, alice: Account) -> None:
    for i in range(3):
        await create_task(client, alice, f"task {i}")
    query = "{ me { tasks(first: 2) { edges { cursor } pageInfo { endCursor } } } }"
    mine = (await gql(client, query, headers=alice.headers))["data"]["me"]["tasks"]
    top = await page(client, alice, first=2)
    assert [e["cursor"] for e in mine["edges"]] == [e["cursor"] for e in top["edges"]]


async def test_first_zero_gives_an_empty_page(client: httpx.AsyncClient, alice: Account) -> None:
    await create_task(client, alice, "only")
    empty = await page(client, alice, first=0)
    assert empty["edges"] == []
    assert empty["pageInfo"] == {
        "hasNextPage": True,
        "hasPreviousPage": False,
        "startCursor": None,
        "endCursor": None,
    }
    assert empty["totalCount"] == 1


@pytest.mark.parametrize("first", [101, 1000, -1])
async def test_first_outside_the_cap_is_refused(
    client: httpx.AsyncClient, alice: Account, first: int
) -> None:
    code, message = await gql_error(client, PAGE, {"first": first}, alice.headers)
    assert (code, message) == ("BAD_USER_INPUT", "first must be between 0 and 100")


async def test_first_of_one_hundred_is_allowed(
    app: FastAPI, client: httpx.AsyncClient, alice: Account
) -> None:
    await insert_tasks(app, alice, 101)
    connection = await page(client, alice, first=100)
    assert len(connection["edges"]) == 100
    assert connection["pageInfo"]["hasNextPage"] is True


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "garbage!",
        "djF8",  # "v1|"
        _b64("v1|2026-01-09T14:30:00+00:00"),
        _b64("v1|yesterday|00000000-0000-4000-8000-000000000000"),
        _b64("v1|2026-01-09T14:30:00|00000000-0000-4000-8000-000000000000"),  # no offset
        _b64("v2|2026-01-09T14:30:00+00:00|00000000-0000-4000-8000-000000000000"),
        _b64("v1|2026-01-09T14:30:00+00:00|not-a-uuid"),
        "A" * 5000,
    ],
)
async def test_malformed_cursors_are_bad_input(
    client: httpx.AsyncClient, alice: Account, cursor: str
) -> None:
    code, message = await gql_error(client, PAGE, {"after": cursor}, alice.headers)
    assert (code, message) == ("BAD_USER_INPUT", "Invalid cursor")


async def test_statements_do_not_grow_with_the_page(
    app: FastAPI, client: httpx.AsyncClient, alice: Account
) -> None:
    query = """
    { tasks(first: 100) {
        totalCount
        edges { cursor node { id title owner { id email } } }
        pageInfo { hasNextPage endCursor } }
      me { email tasks(first: 100) { edges { node { owner { email } } } } } }
    """
    await insert_tasks(app, alice, 1)
    with count_statements(app) as one_task:
        body = await gql(client, query, headers=alice.headers)
    assert len(body["data"]["tasks"]["edges"]) == 1

    await insert_tasks(app, alice, 99)
    with count_statements(app) as hundred_tasks:
        body = await gql(client, query, headers=alice.headers)
    edges = body["data"]["tasks"]["edges"]
    assert len(edges) == 100
    assert {edge["node"]["owner"]["email"] for edge in edges} == {alice.email}

    # one page (shared by both fields), one users batch, one count; the token needs none
    assert len(hundred_tasks) == len(one_task) <= 3, hundred_tasks


async def test_nested_connections_are_loaded_once(
    app: FastAPI, client: httpx.AsyncClient, alice: Account
) -> None:
    await insert_tasks(app, alice, 50)
    # Pages of 20 in pages of 20: within the default cost limit (pages of 50 are not).
    query = """
    { tasks(first: 20) { edges { node { owner { tasks(first: 20) { totalCount
        edges { node { owner { email } } } } } } } } }
    """
    with count_statements(app) as statements:
        body = await gql(client, query, headers=alice.headers)
    assert len(body["data"]["tasks"]["edges"]) == 20
    assert len(statements) <= 4, statements


async def test_a_page_is_one_statement_over_the_callers_rows_only(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, bob: Account
) -> None:
    """The page behind `tasks`: one statement, the caller's own rows, one more than asked."""
    await insert_tasks(app, alice, 3)
    await insert_tasks(app, bob, 2)
    tasks = app.state.todo.tasks
    # A checked caller: this is about the page statement, not the gone-account check.
    caller = Caller(uuid.UUID(alice.id), account_checked=True)
    with count_statements(app) as statements:
        page = await tasks.page(caller, first=2, after=None, completed=None)
    assert len(statements) == 1
    alice_newest = [uuid.UUID(task_id) for task_id in await rest_ids(client, alice)][:2]
    assert [task.id for task in page.tasks] == alice_newest
    assert page.has_next_page is True
    with count_statements(app) as statements:
        assert await tasks.count(caller, completed=None) == 3
    assert len(statements) == 1
    nobody = Caller(uuid.uuid4(), account_checked=True)
    empty = await tasks.page(nobody, first=2, after=None, completed=None)
    assert empty.tasks == [] and empty.has_next_page is False
    assert await tasks.count(nobody, completed=None) == 0
