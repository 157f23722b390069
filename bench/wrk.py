"""Running wrk with bench/lua/scenario.lua and reading the one JSON line its done() prints."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench.procs import stop_process

LUA = Path(__file__).resolve().parent / "lua" / "scenario.lua"
MARKER = "BENCH_JSON "


@dataclass
class WrkRun:
    """How to drive one wrk process."""

    url: str
    mode: str
    data: Path
    connections: int
    duration: float
    timeout: float = 10.0
    threads: int = 1
    core: int | None = 1
    record: Path | None = None

    def command(self) -> list[str]:
        cmd = [
            "wrk",
            "-t",
            str(self.threads),
            "-c",
            str(self.connections),
            "-d",
            f"{max(1, round(self.duration))}s",
            "--timeout",
            f"{max(1, round(self.timeout))}s",
            "-s",
            str(LUA),
            self.url,
            "--",
            self.mode,
            str(self.data),
            str(self.threads),
        ]
        if self.record is not None:
            cmd.append(str(self.record))
        if self.core is not None:
            cmd = ["taskset", "-c", str(self.core), *cmd]
        return cmd

    def start(self) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.command(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )

    def finish(self, proc: subprocess.Popen[str]) -> dict[str, float]:
        try:
            out, err = proc.communicate(timeout=self.duration + self.timeout + 60)
        except subprocess.TimeoutExpired:
            stop_process(proc)
            raise RuntimeError(f"wrk did not finish: {' '.join(self.command())}") from None
        finally:
            stop_process(proc)
        for line in out.splitlines():
            if line.startswith(MARKER):
                result = json.loads(line[len(MARKER) :])
                result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
                return result
        raise RuntimeError(f"wrk failed ({proc.returncode}): {err.strip()[-800:]}\n{out[-800:]}")

    def run(self) -> dict[str, float]:
        return self.finish(self.start())


def check_tools() -> list[str]:
    missing = [tool for tool in ("wrk", "taskset") if shutil.which(tool) is None]
    return missing
