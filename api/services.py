"""The app's wiring: the database, hashing, tokens, limits and live task events, built once
per app from the settings, and the rules (core/) assembled on top of them."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from api.settings import Settings, database_target, resolve_secret
from core.accounts import Accounts
from core.errors import ConfigError
from core.events import EventBus, EventLog, LocalEventBus, PostgresEventBus, TaskEventHub
from core.ratelimit import AuthRateLimiter, build_rate_limiter
from core.security import PasswordHasher, TokenService
from core.service import TodoService
from core.tasks import Tasks
from db.documents import DocumentTable
from db.engine import build_engine
from db.store import Store, build_store
from db.url import DatabaseTarget, DatabaseUrlError, parse_database_url
from graphql_schema.persisted import PersistedDocuments, PersistedQueries, TrustedDocuments

log = logging.getLogger("todo")


@dataclass
class Services:
    settings: Settings
    database: DatabaseTarget
    engine: AsyncEngine
    store: Store  # where the use cases' statements run (db/store.py)
    passwords: PasswordHasher
    tokens: TokenService
    limiter: AuthRateLimiter
    events: EventBus  # started and stopped by the app's lifespan
    todo: TodoService  # the rules, as both surfaces call them
    documents: PersistedDocuments  # GraphQL's persisted and trusted documents

    @classmethod
    def from_settings(cls, settings: Settings) -> Services:
        database = database_target(settings)
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
        passwords = PasswordHasher(settings.bcrypt_rounds)
        tokens = TokenService(secret, settings.jwt_expiration_hours)
        events = build_event_bus(settings, database, store)
        todo = TodoService(
            accounts=Accounts(store=store, passwords=passwords, tokens=tokens, limiter=limiter),
            tasks=Tasks(store=store, events=events),
            events=events,
            trusted_proxies=settings.trusted_proxy_list,
            subscriptions_per_connection=settings.subscriptions_per_connection,
        )
        return cls(
            documents=build_documents(settings, store),
            settings=settings,
            database=database,
            engine=engine,
            store=store,
            passwords=passwords,
            tokens=tokens,
            limiter=limiter,
            events=events,
            todo=todo,
        )

    async def aclose(self) -> None:
        await self.store.close()
        await self.engine.dispose()
        self.passwords.close()


def build_documents(settings: Settings, store: Store) -> PersistedDocuments:
    """Automatic persisted queries in the database unless turned off; a trusted-documents
    manifest when GRAPHQL_TRUSTED_DOCUMENTS names one (ConfigError when it cannot be read)."""
    queries = None
    if settings.graphql_persisted_queries:
        table = DocumentTable(store, max_documents=settings.graphql_persisted_queries_max)
        queries = PersistedQueries(table)
    trusted = None
    if settings.graphql_trusted_documents:
        trusted = TrustedDocuments.from_file(Path(settings.graphql_trusted_documents))
        log.info("trusted documents: %d in %s", len(trusted), settings.graphql_trusted_documents)
    return PersistedDocuments(
        queries=queries,
        trusted=trusted,
        allow_untrusted=settings.graphql_allow_untrusted_documents,
    )


def listener_target(settings: Settings, database: DatabaseTarget) -> DatabaseTarget | None:
    """Where to LISTEN: EVENTS_DATABASE_URL, else DATABASE_URL, never through PgBouncer (None:
    nowhere, the instances read the event log on an interval instead)."""
    raw = (settings.events_database_url or "").strip()
    if raw:
        try:
            target = parse_database_url(raw, connect_timeout=settings.db_connect_timeout)
        except DatabaseUrlError as exc:
            raise ConfigError(str(exc).replace("DATABASE_URL", "EVENTS_DATABASE_URL", 1)) from None
        if target.is_sqlite:
            raise ConfigError("invalid setting EVENTS_DATABASE_URL: must be a PostgreSQL URL")
        return target
    if not database.pgbouncer:
        return database
    # LISTEN needs a session of its own; PgBouncer in transaction mode cannot keep one.
    host = database.url.host or ""
    label, dot, rest = host.partition(".")
    if label.endswith("-pooler"):  # Neon: the direct endpoint is the same name without it
        direct = label.removesuffix("-pooler") + dot + rest
        return replace(database, url=database.url.set(host=direct), pgbouncer=False)
    log.warning(
        "DATABASE_URL goes through PgBouncer, where LISTEN does not work: live updates read "
        "the event log every %.2f s (TASK_EVENTS_POLL_SECONDS); set EVENTS_DATABASE_URL to a "
        "direct connection to have them woken at once",
        settings.task_events_poll_seconds,
    )
    return None


def build_event_bus(
    settings: Settings,
    database: DatabaseTarget,
    store: Store,
) -> EventBus:
    log_ = EventLog(store, retention=timedelta(hours=settings.task_events_retention_hours))
    hub = TaskEventHub(
        per_user=settings.subscriptions_per_user,
        queue_size=settings.subscription_queue_size,
        log=log_,
    )
    if database.is_sqlite:
        return LocalEventBus(hub, log_, workers=settings.web_concurrency)
    return PostgresEventBus(
        hub,
        log_,
        store=store,
        listener_target=listener_target(settings, database),
        poll_seconds=settings.task_events_poll_seconds,
        wait_seconds=settings.db_connect_timeout,
    )
