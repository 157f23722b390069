"""The SDL of the served schema, kept in `specs/schema.graphql`.

`python -m graphql_schema.export` (or `todo-api export-schema`) prints it; `--output FILE`
writes it; `--check FILE` exits 1 when FILE is stale (for CI).
"""

from __future__ import annotations

import sys

from api.specfile import export_main
from graphql_schema.schema import build_schema


def schema_sdl() -> str:
    """The schema as SDL, ending in a newline, exactly as `specs/schema.graphql` holds it."""
    return str(build_schema(introspection=True)) + "\n"


def main(argv: list[str] | None = None) -> int:
    return export_main(schema_sdl, "Print the GraphQL schema (SDL).", argv)


if __name__ == "__main__":
    sys.exit(main())
