"""What every operation needs, built once per app: the database, hashing, tokens, limits,
live task events."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from api.events import EventBus, build_event_bus
from api.ratelimit import AuthRateLimiter, build_rate_limiter
from api.security import PasswordHasher, TokenService
from api.settings import Settings, resolve_secret
from db.engine import build_engine
from db.store import Store, build_store
from db.url import DatabaseTarget, parse_database_url, sqlite_url_for

log = logging.getLogger("todo")


@dataclass
class Services:
    settings: Settings
    database: DatabaseTarget
    engine: AsyncEngine
    store: Store  # where the operations' statements run (db/store.py)
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
        # On PostgreSQL the requests' statements go through the store's own asyncpg pool; the
        # engine (migrations aside, which open their own) serves only maintenance and tests.
        engine = build_engine(database, pool_size=2, pool_timeout=settings.db_pool_timeout)
        store = build_store(
            database,
            engine,
            pool_size=settings.db_pool_size,
            pool_timeout=settings.db_pool_timeout,
        )
        # Counters in the database by default: shared by every worker and instance on it.
        limiter = build_rate_limiter(
            per_address=settings.rate_limit_per_address,
            per_email=settings.rate_limit_per_email,
            storage_url=settings.rate_limit_storage_url,
            store=store,
            sqlite=database.is_sqlite,
            workers=settings.web_concurrency,
        )
        return cls(
            settings=settings,
            database=database,
            engine=engine,
            store=store,
            passwords=PasswordHasher(settings.bcrypt_rounds),
            tokens=TokenService(secret, settings.jwt_expiration_hours),
            limiter=limiter,
            events=build_event_bus(settings, database, store),
        )

    async def aclose(self) -> None:
        await self.store.close()
        await self.engine.dispose()
        self.passwords.close()
