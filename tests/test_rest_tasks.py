"""The /api/tasks endpoints (contract section 2)."""

from __future__ import annotations

import re
import uuid
from datetime import datetime

import httpx
import pytest
from sqlalchemy import text

from tests.conftest import Account

pytestmark = pytest.mark.asyncio

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
TASK_KEYS = {"id", "title", "description", "completed", "user_id", "created_at", "updated_at"}


def parse_ts(value: str) -> datetime:
    assert TIMESTAMP.match(value), value
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def create(client: httpx.AsyncClient, account: Account, **body: object) -> dict:
    response = await client.post("/api/tasks", json=body, headers=account.headers)
    assert response.status_code == 201, response.text
    return response.json()["task"]


async def count_rows(app, table: str) -> int:
    async with app.state.services.engine.connect() as conn:
        return (await conn.execute(text(f"SELECT COUNT(*) FROM {table}"))).scalar_one()


async def test_empty_list(client: httpx.AsyncClient, alice: Account) -> None:
    response = await client.get("/api/tasks", headers=alice.headers)
    assert response.status_code == 200
    assert response.json() == {"tasks": []}


async def test_create_task(client: httpx.AsyncClient, alice: Account) -> None:
    response = await client.post(
        "/api/tasks",
        json={
            "title": "  Buy milk  ",
            "description": "Two litres",
            # ignored: the server owns these
            "id": str(uuid.uuid4()),
            "user_id": str(uuid.uuid4()),
            "completed": True,
            "created_at": "2000-01-01T00:00:00Z",
            "updated_at": "2000-01-01T00:00:00Z",
        },
        headers=alice.headers,
    )
    assert response.status_code == 201
    assert response.headers["content-type"] == "application/json"
    task = response.json()["task"]
    assert set(task) == TASK_KEYS
    assert task["title"] == "Buy milk"
    assert task["description"] == "Two litres"
    assert task["completed"] is False
    assert task["user_id"] == alice.id
    assert uuid.UUID(task["id"]).version == 4
    assert task["created_at"] == task["updated_at"]
    assert parse_ts(task["created_at"]).year >= 2026


async def test_create_without_description_and_with_empty_one(
    client: httpx.AsyncClient, alice: Account
) -> None:
    assert (await create(client, alice, title="a"))["description"] is None
    assert (await create(client, alice, title="b", description=None))["description"] is None
    assert (await create(client, alice, title="c", description=""))["description"] == ""


@pytest.mark.parametrize("title", [None, "", "   ", "\t\n", 5, True, ["x"], {"a": 1}])
async def test_create_requires_title(
    client: httpx.AsyncClient, alice: Account, app, title: object
) -> None:
    body: dict[str, object] = {} if title is None else {"title": title}
    for payload in (body, {"title": None}):
        response = await client.post("/api/tasks", json=payload, headers=alice.headers)
        assert response.status_code == 400
        assert response.json() == {"error": "Title is required"}
    assert await count_rows(app, "tasks") == 0


async def test_create_length_limits(client: httpx.AsyncClient, alice: Account, app) -> None:
    long_title = await client.post("/api/tasks", json={"title": "t" * 256}, headers=alice.headers)
    assert long_title.status_code == 400
    assert long_title.json() == {"error": "Title must not exceed 255 characters"}
    long_description = await client.post(
        "/api/tasks", json={"title": "ok", "description": "d" * 1001}, headers=alice.headers
    )
    assert long_description.status_code == 400
    assert long_description.json() == {"error": "Description must not exceed 1000 characters"}
    assert await count_rows(app, "tasks") == 0
    exact = await create(client, alice, title="t" * 255, description="é" * 1000)
    assert len(exact["title"]) == 255 and len(exact["description"]) == 1000


