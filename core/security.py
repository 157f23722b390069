"""Password hashing and JWTs.

Passwords: bcrypt through passlib (the `libpass` fork, see specs/decisions.md), as
`bcrypt_sha256`: the password is HMAC-SHA256'd before bcrypt, so bcrypt's 72-byte limit never
truncates it silently. Hashing runs in a thread pool, never on the event loop (bcrypt releases
the GIL). Tokens: HS256 only.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import jwt
from passlib.context import CryptContext

from core.errors import Unauthenticated

ALGORITHM = "HS256"

_T = TypeVar("_T")

HASHING_NICENESS = 10


def _lower_thread_priority() -> None:
    """Hashing threads yield the CPU to the event loop thread under contention.

    A burst of logins would otherwise take the core's time slices from every other request;
    niced, bcrypt uses the idle time and the loop keeps answering. (Linux applies a nice
    value per thread; elsewhere this is a no-op.)
    """
    try:
        thread = threading.get_native_id()
        current = os.getpriority(os.PRIO_PROCESS, thread)
        os.setpriority(os.PRIO_PROCESS, thread, min(19, current + HASHING_NICENESS))
    except (AttributeError, OSError):
        pass


class PasswordHasher:
    def __init__(self, rounds: int) -> None:
        self._context = CryptContext(schemes=["bcrypt_sha256"], bcrypt_sha256__rounds=rounds)
        self._executor = ThreadPoolExecutor(
            max_workers=max(2, os.cpu_count() or 1),
            thread_name_prefix="bcrypt",
            initializer=_lower_thread_priority,
        )
        # A real hash of the same cost, verified against when the email is unknown, so an
        # unknown email costs the same work as a wrong password.
        self._dummy_hash = self._context.hash(uuid.uuid4().hex)

    async def _run(self, fn: Callable[..., _T], *args: Any) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def hash(self, password: str) -> str:
        return await self._run(self._context.hash, password)

    async def verify(self, password: str, password_hash: str | None) -> bool:
        """Constant work whether or not there is a hash to check against.

        passlib refuses a password over 4096 characters (PasswordSizeError, a ValueError)
        before hashing, for an unknown email as for a known one: it never verifies, and
        both answer alike. A malformed stored hash never verifies either."""
        try:
            if password_hash is None:
                await self._run(self._context.verify, password, self._dummy_hash)
                return False
            return bool(await self._run(self._context.verify, password, password_hash))
        except (ValueError, TypeError):
            return False

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class TokenService:
    # Verified tokens, remembered: verifying a signature and claims costs ~65 us, most of a
    # REST read's own CPU once the database is fast. A token verified once stays valid until
    # its `exp` (the claims and signature cannot change, and `iat`/`nbf` only become truer), so
    # a hit re-checks only the expiry. Bounded; the oldest entries go first.
    CACHE_SIZE = 4096

    def __init__(self, secret: str, expiration_hours: int) -> None:
        self._key = secret.encode()
        self._lifetime = timedelta(hours=expiration_hours)
        self._verified: dict[str, tuple[uuid.UUID, datetime, float]] = {}

    def issue(self, user_id: uuid.UUID, email: str) -> str:
        now = datetime.now(UTC)
        claims = {
            "sub": str(user_id),
            "user_id": str(user_id),
            "email": email,
            "iat": int(now.timestamp()),
            "exp": int((now + self._lifetime).timestamp()),
        }
        return jwt.encode(claims, self._key, algorithm=ALGORITHM)

    def verify(self, token: str) -> uuid.UUID:
        """The user id a valid token names; Unauthenticated for every way a token can fail."""
        return self.verify_until(token)[0]

    def verify_until(self, token: str) -> tuple[uuid.UUID, datetime]:
        """`verify`, and when the token expires (a WebSocket connection ends then)."""
        known = self._verified.get(token)
        if known is not None:
            if time.time() < known[2]:  # PyJWT's test: expired once `exp <= now`
                return known[0], known[1]
            del self._verified[token]
            raise Unauthenticated()
        user_id, expires_at, exp = self._decode(token)
        if len(self._verified) >= self.CACHE_SIZE:
            del self._verified[next(iter(self._verified))]
        self._verified[token] = (user_id, expires_at, exp)
        return user_id, expires_at

    def _decode(self, token: str) -> tuple[uuid.UUID, datetime, float]:
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],
                options={"require": ["exp"], "verify_aud": False},
            )
        except (jwt.PyJWTError, ValueError, TypeError):
            raise Unauthenticated() from None
        subject = claims.get("user_id", claims.get("sub"))
        if not isinstance(subject, str):
            raise Unauthenticated()
        try:
            user_id = uuid.UUID(subject)
        except ValueError:
            raise Unauthenticated() from None
        try:
            exp = float(claims["exp"])  # PyJWT has checked that it is an integer
        except OverflowError:
            exp = float("inf")
        try:
            expires_at = datetime.fromtimestamp(exp, UTC)
        except (OverflowError, OSError, ValueError, TypeError):  # far beyond any calendar
            expires_at = datetime.max.replace(tzinfo=UTC)
        return user_id, expires_at, exp


def bearer_token(authorization: str | None) -> str:
    """The token of an `Authorization: Bearer <token>` header, else Unauthenticated."""
    if not authorization:
        raise Unauthenticated()
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        raise Unauthenticated()
    return token
