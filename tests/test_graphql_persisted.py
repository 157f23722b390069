"""Persisted documents over HTTP: automatic persisted queries, and trusted documents.

Apollo Client's own link against two instances is in test_js_clients.py; these are the
protocol's edges, exact bodies and what the database keeps.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from api.app import create_app
from api.settings import Settings
from core.errors import ConfigError
from db.documents import DocumentTable
from graphql_schema.persisted import PersistedQueries, TrustedDocuments
from tests.conftest import TEST_SECRET, Account, serve
from tests.live import service
from tests.ws_helpers import open_socket

ME = "query Me { me { email } }"
OTHER = "query Other { me { id } }"
NOT_SUPPORTED = ("PERSISTED_QUERY_NOT_SUPPORTED", "PersistedQueryNotSupported")
JSON_ONLY = {"Accept": "application/json"}


def sha(document: str) -> str:
    return hashlib.sha256(document.encode()).hexdigest()


def persisted(sha256: str, version: int = 1) -> dict[str, Any]:
    return {"persistedQuery": {"version": version, "sha256Hash": sha256}}


async def post(
    client: httpx.AsyncClient, body: dict[str, Any], headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    response = await client.post("/graphql", json=body, headers={**JSON_ONLY, **(headers or {})})
    return response.status_code, response.json()


def only_error(body: dict[str, Any]) -> tuple[str, str]:
    [error] = body["errors"]
    return error["extensions"]["code"], error["message"]


async def stored(app: FastAPI) -> dict[str, str]:
    async with app.state.services.engine.connect() as conn:
        rows = await conn.execute(text("SELECT sha256, document FROM persisted_documents"))
        return {row[0]: row[1] for row in rows}


# --- automatic persisted queries -----------------------------------------------------------


async def test_a_hash_alone_is_not_found_then_registers_then_runs(
    app: FastAPI, client: httpx.AsyncClient, alice: Account
) -> None:
    status, body = await post(client, {"extensions": persisted(sha(ME))}, alice.headers)
    assert (status, body) == (
        200,
        {
            # A request error, as every error before execution: no `data` (Apollo's answer too)
            "errors": [
                {
                    "message": "PersistedQueryNotFound",
                    "extensions": {"code": "PERSISTED_QUERY_NOT_FOUND"},
                }
            ],
        },
    )
    assert await stored(app) == {}
    status, body = await post(
        client, {"query": ME, "extensions": persisted(sha(ME))}, alice.headers
    )
    assert (status, body) == (200, {"data": {"me": {"email": alice.email}}})
    assert await stored(app) == {sha(ME): ME}
    status, body = await post(client, {"extensions": persisted(sha(ME))}, alice.headers)
    assert (status, body) == (200, {"data": {"me": {"email": alice.email}}})


async def test_a_get_by_hash_runs_and_says_how_to_cache(
    client: httpx.AsyncClient, alice: Account
) -> None:
    await post(client, {"query": ME, "extensions": persisted(sha(ME))}, alice.headers)
    params = {"extensions": json.dumps(persisted(sha(ME)))}
    response = await client.get("/graphql", params=params, headers=alice.headers)
    assert response.status_code == 200
    assert response.json() == {"data": {"me": {"email": alice.email}}}
    # The caller's own data: never in a shared cache, nor kept by the browser.
    assert response.headers["cache-control"] == "private, no-store"
    assert "authorization" in response.headers["vary"].lower()
    typename = "query T { __typename }"
    await post(client, {"query": typename, "extensions": persisted(sha(typename))})
    params = {"extensions": json.dumps(persisted(sha(typename)))}
    public = await client.get("/graphql", params=params)
    assert public.json() == {"data": {"__typename": "Query"}}
    assert public.headers["cache-control"] == "public, max-age=300"
    refused = await client.get("/graphql", params={"query": ME})  # an error: not cached
    assert refused.headers["cache-control"] == "private, no-store"


async def test_a_hash_that_is_not_the_documents_is_refused_and_not_kept(
    app: FastAPI, client: httpx.AsyncClient, alice: Account
) -> None:
    body = {"query": ME, "extensions": persisted(sha("query Other { me { id } }"))}
    status, answer = await post(client, body, alice.headers)
    assert status == 200
    assert only_error(answer) == ("BAD_USER_INPUT", "provided sha does not match query")
    assert await stored(app) == {}


@pytest.mark.parametrize(
    ("extensions", "expected"),
    [
        (
            persisted(sha(ME), version=2),
            ("PERSISTED_QUERY_NOT_SUPPORTED", "PersistedQueryNotSupported"),
        ),
        ({"persistedQuery": "x"}, ("PERSISTED_QUERY_NOT_SUPPORTED", "PersistedQueryNotSupported")),
        (
            persisted("ABC"),
            (
                "BAD_USER_INPUT",
                "persistedQuery.sha256Hash must be a SHA-256 hash in lower-case hex",
            ),
        ),
        ({"documentId": "abc"}, ("UNTRUSTED_DOCUMENT", "This service runs no documents by id")),
    ],
)
async def test_malformed_requests_get_a_clear_error(
    client: httpx.AsyncClient, extensions: dict[str, Any], expected: tuple[str, str]
) -> None:
    status, body = await post(client, {"extensions": extensions})
    assert status == 200
    assert only_error(body) == expected


async def test_only_documents_that_validate_are_registered(
    app: FastAPI, client: httpx.AsyncClient, alice: Account
) -> None:
    broken = "query { nope }"
    status, body = await post(client, {"query": broken, "extensions": persisted(sha(broken))})
    assert status == 200 and only_error(body)[0] == "BAD_USER_INPUT"
    syntax = "query {"
    await post(client, {"query": syntax, "extensions": persisted(sha(syntax))})
    assert await stored(app) == {}


async def test_registration_is_shared_through_the_database(
    make_settings: Callable[..., Settings], alice: Account, client: httpx.AsyncClient
) -> None:
    """Another app on the same database (an instance) finds what this one registered."""
    await post(client, {"query": ME, "extensions": persisted(sha(ME))}, alice.headers)
    other = create_app(make_settings())
    async with serve(other, wipe=False) as second:
        status, body = await post(second, {"extensions": persisted(sha(ME))}, alice.headers)
    assert (status, body) == (200, {"data": {"me": {"email": alice.email}}})


async def test_persisted_queries_can_be_turned_off(
    make_settings: Callable[..., Settings], alice: Account
) -> None:
    app = create_app(make_settings(graphql_persisted_queries=False))
    async with serve(app) as client:
        status, body = await post(client, {"query": ME, "extensions": persisted(sha(ME))})
        assert status == 200
        assert only_error(body) == ("PERSISTED_QUERY_NOT_SUPPORTED", "PersistedQueryNotSupported")
        assert await stored(app) == {}


async def test_the_table_keeps_at_most_its_cap(app: FastAPI, client: httpx.AsyncClient) -> None:
    table = DocumentTable(app.state.services.store, max_documents=3)
    for n in range(8):
        await table.put(sha(str(n)), f"query Q{n} {{ __typename }}")
    assert len(await stored(app)) == 8
    assert await table.evict() == 5
    # The most recently used survive: 5, 6 and 7 (used_at is when each was put).
    assert set(await stored(app)) == {sha("5"), sha("6"), sha("7")}
    assert await table.get(sha("0")) is None
    assert await table.get(sha("7")) == "query Q7 { __typename }"


async def test_memory_holds_at_most_its_budget() -> None:
    class Counting:
        def __init__(self) -> None:
            self.rows: dict[str, str] = {}
            self.reads = 0

        async def get(self, sha256: str) -> str | None:
            self.reads += 1
            return self.rows.get(sha256)

        async def put(self, sha256: str, document: str) -> None:
            self.rows[sha256] = document

    store = Counting()
    queries = PersistedQueries(store, memory_budget=25)
    for n in range(4):
        await queries.register(f"h{n}", "x" * 10)
    assert await queries.find("h3") == "x" * 10 and store.reads == 0  # in memory
    assert await queries.find("h0") == "x" * 10 and store.reads == 1  # evicted: from the store
    await queries.register("big", "y" * 100_000)  # past MAX_DOCUMENT_CHARS: never kept
    assert "big" not in store.rows and await queries.find("big") is None


# --- trusted documents ---------------------------------------------------------------------


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    path = tmp_path / "persisted-documents.json"
    path.write_text(json.dumps({sha(ME): ME, "relay-1": "query Count { tasks { totalCount } }"}))
    return path


@pytest.fixture
async def trusted(make_settings: Callable[..., Settings], manifest: Path) -> Any:
    app = create_app(make_settings(graphql_trusted_documents=str(manifest)))
    async with serve(app) as client:
        yield app, client


async def test_trusted_documents_run_by_id_by_hash_or_as_text(trusted: Any) -> None:
    app, client = trusted
    _, token = await signup(client)
    headers = {"Authorization": f"Bearer {token}"}
    for body in (
        {"extensions": {"documentId": sha(ME)}},
        {"extensions": {"documentId": f"sha256:{sha(ME)}"}},
        {"documentId": sha(ME)},
        {"extensions": persisted(sha(ME))},
        {"query": ME},
    ):
        status, answer = await post(client, body, headers)
        assert status == 200 and "errors" not in answer, (body, answer)
    status, answer = await post(client, {"documentId": "relay-1"}, headers)
    assert answer == {"data": {"tasks": {"totalCount": 0}}}
    assert await stored(app) == {}  # nothing is registered in this mode


@pytest.mark.parametrize(
    "body",
    [
        {"query": "query Other { me { id } }"},
        {"query": "query {"},  # refused before it is parsed: no syntax error
        {"query": "subscription { taskEvents { type } }"},
        {
            "query": "query Other { me { id } }",
            "extensions": persisted(sha("query Other { me { id } }")),
        },
    ],
)
async def test_anything_else_is_refused_before_parsing(trusted: Any, body: dict[str, Any]) -> None:
    app, client = trusted
    status, answer = await post(client, body)
    assert status == 200
    assert only_error(answer) == (
        "UNTRUSTED_DOCUMENT",
        "Only the documents of this service's manifest may run here",
    )
    assert await stored(app) == {}


async def test_an_unknown_id_is_not_found(trusted: Any) -> None:
    _, client = trusted
    for body in ({"documentId": "nope"}, {"extensions": persisted(sha("query X { me { id } }"))}):
        status, answer = await post(client, body)
        assert status == 200
        assert only_error(answer) == ("PERSISTED_QUERY_NOT_FOUND", "PersistedQueryNotFound")


async def test_the_operator_may_let_other_documents_run(
    make_settings: Callable[..., Settings], manifest: Path
) -> None:
    settings = make_settings(
        graphql_trusted_documents=str(manifest), graphql_allow_untrusted_documents=True
    )
    async with serve(create_app(settings)) as client:
        status, answer = await post(client, {"query": "{ __typename }"})
    assert (status, answer) == (200, {"data": {"__typename": "Query"}})


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read"),
        ("{not json", "is not JSON"),
        ('["query { me { id } }"]', "must map ids to documents"),
        ('{"a": 1}', "must map ids to documents"),
    ],
)
def test_a_bad_manifest_is_a_configuration_error(
    tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "manifest.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match=f"GRAPHQL_TRUSTED_DOCUMENTS: .*{message}"):
        TrustedDocuments.from_file(path)


async def signup(client: httpx.AsyncClient) -> tuple[str, str]:
    response = await client.post(
        "/api/auth/signup", json={"email": "trusted@example.com", "password": "password123"}
    )
    assert response.status_code == 201, response.text
    return response.json()["user"]["id"], response.json()["token"]


async def test_trusted_mode_holds_over_websocket_too(tmp_path: Path, manifest: Path) -> None:
    """A subscription (or any operation) over the socket is refused the same way."""
    env = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'todo.db'}",
        "BETTER_AUTH_SECRET": TEST_SECRET,
        "GRAPHQL_TRUSTED_DOCUMENTS": str(manifest),
    }
    with service(tmp_path, **env) as (base, _proc):
        async with httpx.AsyncClient(base_url=base) as client:
            _, token = await signup(client)
        async with open_socket(base) as socket:
            ack = await socket.init({"Authorization": f"Bearer {token}"})
            assert ack["type"] == "connection_ack"
            refused = await socket.subscribe()  # taskEvents: not in the manifest
            assert await socket.receive() == {
                "id": refused,
                "type": "error",
                "payload": [
                    {
                        "message": "Only the documents of this service's manifest may run here",
                        "extensions": {"code": "UNTRUSTED_DOCUMENT"},
                    }
                ],
            }
            allowed = await socket.subscribe(ME)
            assert await socket.receive() == {
                "id": allowed,
                "type": "next",
                "payload": {"data": {"me": {"email": "trusted@example.com"}}},
            }