async def test_list_is_newest_first_and_only_mine(
    client: httpx.AsyncClient, alice: Account, bob: Account
) -> None:
    created = [await create(client, alice, title=f"task {i}") for i in range(5)]
    await create(client, bob, title="bob's")
    response = await client.get("/api/tasks", headers=alice.headers)
    assert response.status_code == 200
    tasks = response.json()["tasks"]
    assert [t["id"] for t in tasks] == [t["id"] for t in reversed(created)]
    assert all(t["user_id"] == alice.id for t in tasks)
    assert tasks == list(reversed(created))
    stamps = [parse_ts(t["created_at"]) for t in tasks]
    assert stamps == sorted(stamps, reverse=True)


async def test_get_task(client: httpx.AsyncClient, alice: Account, bob: Account) -> None:
    task = await create(client, alice, title="mine")
    mine = await client.get(f"/api/tasks/{task['id']}", headers=alice.headers)
    assert mine.status_code == 200
    assert mine.json() == {"task": task}
    for task_id in (task["id"], str(uuid.uuid4()), "not-a-uuid", "123", task["id"].upper()[:-1]):
        headers = bob.headers if task_id == task["id"] else alice.headers
        response = await client.get(f"/api/tasks/{task_id}", headers=headers)
        assert response.status_code == 404, task_id
        assert response.json() == {"error": "Task not found"}


async def test_update_changes_only_given_fields(client: httpx.AsyncClient, alice: Account) -> None:
    task = await create(client, alice, title="old", description="keep me")
    response = await client.put(
        f"/api/tasks/{task['id']}", json={"completed": True}, headers=alice.headers
    )
    assert response.status_code == 200
    updated = response.json()["task"]
    assert updated["completed"] is True
    assert updated["title"] == "old" and updated["description"] == "keep me"
    assert updated["created_at"] == task["created_at"]
    assert parse_ts(updated["updated_at"]) > parse_ts(task["updated_at"])

    renamed = (
        await client.put(
            f"/api/tasks/{task['id']}", json={"title": "  new  "}, headers=alice.headers
        )
    ).json()["task"]
    assert renamed["title"] == "new" and renamed["completed"] is True
    assert parse_ts(renamed["updated_at"]) > parse_ts(updated["updated_at"])

    cleared = (
        await client.put(
            f"/api/tasks/{task['id']}", json={"description": None}, headers=alice.headers
        )
    ).json()["task"]
    assert cleared["description"] is None and cleared["title"] == "new"

    fetched = (await client.get(f"/api/tasks/{task['id']}", headers=alice.headers)).json()
    assert fetched == {"task": cleared}


async def test_update_ignores_server_owned_fields(
    client: httpx.AsyncClient, alice: Account
) -> None:
    task = await create(client, alice, title="t")
    response = await client.put(
        f"/api/tasks/{task['id']}",
        json={
            "user_id": str(uuid.uuid4()),
            "id": str(uuid.uuid4()),
            "created_at": "2000-01-01T00:00:00Z",
        },
        headers=alice.headers,
    )
    assert response.status_code == 200
    body = response.json()["task"]
    assert body["id"] == task["id"] and body["user_id"] == alice.id
    assert body["created_at"] == task["created_at"]


@pytest.mark.parametrize(
    "payload, message",
    [
        ({"title": None}, "Title cannot be empty"),
        ({"title": ""}, "Title cannot be empty"),
        ({"title": "   "}, "Title cannot be empty"),
        ({"title": 7}, "Title cannot be empty"),
        ({"title": "t" * 256}, "Title must not exceed 255 characters"),
        ({"description": "d" * 1001}, "Description must not exceed 1000 characters"),
        ({"completed": None}, "Completed must be a boolean"),
        ({"completed": "true"}, "Completed must be a boolean"),
        ({"completed": 1}, "Completed must be a boolean"),
        ({"completed": 0}, "Completed must be a boolean"),
        ({"completed": [True]}, "Completed must be a boolean"),
        ({"title": "fine", "completed": "yes"}, "Completed must be a boolean"),
    ],
)
async def test_update_validation(
    client: httpx.AsyncClient, alice: Account, payload: dict, message: str
) -> None:
    task = await create(client, alice, title="original", description="d")
    response = await client.put(f"/api/tasks/{task['id']}", json=payload, headers=alice.headers)
    assert response.status_code == 400
    assert response.json() == {"error": message}
    after = (await client.get(f"/api/tasks/{task['id']}", headers=alice.headers)).json()["task"]
    assert after == task


