"""Schemathesis against the running service: no input it can generate makes a 5xx.

REST: `st run` with every check (server errors, status codes, content types and response
schemas against /openapi.json, negative and positive data, Allow headers, stateful links).
GraphQL: queries and mutations generated from the introspected schema, judged by
`tests/schemathesis_hooks.py` (no 5xx, every error explained by a contract code). Both against
a real `python -m api` process, on each database.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from tests.live import service

ST = Path(sys.executable).with_name("st")
REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(
    not ST.exists() and not shutil.which("st"), reason="schemathesis not installed"
)


def fuzz(tmp_path: Path, database_url: str, target: str, checks: str) -> str:
    env = {
        "DATABASE_URL": database_url,
        "RATE_LIMIT_PER_ADDRESS": "1000000/minute",
        "RATE_LIMIT_PER_EMAIL": "1000000/minute",
    }
    with service(tmp_path, **env) as (base, _proc):
        signup = httpx.post(
            f"{base}/api/auth/signup",
            json={"email": f"fuzz-{uuid.uuid4().hex}@example.com", "password": "password1"},
        )
        assert signup.status_code == 201
        token = signup.json()["token"]
        result = subprocess.run(
            [
                str(ST) if ST.exists() else "st",
                "run",
                f"{base}{target}",
                "-H",
                f"Authorization: Bearer {token}",
                "--checks",
                checks,
                "--max-examples",
                "40",
                "--seed",
                "20261125",
                "--no-color",
            ],
            cwd=tmp_path,
            env={
                **os.environ,
                "PYTHONPATH": str(REPO),
                "SCHEMATHESIS_HOOKS": "tests.schemathesis_hooks",
            },
            capture_output=True,
            text=True,
            timeout=600,
        )
    summary = result.stdout[-4000:]
    assert result.returncode == 0, summary
    assert " passed" in summary and "failures" not in summary.lower().split("summary")[-1]
    return summary


def test_openapi_fuzzing_finds_nothing(tmp_path: Path, database_url: str) -> None:
    fuzz(tmp_path, database_url, "/openapi.json", "all")


def test_graphql_fuzzing_finds_no_server_error(tmp_path: Path, database_url: str) -> None:
    summary = fuzz(tmp_path, database_url, "/graphql", "no_internal_errors")
    tested = re.search(r"Tested: (\d+)", summary)
    assert tested and int(tested.group(1)) >= 8, summary  # every query and mutation
