"""GraphQL authentication: signup, login, me, and UNAUTHENTICATED everywhere else."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import httpx
import jwt
import pytest

from api.settings import Settings
from tests.conftest import TEST_SECRET, Account, serve, signup
from tests.graphql_helpers import count_statements, create_task, error_codes, gql, gql_error

SIGNUP = """
mutation Signup($email: String!, $password: String!) {
  signup(email: $email, password: $password) { token user { id email } }
}
"""
LOGIN = """
mutation Login($email: String!, $password: String!) {
  login(email: $email, password: $password) { token user { id email } }
}
"""
ME = "{ me { id email } }"
PUBLIC_ROOT_FIELDS = {"signup", "login"}


async def test_signup_returns_a_working_token(client: httpx.AsyncClient) -> None:
    body = await gql(client, SIGNUP, {"email": "  Ada@Example.COM ", "password": "long-enough"})
    payload = body["data"]["signup"]
    assert payload["user"]["email"] == "ada@example.com"
    uuid.UUID(payload["user"]["id"])
    headers = {"Authorization": f"Bearer {payload['token']}"}
    me = await gql(client, ME, headers=headers)
    assert me["data"]["me"] == payload["user"]
    # One token for both surfaces.
    assert (await client.get("/api/tasks", headers=headers)).status_code == 200


async def test_login_normalises_the_email(client: httpx.AsyncClient, alice: Account) -> None:
    body = await gql(client, LOGIN, {"email": " ALICE@example.com", "password": alice.password})
    payload = body["data"]["login"]
    assert payload["user"] == {"id": alice.id, "email": "alice@example.com"}
    me = await gql(client, ME, headers={"Authorization": f"Bearer {payload['token']}"})
    assert me["data"]["me"]["id"] == alice.id


@pytest.mark.parametrize(
    ("email", "password"),
    [
        ("alice@example.com", "wrong-password"),
        ("nobody@example.com", "correct-horse-1"),
        ("not-an-address", "correct-horse-1"),
        ("alice@example.com", "x" * 4097),
        ("nobody@example.com", "x" * 4097),
        ("not-an-address", "x" * 4097),
    ],
)
async def test_login_with_wrong_credentials_is_unauthenticated(
    client: httpx.AsyncClient, alice: Account, email: str, password: str
) -> None:
    code, message = await gql_error(client, LOGIN, {"email": email, "password": password})
    assert (code, message) == ("UNAUTHENTICATED", "Invalid email or password")


@pytest.mark.parametrize(("email", "password"), [("", "x"), ("a@example.com", ""), (" ", "x")])
async def test_login_needs_both_fields(
    client: httpx.AsyncClient, email: str, password: str
) -> None:
    code, message = await gql_error(client, LOGIN, {"email": email, "password": password})
    assert (code, message) == ("BAD_USER_INPUT", "Email and password required")


@pytest.mark.parametrize(
    ("email", "password", "message"),
    [
        ("not-an-email", "long-enough", "Invalid email format"),
        ("a" * 250 + "@example.com", "long-enough", "Invalid email format"),
        ("ok@example.com", "short", "Password must be at least 8 characters"),
        ("ok@example.com", "x" * 129, "Password must be at most 128 characters"),
        ("ok\x00@example.com", "long-enough", "Email contains invalid characters"),
        ("ok@example.com", "long\x00enough", "Password contains invalid characters"),
    ],
)
async def test_signup_validation_uses_the_rest_messages(
    client: httpx.AsyncClient, email: str, password: str, message: str
) -> None:
    code, got = await gql_error(client, SIGNUP, {"email": email, "password": password})
    assert (code, got) == ("BAD_USER_INPUT", message)


async def test_duplicate_signup_is_a_conflict(client: httpx.AsyncClient, alice: Account) -> None:
    variables = {"email": " Alice@EXAMPLE.com ", "password": "another-password"}
    code, message = await gql_error(client, SIGNUP, variables)
    assert (code, message) == ("CONFLICT", "Email already registered")


async def test_too_many_attempts_are_rate_limited(
    make_settings: Callable[..., Settings],
) -> None:
    from api.app import create_app

    app = create_app(make_settings(rate_limit_per_email="2/minute"))
    async with serve(app) as client:
        variables = {"email": "limited@example.com", "password": "wrong-password"}
        for _ in range(2):
            code, _message = await gql_error(client, LOGIN, variables)
            assert code == "UNAUTHENTICATED"
        body = await gql(client, LOGIN, variables, errors=True)
    [error] = body["errors"]
    assert error["message"] == "Too many requests"
    assert error["extensions"]["code"] == "RATE_LIMITED"
    assert isinstance(error["extensions"]["retryAfter"], int)
    assert 1 <= error["extensions"]["retryAfter"] <= 60


def _expired_token(user_id: str) -> str:
    now = int(time.time())
    claims = {"sub": user_id, "user_id": user_id, "iat": now - 7200, "exp": now - 3600}
    return jwt.encode(claims, TEST_SECRET, algorithm="HS256")


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Basic dXNlcjpwYXNz",
        "Bearer not.a.jwt",
        "EXPIRED",
        "FOREIGN_SECRET",
        "UNKNOWN_USER",
    ],
)
async def test_bad_tokens_are_unauthenticated(
    client: httpx.AsyncClient, alice: Account, authorization: str | None
) -> None:
    if authorization == "EXPIRED":
        authorization = f"Bearer {_expired_token(alice.id)}"
    elif authorization == "FOREIGN_SECRET":
        claims = {"user_id": alice.id, "exp": int(time.time()) + 60}
        authorization = f"Bearer {jwt.encode(claims, 'x' * 40, algorithm='HS256')}"
    elif authorization == "UNKNOWN_USER":
        claims = {"user_id": str(uuid.uuid4()), "exp": int(time.time()) + 60}
        authorization = f"Bearer {jwt.encode(claims, TEST_SECRET, algorithm='HS256')}"
    headers = {} if authorization is None else {"Authorization": authorization}
    body = await gql(client, ME, headers=headers, errors=True)
    assert body["data"] is None
    assert error_codes(body) == [("UNAUTHENTICATED", "Unauthorized")]
    assert body["errors"][0]["path"] == ["me"]


_ARGUMENT_LITERALS = {
    "ID": '"00000000-0000-4000-8000-000000000000"',
    "String": '"x"',
    "CreateTaskInput": '{title: "t"}',
    "UpdateTaskInput": '{title: "t"}',
}
_INTROSPECT_ROOTS = """
{
  __schema {
    queryType { fields { ...root } }
    mutationType { fields { ...root } }
  }
}
fragment root on __Field {
  name
  args { name type { kind ofType { name } } }
  type { kind name ofType { kind name ofType { name } } }
}
"""


def _operation(kind: str, field: dict) -> str:
    args = ", ".join(
        f"{arg['name']}: {_ARGUMENT_LITERALS[arg['type']['ofType']['name']]}"
        for arg in field["args"]
        if arg["type"]["kind"] == "NON_NULL"
    )
    call = f"{field['name']}({args})" if args else field["name"]
    leaf = field["type"]
    while leaf["kind"] in ("NON_NULL", "LIST"):
        leaf = leaf["ofType"]
    selection = "" if leaf["kind"] == "SCALAR" else " { __typename }"
    return f"{kind} {{ {call}{selection} }}"


async def test_every_root_field_but_signup_and_login_needs_a_token(
    client: httpx.AsyncClient,
) -> None:
    """Schema-driven, so a new root field that forgets `caller()` fails here."""
    schema = (await gql(client, _INTROSPECT_ROOTS))["data"]["__schema"]
    checked = []
    for kind, root in (("query", "queryType"), ("mutation", "mutationType")):
        for field in schema[root]["fields"]:
            if field["name"] in PUBLIC_ROOT_FIELDS:
                continue
            body = await gql(client, _operation(kind, field), errors=True)
            assert error_codes(body) == [("UNAUTHENTICATED", "Unauthorized")], field["name"]
            checked.append(field["name"])
    assert {"me", "task", "tasks", "createTask", "updateTask", "deleteTask"} <= set(checked)


async def test_introspection_needs_no_token(client: httpx.AsyncClient) -> None:
    body = await gql(client, "{ __schema { queryType { name } } }")
    assert body["data"]["__schema"]["queryType"]["name"] == "Query"


async def test_the_caller_is_resolved_once_per_request(
    app: object, client: httpx.AsyncClient, alice: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One token verification however many fields ask, and no account lookup while the
    caller's rows are found (the operations look the account up only on a miss)."""
    task = await create_task(client, alice, "one")
    tokens = app.state.services.tokens  # type: ignore[attr-defined]
    verify_until = tokens.verify_until
    verified: list[str] = []

    def counting(token: str) -> object:
        verified.append(token)
        return verify_until(token)

    monkeypatch.setattr(tokens, "verify_until", counting)
    query = """
    query($id: ID!) { me { id } tasks { totalCount } task(id: $id) { id }
      again: me { email } }
    """
    with count_statements(app) as statements:  # type: ignore[arg-type]
        await gql(client, query, {"id": task["id"]}, headers=alice.headers)
    assert len(verified) == 1
    assert not [s for s in statements if "EXISTS" in s.upper()], statements


