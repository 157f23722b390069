"""The contracts kept in `specs/`, as the app serves them: the GraphQL SDL
(`specs/schema.graphql`, `todo-api export-schema`) and the OpenAPI document
(`specs/openapi.json`, `todo-api export-openapi`).

`--output FILE` writes the text, `--check FILE` exits 1 when FILE differs (for CI), and with
neither it goes to standard output. Tests compare both files with what the app serves.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from api.app import create_app
from api.settings import load_settings
from graphql_schema.export import schema_sdl


def export_main(render: Callable[[], str], description: str, argv: list[str] | None) -> int:
    parser = argparse.ArgumentParser(description=description)
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--output", type=Path, metavar="FILE", help="write it to FILE")
    target.add_argument("--check", type=Path, metavar="FILE", help="exit 1 if FILE is stale")
    args = parser.parse_args(argv)
    text = render()
    if args.check is not None:
        current = args.check.read_text(encoding="utf-8") if args.check.exists() else None
        if current != text:
            print(f"{args.check} is stale: regenerate it with --output", file=sys.stderr)
            return 1
        return 0
    if args.output is not None:
        args.output.write_text(text, encoding="utf-8")
        return 0
    sys.stdout.write(text)
    return 0


def openapi_document() -> dict[str, Any]:
    """Built from the real app factory, with throwaway settings (nothing is connected)."""
    with tempfile.TemporaryDirectory() as scratch:
        settings = load_settings(
            database_url=f"sqlite:///{scratch}/openapi.db",
            better_auth_secret="openapi-export-" + "x" * 32,
            data_dir=scratch,
        )
        return create_app(settings).openapi()


def render_openapi(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def schema_main(argv: list[str] | None = None) -> int:
    return export_main(schema_sdl, "Print the GraphQL schema (SDL).", argv)


def openapi_main(argv: list[str] | None = None) -> int:
    return export_main(
        lambda: render_openapi(openapi_document()),
        "Print the REST facade's OpenAPI document.",
        argv,
    )
