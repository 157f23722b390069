"""Every 401 case of the contract's token rules (section 3)."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.conftest import TEST_SECRET, Account

pytestmark = pytest.mark.asyncio


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def mint(claims: dict, *, key: str = TEST_SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, key, algorithm=algorithm)


def claims_for(user_id: str, **extra: object) -> dict:
    now = int(time.time())
    return {"sub": user_id, "user_id": user_id, "iat": now, "exp": now + 3600, **extra}


async def assert_unauthorized(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    for method, path in (
        ("GET", "/api/tasks"),
        ("POST", "/api/tasks"),
        ("GET", f"/api/tasks/{uuid.uuid4()}"),
        ("PUT", f"/api/tasks/{uuid.uuid4()}"),
        ("DELETE", f"/api/tasks/{uuid.uuid4()}"),
    ):
        response = await client.request(method, path, headers=headers, json={"title": "x"})
        assert response.status_code == 401, (method, path, response.text)
        assert response.json() == {"error": "Unauthorized"}


async def test_missing_or_malformed_header(client: httpx.AsyncClient, alice: Account) -> None:
    await assert_unauthorized(client, {})
    for value in (
        "",
        "Bearer",
        "Bearer ",
        f"Basic {alice.token}",
        alice.token,
        f"Token {alice.token}",
        f"Bearer {alice.token} extra",
        "Bearer not.a.jwt",
    ):
        await assert_unauthorized(client, {"Authorization": value})


async def test_bearer_scheme_is_case_insensitive(client: httpx.AsyncClient, alice: Account) -> None:
    response = await client.get("/api/tasks", headers={"Authorization": f"bearer {alice.token}"})
    assert response.status_code == 200


async def test_wrong_signature_and_algorithms(client: httpx.AsyncClient, alice: Account) -> None:
    claims = claims_for(alice.id)
    other_secret = mint(claims, key="another-secret-that-is-long-enough-000")
    hs512 = mint(claims, algorithm="HS512")
    header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    none_token = f"{header}.{_b64(json.dumps(claims).encode())}."
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rs256 = jwt.encode(
        claims,
        private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        algorithm="RS256",
    )
    tampered = alice.token[:-4] + ("AAAA" if not alice.token.endswith("AAAA") else "BBBB")
    for token in (other_secret, hs512, none_token, rs256, tampered):
        await assert_unauthorized(client, {"Authorization": f"Bearer {token}"})


async def test_expired_and_not_yet_valid(client: httpx.AsyncClient, alice: Account) -> None:
    now = int(time.time())
    expired = mint(claims_for(alice.id, iat=now - 7200, exp=now - 10))
    future_nbf = mint(claims_for(alice.id, nbf=now + 3600))
    future_iat = mint(claims_for(alice.id, iat=now + 3600, exp=now + 7200))
    no_exp = mint({"sub": alice.id, "user_id": alice.id, "iat": now})
    for token in (expired, future_nbf, future_iat, no_exp):
        await assert_unauthorized(client, {"Authorization": f"Bearer {token}"})


async def test_a_token_that_worked_stops_working_when_it_expires(
    client: httpx.AsyncClient, alice: Account
) -> None:
    """Verified tokens are remembered (core/security.py); the expiry is still checked on each
    request, to the second, as PyJWT checks it."""
    now = int(time.time())
    token = mint(claims_for(alice.id, iat=now, exp=now + 2))
    headers = {"Authorization": f"Bearer {token}"}
    for _ in range(2):
        assert (await client.get("/api/tasks", headers=headers)).status_code == 200
    await asyncio.sleep(max(0.0, now + 2 - time.time()) + 0.05)
    await assert_unauthorized(client, headers)
    # Still refused on later requests (no stale entry brings it back).
    assert (await client.get("/api/tasks", headers=headers)).status_code == 401


async def test_remembered_tokens_are_bounded() -> None:
    from core.security import TokenService

    tokens = TokenService(TEST_SECRET, 24)
    issued = [tokens.issue(uuid.uuid4(), f"u{i}@example.com") for i in range(3)]
    tokens.CACHE_SIZE = 2
    for token in issued:
        tokens.verify(token)
    assert list(tokens._verified) == issued[1:]  # the oldest went first
    assert tokens.verify(issued[0]) == tokens.verify(issued[0])  # verified again, not lost


async def test_user_id_claims(client: httpx.AsyncClient, alice: Account) -> None:
    now = int(time.time())
    base = {"iat": now, "exp": now + 3600}
    for claims in (
        base,
        {**base, "sub": "not-a-uuid"},
        {**base, "user_id": 12345},
        {**base, "user_id": "not-a-uuid", "sub": alice.id},
        {**base, "user_id": str(uuid.uuid4())},  # a user that does not exist
    ):
        await assert_unauthorized(client, {"Authorization": f"Bearer {mint(claims)}"})


async def test_foreign_tokens_with_sub_only_are_accepted(
    client: httpx.AsyncClient, alice: Account
) -> None:
    """A token minted by another holder of the secret (Better Auth) with just `sub`."""
    now = int(time.time())
    token = mint({"sub": alice.id, "iat": now, "exp": now + 600, "name": "Alice"})
    response = await client.get("/api/tasks", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    # user_id wins over sub
    token = mint({"sub": str(uuid.uuid4()), "user_id": alice.id, "exp": now + 600})
    response = await client.get("/api/tasks", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200


async def test_token_expiry_follows_setting(make_settings) -> None:
    from api.app import create_app
    from tests.conftest import serve, signup

    async with serve(create_app(make_settings(jwt_expiration_hours=2))) as client:
        account = await signup(client)
        claims = jwt.decode(account.token, TEST_SECRET, algorithms=["HS256"])
        assert claims["exp"] - claims["iat"] == 2 * 3600
