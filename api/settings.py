"""One settings class, read from the environment (and an optional `.env`), that fails fast.

Every setting is documented in the README's configuration table. A missing or invalid setting
raises `ConfigError` with one line naming it; `python -m api` prints that line and exits 1.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.errors import ConfigError
from db.url import DatabaseTarget, DatabaseUrlError, parse_database_url, sqlite_url_for

log = logging.getLogger("todo.settings")

MIN_SECRET_BYTES = 32
SECRET_FILE_NAME = "secret.key"


# What a bad setting raises, wherever it is read: the rules' ConfigError, or the database URL's
# own error (db/ sits below the rules and cannot raise theirs).
SETTING_ERRORS = (ConfigError, DatabaseUrlError)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    app_env: Literal["development", "production"] = "development"
    database_url: str | None = None
    better_auth_secret: str | None = None
    frontend_url: str = "http://localhost:3000"
    jwt_expiration_hours: int = Field(default=24, ge=1, le=24 * 366)

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    web_concurrency: int = Field(default=1, ge=1, le=64)
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    data_dir: Path = Path("data")
    bcrypt_rounds: int = Field(default=12, ge=4, le=16)

    # PostgreSQL connections per worker (db/store.py's asyncpg pool), opened as needed and
    # kept: connections opened and closed per burst made requests wait into 503s
    # (bench/PROFILE.md).
    db_pool_size: int = Field(default=20, ge=1, le=200)
    db_connect_timeout: float = Field(default=5.0, gt=0, le=120)
    # Waiting for a free pooled connection is load, not an outage: longer than a connect.
    db_pool_timeout: float = Field(default=30.0, gt=0, le=600)
    db_statement_timeout: float = Field(default=15.0, gt=0, le=600)
    db_pgbouncer: bool = False

    rate_limit_per_address: str = "60/minute"
    rate_limit_per_email: str = "10/minute"
    # Unset (or `database`): counters in the service's own database, shared by every worker and
    # instance (core/ratelimit.py); else a `limits` storage URL (`redis://...`, `memory://`).
    rate_limit_storage_url: str = ""
    trusted_proxies: str = ""

    graphql_introspection: bool = True
    # Fields an operation may select, pages multiplied (graphql_schema/cost.py).
    graphql_max_cost: int = Field(default=5000, ge=1, le=10_000_000)
    # Persisted documents (graphql_schema/persisted.py, README: Persisted operations).
    graphql_persisted_queries: bool = True
    graphql_persisted_queries_max: int = Field(default=10_000, ge=1, le=10_000_000)
    graphql_trusted_documents: str | None = None  # a manifest file: only its documents run
    graphql_allow_untrusted_documents: bool = False  # with a manifest, let others run too

    # Live updates (README: Live updates; core/events.py). Caps are per instance.
    subscriptions_per_connection: int = Field(default=5, ge=1, le=100)
    subscriptions_per_user: int = Field(default=20, ge=1, le=10_000)
    subscription_queue_size: int = Field(default=100, ge=1, le=10_000)  # events not yet sent
    ws_keepalive_seconds: float = Field(default=15.0, gt=0, le=300)  # ping on every socket
    events_database_url: str | None = None  # direct PostgreSQL URL for LISTEN (not PgBouncer)
    # How often instances read the event log when they cannot LISTEN (PgBouncer, a lost
    # listener connection), and how long events stay there for clients to resume from.
    task_events_poll_seconds: float = Field(default=0.5, ge=0.05, le=10)
    task_events_retention_hours: float = Field(default=24.0, gt=0, le=24 * 90)

    # Operations (README: Migrations, Logs, Metrics). None means "the default for APP_ENV".
    db_auto_migrate: bool | None = None  # migrate at start-up: on in development, off in production
    log_format: Literal["json", "text"] | None = None  # json in production, text in development
    metrics_enabled: bool = True  # GET /metrics in Prometheus text format

    @field_validator("app_env", "log_level", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("database_url", "better_auth_secret", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value.strip() if isinstance(value, str) else value

    @field_validator("db_auto_migrate", "log_format", mode="before")
    @classmethod
    def _blank_is_default(cls, value: object) -> object:
        if isinstance(value, str):
            return value.strip().lower() or None
        return value

    @property
    def is_production(self) -> bool:
        return self.app_env == "production"

    @property
    def auto_migrate(self) -> bool:
        """DB_AUTO_MIGRATE, else on in development only: production migrates as a one-off step."""
        return not self.is_production if self.db_auto_migrate is None else self.db_auto_migrate

    @property
    def effective_log_format(self) -> Literal["json", "text"]:
        if self.log_format is not None:
            return self.log_format
        return "json" if self.is_production else "text"

    @property
    def cors_origins(self) -> list[str]:
        """FRONTEND_URL as a list of exact origins (browsers never send a trailing slash)."""
        return [o.strip().rstrip("/") for o in self.frontend_url.split(",") if o.strip()]

    @property
    def trusted_proxy_list(self) -> frozenset[str]:
        return frozenset(p.strip() for p in self.trusted_proxies.split(",") if p.strip())

    @property
    def sqlite_default_path(self) -> Path:
        return self.data_dir / "todo.db"


def load_settings(**overrides: object) -> Settings:
    """Read the settings, turning pydantic's report into one line that names the setting."""
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        err = exc.errors()[0]
        name = str(err["loc"][0]).upper() if err["loc"] else "settings"
        raise ConfigError(f"invalid setting {name}: {err['msg']}") from None
    if settings.is_production:
        for name in ("database_url", "better_auth_secret"):
            if getattr(settings, name) is None:
                raise ConfigError(
                    f"missing setting {name.upper()}: required when APP_ENV=production"
                )
    if not settings.cors_origins:
        raise ConfigError("invalid setting FRONTEND_URL: no origin given")
    if "*" in settings.cors_origins:
        raise ConfigError("invalid setting FRONTEND_URL: '*' is not allowed with credentials")
    return settings


