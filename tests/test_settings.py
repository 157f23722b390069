"""Settings that fail fast and database URLs as people paste them."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from api.settings import ConfigError, load_settings, resolve_secret
from db.url import DatabaseUrlError, parse_database_url


def test_postgres_url_forms_become_asyncpg() -> None:
    for raw in (
        "postgres://u:p@h:5432/db",
        "postgresql://u:p@h:5432/db",
        "postgresql+asyncpg://u:p@h:5432/db",
        "postgresql+psycopg2://u:p@h:5432/db",
    ):
        target = parse_database_url(raw)
        assert target.url.drivername == "postgresql+asyncpg"
        assert (target.url.host, target.url.port, target.url.database) == ("h", 5432, "db")
        assert target.url.password == "p"
        assert not target.pgbouncer and "statement_cache_size" not in target.connect_args


def test_neon_pooled_url() -> None:
    raw = (
        "postgresql://neondb_owner:secret@ep-cool-name-123456-pooler.eu-central-1.aws.neon.tech"
        "/neondb?sslmode=require&channel_binding=require"
    )
    target = parse_database_url(raw)
    assert target.url.drivername == "postgresql+asyncpg"
    assert dict(target.url.query) == {"prepared_statement_cache_size": "0"}
    assert target.connect_args["ssl"] == "require"
    assert target.connect_args["statement_cache_size"] == 0
    name_func = target.connect_args["prepared_statement_name_func"]
    assert name_func() != name_func()
    assert target.pgbouncer
    assert "secret" not in target.describe()


def test_libpq_parameters_are_translated() -> None:
    target = parse_database_url(
        "postgresql://u@h/db?sslmode=verify-full&connect_timeout=3&application_name=todo"
        "&options=-c%20statement_timeout%3D5000"
    )
    assert target.connect_args["ssl"] == "verify-full"
    assert target.connect_args["timeout"] == 3.0
    assert target.connect_args["server_settings"] == {
        "application_name": "todo",
        "options": "-c statement_timeout=5000",
    }
    assert parse_database_url("postgresql://u@h/db?pgbouncer=true").pgbouncer


@pytest.mark.parametrize(
    "raw, name",
    [
        ("mysql://u@h/db", "DATABASE_URL"),
        ("postgresql://u@h/db?sslmode=bogus", "DATABASE_URL"),
        ("postgresql://u@h/db?weird=1", "DATABASE_URL"),
        ("sqlite://", "DATABASE_URL"),
        ("not a url", "DATABASE_URL"),
    ],
)
def test_bad_database_urls_name_the_setting(raw: str, name: str) -> None:
    with pytest.raises(DatabaseUrlError, match=name):
        parse_database_url(raw)


def test_sqlite_urls() -> None:
    target = parse_database_url("sqlite:///relative/todo.db")
    assert target.is_sqlite and target.sqlite_path == Path("relative/todo.db")
    assert target.url.drivername == "sqlite+aiosqlite"


def test_invalid_settings_name_themselves(monkeypatch) -> None:
    monkeypatch.setenv("JWT_EXPIRATION_HOURS", "soon")
    with pytest.raises(ConfigError, match="JWT_EXPIRATION_HOURS"):
        load_settings()
    monkeypatch.setenv("JWT_EXPIRATION_HOURS", "0")
    with pytest.raises(ConfigError, match="JWT_EXPIRATION_HOURS"):
        load_settings()


def test_production_requires_database_and_secret(monkeypatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("BETTER_AUTH_SECRET", raising=False)
    monkeypatch.setenv("APP_ENV", "production")
    with pytest.raises(ConfigError, match="DATABASE_URL"):
        load_settings()
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@h/db")
    with pytest.raises(ConfigError, match="BETTER_AUTH_SECRET"):
        load_settings()
    monkeypatch.setenv("BETTER_AUTH_SECRET", "s" * 32)
    assert load_settings().is_production


def test_short_secret_stops_start_up(tmp_path: Path) -> None:
    settings = load_settings(better_auth_secret="too-short", data_dir=tmp_path)
    with pytest.raises(ConfigError, match="BETTER_AUTH_SECRET"):
        resolve_secret(settings, None)


def test_wildcard_origin_refused() -> None:
    with pytest.raises(ConfigError, match="FRONTEND_URL"):
        load_settings(frontend_url="*")


def test_generated_secret_is_kept_owner_only(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("BETTER_AUTH_SECRET", raising=False)
    settings = load_settings(data_dir=tmp_path)
    first = resolve_secret(settings, tmp_path)
    second = resolve_secret(settings, tmp_path)
    assert first == second and len(first.encode()) >= 32
    mode = stat.S_IMODE(os.stat(tmp_path / "secret.key").st_mode)
    assert mode == 0o600


def test_pool_defaults_keep_connections_open(tmp_path: Path) -> None:
    """20 connections per worker for the requests, and a pool wait longer than a connect."""
    from api.services import Services
    from db.store import AsyncpgStore

    settings = load_settings(
        database_url="postgresql://u@127.0.0.1:1/db", better_auth_secret="s" * 32, data_dir=tmp_path
    )
    assert (settings.db_pool_size, settings.db_pool_timeout) == (20, 30)
    store = Services.from_settings(settings).store
    assert isinstance(store, AsyncpgStore)
    assert store.pool_capacity == 20 and store._pool_timeout == 30
