"""Schemathesis against the running service: no input it can generate makes a 5xx.

Runs `st run` with every check (server errors, status codes, content types and response
schemas against /openapi.json, negative and positive data, Allow headers, stateful links)
against a real `python -m api` process, on each database.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.live import service

ST = Path(sys.executable).with_name("st")


@pytest.mark.skipif(not ST.exists() and not shutil.which("st"), reason="schemathesis not installed")
def test_openapi_fuzzing_finds_nothing(tmp_path: Path, database_url: str) -> None:
    env = {
        "DATABASE_URL": database_url,
        "RATE_LIMIT_PER_ADDRESS": "1000000/minute",
        "RATE_LIMIT_PER_EMAIL": "1000000/minute",
    }
    with service(tmp_path, **env) as (base, _proc):
        signup = httpx.post(
            f"{base}/api/auth/signup",
            json={"email": f"fuzz-{os.getpid()}@example.com", "password": "password1"},
        )
        assert signup.status_code == 201
        token = signup.json()["token"]
        result = subprocess.run(
            [
                str(ST) if ST.exists() else "st",
                "run",
                f"{base}/openapi.json",
                "-H",
                f"Authorization: Bearer {token}",
                "--checks",
                "all",
                "--max-examples",
                "40",
                "--seed",
                "20261125",
                "--no-color",
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=600,
        )
    summary = result.stdout[-4000:]
    assert result.returncode == 0, summary
    assert " passed" in summary and "failures" not in summary.lower().split("summary")[-1]
