"""What every operation needs, built once per app: the database, hashing, tokens, limits."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from api.ratelimit import AuthRateLimiter
from api.security import PasswordHasher, TokenService
from api.settings import Settings, resolve_secret
from db.engine import build_engine, build_sessionmaker
from db.url import DatabaseTarget, parse_database_url, sqlite_url_for

log = logging.getLogger("todo")


@dataclass
class Services:
    settings: Settings
    database: DatabaseTarget
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    passwords: PasswordHasher
    tokens: TokenService
    limiter: AuthRateLimiter

    @classmethod
    def from_settings(cls, settings: Settings) -> Services:
        raw_url = settings.database_url or sqlite_url_for(settings.sqlite_default_path)
        database = parse_database_url(
            raw_url,
            connect_timeout=settings.db_connect_timeout,
            statement_timeout=settings.db_statement_timeout,
            pgbouncer=settings.db_pgbouncer,
        )
        secret_dir = database.sqlite_path.parent if database.sqlite_path else None
        secret = resolve_secret(settings, secret_dir)
        limiter = AuthRateLimiter(
            per_address=settings.rate_limit_per_address,
            per_email=settings.rate_limit_per_email,
            storage_url=settings.rate_limit_storage_url,
        )
        engine = build_engine(
            database,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
            pool_timeout=settings.db_connect_timeout,
        )
        return cls(
            settings=settings,
            database=database,
            engine=engine,
            sessions=build_sessionmaker(engine),
            passwords=PasswordHasher(settings.bcrypt_rounds),
            tokens=TokenService(secret, settings.jwt_expiration_hours),
            limiter=limiter,
        )

    async def aclose(self) -> None:
        await self.engine.dispose()
        self.passwords.close()
