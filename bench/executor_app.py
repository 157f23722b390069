"""`bench.executor_app:app`: the service's ASGI app with a chosen GraphQL execution context.

For bench/executor.py only (not a product setting). `BENCH_EXECUTOR_FILE` names a Python
file defining `Executor` (graphql_schema/execution.py, or that file as it was in git
history): the schema executes with it. Unset: Strawberry's default,
`StrawberryGraphQLCoreExecutionContext` (graphql-core 3.3's `Executor`), as a schema
built without `execution_context_class` has. Either way the class replaces whatever
`build_schema` installed, and one line in the server's log names it.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from bench.executor import load_executor
from graphql_schema import router

MARKER = "bench.executor_app: execution_context_class = "  # bench/executor.py looks for it


def _chosen() -> type:
    path = os.environ.get("BENCH_EXECUTOR_FILE")
    if not path:
        return StrawberryGraphQLCoreExecutionContext
    return load_executor(path)


_CLASS = _chosen()
_build_schema = router.build_schema


def _build_schema_with(**kwargs: Any) -> Any:
    schema = _build_schema(**kwargs)
    schema.execution_context_class = _CLASS
    print(f"{MARKER}{_CLASS.__module__}.{_CLASS.__qualname__}", file=sys.stderr, flush=True)
    return schema


router.build_schema = _build_schema_with

from api.main import app  # noqa: E402  (after the patch: create_app builds the schema)

__all__ = ["app"]
