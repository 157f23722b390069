"""GraphQL over HTTP: GET and POST, media types and status codes, rejected requests."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.conftest import FRONTEND, Account
from tests.graphql_helpers import create_task, gql

GRAPHQL_RESPONSE = "application/graphql-response+json"
ME = "{ me { email } }"


def assert_json_errors(response: httpx.Response) -> str:
    """A rejected request still answers GraphQL-shaped JSON; returns the first message."""
    body = response.json()
    assert set(body) == {"errors"}, body
    assert body["errors"][0]["message"]
    return str(body["errors"][0]["message"])


async def test_get_runs_queries(client: httpx.AsyncClient, alice: Account) -> None:
    response = await client.get("/graphql", params={"query": ME}, headers=alice.headers)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"data": {"me": {"email": alice.email}}}


async def test_get_takes_variables(client: httpx.AsyncClient, alice: Account) -> None:
    task = await create_task(client, alice, "over GET")
    params = {
        "query": "query($id: ID!) { task(id: $id) { title } }",
        "variables": json.dumps({"id": task["id"]}),
    }
    response = await client.get("/graphql", params=params, headers=alice.headers)
    assert response.json() == {"data": {"task": {"title": "over GET"}}}


async def test_mutations_over_get_are_refused(client: httpx.AsyncClient, alice: Account) -> None:
    query = 'mutation { createTask(input: {title: "via GET"}) { id } }'
    response = await client.get("/graphql", params={"query": query}, headers=alice.headers)
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert "mutations" in assert_json_errors(response)
    listed = await gql(client, "{ tasks { totalCount } }", headers=alice.headers)
    assert listed["data"]["tasks"]["totalCount"] == 0


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
async def test_other_methods_are_refused(client: httpx.AsyncClient, method: str) -> None:
    response = await client.request(method, "/graphql", json={"query": ME})
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, POST"
    assert_json_errors(response)


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b"{not json", "application/json"),
        (b"\xff\xfe{", "application/json"),  # not UTF-8 (was a 500)
        (b'{"query": "{ me { id } }\xc3"}', "application/json"),
        (b'{"query": 5}', "application/json"),
        (b'{"query": "{ me { id } }", "variables": [1]}', "application/json"),
        (b"{}", "application/json"),
        (b'[{"query": "{ __typename }"}]', "application/json"),  # batching is off
        (b"query=%7B%7D", "application/x-www-form-urlencoded"),
        (b"{ me { id } }", "text/plain"),
    ],
)
async def test_malformed_requests_get_json_errors(
    client: httpx.AsyncClient, content: bytes, content_type: str
) -> None:
    response = await client.post(
        "/graphql", content=content, headers={"Content-Type": content_type}
    )
    assert response.status_code == 400
    assert_json_errors(response)


async def test_bodies_over_one_mebibyte_are_refused(client: httpx.AsyncClient) -> None:
    padding = " " * (1 << 20)
    response = await client.post(
        "/graphql",
        content=json.dumps({"query": "{ __typename }" + padding}),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert assert_json_errors(response) == "Request body too large"

    async def chunks():  # no Content-Length: the limit holds while streaming
        for _ in range(20):
            yield b" " * (1 << 16)

    response = await client.post(
        "/graphql", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413


async def test_graphql_response_json_is_honoured(client: httpx.AsyncClient, alice: Account) -> None:
    headers = {**alice.headers, "Accept": f"{GRAPHQL_RESPONSE}, application/json;q=0.9"}
    response = await client.post("/graphql", json={"query": ME}, headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"] == f"{GRAPHQL_RESPONSE}; charset=utf-8"
    assert response.json() == {"data": {"me": {"email": alice.email}}}


@pytest.mark.parametrize(
    ("query", "variables"),
    [
        ("{ me { email }", None),  # syntax
        ("{ me { nope } }", None),  # validation
        ("query($n: Int) { tasks(first: $n) { totalCount } }", {"n": "ten"}),  # coercion
        ("query($id: ID!) { task(id: $id) { id } }", {}),  # missing variable
    ],
)
async def test_requests_that_never_execute_are_4xx_without_data(
    client: httpx.AsyncClient,
    alice: Account,
    query: str,
    variables: dict[str, object] | None,
) -> None:
    payload = {"query": query, "variables": variables}
    response = await client.post(
        "/graphql", json=payload, headers={**alice.headers, "Accept": GRAPHQL_RESPONSE}
    )
    assert response.status_code == 400
    assert response.headers["content-type"].startswith(GRAPHQL_RESPONSE)
    body = response.json()
    assert "data" not in body
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"

    # Plain JSON keeps the traditional 200 (GraphQL over HTTP, legacy watershed rules).
    legacy = await client.post("/graphql", json=payload, headers=alice.headers)
    assert legacy.status_code == 200
    assert legacy.headers["content-type"] == "application/json"
    assert legacy.json() == body


async def test_field_errors_stay_200_with_data(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/graphql", json={"query": ME}, headers={"Accept": GRAPHQL_RESPONSE}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["data"] is None
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_a_mutation_over_get_in_graphql_response_json(client: httpx.AsyncClient) -> None:
    response = await client.get(
        "/graphql",
        params={"query": 'mutation { deleteTask(id: "x") }'},
        headers={"Accept": GRAPHQL_RESPONSE},
    )
    assert response.status_code == 405
    assert response.headers["content-type"].startswith(GRAPHQL_RESPONSE)
    assert_json_errors(response)


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, "application/json"),
        ("*/*", "application/json"),
        ("application/json", "application/json"),
        (GRAPHQL_RESPONSE, GRAPHQL_RESPONSE),
        (f"application/json, {GRAPHQL_RESPONSE}", GRAPHQL_RESPONSE),
        (f"application/json, {GRAPHQL_RESPONSE};q=0.5", "application/json"),
        (f"{GRAPHQL_RESPONSE};q=0", "application/json"),
        ("text/plain", "application/json"),
    ],
)
async def test_accept_negotiation(
    client: httpx.AsyncClient, accept: str | None, expected: str
) -> None:
    headers = {} if accept is None else {"Accept": accept}
    response = await client.post("/graphql", json={"query": "{ __typename }"}, headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"].split(";")[0] == expected


async def test_graphiql_for_browsers(client: httpx.AsyncClient) -> None:
    response = await client.get("/graphql", headers={"Accept": "text/html,*/*;q=0.8"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "graphiql" in response.text.lower()
    assert "isHeadersEditorEnabled: true" in response.text  # for `Authorization: Bearer ...`


async def test_get_without_a_query_for_a_program_is_a_json_error(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/graphql", headers={"Accept": "application/json"})
    assert response.status_code == 400
    assert assert_json_errors(response) == "No GraphQL query found in the request"


async def test_cors_headers_on_graphql_answers(client: httpx.AsyncClient) -> None:
    preflight = await client.options(
        "/graphql",
        headers={
            "Origin": FRONTEND,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert preflight.status_code == 200
    for response in (
        await client.post("/graphql", json={"query": ME}, headers={"Origin": FRONTEND}),
        await client.post(
            "/graphql",
            content=b"{",
            headers={"Origin": FRONTEND, "Content-Type": "application/json"},
        ),
    ):
        assert response.headers["access-control-allow-origin"] == FRONTEND


async def test_not_in_the_rest_openapi_document(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert "/graphql" not in paths


def _body(field: str, value: str) -> str:
    return '{"query": "{ __typename }", "%s": {"v": %s}}' % (field, value)  # noqa: UP031


EXTREME_BODIES = {
    "variables nested 1,000 deep": _body("variables", "[" * 1000 + "]" * 1000),
    "variables nested 40 deep": _body("variables", "[" * 40 + "]" * 40),
    "a 100,000-digit number in variables": _body("variables", "9" * 100_000),
    "a 100,000-digit number in extensions": _body("extensions", "9" * 100_000),
    "a 1e999 float in variables": _body("variables", "1e999"),
    "NaN in variables": _body("variables", "NaN"),
    "Infinity in variables": _body("variables", "-Infinity"),
}


@pytest.mark.parametrize("body", EXTREME_BODIES.values(), ids=EXTREME_BODIES.keys())
async def test_extreme_json_bodies_are_a_400_never_a_500(
    client: httpx.AsyncClient, alice: Account, body: str
) -> None:
    response = await client.post(
        "/graphql",
        content=body,
        headers={**alice.headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 400, response.text
    assert_json_errors(response)


@pytest.mark.parametrize("digits", [101, 5000, 50_000])
async def test_a_huge_number_literal_is_a_request_error(
    client: httpx.AsyncClient, alice: Account, digits: int
) -> None:
    query = f"{{ tasks(first: {'7' * digits}) {{ totalCount }} }}"
    response = await client.post("/graphql", json={"query": query}, headers=alice.headers)
    assert response.status_code == 200
    [error] = response.json()["errors"]
    assert error["extensions"] == {"code": "BAD_USER_INPUT"}
    assert error["message"] == "Number literal too long"
    # Long digit runs inside strings are only text.
    title = "7" * 200
    created = await client.post(
        "/graphql",
        json={"query": f'mutation {{ createTask(input: {{title: "{title}"}}) {{ title }} }}'},
        headers=alice.headers,
    )
    assert created.json() == {"data": {"createTask": {"title": title}}}
