"""The OpenAPI document the service serves at /openapi.json, kept in `specs/openapi.json`.

`python -m rest_facade.export` prints it; `--output FILE` writes it; `--check FILE` exits 1
when FILE is stale. A test compares the file with what the running app serves.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any


def openapi_document() -> dict[str, Any]:
    """Built from the real app factory, with throwaway settings (nothing is connected)."""
    from api.app import create_app
    from api.settings import load_settings

    with tempfile.TemporaryDirectory() as scratch:
        settings = load_settings(
            database_url=f"sqlite:///{scratch}/openapi.db",
            better_auth_secret="openapi-export-" + "x" * 32,
            data_dir=scratch,
        )
        return create_app(settings).openapi()


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Print the REST facade's OpenAPI document.")
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--output", type=Path, metavar="FILE", help="write it to FILE")
    target.add_argument("--check", type=Path, metavar="FILE", help="exit 1 if FILE is stale")
    args = parser.parse_args(argv)
    text = render(openapi_document())
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


if __name__ == "__main__":
    sys.exit(main())
