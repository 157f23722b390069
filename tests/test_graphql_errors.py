"""Error presentation (codes, masking, partial data) and the abuse limits."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from api.app import create_app
from api.settings import Settings
from core.errors import Unavailable
from tests.conftest import Account, serve, signup
from tests.graphql_helpers import create_task, error_codes, gql, gql_error

MISSING_ID = "00000000-0000-4000-8000-000000000000"


async def test_unexpected_errors_are_masked_and_logged(
    app: Any,
    client: httpx.AsyncClient,
    alice: Account,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("secret detail: /srv/app/db.py SELECT password_hash")

    monkeypatch.setattr(app.state.todo.tasks, "get", broken)
    query = f'{{ me {{ email }} task(id: "{MISSING_ID}") {{ id }} }}'
    with caplog.at_level(logging.ERROR, logger="todo.graphql"):
        response = await client.post("/graphql", json={"query": query}, headers=alice.headers)

    assert response.status_code == 200
    assert "secret" not in response.text
    body = response.json()
    # The failing field is null; its sibling keeps its data.
    assert body["data"] == {"me": {"email": alice.email}, "task": None}
    assert error_codes(body) == [("INTERNAL", "Internal server error")]
    assert body["errors"][0]["path"] == ["task"]
    [record] = [r for r in caplog.records if r.exc_info]
    assert isinstance(record.exc_info[1], RuntimeError)  # type: ignore[index]
    assert "secret detail" in caplog.text  # the stack trace is in the log, not the response


async def test_known_errors_are_not_logged_as_errors(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        await gql_error(client, "{ me { id } }")
        await gql_error(client, "{ nope }")
    assert not [r for r in caplog.records if r.name.startswith(("todo", "strawberry"))]


async def test_an_unreachable_database_is_unavailable(
    app: Any, client: httpx.AsyncClient, alice: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def down(*_args: Any, **_kwargs: Any) -> Any:
        raise Unavailable()

    monkeypatch.setattr(app.state.todo.tasks, "create", down)
    query = 'mutation { createTask(input: {title: "t"}) { id } }'
    code, message = await gql_error(client, query, headers=alice.headers)
    assert (code, message) == ("UNAVAILABLE", "Service temporarily unavailable")


async def test_one_failing_alias_leaves_the_others(
    app: Any, client: httpx.AsyncClient, alice: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = await create_task(client, alice, "fine")
    tasks = app.state.todo.tasks
    real_get = tasks.get

    async def flaky(caller: Any, task_id: object) -> Any:
        if task_id == MISSING_ID:
            raise ValueError("boom")
        return await real_get(caller, task_id)

    monkeypatch.setattr(tasks, "get", flaky)
    query = f'{{ a: task(id: "{good["id"]}") {{ title }} b: task(id: "{MISSING_ID}") {{ id }} }}'
    body = await gql(client, query, headers=alice.headers, errors=True)
    assert body["data"] == {"a": {"title": "fine"}, "b": None}
    assert [e["path"] for e in body["errors"]] == [["b"]]


def _nested(depth: int) -> str:
    """A selection `depth` levels deep: tasks > edges > node > owner > tasks > ... (pages of
    2, so that depth, not the cost limit, is what refuses it)."""
    chain = ["tasks(first: 2)", "edges", "node", "owner"]
    fields = [chain[i % 4] for i in range(depth)]
    leaf = "email" if fields[-1] == "owner" else "__typename"
    query = leaf
    for field in reversed(fields):
        query = f"{field} {{ {query} }}"
    return f"{{ {query} }}"


async def test_depth_is_limited(client: httpx.AsyncClient, alice: Account) -> None:
    await gql(client, _nested(10), headers=alice.headers)
    code, message = await gql_error(client, _nested(11), headers=alice.headers)
    assert code == "BAD_USER_INPUT"
    assert "exceeds maximum operation depth of 10" in message


async def test_aliases_are_limited(client: httpx.AsyncClient, alice: Account) -> None:
    def aliased(count: int) -> str:
        return "{ " + " ".join(f"a{i}: me {{ id }}" for i in range(count)) + " }"

    await gql(client, aliased(15), headers=alice.headers)
    code, message = await gql_error(client, aliased(16), headers=alice.headers)
    assert (code, message) == ("BAD_USER_INPUT", "16 aliases found. Allowed: 15")


async def test_tokens_are_limited(client: httpx.AsyncClient, alice: Account) -> None:
    query = "{ me { " + "id " * 2100 + "} }"
    code, message = await gql_error(client, query, headers=alice.headers)
    assert code == "BAD_USER_INPUT"
    assert "more than 2000 tokens" in message


async def test_request_errors_carry_a_code_and_no_data(client: httpx.AsyncClient) -> None:
    for query, fragment in (
        ("{ me { id }", "Syntax Error"),
        ("{ nope }", "Cannot query field 'nope'"),
        ("query($n: Int) { tasks(first: $n) { totalCount } }", None),
    ):
        variables = {"n": "many"} if "$n" in query else None
        body = await gql(client, query, variables, errors=True)
        assert "data" not in body, body
        [(code, message)] = error_codes(body)
        assert code == "BAD_USER_INPUT"
        assert fragment is None or fragment in message


@pytest.fixture
async def closed_client(
    make_settings: Callable[..., Settings],
) -> Any:
    app: FastAPI = create_app(make_settings(graphql_introspection=False))
    async with serve(app) as client:
        yield client


async def test_introspection_can_be_switched_off(closed_client: httpx.AsyncClient) -> None:
    for query in ("{ __schema { types { name } } }", '{ __type(name: "Task") { name } }'):
        body = await gql(closed_client, query, errors=True)
        assert "data" not in body
        for code, message in error_codes(body):
            assert code == "BAD_USER_INPUT"
            assert "introspection has been disabled" in message
    # Field suggestions would leak the names introspection hides.
    _code, message = await gql_error(closed_client, "{ mee { id } }")
    assert "Did you mean" not in message
    # GraphiQL needs introspection, so it goes too; the API itself still works.
    response = await closed_client.get("/graphql", headers={"Accept": "text/html"})
    assert response.status_code == 404
    assert response.json()["errors"][0]["message"]
    body = await gql(
        closed_client,
        'mutation { signup(email: "c@example.com", password: "long-enough") { user { id } } }',
    )
    uuid.UUID(body["data"]["signup"]["user"]["id"])
    assert (await gql(closed_client, "{ __typename }"))["data"] == {"__typename": "Query"}


NEAR_MISSES = [
    ("{ tasks(frist: 2) { totalCount } }", None),
    ("query($x: Tsk) { me { id } }", None),
    ("mutation($i: CreateTaskInpt!) { createTask(input: $i) { id } }", None),
    ("{ me { ...F } } fragment F on Usr { id }", None),
    ('mutation { createTask(input: {titel: "x"}) { id } }', None),
    ("mutation($i: CreateTaskInput!) { createTask(input: $i) { id } }", {"i": {"titel": "x"}}),
    ("{ me { tasks(first: 1) { edges { node { titel } } } } }", None),
]


@pytest.mark.parametrize(("query", "variables"), NEAR_MISSES)
async def test_no_suggestions_name_the_schema_when_introspection_is_off(
    closed_client: httpx.AsyncClient, client: httpx.AsyncClient, query: str, variables: Any
) -> None:
    token = (await signup(closed_client)).token
    headers = {"Authorization": f"Bearer {token}"}
    response = await closed_client.post(
        "/graphql", json={"query": query, "variables": variables}, headers=headers
    )
    errors = response.json()["errors"]
    assert {error["extensions"]["code"] for error in errors} == {"BAD_USER_INPUT"}
    assert not any("Did you mean" in error["message"] for error in errors), errors
    # The same mistake with introspection on does get its suggestion.
    token = (await signup(client)).token
    response = await client.post(
        "/graphql",
        json={"query": query, "variables": variables},
        headers={"Authorization": f"Bearer {token}"},
    )
    errors = response.json()["errors"]
    assert any("Did you mean" in error["message"] for error in errors), errors


async def test_field_suggestions_stay_on_with_introspection(client: httpx.AsyncClient) -> None:
    _code, message = await gql_error(client, "{ mee { id } }")
    assert "Did you mean 'me'?" in message
