"""The SDL of the served schema, as `specs/schema.graphql` holds it (`todo-api export-schema`)."""

from __future__ import annotations

from graphql_schema.schema import build_schema


def schema_sdl() -> str:
    """The schema as SDL, ending in a newline, exactly as `specs/schema.graphql` holds it."""
    return str(build_schema(introspection=True)) + "\n"
