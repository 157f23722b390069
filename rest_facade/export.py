"""The OpenAPI document the service serves at /openapi.json, kept in `specs/openapi.json`.

`python -m rest_facade.export` prints it; `--output FILE` writes it; `--check FILE` exits 1
when FILE is stale. A test compares the file with what the running app serves.
"""

from __future__ import annotations

import json
import sys
import tempfile
from typing import Any

from api.specfile import export_main


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
    return export_main(
        lambda: render(openapi_document()), "Print the REST facade's OpenAPI document.", argv
    )


if __name__ == "__main__":
    sys.exit(main())
