"""OpenTelemetry tracing (api/tracing.py): a real server exporting to a real OTLP/HTTP receiver.

The receiver is an HTTP server in the test that accepts `POST /v1/traces` with a protobuf
`ExportTraceServiceRequest`, as a collector does, and keeps every body it was sent. The
service runs as `python -m api` with `OTEL_EXPORTER_OTLP_ENDPOINT` pointing at it; the checks
read the spans it received: one trace per request, the HTTP span under the caller's
`traceparent`, the GraphQL operation under it, the SQL statements under that, and none of the
request's secrets in any byte exported.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from api.tracing import tracing_configured
from tests.live import clean_env, free_port, service, service_log
from tests.ws_helpers import next_event, subscribed
from tests.ws_helpers import rest as ws_rest
from tests.ws_helpers import signup as ws_signup

SERVER = 2  # opentelemetry.proto.trace.v1.Span.SpanKind.SPAN_KIND_SERVER
CLIENT = 3


@dataclass
class ReceivedSpan:
    trace_id: str
    span_id: str
    parent_id: str
    name: str
    kind: int
    attributes: dict[str, Any]
    resource: dict[str, Any]


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(item) for item in value.array_value.values]
    return getattr(value, kind) if kind else None


class OtlpReceiver:
    """An OTLP/HTTP trace receiver on a free port of 127.0.0.1."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.path != "/v1/traces":
                    self.send_error(404)
                    return
                ExportTraceServiceRequest.FromString(body)  # a 400 if it is not one
                with receiver._lock:
                    receiver.bodies.append(body)
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *_: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def raw(self) -> bytes:
        with self._lock:
            return b"".join(self.bodies)

    def spans(self) -> list[ReceivedSpan]:
        with self._lock:
            bodies = list(self.bodies)
        found = []
        for body in bodies:
            for resource_spans in ExportTraceServiceRequest.FromString(body).resource_spans:
                resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        found.append(
                            ReceivedSpan(
                                trace_id=span.trace_id.hex(),
                                span_id=span.span_id.hex(),
                                parent_id=span.parent_span_id.hex(),
                                name=span.name,
                                kind=span.kind,
                                attributes={a.key: _value(a.value) for a in span.attributes},
                                resource=resource,
                            )
                        )
        return found

    def trace(
        self, trace_id: str, until: Callable[[list[ReceivedSpan]], bool], timeout: float = 15
    ) -> list[ReceivedSpan]:
        """The spans of one trace, once `until` holds for them."""
        deadline = time.monotonic() + timeout
        while True:
            spans = [span for span in self.spans() if span.trace_id == trace_id]
            if until(spans):
                return spans
            if time.monotonic() > deadline:
                names = sorted(span.name for span in spans)
                raise AssertionError(f"trace {trace_id} incomplete after {timeout} s: {names}")
            time.sleep(0.05)


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    started = OtlpReceiver()
    yield started
    started.close()


def _traceparent() -> tuple[str, str, str]:
    trace_id, parent_id = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    return f"00-{trace_id}-{parent_id}-01", trace_id, parent_id


def _has_server_span(spans: list[ReceivedSpan]) -> bool:
    return any(span.kind == SERVER for span in spans)


def _children(spans: list[ReceivedSpan], parent: ReceivedSpan) -> list[ReceivedSpan]:
    return [span for span in spans if span.parent_id == parent.span_id]


def _statement(span: ReceivedSpan) -> str:
    return str(span.attributes.get("db.statement") or span.attributes.get("db.query.text") or "")


