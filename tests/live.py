"""Running the real service (`python -m api`) on a free port for tests that need a socket."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
_STRIPPED = (
    "DATABASE_URL",
    "BETTER_AUTH_SECRET",
    "APP_ENV",
    "FRONTEND_URL",
    "JWT_EXPIRATION_HOURS",
    "DATA_DIR",
    "PORT",
    "HOST",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_kib(pid: int) -> int:
    """A running process's resident memory (Linux), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for process {pid}")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _STRIPPED}
    env["PYTHONPATH"] = str(REPO)
    env.update(extra)
    return env


def service_log(proc: subprocess.Popen[bytes]) -> str:
    """Everything the service printed so far (it writes to a file, never a pipe nobody reads)."""
    return Path(proc.log_path).read_text(errors="replace")  # type: ignore[attr-defined]


@contextmanager
def running(
    command: list[str], *, cwd: Path, env: dict[str, str], ready_within: float = 30
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Start a server process on `env["PORT"]` (a free one if unset), wait for /health, and
    stop it with SIGTERM at the end. Its output goes to `cwd/service-<port>.log`, not a pipe:
    a chatty server would fill an unread pipe's buffer and block on its next log line."""
    cwd.mkdir(parents=True, exist_ok=True)
    port = env.setdefault("PORT", str(free_port()))
    log_path = cwd / f"service-{port}.log"
    with open(log_path, "wb") as sink:
        proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=sink, stderr=subprocess.STDOUT)
    proc.log_path = log_path  # type: ignore[attr-defined]
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + ready_within
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"exited {proc.returncode}:\n{service_log(proc)}")
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"not healthy in {ready_within} s:\n{service_log(proc)}")
            time.sleep(0.1)
        yield base, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextmanager
def service(cwd: Path, **env: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`python -m api` with a clean environment plus `env` (bcrypt at its cheapest)."""
    with running(
        [sys.executable, "-m", "api"],
        cwd=cwd,
        env=clean_env(**{"BCRYPT_ROUNDS": "4", **env}),
    ) as started:
        yield started
