"""`python -m api` / `todo-api`: serve (the default), migrate, export-schema."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import api.__main__ as cli
from api import metrics
from db.migrations import head_revision
from tests.conftest import TEST_SECRET

REPO = Path(__file__).resolve().parent.parent
_SETTINGS = (
    "APP_ENV",
    "DATABASE_URL",
    "BETTER_AUTH_SECRET",
    "DATA_DIR",
    "WEB_CONCURRENCY",
    "LOG_FORMAT",
    "LOG_LEVEL",
    "PORT",
    "HOST",
    "METRICS_ENABLED",
    "DB_AUTO_MIGRATE",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in _SETTINGS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no .env of the checkout; DATA_DIR stays in tmp


def run(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k not in _SETTINGS}
    environment.update(PYTHONPATH=str(REPO), **env)
    return subprocess.run(
        [sys.executable, "-m", "api", *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        cli.main(["--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    for command in ("serve", "migrate", "export-schema"):
        assert command in out


def test_migrate_help_shows_its_actions(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["migrate", "--help"])
    out = capsys.readouterr().out
    for word in ("--revision", "upgrade", "downgrade", "current", "revision"):
        assert word in out


def test_serve_is_the_default_and_configures_uvicorn(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr("uvicorn.run", lambda app, **kw: calls.append((app, kw)))
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    monkeypatch.setenv("PORT", "8123")
    monkeypatch.setattr(metrics, "MULTIPROCESS_DIR", str(tmp_path / "prometheus"))
    (tmp_path / "prometheus").mkdir()
    (tmp_path / "prometheus" / "gauge_livesum_1.db").write_bytes(b"old")
    assert cli.main([]) == 0
    assert cli.main(["serve"]) == 0
    assert calls[0] == calls[1]
    app, options = calls[0]
    assert app == "api.main:app"
    assert (options["workers"], options["port"], options["host"]) == (3, 8123, "127.0.0.1")
    assert options["access_log"] is False  # api.logging's request log replaces uvicorn's
    assert options["log_config"]["formatters"]["main"]["()"] == "api.logging.TextFormatter"
    assert options["proxy_headers"] is False
    assert list((tmp_path / "prometheus").iterdir()) == []  # emptied for the new workers


def test_serve_with_a_bad_setting_says_which(capsys: pytest.CaptureFixture[str], monkeypatch):
    monkeypatch.setenv("WEB_CONCURRENCY", "many")
    assert cli.main(["serve"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [err[0]] and "WEB_CONCURRENCY" in err[0]


def test_migrate_with_a_bad_database_url_says_which(
    capsys: pytest.CaptureFixture[str], monkeypatch
):
    monkeypatch.setenv("DATABASE_URL", "mysql://u@h/db")
    assert cli.main(["migrate"]) == 1
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("configuration error:") and "DATABASE_URL" in line


def test_migrate_in_production_needs_the_service_environment(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APP_ENV", "production")
    assert cli.main(["migrate"]) == 1
    assert "DATABASE_URL" in capsys.readouterr().err


def test_migrate_arguments_are_checked(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        cli.main(["migrate", "downgrade"])  # a downgrade needs its target
    assert stop.value.code == 2
    capsys.readouterr()
    assert cli.main(["migrate", "--revision", "0001", "downgrade", "base"]) == 2
    assert "--revision" in capsys.readouterr().err
    assert cli.main(["migrate", "--revision", "0001", "upgrade", "head"]) == 2


def test_migrate_reports_failures_in_one_line(tmp_path: Path) -> None:
    unknown = run("migrate", "upgrade", "9999", cwd=tmp_path)
    assert unknown.returncode == 1
    assert unknown.stderr.strip().splitlines()[-1].startswith("migrate: ")
    assert "9999" in unknown.stderr
    unreachable = run(
        "migrate",
        cwd=tmp_path,
        DATABASE_URL="postgresql://nobody:hunter2@127.0.0.1:9/nowhere",
        DB_CONNECT_TIMEOUT="1",
    )
    assert unreachable.returncode == 1
    [line] = [line for line in unreachable.stderr.splitlines() if line.strip()]
    assert line.startswith("migrate failed: ")
    assert "hunter2" not in unreachable.stderr + unreachable.stdout


def test_zero_config_migrate_uses_the_default_sqlite_file(tmp_path: Path) -> None:
    first = run("migrate", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert (tmp_path / "data" / "todo.db").exists()
    assert not (tmp_path / "data" / "secret.key").exists()  # migrating makes no secret
    current = run("migrate", "current", cwd=tmp_path)
    assert current.stdout.strip().endswith("(head)")


def test_production_migrate_takes_the_service_environment(tmp_path: Path) -> None:
    env = {
        "APP_ENV": "production",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'prod.db'}",
        "BETTER_AUTH_SECRET": TEST_SECRET,
    }
    done = run("migrate", cwd=tmp_path, **env)
    assert done.returncode == 0, done.stderr
    assert f"at revision {head_revision()} (was base)" in done.stdout
    assert done.stderr.lstrip().startswith("{")  # production logs are JSON lines


def test_export_schema_prints_the_sdl(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["export-schema"]) == 0
    out = capsys.readouterr().out
    assert "type Query" in out and "type Mutation" in out


SPECS = Path(__file__).resolve().parent.parent / "specs"


def test_export_commands_take_output_and_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for command, spec in (("export-schema", "schema.graphql"), ("export-openapi", "openapi.json")):
        current = SPECS / spec
        assert cli.main([command, "--check", str(current)]) == 0
        written = tmp_path / spec
        assert cli.main([command, "--check", str(written)]) == 1  # missing counts as stale
        assert cli.main([command, "--output", str(written)]) == 0
        assert written.read_text(encoding="utf-8") == current.read_text(encoding="utf-8")
    capsys.readouterr()
    with pytest.raises(SystemExit):
        cli.main(["export-openapi", "--bogus"])
    assert "todo-api export-openapi" in capsys.readouterr().err


def test_the_todo_api_script_is_installed(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("todo-api")
    assert script.exists(), "pip install -e . creates it (pyproject [project.scripts])"
    result = subprocess.run(
        [str(script), "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and "export-schema" in result.stdout