async def test_update_not_found_cases(
    client: httpx.AsyncClient, alice: Account, bob: Account
) -> None:
    task = await create(client, alice, title="alice's")
    cases = [(bob, task["id"]), (alice, str(uuid.uuid4())), (alice, "nope")]
    for account, task_id in cases:
        response = await client.put(
            f"/api/tasks/{task_id}", json={"title": "hijack"}, headers=account.headers
        )
        assert response.status_code == 404
        assert response.json() == {"error": "Task not found"}
    still = (await client.get(f"/api/tasks/{task['id']}", headers=alice.headers)).json()["task"]
    assert still["title"] == "alice's"


async def test_delete(client: httpx.AsyncClient, alice: Account, bob: Account, app) -> None:
    task = await create(client, alice, title="doomed")
    foreign = await client.delete(f"/api/tasks/{task['id']}", headers=bob.headers)
    assert foreign.status_code == 404 and foreign.json() == {"error": "Task not found"}
    response = await client.delete(f"/api/tasks/{task['id']}", headers=alice.headers)
    assert response.status_code == 204
    assert response.content == b""
    again = await client.delete(f"/api/tasks/{task['id']}", headers=alice.headers)
    assert again.status_code == 404 and again.json() == {"error": "Task not found"}
    bad = await client.delete("/api/tasks/not-a-uuid", headers=alice.headers)
    assert bad.status_code == 404 and bad.json() == {"error": "Task not found"}
    assert await count_rows(app, "tasks") == 0


async def test_deleting_a_user_cascades_to_tasks_and_revokes_tokens(
    client: httpx.AsyncClient, alice: Account, app
) -> None:
    await create(client, alice, title="one")
    async with app.state.services.engine.begin() as conn:
        await conn.execute(text("DELETE FROM users"))
    assert await count_rows(app, "tasks") == 0
    response = await client.get("/api/tasks", headers=alice.headers)
    assert response.status_code == 401
    assert response.json() == {"error": "Unauthorized"}


async def test_two_users_interleaving(
    client: httpx.AsyncClient, alice: Account, bob: Account
) -> None:
    a1 = await create(client, alice, title="a1")
    b1 = await create(client, bob, title="b1")
    a2 = await create(client, alice, title="a2")
    await client.put(f"/api/tasks/{b1['id']}", json={"completed": True}, headers=bob.headers)
    assert (await client.delete(f"/api/tasks/{a1['id']}", headers=bob.headers)).status_code == 404
    assert (await client.delete(f"/api/tasks/{a1['id']}", headers=alice.headers)).status_code == 204
    b2 = await create(client, bob, title="b2")
    alice_tasks = (await client.get("/api/tasks", headers=alice.headers)).json()["tasks"]
    bob_tasks = (await client.get("/api/tasks", headers=bob.headers)).json()["tasks"]
    assert [t["id"] for t in alice_tasks] == [a2["id"]]
    assert [t["id"] for t in bob_tasks] == [b2["id"], b1["id"]]
    assert bob_tasks[1]["completed"] is True


async def test_timestamps_are_utc_z_on_both_databases(
    client: httpx.AsyncClient, alice: Account
) -> None:
    task = await create(client, alice, title="tz")
    listed = (await client.get("/api/tasks", headers=alice.headers)).json()["tasks"][0]
    for value in (task["created_at"], listed["created_at"], listed["updated_at"]):
        assert TIMESTAMP.match(value)
    assert listed["created_at"] == task["created_at"]
