"""Property: whatever several users do, through either surface, nobody sees, changes or deletes
another's task, and every list is exactly the owner's tasks, newest first.

Hypothesis generates interleavings of create/update/delete/get/list by three users, each
operation sent through REST or GraphQL at random, and checks every answer against a model.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.app import create_app
from tests.conftest import Account, serve, signup

TASK_FIELDS = "id title description completed createdAt updatedAt"

operations = st.lists(
    st.tuples(
        st.integers(0, 2),  # who acts
        st.sampled_from(["create", "update", "delete", "get", "list"]),
        st.integers(0, 50),  # which known task (any owner, maybe deleted) is the target
        st.sampled_from(["rest", "graphql"]),
        st.text(
            alphabet=st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), max_size=12
        ),
        st.booleans(),
    ),
    min_size=1,
    max_size=30,
)


@dataclass
class Model:
    owner: dict[str, int] = field(default_factory=dict)  # task id -> user index
    alive: dict[str, dict[str, Any]] = field(default_factory=dict)  # task id -> fields
    known: list[str] = field(default_factory=list)  # every id ever created, in order

    def tasks_of(self, user: int) -> list[str]:
        return [t for t in reversed(self.known) if t in self.alive and self.owner[t] == user]


async def gql(client: httpx.AsyncClient, account: Account, query: str, **variables: Any) -> dict:
    response = await client.post(
        "/graphql", json={"query": query, "variables": variables}, headers=account.headers
    )
    assert response.status_code == 200, response.text
    return response.json()


def error_code(body: dict) -> str | None:
    errors = body.get("errors") or []
    return errors[0]["extensions"]["code"] if errors else None


async def run_scenario(client: httpx.AsyncClient, ops: list[tuple]) -> None:
    users = [await signup(client) for _ in range(3)]
    model = Model()
    for actor, kind, target_index, surface, text, flag in ops:
        me = users[actor]
        target = model.known[target_index % len(model.known)] if model.known else str(uuid.uuid4())
        mine = target in model.alive and model.owner[target] == actor
        title = f"t{text}".strip()
        if kind == "create":
            if surface == "rest":
                r = await client.post("/api/tasks", json={"title": title}, headers=me.headers)
                assert r.status_code == 201
                task = r.json()["task"]
                assert task["user_id"] == me.id
            else:
                body = await gql(
                    client,
                    me,
                    f"mutation($t: String!) {{ createTask(input: "
                    f"{{title: $t}}) {{ {TASK_FIELDS} }} }}",
                    t=title,
                )
                task = body["data"]["createTask"]
            model.known.append(task["id"])
            model.owner[task["id"]] = actor
            model.alive[task["id"]] = {"title": title, "completed": False}
        elif kind == "update":
            if surface == "rest":
                r = await client.put(
                    f"/api/tasks/{target}", json={"completed": flag}, headers=me.headers
                )
                assert r.status_code == (200 if mine else 404)
            else:
                body = await gql(
                    client,
                    me,
                    "mutation($id: ID!, $c: Boolean) { updateTask("
                    "id: $id, input: {completed: $c}) { id completed } }",
                    id=target,
                    c=flag,
                )
                assert error_code(body) == (None if mine else "NOT_FOUND")
            if mine:
                model.alive[target]["completed"] = flag
        elif kind == "delete":
            if surface == "rest":
                r = await client.delete(f"/api/tasks/{target}", headers=me.headers)
                assert r.status_code == (204 if mine else 404)
            else:
                body = await gql(
                    client, me, "mutation($id: ID!) { deleteTask(id: $id) }", id=target
                )
                assert error_code(body) == (None if mine else "NOT_FOUND")
            if mine:
                del model.alive[target]
        elif kind == "get":
            if surface == "rest":
                r = await client.get(f"/api/tasks/{target}", headers=me.headers)
                assert r.status_code == (200 if mine else 404)
                got = r.json()["task"] if mine else None
            else:
                body = await gql(
                    client,
                    me,
                    f"query($id: ID!) {{ task(id: $id) {{ {TASK_FIELDS} }} }}",
                    id=target,
                )
                assert error_code(body) is None
                got = body["data"]["task"]
                assert (got is not None) == mine
            if mine:
                assert got["title"] == model.alive[target]["title"]
                assert got["completed"] == model.alive[target]["completed"]
        else:
            await check_list(client, me, actor, model, surface)
    for index, account in enumerate(users):
        await check_list(client, account, index, model, "rest")
        await check_list(client, account, index, model, "graphql")


async def check_list(
    client: httpx.AsyncClient, me: Account, actor: int, model: Model, surface: str
) -> None:
    if surface == "rest":
        r = await client.get("/api/tasks", headers=me.headers)
        assert r.status_code == 200
        tasks = r.json()["tasks"]
        assert all(t["user_id"] == me.id for t in tasks)
    else:
        body = await gql(
            client,
            me,
            f"{{ tasks(first: 100) {{ totalCount edges {{ node {{ {TASK_FIELDS} }} }} }} }}",
        )
        assert error_code(body) is None
        tasks = [edge["node"] for edge in body["data"]["tasks"]["edges"]]
        assert body["data"]["tasks"]["totalCount"] == len(tasks)
    assert [t["id"] for t in tasks] == model.tasks_of(actor)
    for task in tasks:
        assert task["completed"] == model.alive[task["id"]]["completed"]


def test_users_never_touch_each_others_tasks(make_settings) -> None:
    @settings(
        max_examples=25,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(ops=operations)
    def check(ops: list[tuple]) -> None:
        async def scenario() -> None:
            async with serve(create_app(make_settings()), wipe=False) as client:
                await run_scenario(client, ops)

        asyncio.run(scenario())

    check()
