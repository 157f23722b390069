"""What every operation needs, built once per app: the database, hashing, tokens, limits,
live task events."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from api.events import EventBus, build_event_bus
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
    reader: AsyncEngine  # the same pool in autocommit mode, for single-statement reads
    passwords: PasswordHasher
    tokens: TokenService
    limiter: AuthRateLimiter
    events: EventBus  # started and stopped by the app's lifespan

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
            pool_timeout=settings.db_pool_timeout,
        )
        sessions = build_sessionmaker(engine)
        return cls(
            settings=settings,
            database=database,
            engine=engine,
            sessions=sessions,
            reader=engine.execution_options(isolation_level="AUTOCOMMIT"),
            passwords=PasswordHasher(settings.bcrypt_rounds),
            tokens=TokenService(secret, settings.jwt_expiration_hours),
            limiter=limiter,
            events=build_event_bus(settings, database, engine, sessions),
        )

    async def aclose(self) -> None:
        await self.engine.dispose()
        self.passwords.close()
