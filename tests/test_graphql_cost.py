"""The cost limit: what an operation may select, pages multiplied, checked before it runs."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from graphql import parse

from api.app import create_app
from api.settings import Settings
from graphql_schema.cost import operation_cost, paged_fields
from graphql_schema.schema import build_schema
from tests.conftest import TEST_SECRET, Account, serve, signup
from tests.graphql_helpers import count_statements, error_codes, gql, insert_tasks
from tests.live import rss_kib, service
from tests.ws_helpers import open_socket

PAGED = paged_fields(build_schema()._schema)


def cost(query: str, variables: dict[str, Any] | None = None, name: str | None = None) -> int:
    return operation_cost(parse(query), name, variables, PAGED)


def test_each_field_costs_one_and_pages_multiply_what_they_select() -> None:
    assert cost("{ me { id email } }") == 3
    # tasks 1 + 10 x (edges 1 + node 1 + id 1 + title 1)
    assert cost("{ tasks(first: 10) { edges { node { id title } } } }") == 41
    # Without `first` the schema's default page (20); null is the default too.
    assert cost("{ tasks { edges { node { id } } } }") == 61
    assert cost("{ tasks(first: null) { edges { node { id } } } }") == 61
    nested = (
        "{ tasks(first: 100) { edges { node { owner { tasks(first: 100) { totalCount } } } } } }"
    )
    assert cost(nested) == 1 + 100 * (1 + 1 + 1 + 100 * 1 + 1)


def test_aliases_fragments_and_variables_count() -> None:
    page = "tasks(first: $n) { edges { node { ...T } } }"
    query = f"query($n: Int = 5) {{ a: {page} b: {page} }} fragment T on Task {{ id title }}"
    assert cost(query) == 2 * (1 + 5 * 4)
    assert cost(query, {"n": 50}) == 2 * (1 + 50 * 4)
    assert cost(query, {"n": None}) == 2 * (1 + 20 * 4)
    # Out of range or of the wrong type: counted at the largest page (the field refuses it).
    assert cost(query, {"n": 1000}) == cost(query, {"n": "x"}) == 2 * (1 + 100 * 4)
    assert cost("{ ... on Query { me { id } } }") == 2
    two = "query A { me { id } } query B { tasks(first: 3) { totalCount } }"
    assert (cost(two, name="A"), cost(two, name="B")) == (2, 4)


def _bomb(aliases: int = 15) -> str:
    """Row 1 of the abuse issue: pages of 100 nested under pages of 100, aliased."""
    inner = "tasks(first: 100) { edges { node { id title description completed createdAt } } }"
    page = f"tasks(first: 100) {{ edges {{ node {{ owner {{ {inner} }} }} }} }}"
    return "{ " + " ".join(f"a{i}: {page}" for i in range(aliases)) + " }"


@pytest.fixture
async def small_limit_client(make_settings: Callable[..., Settings]) -> Any:
    app: FastAPI = create_app(make_settings(graphql_max_cost=100))
    async with serve(app) as client:
        yield client, app


async def test_a_query_over_the_limit_is_refused_before_any_statement(
    small_limit_client: tuple[httpx.AsyncClient, FastAPI],
) -> None:
    client, app = small_limit_client
    account = await signup(client)
    query = "{ tasks(first: 50) { edges { node { id title } } } }"  # 1 + 50 x 4 = 201
    with count_statements(app) as statements:
        body = await gql(client, query, headers=account.headers, errors=True)
    assert statements == []
    assert body == {
        "errors": [
            {
                "message": "Query cost 201 exceeds the limit of 100: request smaller pages "
                "(first) or fewer nested fields",
                "extensions": {"code": "BAD_USER_INPUT"},
            }
        ]
    }
    # The same page through a variable: the variable's value counts.
    page = "query($n: Int) { tasks(first: $n) { edges { node { id title } } } }"
    assert error_codes(await gql(client, page, {"n": 50}, account.headers, errors=True)) == [
        ("BAD_USER_INPUT", body["errors"][0]["message"])
    ]
    assert "errors" not in await gql(client, page, {"n": 20}, account.headers)
    # Graphql-response+json: a request error, so 400.
    response = await client.post(
        "/graphql",
        json={"query": query},
        headers={**account.headers, "Accept": "application/graphql-response+json"},
    )
    assert response.status_code == 400


README_QUERIES = [
    "{ tasks(first: 10) { totalCount edges { node { id title completed createdAt } } } }",
    "{ tasks(first: 100) { totalCount pageInfo { hasNextPage endCursor } edges { cursor node {"
    " id title description completed createdAt updatedAt owner { id email } } } } }",
    "query($first: Int!, $after: String) { tasks(first: $first, after: $after) { totalCount"
    " edges { cursor node { id title completed } } pageInfo { hasNextPage endCursor } } }",
    "{ me { id email tasks(first: 100) { edges { node { id title description completed } } } } }",
]


@pytest.mark.parametrize("query", README_QUERIES)
async def test_every_real_page_fits_the_default_limit(
    client: httpx.AsyncClient, alice: Account, query: str
) -> None:
    body = await gql(client, query, {"first": 100}, alice.headers)
    assert "data" in body


async def test_the_worst_nested_query_is_refused_small_and_cheap(
    client: httpx.AsyncClient, app: FastAPI, alice: Account
) -> None:
    await insert_tasks(app, alice, 100)
    response = await client.post("/graphql", json={"query": _bomb()}, headers=alice.headers)
    assert response.status_code == 200
    [(code, message)] = error_codes(response.json())
    assert code == "BAD_USER_INPUT"
    assert message.startswith(f"Query cost {cost(_bomb())} exceeds the limit of 5000")
    assert len(response.content) < 300


@pytest.fixture(params=["sqlite", "postgresql"])
def real_database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'todo.db'}"
    return str(request.getfixturevalue("postgres_url"))


async def test_the_worst_query_leaves_a_real_server_as_it_was(
    tmp_path: Path, real_database: str
) -> None:
    """Against `python -m api`: 100 tasks, the row-1 query sent 20 times (4 at once): every
    answer is the small refusal and the process grows by under 10 MB (it returned 250 MB
    and grew by 350 MB before)."""
    with service(tmp_path, DATABASE_URL=real_database, BETTER_AUTH_SECRET=TEST_SECRET) as (
        base,
        proc,
    ):
        async with httpx.AsyncClient(base_url=base, timeout=60) as http:
            account = await signup(http, f"cost-{uuid.uuid4().hex[:8]}@example.com")
            for n in range(100):
                created = await http.post(
                    "/api/tasks", json={"title": f"task {n}"}, headers=account.headers
                )
                assert created.status_code == 201
            # Warm up what every first request builds (loaders, statements, caches).
            await gql(http, "{ tasks(first: 100) { totalCount } }", headers=account.headers)
            before = rss_kib(proc.pid)
            for _ in range(5):
                answers = [
                    await http.post("/graphql", json={"query": _bomb()}, headers=account.headers)
                    for _ in range(4)
                ]
                for answer in answers:
                    assert answer.status_code == 200
                    assert len(answer.content) < 300
                    [(code, _)] = error_codes(answer.json())
                    assert code == "BAD_USER_INPUT"
            grown = rss_kib(proc.pid) - before
    assert grown < 10 * 1024, f"RSS grew by {grown} KiB"


async def test_over_the_limit_over_a_websocket_too(tmp_path: Path) -> None:
    with service(
        tmp_path,
        DATABASE_URL=f"sqlite:///{tmp_path / 'todo.db'}",
        BETTER_AUTH_SECRET=TEST_SECRET,
        GRAPHQL_MAX_COST="50",
    ) as (base, _proc):
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            account = await signup(http)
        async with open_socket(base) as tab:
            ack = await tab.init(account.headers)
            assert ack["type"] == "connection_ack"
            op = await tab.subscribe("{ tasks(first: 20) { edges { node { id title } } } }")
            message = await tab.receive()
    assert message["id"] == op and message["type"] == "error"
    [error] = message["payload"]
    assert error["message"].startswith("Query cost 81 exceeds the limit of 50")
    assert error["extensions"] == {"code": "BAD_USER_INPUT"}
