"""Alembic migrations: the initial revision is db/models.py exactly, on SQLite and PostgreSQL.

Every test gets fresh, empty databases (PostgreSQL: created through TEST_DATABASE_URL and
dropped after, as the `postgres_url` fixture does, but one per test).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, make_url

from api.app import create_app
from api.settings import load_settings
from db import migrations
from db.models import Base, Task, User
from db.url import DatabaseTarget, parse_database_url
from tests.conftest import TEST_SECRET, admin_execute, serve

REPO = Path(__file__).resolve().parent.parent
APP_TABLES = {"users", "tasks", "rate_limit_windows", "persisted_documents", "task_events"}
INDEX = "ix_tasks_user_id_created_at_id"

NewDatabase = Callable[[], Awaitable[str]]


@pytest.fixture(params=["sqlite", "postgresql"])
async def new_database(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[NewDatabase]:
    """A factory of empty databases (URLs), removed after the test."""
    admin = os.environ.get("TEST_DATABASE_URL") or None
    if request.param == "postgresql" and admin is None:
        if os.environ.get("REQUIRE_POSTGRES") == "1":
            pytest.fail("REQUIRE_POSTGRES=1 but TEST_DATABASE_URL is not set")
        pytest.skip("PostgreSQL cases need TEST_DATABASE_URL")
    created: list[str] = []

    async def new() -> str:
        name = f"todo_migrate_{uuid.uuid4().hex[:12]}"
        if request.param == "sqlite":
            return f"sqlite:///{tmp_path / name}.db"
        assert admin is not None
        await admin_execute(admin, f'CREATE DATABASE "{name}"')
        created.append(name)
        return make_url(admin).set(database=name).render_as_string(hide_password=False)

    yield new
    for name in created:
        assert admin is not None
        await admin_execute(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def target(url: str) -> DatabaseTarget:
    return parse_database_url(url)


async def on(url: str, work: Callable[[Connection], Any]) -> Any:
    return await migrations.run_in_migration_transaction(target(url), work)


def metadata_diff(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return compare_metadata(context, Base.metadata)


def table_names(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


def schema_snapshot(connection: Connection) -> dict[str, Any]:
    """Everything the database says about the app's tables, comparable across databases."""
    inspector = inspect(connection)
    snapshot: dict[str, Any] = {}
    for table in sorted(table_names(connection) & APP_TABLES):
        snapshot[table] = {
            "columns": [
                (c["name"], str(c["type"]), c["nullable"], str(c.get("default")))
                for c in inspector.get_columns(table)
            ],
            "pk": inspector.get_pk_constraint(table),
            "fks": inspector.get_foreign_keys(table),
            "unique": inspector.get_unique_constraints(table),
            "indexes": inspector.get_indexes(table),
        }
    if connection.dialect.name == "sqlite":
        rows = connection.exec_driver_sql(
            "SELECT type, name, sql FROM sqlite_master "
            "WHERE tbl_name IN ('users', 'tasks', 'rate_limit_windows', 'persisted_documents')"
            " ORDER BY type, name"
        )
        snapshot["sqlite_master"] = [
            (kind, name, re.sub(r"\s+", " ", sql or "")) for kind, name, sql in rows
        ]
    return snapshot


