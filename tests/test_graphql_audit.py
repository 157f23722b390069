"""The GraphQL-over-HTTP conformance audit of the `graphql-http` reference implementation.

Its `serverAudits` (the same audits as graphql-http.com's tester) run with Node
(tests/js/graphql_http_audit.mjs) against a real `python -m api`; every audit, MUST and SHOULD
alike, must pass: no errors and no warnings.
"""

from __future__ import annotations

from pathlib import Path

from tests.live import service
from tests.node import run_node


def test_graphql_over_http_audit_passes_completely(tmp_path: Path, js_clients: Path) -> None:
    with service(tmp_path) as (base, _proc):
        outcome = run_node(js_clients / "graphql_http_audit.mjs", "all", {"url": f"{base}/graphql"})
    audits = outcome["audits"]
    assert len(audits) >= 50  # the suite is all there
    not_ok = [a for a in audits if a["status"] != "ok"]
    assert not not_ok, not_ok
