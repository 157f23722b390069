"""Processes the harness starts: servers (pinned or not), their CPU time, and their end.

Every process is started in its own session (its own process group) and recorded; `stop()`
ends that group by its id (SIGTERM, then SIGKILL), and the harness calls it in `finally`.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces; everything after its ')' is plain.
    return raw[raw.rindex(")") + 2 :].split()


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            text = (task / "children").read_text().split()
            kids.extend(int(k) for k in text)
    except OSError:
        pass
    return kids


def process_tree(pid: int) -> list[int]:
    pids, queue = [], [pid]
    while queue:
        current = queue.pop()
        pids.append(current)
        queue.extend(_children(current))
    return pids


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process and its live descendants (all threads), in seconds."""
    total = 0
    for p in process_tree(pid):
        fields = _stat_fields(p)
        if fields:  # fields[11], [12] are utime, stime (stat fields 14 and 15)
            total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


@dataclass
class Server:
    name: str
    app: str  # "module:attribute"
    env: dict[str, str]
    workers: int = 1
    core: int | None = 0  # None: not pinned
    port: int = field(default_factory=free_port)
    log_path: Path | None = None
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def command(self, python: str) -> list[str]:
        cmd = [
            python,
            "-m",
            "uvicorn",
            self.app,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--no-access-log",
            "--no-server-header",
            "--no-proxy-headers",
            "--log-level",
            "warning",
            "--timeout-graceful-shutdown",
            "5",
        ]
        if self.core is not None:
            cmd = ["taskset", "-c", str(self.core), *cmd]
        return cmd

    def start(self, python: str, log_dir: Path) -> None:
        self.log_path = log_dir / f"{self.name}.log"
        log = open(self.log_path, "wb")  # the child keeps its own copy
        try:
            self.proc = subprocess.Popen(
                self.command(python),
                cwd=REPO,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited during start-up: {self.tail()}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} not ready after {timeout:.0f}s: {self.tail()}")

    def tail(self, lines: int = 15) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is None:
            return
        stop_process(self.proc)


def stop_process(proc: subprocess.Popen, grace: float = 8.0) -> None:  # type: ignore[type-arg]
    """End a process we started (and its group, which start_new_session made ours)."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=5)


def core_times(core: int) -> tuple[int, int]:
    """(busy, total) jiffies of one CPU from /proc/stat (busy excludes idle and iowait)."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{core} "):
            v = [int(x) for x in line.split()[1:]]
            total = sum(v[:8])  # user nice system idle iowait irq softirq steal
            return total - v[3] - v[4], total
    return 0, 0


class CoreLoad:
    """How busy a core was during a round, and how much of that was not the server under test."""

    def __init__(self, core: int = 0) -> None:
        self.core = core
        self.start = core_times(core)

    def others(self, server_cpu_s: float) -> float | None:
        """Share of the core used by everything else (other processes, PostgreSQL, steal)."""
        busy0, total0 = self.start
        busy1, total1 = core_times(self.core)
        if total1 <= total0:
            return None
        busy = (busy1 - busy0) / (total1 - total0)
        elapsed = (total1 - total0) / CLK_TCK
        return max(0.0, busy - server_cpu_s / elapsed)


def settle(servers: list[Server], *, idle_fraction: float = 0.08, timeout: float = 120.0) -> float:
    """Wait until every server is idle (below `idle_fraction` of a core); seconds waited.

    After a login round the servers still hash for the requests wrk left in flight; the next
    round must not pay for them.
    """
    start = time.monotonic()
    window = 0.5
    while time.monotonic() - start < timeout:
        before = [s.cpu() for s in servers]
        time.sleep(window)
        after = [s.cpu() for s in servers]
        if all((a - b) / window < idle_fraction for a, b in zip(after, before, strict=True)):
            return time.monotonic() - start
    return time.monotonic() - start
