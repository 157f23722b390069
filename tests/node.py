"""Running the JavaScript client scripts of tests/js: one scenario, one JSON result."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any


def node(
    args: list[str], config: dict[str, Any], *, cwd: Path, timeout: float = 90
) -> dict[str, Any]:
    """`node *args config`: the script prints its outcome as its last line, one JSON object."""
    result = subprocess.run(
        ["node", *args, json.dumps(config)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, (
        f"node {' '.join(args)} exited {result.returncode}:\n{result.stderr}\n{result.stdout}"
    )
    outcome: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return outcome


def run_node(
    script: Path, scenario: str, config: dict[str, Any], *, timeout: float = 90
) -> dict[str, Any]:
    """One scenario of a tests/js client script."""
    return node([str(script), scenario], config, cwd=script.parent, timeout=timeout)