def resolve_secret(settings: Settings, beside: Path | None) -> str:
    """The JWT signing secret: BETTER_AUTH_SECRET, else one generated once and kept on disk.

    The generated secret lives beside the SQLite file (or in DATA_DIR), owner-only, so tokens
    survive a restart of the zero-configuration service.
    """
    if settings.better_auth_secret is not None:
        if len(settings.better_auth_secret.encode()) < MIN_SECRET_BYTES:
            raise ConfigError(
                f"invalid setting BETTER_AUTH_SECRET: must be at least {MIN_SECRET_BYTES} bytes"
            )
        return settings.better_auth_secret
    directory = beside if beside is not None else settings.data_dir
    path = directory / SECRET_FILE_NAME
    try:
        directory.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            secret = path.read_text(encoding="utf-8").strip()
        else:
            secret = secrets.token_urlsafe(48)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(secret + "\n")
            log.warning(
                "BETTER_AUTH_SECRET is not set: generated a signing secret in %s "
                "(owner-only); set BETTER_AUTH_SECRET to use your own",
                path,
            )
    except OSError as exc:
        raise ConfigError(f"invalid setting BETTER_AUTH_SECRET: cannot use {path}: {exc}") from None
    if len(secret.encode()) < MIN_SECRET_BYTES:
        raise ConfigError(
            f"invalid setting BETTER_AUTH_SECRET: {path} holds fewer than {MIN_SECRET_BYTES} bytes"
        )
    return secret


def database_target(settings: Settings) -> DatabaseTarget:
    """The database these settings name: DATABASE_URL, else the default SQLite file."""
    raw = settings.database_url or sqlite_url_for(settings.sqlite_default_path)
    return parse_database_url(
        raw,
        connect_timeout=settings.db_connect_timeout,
        statement_timeout=settings.db_statement_timeout,
        pgbouncer=settings.db_pgbouncer,
    )