def test_a_request_is_one_trace_from_http_through_graphql_to_sql_and_keeps_secrets(
    receiver: OtlpReceiver, database_url: str, tmp_path: Path
) -> None:
    password = f"pw-{uuid.uuid4().hex}"
    email = f"ada-{uuid.uuid4().hex[:12]}@example.com"
    variable_marker = f"var-{uuid.uuid4().hex}"
    title_marker = f"title-{uuid.uuid4().hex}"
    with (
        service(
            tmp_path,
            DATABASE_URL=database_url,
            OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
            OTEL_BSP_SCHEDULE_DELAY="50",
            # An operator recording every request header still gets no credential.
            OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST=".*",
        ) as (base, _proc),
        httpx.Client(base_url=base, timeout=30) as http,
    ):
        # A password written inline in the document: no document text may reach a span.
        signup = http.post(
            "/graphql",
            json={
                "query": f'mutation Join {{ signup(email: "{email}", password: "{password}") '
                "{ token } }"
            },
        )
        assert signup.status_code == 200, signup.text
        token = signup.json()["data"]["signup"]["token"]
        auth = {"Authorization": f"Bearer {token}"}
        # A variable's value, which is also a statement's parameter.
        created = http.post(
            "/graphql",
            headers=auth,
            json={
                "query": "mutation Add($title: String!) "
                "{ createTask(input: {title: $title}) { id } }",
                "variables": {"title": title_marker},
            },
        )
        assert created.json().get("errors") is None, created.text
        for n in range(20):
            assert http.post("/api/tasks", headers=auth, json={"title": f"t{n}"}).status_code == 201
        # A GET carries its variables in the query string.
        got = http.get(
            "/graphql",
            headers=auth,
            params={
                "query": "query One($id: ID!) { task(id: $id) { title } }",
                "variables": f'{{"id": "{variable_marker}"}}',
            },
        )
        assert got.status_code == 200, got.text

        rest_parent, rest_trace, rest_parent_id = _traceparent()
        listed = http.get(
            "/api/tasks", headers={**auth, "traceparent": rest_parent, "X-Request-ID": "rest-1"}
        )
        assert listed.status_code == 200

        gql_parent, gql_trace, gql_parent_id = _traceparent()
        page = http.post(
            "/graphql",
            headers={**auth, "traceparent": gql_parent, "X-Request-ID": "graphql-1"},
            json={
                "query": "query TasksPage($first: Int!) { tasks(first: $first) "
                "{ edges { node { id title completed owner { email } } } "
                "pageInfo { hasNextPage endCursor } } }",
                "operationName": "TasksPage",
                "variables": {"first": 20},
            },
        )
        assert len(page.json()["data"]["tasks"]["edges"]) == 20, page.text

        rest = receiver.trace(rest_trace, _has_server_span)
        graphql = receiver.trace(gql_trace, _has_server_span)
        # The GET's trace, once its HTTP span is in (it ended before the later requests').
        everything = receiver.spans()
        raw = receiver.raw()

    # REST: the HTTP span continues the caller's trace; the statements are its children.
    [rest_http] = [span for span in rest if span.kind == SERVER]
    assert rest_http.name == "GET /api/tasks"
    assert rest_http.parent_id == rest_parent_id
    assert rest_http.attributes["http.route"] == "/api/tasks"
    assert rest_http.attributes["todo.request_id"] == "rest-1"
    assert rest_http.attributes["http.request.header.authorization"] == ["[REDACTED]"]
    rest_sql = [span for span in _children(rest, rest_http) if span.kind == CLIENT]
    assert any("FROM tasks" in _statement(span) for span in rest_sql), [s.name for s in rest]

    # GraphQL: HTTP span > operation span (named by type and name) > SQL statements.
    [gql_http] = [span for span in graphql if span.kind == SERVER]
    assert gql_http.name == "POST /graphql"
    assert gql_http.parent_id == gql_parent_id
    assert gql_http.attributes["todo.request_id"] == "graphql-1"
    [operation] = [span for span in graphql if span.name == "query TasksPage"]
    assert operation.parent_id == gql_http.span_id
    assert operation.attributes["graphql.operation.type"] == "query"
    assert operation.attributes["graphql.operation.name"] == "TasksPage"
    assert "query" not in operation.attributes  # Strawberry's: the whole document
    sql = [span for span in _children(graphql, operation) if span.kind == CLIENT]
    statements = [_statement(span) for span in sql]
    assert any("FROM tasks" in text for text in statements), statements
    assert any("FROM users" in text for text in statements), statements  # the owners
    assert all(span.trace_id == gql_trace for span in graphql)
    assert {span.resource.get("service.name") for span in everything} == {"todo-service"}
    # The mutations' spans are named by their operations, the query string is never kept.
    names = {span.name for span in everything}
    assert {"mutation Join", "mutation Add", "query One", "GET /graphql"} <= names, names
    for span in everything:
        for key in ("http.url", "http.target", "url.full", "url.query"):
            assert "?" not in str(span.attributes.get(key, "")), (span.name, key)
        assert "query" not in span.attributes, span.name

    # No secret anywhere in what was exported: the token (or a piece of its signature), the
    # inline password and email, a variable's value, a statement's parameter.
    signature = token.rsplit(".", 1)[1]
    secrets = [token, signature[:12], password, email, variable_marker, title_marker]
    for secret in secrets:
        assert secret.encode() not in raw, secret
    assert b"Bearer" not in raw