async def test_upgrade_from_empty_matches_the_models(new_database: NewDatabase) -> None:
    url = await new_database()
    result = await migrations.upgrade(target(url))
    assert (result.before, result.after) == (None, migrations.head_revision())
    assert await on(url, metadata_diff) == []

    def facts(connection: Connection) -> dict[str, Any]:
        inspector = inspect(connection)
        facts: dict[str, Any] = {
            "tables": table_names(connection),
            "fks": inspector.get_foreign_keys("tasks"),
            "unique": inspector.get_unique_constraints("users"),
            "indexes": {i["name"]: i for i in inspector.get_indexes("tasks")},
        }
        if connection.dialect.name == "sqlite":
            facts["index_sql"] = connection.exec_driver_sql(
                "SELECT sql FROM sqlite_master WHERE name = :name", {"name": INDEX}
            ).scalar_one()
        return facts

    facts = await on(url, facts)
    assert facts["tables"] == APP_TABLES | {"alembic_version"}
    [fk] = facts["fks"]
    assert fk["name"] == "fk_tasks_user_id_users"
    assert (fk["constrained_columns"], fk["referred_table"]) == (["user_id"], "users")
    assert fk["options"]["ondelete"] == "CASCADE"
    assert [(u["name"], u["column_names"]) for u in facts["unique"]] == [
        ("uq_users_email", ["email"])
    ]
    index = facts["indexes"][INDEX]
    assert index["column_names"] == ["user_id", "created_at", "id"]
    assert not index["unique"]
    # compare_metadata cannot see an index's sort order on SQLite: check the DESC columns here.
    if "index_sql" in facts:
        assert re.sub(r"\s+", " ", facts["index_sql"]).endswith(
            "ON tasks (user_id, created_at DESC, id DESC)"
        )
    else:
        assert index["column_sorting"] == {"created_at": ("desc",), "id": ("desc",)}


async def test_migrated_schema_is_the_schema_create_all_makes(new_database: NewDatabase) -> None:
    migrated, created = await new_database(), await new_database()
    await migrations.upgrade(target(migrated))
    await on(created, Base.metadata.create_all)
    assert await on(migrated, schema_snapshot) == await on(created, schema_snapshot)


async def test_the_comparison_would_notice_a_difference(new_database: NewDatabase) -> None:
    url = await new_database()
    await migrations.upgrade(target(url))
    await on(url, lambda c: c.execute(text(f"DROP INDEX {INDEX}")))
    diff = await on(url, metadata_diff)
    assert [(d[0], d[1].name) for d in diff] == [("add_index", INDEX)]


async def test_downgrade_to_base_leaves_no_tables(new_database: NewDatabase) -> None:
    url = await new_database()
    await migrations.upgrade(target(url))
    result = await migrations.downgrade(target(url), "base")
    assert (result.before, result.after) == (migrations.head_revision(), None)
    # Alembic keeps its (now empty) bookkeeping table; none of ours is left.
    assert await on(url, table_names) <= {"alembic_version"}
    assert await migrations.current_revision(target(url)) is None
    again = await migrations.upgrade(target(url))
    assert again.after == migrations.head_revision()
    assert await on(url, metadata_diff) == []


async def test_concurrent_upgrades_run_one_at_a_time(new_database: NewDatabase) -> None:
    url = await new_database()
    results = await asyncio.gather(*(migrations.upgrade(target(url)) for _ in range(3)))
    head = migrations.head_revision()
    assert sorted(str(r.before) for r in results) == sorted(["None", str(head), str(head)])
    assert {r.after for r in results} == {head}
    assert await on(url, metadata_diff) == []


async def test_a_database_made_before_migrations_is_adopted(new_database: NewDatabase) -> None:
    url = await new_database()

    def old_start_up(connection: Connection) -> None:  # what the service did before migrations
        Base.metadata.create_all(connection, tables=[User.__table__, Task.__table__])
        connection.execute(
            text(
                "INSERT INTO users (id, email, password_hash, created_at) "
                "VALUES (:id, 'old@example.com', 'x', '2025-01-01 00:00:00')"
            ),
            {"id": uuid.uuid4().hex if connection.dialect.name == "sqlite" else uuid.uuid4()},
        )

    await on(url, old_start_up)
    result = await migrations.upgrade(target(url))
    assert (result.before, result.after) == (
        migrations.INITIAL_REVISION,
        migrations.head_revision(),
    )
    emails = await on(url, lambda c: c.exec_driver_sql("SELECT email FROM users").scalars().all())
    assert emails == ["old@example.com"]