async def test_signup_payload_user_can_list_its_tasks(client: httpx.AsyncClient) -> None:
    query = """
    mutation { signup(email: "new@example.com", password: "long-enough") {
      user { email tasks { totalCount edges { node { id } } } } } }
    """
    body = await gql(client, query)
    user = body["data"]["signup"]["user"]
    assert user == {"email": "new@example.com", "tasks": {"totalCount": 0, "edges": []}}


async def test_login_payload_lists_only_that_users_tasks(
    client: httpx.AsyncClient, alice: Account, bob: Account
) -> None:
    response = await client.post("/api/tasks", json={"title": "alice's"}, headers=alice.headers)
    assert response.status_code == 201
    query = """
    mutation($email: String!, $password: String!) { login(email: $email, password: $password) {
      user { tasks { edges { node { title owner { email } } } } } } }
    """
    variables = {"email": bob.email, "password": bob.password}
    body = await gql(client, query, variables, headers=alice.headers)
    assert body["data"]["login"]["user"]["tasks"]["edges"] == []


async def test_signup_needs_no_token_even_with_a_bad_one(client: httpx.AsyncClient) -> None:
    headers = {"Authorization": "Bearer not.a.jwt"}
    body = await gql(client, SIGNUP, {"email": "x@example.com", "password": "long-enough"}, headers)
    assert body["data"]["signup"]["user"]["email"] == "x@example.com"


async def test_signup_through_rest_and_graphql_share_accounts(
    client: httpx.AsyncClient,
) -> None:
    account = await signup(client, "shared@example.com")
    body = await gql(client, LOGIN, {"email": account.email, "password": account.password})
    assert body["data"]["login"]["user"]["id"] == account.id
