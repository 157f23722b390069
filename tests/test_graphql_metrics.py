"""GraphQL operations show up in /metrics by operation name and outcome."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import Account
from tests.test_observability import sample, scrape

pytestmark = pytest.mark.asyncio


async def test_operations_are_counted_by_name_and_outcome(
    client: httpx.AsyncClient, alice: Account
) -> None:
    for _ in range(2):
        response = await client.post(
            "/graphql",
            json={"query": "query MyTasks { tasks { totalCount } }"},
            headers=alice.headers,
        )
        assert response.json()["data"]["tasks"]["totalCount"] == 0
    missing = await client.post(
        "/graphql",
        json={"query": 'mutation Gone { deleteTask(id: "00000000-0000-4000-8000-000000000000") }'},
        headers=alice.headers,
    )
    assert missing.json()["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    anonymous = await client.post("/graphql", json={"query": "{ me { email } }"})
    assert anonymous.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"

    text = await scrape(client)
    name = "todo_graphql_operations_total"
    assert sample(text, name, operation="MyTasks", outcome="ok") == 2
    assert sample(text, name, operation="Gone", outcome="not_found") == 1
    assert sample(text, name, operation="anonymous", outcome="unauthenticated") == 1
