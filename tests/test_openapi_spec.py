"""`specs/openapi.json` is exactly what the running service serves at /openapi.json."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from api.specfile import openapi_main as main

SPEC = Path(__file__).resolve().parent.parent / "specs" / "openapi.json"


async def test_served_document_matches_specs(client: httpx.AsyncClient) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    assert response.json() == json.loads(SPEC.read_text(encoding="utf-8")), (
        "specs/openapi.json is stale: python -m api export-openapi --output specs/openapi.json"
    )


async def test_every_rest_route_documents_its_errors(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    expected = {
        ("post", "/api/auth/signup"): {"201", "400", "409", "413", "429", "503"},
        ("post", "/api/auth/login"): {"200", "400", "401", "413", "429", "503"},
        ("get", "/api/tasks"): {"200", "401", "503"},
        ("post", "/api/tasks"): {"201", "400", "401", "413", "503"},
        ("get", "/api/tasks/{task_id}"): {"200", "401", "404", "503"},
        ("put", "/api/tasks/{task_id}"): {"200", "400", "401", "404", "413", "503"},
        ("delete", "/api/tasks/{task_id}"): {"204", "401", "404", "503"},
    }
    for (method, path), statuses in expected.items():
        operation = paths[path][method]
        assert statuses <= set(operation["responses"]), (method, path)
        for status in statuses - {"204"}:
            content = operation["responses"][status]["content"]["application/json"]
            assert "schema" in content, (method, path, status)


def test_check_command_spots_a_stale_file(tmp_path: Path) -> None:
    assert main(["--check", str(SPEC)]) == 0
    stale = tmp_path / "openapi.json"
    stale.write_text("{}\n")
    assert main(["--check", str(stale)]) == 1