def test_untraced_paths_start_no_trace(receiver: OtlpReceiver, tmp_path: Path) -> None:
    """`/health` and `/metrics` make no span, and neither do their statements."""
    with service(
        tmp_path,
        DATABASE_URL=f"sqlite:///{tmp_path / 'todo.db'}",
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
        OTEL_BSP_SCHEDULE_DELAY="50",
    ) as (base, _proc):
        for _ in range(3):
            assert httpx.get(f"{base}/health").status_code == 200
            assert httpx.get(f"{base}/metrics").status_code == 200
        parent, trace_id, _ = _traceparent()
        httpx.get(f"{base}/api/tasks", headers={"traceparent": parent})  # 401, still traced
        receiver.trace(trace_id, _has_server_span)
    spans = receiver.spans()
    assert not [span for span in spans if "SELECT 1" in _statement(span)]
    assert not [span for span in spans if "/health" in span.name or "/metrics" in span.name]


_OFF_PROBE = textwrap.dedent(
    """
    import asyncio, sys
    import asyncpg, httpx
    from opentelemetry import trace
    from api.app import ServiceApp, create_app
    from api.middleware import ServiceMiddleware
    from api.settings import load_settings

    app = create_app(load_settings(database_url=sys.argv[1], bcrypt_rounds=4))

    async def main():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                assert (await client.get("/health")).status_code == 200
                await client.post("/graphql", json={"query": "{ __typename }"})
        assert type(app.middleware_stack) is ServiceMiddleware, app.middleware_stack
    asyncio.run(main())
    assert type(trace.get_tracer_provider()).__name__ == "ProxyTracerProvider"
    loaded = sorted(m for m in sys.modules if m.startswith(("opentelemetry.sdk",
        "opentelemetry.instrumentation", "opentelemetry.exporter")))
    assert not loaded, loaded
    assert not hasattr(asyncpg.Connection.fetch, "__wrapped__")
    print("off")
    """
)


def test_without_otel_variables_nothing_is_installed(tmp_path: Path) -> None:
    """No middleware, no schema extension, no instrumentation, no SDK: not even imported."""
    env = {k: v for k, v in clean_env().items() if not k.startswith("OTEL_")}
    probe = subprocess.run(
        [sys.executable, "-c", _OFF_PROBE, f"sqlite:///{tmp_path / 'todo.db'}"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.returncode == 0 and probe.stdout.strip() == "off", probe.stderr


@pytest.mark.parametrize(
    ("environ", "on"),
    [
        ({}, False),
        ({"OTEL_SERVICE_NAME": "x", "OTEL_RESOURCE_ATTRIBUTES": "a=b"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c"}, False),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c"}, False),
        ({"OTEL_SDK_DISABLED": "false", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c"}, True),
    ],
)
def test_what_turns_tracing_on(environ: dict[str, str], on: bool) -> None:
    assert tracing_configured(environ) is on


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json"),
        ("OTEL_TRACES_EXPORTER", "zipkin"),
    ],
)
def test_a_setting_it_cannot_honour_stops_start_up(
    tmp_path: Path, variable: str, value: str
) -> None:
    env = clean_env(OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9", **{variable: value})
    started = subprocess.run(
        [sys.executable, "-m", "api"],
        cwd=tmp_path,
        env={**env, "PORT": str(free_port())},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert started.returncode == 1, started.stderr
    assert f"invalid setting {variable}" in started.stderr, started.stderr
    assert os.environ.get(variable) != value  # the test's own environment is untouched


async def test_a_subscription_is_traced_under_its_websocket(
    receiver: OtlpReceiver, tmp_path: Path
) -> None:
    """A WebSocket is one span from upgrade to close; a subscription's operation span lives
    under it as long as the subscription, and ends cleanly (its context is detached in the
    task that attached it: the log says nothing)."""
    with service(
        tmp_path,
        DATABASE_URL=f"sqlite:///{tmp_path / 'todo.db'}",
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
        OTEL_BSP_SCHEDULE_DELAY="50",
    ) as (base, proc):
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            token, _user = await ws_signup(client)
            async with subscribed(base, token) as (socket, [op_id]):
                created = await ws_rest(client, "POST", "/api/tasks", token, {"title": "x"})
                assert created.status_code == 201
                event = await next_event(socket, op_id)
                assert event["type"] == "CREATED"
        deadline = time.monotonic() + 15
        while not any(span.name == "WS /graphql" for span in receiver.spans()):
            assert time.monotonic() < deadline, sorted({s.name for s in receiver.spans()})
            await asyncio.sleep(0.05)
        log_text = service_log(proc)
    spans = receiver.spans()
    [socket_span] = [span for span in spans if span.name == "WS /graphql"]
    [operation] = [span for span in spans if span.name == "subscription"]
    assert operation.parent_id == socket_span.span_id
    assert socket_span.attributes.get("todo.request_id")
    assert "detach" not in log_text and "Traceback" not in log_text, log_text
