"""Accounts: sign-up, login, and who a bearer token names."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import bindparam, exists, insert, select

from core.errors import Conflict, InvalidCredentials, Unauthenticated
from core.guards import database_errors, require_user
from core.ratelimit import AuthRateLimiter
from core.records import Authentication, AuthResult, Caller, UserRecord
from core.security import PasswordHasher, TokenService, bearer_token
from core.validation import is_valid_email, validate_login, validate_signup
from db.models import User
from db.store import ConstraintViolation, Store

# Built once: the store compiles each statement once and reuses it (db/store.py). Every INSERT
# names all its columns, so no value comes from a SQLAlchemy-side default.
_EMAIL_TAKEN = select(exists().where(User.email == bindparam("email")))
_INSERT_USER = insert(User).values(
    id=bindparam("new_id"),
    email=bindparam("new_email"),
    password_hash=bindparam("new_password_hash"),
    created_at=bindparam("new_created_at"),
)
_CREDENTIALS = select(User.id, User.email, User.password_hash).where(
    User.email == bindparam("email")
)
_USER = select(User.id, User.email).where(User.id == bindparam("user_id"))


class Accounts:
    def __init__(
        self,
        *,
        store: Store,
        passwords: PasswordHasher,
        tokens: TokenService,
        limiter: AuthRateLimiter,
    ) -> None:
        self._store = store
        self._passwords = passwords
        self._tokens = tokens
        self._limiter = limiter

    def identify(self, authorization: str | None) -> Caller:
        """The caller a valid bearer token names, without a database round trip.

        Only for the task use cases, which answer Unauthenticated themselves when the account
        is gone (core/guards.py, `require_user`).
        """
        return Caller(user_id=self._tokens.verify(bearer_token(authorization)))

    async def authenticate(self, authorization: str | None) -> Caller:
        """The caller named by an `Authorization: Bearer` header whose user still exists."""
        return (await self.authenticate_until(authorization)).caller

    async def authenticate_until(self, authorization: str | None) -> Authentication:
        """`authenticate`, and when the token expires (a WebSocket connection ends then)."""
        user_id, expires_at = self._tokens.verify_until(bearer_token(authorization))
        await require_user(self._store, Caller(user_id=user_id))
        return Authentication(
            caller=Caller(user_id=user_id, account_checked=True), expires_at=expires_at
        )

    async def signup(self, *, client_address: str, email: object, password: object) -> AuthResult:
        await self._limiter.hit(action="signup", address=client_address, email=_limit_key(email))
        credentials = validate_signup(email, password)
        async with database_errors():
            taken = await self._store.scalar(_EMAIL_TAKEN, {"email": credentials.email})
        if taken:
            raise Conflict()
        password_hash = await self._passwords.hash(credentials.password)
        user = UserRecord(id=uuid.uuid4(), email=credentials.email)
        try:
            async with database_errors():
                await self._store.execute(
                    _INSERT_USER,
                    {
                        "new_id": user.id,
                        "new_email": user.email,
                        "new_password_hash": password_hash,
                        "new_created_at": datetime.now(UTC),
                    },
                )
        except ConstraintViolation:
            # Lost a race with a concurrent signup for the same address.
            raise Conflict() from None
        return AuthResult(token=self._tokens.issue(user.id, user.email), user=user)

    async def login(self, *, client_address: str, email: object, password: object) -> AuthResult:
        await self._limiter.hit(action="login", address=client_address, email=_limit_key(email))
        credentials = validate_login(email, password)
        row = None
        if is_valid_email(credentials.email):
            async with database_errors():
                row = await self._store.row(_CREDENTIALS, {"email": credentials.email})
        # Same hashing work whether the email is unknown or the password wrong.
        if not await self._passwords.verify(credentials.password, row[2] if row else None):
            raise InvalidCredentials()
        assert row is not None
        user = UserRecord(id=row[0], email=row[1])
        return AuthResult(token=self._tokens.issue(user.id, user.email), user=user)

    async def get_user(self, caller: Caller) -> UserRecord:
        user = await self.find_user(caller.user_id)
        if user is None:
            raise Unauthenticated()
        return user

    async def find_user(self, user_id: uuid.UUID) -> UserRecord | None:
        async with database_errors():
            row = await self._store.row(_USER, {"user_id": user_id})
        return None if row is None else UserRecord(id=row[0], email=row[1])


def _limit_key(email: object) -> str | None:
    if isinstance(email, str):
        key = email.strip().lower()
        return key[:320] if key else None
    return None
