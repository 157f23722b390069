"""The GraphQL-over-HTTP conformance audit of the `graphql-http` reference implementation.

Its `serverAudits` (the same audits as graphql-http.com's tester) run with Node against a real
`python -m api`; every audit, MUST and SHOULD alike, must pass: no errors and no warnings.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.live import service

AUDIT_SCRIPT = """
import { serverAudits } from "graphql-http";
const results = [];
for (const audit of serverAudits({ url: process.argv[2], fetchFn: fetch })) {
  const result = await audit.fn();
  results.push({ id: audit.id, name: audit.name, status: result.status,
                 reason: result.reason || null });
}
console.log(JSON.stringify(results));
"""


@pytest.fixture(scope="session")
def audit_tool(tmp_path_factory: pytest.TempPathFactory) -> Path:
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        if os.environ.get("CI"):
            pytest.fail("Node.js and npm are needed for the GraphQL-over-HTTP audit")
        pytest.skip("Node.js and npm are needed for the GraphQL-over-HTTP audit")
    directory = tmp_path_factory.mktemp("graphql-http-audit")
    (directory / "package.json").write_text('{"private": true, "type": "module"}')
    subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", "--silent", "graphql-http@1", "graphql@16"],
        cwd=directory,
        check=True,
        capture_output=True,
        timeout=300,
    )
    script = directory / "audit.mjs"
    script.write_text(AUDIT_SCRIPT)
    return script


def test_graphql_over_http_audit_passes_completely(tmp_path: Path, audit_tool: Path) -> None:
    with service(tmp_path) as (base, _proc):
        result = subprocess.run(
            ["node", str(audit_tool), f"{base}/graphql"],
            cwd=audit_tool.parent,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 0, result.stderr
    audits = json.loads(result.stdout)
    assert len(audits) >= 50  # the suite is all there
    not_ok = [a for a in audits if a["status"] != "ok"]
    assert not not_ok, not_ok
