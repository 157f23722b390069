"""A schemathesis check for /graphql that matches this API's contract.

Schemathesis' own `not_a_server_error` counts every GraphQL `errors` entry as a server failure;
here a missing task (NOT_FOUND), bad credentials or invalid input are the contract's answers.
What must never happen is a 5xx or an error the server itself could not explain (INTERNAL).
"""

from __future__ import annotations

import schemathesis


@schemathesis.check
def no_internal_errors(ctx, response, case):  # type: ignore[no-untyped-def]
    if not case.path.rstrip("/").endswith("/graphql"):
        return  # REST is judged by schemathesis' own checks against /openapi.json
    if response.status_code >= 500:
        raise AssertionError(f"HTTP {response.status_code} from /graphql")
    try:
        body = response.json()
    except ValueError:
        raise AssertionError("the response is not JSON") from None
    for error in body.get("errors") or []:
        code = (error.get("extensions") or {}).get("code")
        if code in (None, "INTERNAL"):
            raise AssertionError(f"unexplained GraphQL error: {error}")
