"""Request ids, request logs (text and JSON lines, no secrets) and Prometheus metrics."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.websockets import WebSocket

from api.app import create_app
from api.logging import (
    JsonFormatter,
    RequestContextFilter,
    TextFormatter,
    current_request_id,
    logging_config,
)
from api.metrics import MAX_GRAPHQL_OPERATION_NAMES, record_graphql_operation, route_template
from api.settings import load_settings
from tests.conftest import FRONTEND, TEST_SECRET, Account, serve
from tests.live import running

REPO = Path(__file__).resolve().parent.parent
GENERATED_ID = re.compile(r"[0-9a-f]{32}")


# --- request ids ------------------------------------------------------------------------------


async def test_a_request_id_is_made_and_returned(client: httpx.AsyncClient) -> None:
    first, second = await client.get("/health"), await client.get("/health")
    assert GENERATED_ID.fullmatch(first.headers["x-request-id"])
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


@pytest.mark.parametrize("given", ["abc", "A.b-c_9", "x" * 128, "0f3c2a9e-8d1b-4c3e-a1f0-1234"])
async def test_a_sane_client_request_id_is_kept(client: httpx.AsyncClient, given: str) -> None:
    response = await client.get("/api/tasks", headers={"X-Request-ID": given})
    assert response.status_code == 401
    assert response.headers["x-request-id"] == given


@pytest.mark.parametrize(
    "given", [b"x" * 129, b"has space", b"semi;colon", b"caf\xe9", b"", b"a/b", b"{json}"]
)
async def test_an_odd_client_request_id_is_replaced(
    client: httpx.AsyncClient, given: bytes
) -> None:
    response = await client.get("/health", headers={"X-Request-ID": given})
    assert GENERATED_ID.fullmatch(response.headers["x-request-id"])


async def test_preflights_and_errors_carry_the_request_id(client: httpx.AsyncClient) -> None:
    preflight = await client.options(
        "/api/tasks", headers={"Origin": FRONTEND, "Access-Control-Request-Method": "GET"}
    )
    assert preflight.status_code == 200
    assert GENERATED_ID.fullmatch(preflight.headers["x-request-id"])
    missing = await client.get("/nowhere", headers={"X-Request-ID": "r-404"})
    assert missing.status_code == 404 and missing.headers["x-request-id"] == "r-404"


# --- the request log --------------------------------------------------------------------------


def access_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "todo.access"]


async def test_one_line_per_request_with_its_facts(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="todo.access")
    await client.get("/api/tasks?token=query-secret", headers={"X-Request-ID": "req-1"})
    await client.get("/health")
    first, second = access_records(caplog)
    assert (first.method, first.path, first.status, first.request_id) == (
        "GET",
        "/api/tasks",
        401,
        "req-1",
    )
    assert first.levelno == logging.INFO
    assert 0 <= first.duration_ms < 10_000
    assert first.client == "127.0.0.1"
    assert re.fullmatch(r"GET /api/tasks 401 \d+\.\dms", first.getMessage())
    assert "query-secret" not in caplog.text  # the query string is never logged
    assert (second.path, second.status) == ("/health", 200)
    assert current_request_id() is None  # the id does not leak past its request


async def test_a_5xx_is_logged_once_with_its_trace_and_the_request_id(
    app: Any,
    client: httpx.AsyncClient,
    alice: Account,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def explode(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("boom in list_tasks")

    monkeypatch.setattr(app.state.todo.tasks, "list", explode)
    caplog.handler.addFilter(RequestContextFilter())
    caplog.set_level(logging.INFO)
    response = await client.get("/api/tasks", headers={**alice.headers, "X-Request-ID": "r-500"})
    assert response.status_code == 500
    assert response.headers["x-request-id"] == "r-500"
    traces = [r for r in caplog.records if r.exc_info]
    assert len(traces) == 1, [r.getMessage() for r in traces]
    assert "boom in list_tasks" in caplog.text and "Traceback" in caplog.text
    assert traces[0].request_id == "r-500"
    [line] = access_records(caplog)
    assert (line.status, line.levelno, line.request_id) == (500, logging.ERROR, "r-500")


async def test_control_characters_in_a_path_cannot_forge_lines(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="todo.access")
    await client.get("/api/x%0A2026-01-01 INFO todo.access forged%0D")
    [record] = access_records(caplog)
    assert "\n" not in record.getMessage() and "\r" not in record.getMessage()
    assert record.path == "/api/x\\x0a2026-01-01 INFO todo.access forged\\x0d"


async def websocket_session(app: FastAPI, path: str, query: bytes = b"") -> list[dict]:
    """One websocket connection straight through the ASGI app: connect, then what it sends."""
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "websocket.connect"} if not sent else {"type": "websocket.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query,
        "headers": [(b"x-request-id", b"ws-1")],
        "scheme": "ws",
        "server": ("testserver", 80),
        "client": ("127.0.0.1", 50000),
        "subprotocols": [],
    }
    await app(scope, receive, send)
    return sent


async def test_websockets_get_one_line_too(make_settings, caplog: pytest.LogCaptureFixture) -> None:
    app = create_app(make_settings())

    async def echo(websocket: WebSocket) -> None:
        if websocket.query_params.get("refuse"):
            await websocket.close()
            return
        await websocket.accept()
        await websocket.send_text(current_request_id() or "")
        await websocket.close()

    app.add_api_websocket_route("/test-ws", echo)
    caplog.set_level(logging.INFO, logger="todo.access")
    accepted = await websocket_session(app, "/test-ws")
    assert [m["type"] for m in accepted] == [
        "websocket.accept",
        "websocket.send",
        "websocket.close",
    ]
    assert accepted[1]["text"] == "ws-1"
    await websocket_session(app, "/test-ws", b"refuse=1")
    first, second = access_records(caplog)
    assert (first.method, first.path, first.status) == ("WEBSOCKET", "/test-ws", 101)
    assert first.request_id == "ws-1"
    assert (second.status, second.levelno) == (403, logging.INFO)


def _record(message: str, *args: object, exc: BaseException | None = None) -> logging.LogRecord:
    record = logging.LogRecord("todo.test", logging.ERROR, __file__, 1, message, args, None)
    if exc is not None:
        record.exc_info = (type(exc), exc, exc.__traceback__)
    return record


def test_json_lines(capsys: pytest.CaptureFixture[str]) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestContextFilter())
    logger = logging.getLogger("todo.test.json")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("hello %s", "world", extra={"status": 201, "path": "/a\nb"})
        try:
            raise ValueError("bad value")
        except ValueError:
            logger.exception("it failed")
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2  # a trace stays inside its one line
    first, second = map(json.loads, lines)
    assert first["level"] == "warning" and first["logger"] == "todo.test.json"
    assert first["message"] == "hello world"
    assert (first["status"], first["path"], first["request_id"]) == (201, "/a\nb", "-")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["time"])
    assert second["level"] == "error"
    assert "Traceback" in second["exc_info"] and "ValueError: bad value" in second["exc_info"]


def test_readable_text(capsys: pytest.CaptureFixture[str]) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(TextFormatter())
    try:
        raise KeyError("k")
    except KeyError as exc:
        handler.handle(_record("GET %s 500", "/x\n/y", exc=exc))
    out = capsys.readouterr().err
    first, *trace = out.splitlines()
    assert re.fullmatch(r"\S+ \S+ ERROR todo\.test \[-\] GET /x\\x0a/y 500", first)
    assert trace[0].startswith("Traceback") and trace[-1] == "KeyError: 'k'"


@pytest.mark.parametrize(
    "overrides, formatter",
    [
        ({}, "TextFormatter"),
        ({"app_env": "production", "database_url": "sqlite:///x.db"}, "JsonFormatter"),
        ({"log_format": "json"}, "JsonFormatter"),
        (
            {"log_format": " TEXT ", "app_env": "production", "database_url": "sqlite:///x.db"},
            "TextFormatter",
        ),
    ],
)
def test_the_format_follows_app_env_unless_log_format_says(overrides: dict, formatter: str) -> None:
    settings = load_settings(better_auth_secret=TEST_SECRET, **overrides)
    config = logging_config(settings)
    assert config["formatters"]["main"]["()"] == f"api.logging.{formatter}"
    # SQL statements carry parameters (emails, password hashes): never logged, even at debug.
    assert config["loggers"]["sqlalchemy"]["level"] == "WARNING"
    assert config["loggers"]["uvicorn.access"] == {"handlers": [], "propagate": False}


# --- metrics ----------------------------------------------------------------------------------


def sample(text: str, name: str, **labels: str) -> float | None:
    total = None
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                total = (total or 0.0) + s.value
    return total


async def scrape(client: httpx.AsyncClient) -> str:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


async def test_requests_are_counted_by_route_template_and_status(
    client: httpx.AsyncClient, alice: Account
) -> None:
    created = await client.post("/api/tasks", json={"title": "t"}, headers=alice.headers)
    task_id = created.json()["task"]["id"]
    for _ in range(3):
        await client.get("/api/tasks", headers=alice.headers)
    await client.get(f"/api/tasks/{task_id}", headers=alice.headers)
    await client.get("/api/tasks/00000000-0000-0000-0000-000000000000", headers=alice.headers)
    await client.get("/api/tasks/", headers=alice.headers)  # the same route
    await client.get("/no/such/path/1")
    await client.get("/no/such/path/2")
    await client.request("BREW", "/api/tasks")
    await client.post("/graphql", json={"query": "{ __typename }"})  # an included router
    await client.options(
        "/api/tasks", headers={"Origin": FRONTEND, "Access-Control-Request-Method": "GET"}
    )
    text = await scrape(client)
    requests = "todo_http_requests_total"
    assert sample(text, requests, method="GET", route="/api/tasks", status="200") == 4
    one = "/api/tasks/{task_id}"
    assert sample(text, requests, method="GET", route=one, status="200") == 1
    assert sample(text, requests, method="GET", route=one, status="404") == 1
    assert sample(text, requests, method="POST", route="/api/tasks", status="201") == 1
    assert sample(text, requests, method="GET", route="unmatched", status="404") == 2
    assert sample(text, requests, method="other", route="/api/tasks", status="405") == 1
    assert sample(text, requests, method="OPTIONS", route="/api/tasks", status="200") == 1
    assert sample(text, requests, method="POST", route="/graphql", status="200") == 1
    assert task_id not in text and "/no/such" not in text and "BREW" not in text
    latency = "todo_http_request_duration_seconds_count"
    assert sample(text, latency, method="GET", route="/api/tasks") == 4
    assert sample(text, "todo_http_request_duration_seconds_bucket", le="+Inf") is not None
    assert sample(text, "process_cpu_seconds_total") is not None or sys.platform != "linux"


def test_route_templates_of_what_the_router_did_not_mark() -> None:
    """Preflights (never routed) and plain Starlette routes (FastAPI's router leaves no
    `scope["route"]`) are labelled by the routes that match them, prefixes, mounts and routes
    added late included; a request no route matched is `unmatched`."""
    inner = APIRouter()
    inner.add_api_route("/items/{item_id}", lambda item_id: None, methods=["GET"])
    app = FastAPI()
    app.include_router(inner, prefix="/v1")
    app.mount("/static", Starlette())
    routes = app.router.routes

    def template(method: str, path: str, **marks: object) -> str:
        scope = {"type": "http", "method": method, "path": path, "root_path": "", **marks}
        return route_template(scope, routes)

    assert template("OPTIONS", "/v1/items/42") == "/v1/items/{item_id}"
    assert template("GET", "/static/css/site.css", endpoint=None) == "/static/{path}"
    assert template("OPTIONS", "/items/42") == "unmatched"
    assert template("GET", "/v1/items/42") == "unmatched"  # the router found nothing
    app.add_route("/late", lambda request: None, methods=["GET"])
    assert template("GET", "/late", endpoint=None) == "/late"
    marked = APIRouter(prefix="/v2")
    marked.add_api_route("/x/{y}", lambda y: None, methods=["GET"])
    assert template("GET", "/anything", route=marked.routes[0]) == "/v2/x/{y}"


async def test_the_database_pool_is_measured(app: FastAPI, client: httpx.AsyncClient) -> None:
    services = app.state.services
    text = await scrape(client)
    size = 1 if services.database.is_sqlite else services.settings.db_pool_size
    assert sample(text, "todo_db_pool_size") == size
    assert sample(text, "todo_db_pool_connections_in_use") == 0
    async with services.store.transaction():
        if not services.database.is_sqlite:  # SQLite's one connection is held right here
            text = await scrape(client)
            assert sample(text, "todo_db_pool_connections_in_use") == 1
    assert sample(await scrape(client), "todo_db_pool_connections_in_use") == 0


async def test_metrics_can_be_switched_off(make_settings) -> None:
    async with serve(create_app(make_settings(metrics_enabled=False))) as client:
        response = await client.get("/metrics")
        assert response.status_code == 404
        assert response.json() == {"error": "Not found"}


async def test_every_app_has_its_own_registry(make_settings) -> None:
    first, second = create_app(make_settings()), create_app(make_settings())
    async with serve(first) as one, serve(second, wipe=False) as two:
        for _ in range(2):
            await one.get("/health")
        await two.get("/health")
        route = {"method": "GET", "route": "/health", "status": "200"}
        assert sample(await scrape(one), "todo_http_requests_total", **route) == 2
        assert sample(await scrape(two), "todo_http_requests_total", **route) == 1


async def test_graphql_operations_are_counted(app: FastAPI, client: httpx.AsyncClient) -> None:
    async def probe() -> dict:
        record_graphql_operation("CreateTask", "ok")
        record_graphql_operation("CreateTask", "BAD_USER_INPUT")
        record_graphql_operation(None, "ok")
        record_graphql_operation("not a name!", "ok")
        record_graphql_operation("Fine", "Not An Outcome")
        return {}

    app.add_api_route("/test-probe", probe)
    assert (await client.get("/test-probe")).status_code == 200
    text = await scrape(client)
    name = "todo_graphql_operations_total"
    assert sample(text, name, operation="CreateTask", outcome="ok") == 1
    assert sample(text, name, operation="CreateTask", outcome="bad_user_input") == 1
    assert sample(text, name, operation="anonymous", outcome="ok") == 1
    assert sample(text, name, operation="other", outcome="ok") == 1
    assert sample(text, name, operation="Fine", outcome="other") == 1


async def test_operation_names_from_clients_cannot_grow_the_series_without_bound(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    async def probe() -> dict:
        for i in range(MAX_GRAPHQL_OPERATION_NAMES + 50):
            record_graphql_operation(f"Op{i}", "ok")
        return {}

    app.add_api_route("/test-probe", probe)
    await client.get("/test-probe")
    text = await scrape(client)
    names = {
        s.labels["operation"]
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "todo_graphql_operations_total"
    }
    assert len(names) == MAX_GRAPHQL_OPERATION_NAMES + 1
    assert sample(text, "todo_graphql_operations_total", operation="other") == 50


def test_recording_outside_a_request_does_nothing() -> None:
    record_graphql_operation("Anything", "ok")  # no app, no error


# --- the real process: JSON lines, several workers, nothing secret in the output -------------


@dataclass
class RunningService:
    base: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextmanager
def running_service(
    command: list[str], *, cwd: Path, env: dict[str, str], ready_within: float = 60
) -> Iterator[RunningService]:
    with running(command, cwd=cwd, env=env, ready_within=ready_within) as (base, process):
        yield RunningService(base, process, process.log_path)  # type: ignore[attr-defined]


def service_env(**extra: str) -> dict[str, str]:
    stripped = {"DATABASE_URL", "BETTER_AUTH_SECRET", "APP_ENV", "FRONTEND_URL", "DATA_DIR"}
    env = {k: v for k, v in os.environ.items() if k not in stripped and not k.startswith("LOG_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(PYTHONPATH=str(REPO), BCRYPT_ROUNDS="4", **extra)
    return env


def test_several_workers_report_one_sum_and_log_json_lines(tmp_path: Path) -> None:
    env = service_env(
        APP_ENV="production",
        DATABASE_URL=f"sqlite:///{tmp_path / 'todo.db'}",
        BETTER_AUTH_SECRET=TEST_SECRET,
        DB_AUTO_MIGRATE="true",
        WEB_CONCURRENCY="2",
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "prometheus"),
    )
    (tmp_path / "prometheus").mkdir()
    (tmp_path / "prometheus" / "counter_999999.db").write_bytes(b"stale")  # a previous run's
    requests = 40
    with running_service([sys.executable, "-m", "api"], cwd=tmp_path, env=env) as service:
        for i in range(requests):
            response = httpx.get(f"{service.base}/api/tasks", headers={"X-Request-ID": f"mw-{i}"})
            assert response.status_code == 401
        for _ in range(4):  # whichever worker answers, the sum is the same
            text = httpx.get(f"{service.base}/metrics").text
            route = {"method": "GET", "route": "/api/tasks", "status": "401"}
            assert sample(text, "todo_http_requests_total", **route) == requests
            assert sample(text, "todo_db_pool_size") == 2  # SQLite's one connection, per worker
    output = service.output()
    lines = [json.loads(line) for line in output.splitlines() if line.strip()]
    access = [e for e in lines if e["logger"] == "todo.access" and e["path"] == "/api/tasks"]
    assert sorted(e["request_id"] for e in access) == sorted(f"mw-{i}" for i in range(requests))
    assert {e["status"] for e in access} == {401}
    assert any(e["message"].startswith("Application shutdown complete") for e in lines)
    assert not (tmp_path / "prometheus" / "counter_999999.db").exists()


def test_no_secret_reaches_the_log_even_at_debug(tmp_path: Path) -> None:
    password, title = "Pass-W0rd-Not-For-Logs", "Title-Not-For-Logs"
    env = service_env(LOG_LEVEL="debug", BETTER_AUTH_SECRET=TEST_SECRET)
    with running_service([sys.executable, "-m", "api"], cwd=tmp_path, env=env) as service:
        body = {"email": "quiet@example.com", "password": password}
        token = httpx.post(f"{service.base}/api/auth/signup", json=body).json()["token"]
        assert httpx.post(f"{service.base}/api/auth/login", json=body).status_code == 200
        headers = {"Authorization": f"Bearer {token}"}
        created = httpx.post(f"{service.base}/api/tasks", json={"title": title}, headers=headers)
        assert created.status_code == 201
        httpx.get(f"{service.base}/api/tasks?access_token={token}", headers=headers)
        wrong = {"email": "quiet@example.com", "password": password + "-wrong"}
        assert httpx.post(f"{service.base}/api/auth/login", json=wrong).status_code == 401
    output = service.output()
    assert "todo.access" in output and "POST /api/auth/login 401" in output
    for secret in (password, title, token, TEST_SECRET, token.split(".")[1], "Bearer", "$bcrypt"):
        assert secret not in output, secret


def test_text_logs_in_development(tmp_path: Path) -> None:
    with running_service(
        [sys.executable, "-m", "api"], cwd=tmp_path, env=service_env(LOG_LEVEL="info")
    ) as service:
        httpx.get(f"{service.base}/health", headers={"X-Request-ID": "dev-1"})
    output = service.output()
    assert re.search(r" INFO todo\.access \[dev-1\] GET /health 200 \d+\.\dms$", output, re.M)
    assert "uvicorn.access" not in output and '"GET /health HTTP/1.1"' not in output
