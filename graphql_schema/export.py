"""The SDL of the served schema, kept in `specs/schema.graphql`.

`python -m graphql_schema.export` (or `todo-api export-schema`) prints it; `--output FILE`
writes it; `--check FILE` exits 1 when FILE is stale (for CI).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from graphql_schema.schema import build_schema


def schema_sdl() -> str:
    """The schema as SDL, ending in a newline, exactly as `specs/schema.graphql` holds it."""
    return str(build_schema(introspection=True)) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Print the GraphQL schema (SDL).")
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--output", type=Path, metavar="FILE", help="write the SDL to FILE")
    target.add_argument(
        "--check", type=Path, metavar="FILE", help="exit 1 if FILE differs from the schema"
    )
    args = parser.parse_args(argv)
    sdl = schema_sdl()
    if args.check is not None:
        current = args.check.read_text(encoding="utf-8") if args.check.exists() else None
        if current != sdl:
            print(f"{args.check} is stale: regenerate it with --output", file=sys.stderr)
            return 1
        return 0
    if args.output is not None:
        args.output.write_text(sdl, encoding="utf-8")
        return 0
    sys.stdout.write(sdl)
    return 0


if __name__ == "__main__":
    sys.exit(main())
