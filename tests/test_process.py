"""The real process: `python -m api` on a socket, zero configuration, restarts, bad settings."""

from __future__ import annotations

import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.live import clean_env, service, service_log


def test_zero_config_start_and_restart_keep_data_and_tokens(tmp_path: Path) -> None:
    with service(tmp_path) as (base, proc):
        signup = httpx.post(
            f"{base}/api/auth/signup", json={"email": "keep@example.com", "password": "password1"}
        )
        assert signup.status_code == 201
        token = signup.json()["token"]
        headers = {"Authorization": f"Bearer {token}"}
        created = httpx.post(f"{base}/api/tasks", json={"title": "survive"}, headers=headers)
        assert created.status_code == 201
    output = service_log(proc)
    # SIGTERM is a graceful stop (uvicorn re-raises the signal once it has shut down)
    assert proc.returncode in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in output
    assert "generated a signing secret" in output
    secret = tmp_path / "data" / "secret.key"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert (tmp_path / "data" / "todo.db").exists()

    with service(tmp_path) as (base, proc):
        listed = httpx.get(f"{base}/api/tasks", headers=headers)
        assert listed.status_code == 200
        assert [t["title"] for t in listed.json()["tasks"]] == ["survive"]
        login = httpx.post(
            f"{base}/api/auth/login", json={"email": "keep@example.com", "password": "password1"}
        )
        assert login.status_code == 200
    output = service_log(proc)
    assert "generated a signing secret" not in output


def test_served_over_a_socket_with_cors(tmp_path: Path) -> None:
    with service(tmp_path, FRONTEND_URL="http://127.0.0.1:3000") as (base, _proc):
        response = httpx.options(
            f"{base}/api/auth/signup",
            headers={
                "Origin": "http://127.0.0.1:3000",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type",
            },
        )
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == "http://127.0.0.1:3000"
        assert "server" not in response.headers


@pytest.mark.parametrize(
    "env, name",
    [
        ({"JWT_EXPIRATION_HOURS": "soon"}, "JWT_EXPIRATION_HOURS"),
        ({"BETTER_AUTH_SECRET": "short"}, "BETTER_AUTH_SECRET"),
        ({"APP_ENV": "production"}, "DATABASE_URL"),
        ({"DATABASE_URL": "mysql://x@y/z"}, "DATABASE_URL"),
    ],
)
def test_bad_settings_stop_start_up_with_one_line(tmp_path: Path, env: dict, name: str) -> None:
    for command in (
        [sys.executable, "-m", "api"],
        [sys.executable, "-m", "uvicorn", "api.main:app", "--port", "1"],
    ):
        result = subprocess.run(
            command, cwd=tmp_path, env=clean_env(**env), capture_output=True, timeout=60
        )
        assert result.returncode == 1, result
        lines = [line for line in result.stderr.decode().splitlines() if line.strip()]
        assert len(lines) == 1, lines
        assert name in lines[0] and lines[0].startswith("configuration error:")


def test_graceful_shutdown_finishes_in_flight_requests(tmp_path: Path) -> None:
    """SIGTERM while a slow request (a costly bcrypt hash) is in flight: it still completes."""
    with service(tmp_path, BCRYPT_ROUNDS="14") as (base, proc):
        results: list[httpx.Response] = []

        def slow_signup() -> None:
            results.append(
                httpx.post(
                    f"{base}/api/auth/signup",
                    timeout=30,
                    json={"email": "late@example.com", "password": "password1"},
                )
            )

        thread = threading.Thread(target=slow_signup)
        thread.start()
        time.sleep(0.3)  # the request is being hashed now
        proc.send_signal(signal.SIGTERM)
        thread.join(timeout=30)
        proc.wait(timeout=30)
    assert len(results) == 1
    assert results[0].status_code == 201
    assert results[0].json()["user"]["email"] == "late@example.com"
