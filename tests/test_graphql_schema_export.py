"""`specs/schema.graphql` is the served schema: regenerate it when this fails."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from graphql import (
    build_client_schema,
    build_schema,
    get_introspection_query,
    lexicographic_sort_schema,
    print_schema,
)

from api.specfile import schema_main as export_main
from graphql_schema.export import schema_sdl
from tests.graphql_helpers import gql

SDL_FILE = Path(__file__).parent.parent / "specs" / "schema.graphql"
REGENERATE = "python -m api export-schema --output specs/schema.graphql"


def test_the_sdl_file_is_current() -> None:
    assert SDL_FILE.read_text(encoding="utf-8") == schema_sdl(), f"stale: run `{REGENERATE}`"


async def test_the_app_serves_the_sdl_file(client: httpx.AsyncClient) -> None:
    introspection = await gql(client, get_introspection_query(descriptions=True))
    served = build_client_schema(introspection["data"])
    documented = build_schema(SDL_FILE.read_text(encoding="utf-8"))
    # Introspection does not keep the order of types; compare both sorted.
    served, documented = (
        print_schema(lexicographic_sort_schema(schema)) for schema in (served, documented)
    )
    assert served == documented, f"stale: run `{REGENERATE}`"


def test_the_export_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert export_main(["--check", str(SDL_FILE)]) == 0
    written = tmp_path / "schema.graphql"
    assert export_main(["--check", str(written)]) == 1  # missing counts as stale
    assert export_main(["--output", str(written)]) == 0
    assert written.read_text(encoding="utf-8") == schema_sdl()
    written.write_text("type Query { old: Int }\n", encoding="utf-8")
    assert export_main(["--check", str(written)]) == 1
    capsys.readouterr()
    assert export_main([]) == 0
    assert capsys.readouterr().out == schema_sdl()