async def test_env_py_runs_on_its_own_from_any_url_form(new_database: NewDatabase) -> None:
    """Alembic's API without our connection: env.py builds the async engine from the URL."""
    url = await new_database()
    raw = url.replace("postgresql://", "postgres://", 1)  # a form only parse_database_url takes
    config = migrations.alembic_config()
    config.set_main_option("sqlalchemy.url", raw)
    await asyncio.to_thread(command.upgrade, config, "head")  # env.py runs its own event loop
    assert await migrations.current_revision(target(url)) == migrations.head_revision()
    assert await on(url, metadata_diff) == []


async def test_autogenerate_finds_nothing_to_add(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A developer's `migrate revision --autogenerate` right now would write an empty one."""
    copy = tmp_path / "migrations"
    shutil.copytree(migrations.MIGRATIONS_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(migrations, "MIGRATIONS_DIR", copy)
    database = target(f"sqlite:///{tmp_path / 'dev.db'}")
    await migrations.upgrade(database)
    head = migrations.head_revision()
    assert head is not None
    [path] = await migrations.create_revision(database, "nothing new", autogenerate=True)
    assert path.parent == copy / "versions"
    assert path.name == f"{int(head) + 1:04d}_nothing_new.py"
    body = path.read_text()
    assert f"down_revision: str | Sequence[str] | None = '{head}'" in body
    assert re.search(r"def upgrade\(\) -> None:\s+# ### commands auto generated.*?\s+pass", body)


# --- start-up ---------------------------------------------------------------------------------


async def test_start_up_migrates_in_development_only(
    new_database: NewDatabase, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    common = {
        "data_dir": tmp_path / "data",
        "better_auth_secret": TEST_SECRET,
        "bcrypt_rounds": 4,
    }
    production = await new_database()
    settings = load_settings(app_env="production", database_url=production, **common)
    assert settings.auto_migrate is False
    async with serve(create_app(settings), wipe=False) as client:
        assert (await client.get("/health")).status_code == 200
    assert await on(production, table_names) == set()  # nothing created behind anyone's back
    assert "run `todo-api migrate`" in caplog.text

    development = await new_database()
    settings = load_settings(database_url=development, **common)
    assert settings.auto_migrate is True
    async with serve(create_app(settings), wipe=False) as client:
        signup = await client.post(
            "/api/auth/signup", json={"email": "new@example.com", "password": "password1"}
        )
        assert signup.status_code == 201
    assert await migrations.current_revision(target(development)) == migrations.head_revision()

    forced = await new_database()
    settings = load_settings(
        app_env="production", database_url=forced, db_auto_migrate=True, **common
    )
    async with serve(create_app(settings), wipe=False):
        pass
    assert await migrations.current_revision(target(forced)) == migrations.head_revision()


# --- the command ------------------------------------------------------------------------------


def run_cli(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "BETTER_AUTH_SECRET", "APP_ENV", "DATA_DIR"}
    }
    environment.update(PYTHONPATH=str(REPO), **env)
    return subprocess.run(
        [sys.executable, "-m", "api", *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_migrate_command_on_a_fresh_database(
    new_database: NewDatabase, tmp_path: Path
) -> None:
    url = await new_database()
    env = {"DATABASE_URL": url}
    head = migrations.head_revision()

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, cwd=tmp_path, **env)

    first = await asyncio.to_thread(cli, "migrate")
    assert first.returncode == 0, first.stderr
    assert f"at revision {head} (was base)" in first.stdout
    assert f"-> {head}" in first.stderr  # Alembic's own account of each step
    assert await on(url, metadata_diff) == []

    current = await asyncio.to_thread(cli, "migrate", "current")
    assert current.stdout.strip() == f"{head} (head)"

    down = await asyncio.to_thread(cli, "migrate", "downgrade", "base")
    assert down.returncode == 0, down.stderr
    assert await on(url, table_names) <= {"alembic_version"}

    pinned = await asyncio.to_thread(cli, "migrate", "--revision", migrations.INITIAL_REVISION)
    assert pinned.returncode == 0, pinned.stderr
    assert await migrations.current_revision(target(url)) == migrations.INITIAL_REVISION
