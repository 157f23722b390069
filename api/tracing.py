"""OpenTelemetry tracing: off unless the standard `OTEL_*` variables turn it on.

On when `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set, or
`OTEL_TRACES_EXPORTER` names an exporter (`otlp`, `console`); off when `OTEL_SDK_DISABLED=true`
or `OTEL_TRACES_EXPORTER=none`. Everything else (the endpoint, headers, timeout, sampler, batch
sizes, resource attributes) is the SDK's own reading of its variables; `service.name` defaults
to `todo-service`. Only OTLP over HTTP (protobuf) is installed: another protocol is refused at
start-up as a bad setting.

On, one trace per request, from the maintained instrumentations:

- the HTTP span: OpenTelemetry's ASGI middleware, outside ServiceMiddleware (so the REST routes
  it serves directly are traced too), continuing the caller's W3C `traceparent`. It is named
  `METHOD /route/{template}` (the metrics' route templates), carries the request id
  (`todo.request_id`, what `X-Request-ID` returns), and never sees the query string (a GraphQL
  GET carries its variables there) nor a header's value. `/health` and `/metrics` are not traced.
- the GraphQL operation: Strawberry's OpenTelemetryExtension (`OperationSpan` below), one span
  named `query TasksPage` (the operation's type and name, from the document), never the
  document's text, the variables or an argument's value.
- each SQL statement: the asyncpg instrumentation on PostgreSQL, SQLAlchemy's on the engine on
  SQLite; the statement's text with its placeholders, never the values bound to them.

Off, nothing is imported beyond this module (the OpenTelemetry API, which FastAPI imports
anyway, and Strawberry's extension) and nothing is installed: no middleware, no schema
extension, no instrumentation, no tracer provider (tests/test_tracing.py checks it).

The provider is set up once per process when the app starts (so in every uvicorn worker), and
flushed when it stops.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Generator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from graphql import OperationDefinitionNode
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from strawberry.extensions import LifecycleStep, SchemaExtension
from strawberry.extensions.tracing import OpenTelemetryExtension

from api.logging import current_request_id
from api.metrics import UNMATCHED_ROUTE, RouteTemplates
from core.errors import ConfigError

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from sqlalchemy.ext.asyncio import AsyncEngine

    from db.url import DatabaseTarget

log = logging.getLogger("todo")

__all__ = ["OperationSpan", "Tracing", "tracing_configured"]

DEFAULT_SERVICE_NAME = "todo-service"
REQUEST_ID_ATTRIBUTE = "todo.request_id"
SECRET_HEADERS = ("authorization", "cookie", "set-cookie", "proxy-authorization")
# Probes and scrapes: a trace each would bury the requests.
UNTRACED_PATHS = frozenset({"/health", "/metrics"})
_EXPORTERS = ("otlp", "console")
_PROTOCOL = "http/protobuf"
# A client picks its operation's name; past this a span's name is cut.
MAX_OPERATION_NAME = 100


def _flag(environ: Mapping[str, str], name: str) -> str:
    return environ.get(name, "").strip().lower()


def tracing_configured(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the standard OpenTelemetry variables ask for traces (see the module's text)."""
    environ = os.environ if environ is None else environ
    if _flag(environ, "OTEL_SDK_DISABLED") == "true":
        return False
    exporters = _flag(environ, "OTEL_TRACES_EXPORTER")
    if exporters:
        return any(name.strip() not in ("", "none") for name in exporters.split(","))
    return bool(
        environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
        or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    )


def _exporters(environ: Mapping[str, str]) -> tuple[str, ...]:
    names = [
        name.strip()
        for name in (_flag(environ, "OTEL_TRACES_EXPORTER") or "otlp").split(",")
        if name.strip() not in ("", "none")
    ]
    for name in names:
        if name not in _EXPORTERS:
            raise ConfigError(
                f"invalid setting OTEL_TRACES_EXPORTER: {name!r} is not installed "
                f"(use {' or '.join(_EXPORTERS)})"
            )
    if "otlp" in names:
        for variable in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
            protocol = _flag(environ, variable)
            if protocol:
                if protocol != _PROTOCOL:
                    raise ConfigError(f"invalid setting {variable}: only {_PROTOCOL} is installed")
                break
    return tuple(dict.fromkeys(names))


# --- the process's tracer provider ---------------------------------------------------------------

_provider: TracerProvider | None = None
_instrumented: set[str] = set()


def _tracer_provider(exporters: Sequence[str]) -> TracerProvider:
    """The SDK's provider, built once per process and made the global one."""
    global _provider
    if _provider is not None:
        return _provider
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    # OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME, as the SDK reads them; our name otherwise.
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
    # The sampler (OTEL_TRACES_SAMPLER, default: follow the caller's decision, else sample) and
    # the span limits come from the environment too.
    provider = TracerProvider(resource=resource)
    for name in exporters:
        if name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            # Endpoint, headers, timeout, compression: OTEL_EXPORTER_OTLP_(TRACES_)*.
            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        else:
            provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    trace.set_tracer_provider(provider)
    _provider = provider
    return provider


def _instrument_database(database: DatabaseTarget, engine: AsyncEngine) -> None:
    """One span per SQL statement, its text only (neither instrumentation records the bound
    values unless asked to). Instrumentations patch libraries process-wide: once each."""
    if not database.is_sqlite:
        if "asyncpg" not in _instrumented:
            from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

            # Every statement of the store's pool, of the events listener and of migrations.
            AsyncPGInstrumentor(capture_parameters=False).instrument()
            _instrumented.add("asyncpg")
    elif "sqlalchemy" not in _instrumented:
        from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

        # The store runs SQLite's statements through this engine (db/store.py). The
        # instrumentation declares SQLAlchemy < 2.1 only; what it uses (the engine's public
        # cursor and pool events) is unchanged in 2.1, and tests/test_tracing.py checks its
        # spans on SQLite.
        SQLAlchemyInstrumentor().instrument(engine=engine.sync_engine, skip_dep_check=True)
        _instrumented.add("sqlalchemy")


# --- the HTTP span -------------------------------------------------------------------------------

_HIDDEN_QUERY = "todo.tracing.query_string"


class HttpSpans:
    """OpenTelemetry's ASGI middleware (`self.app`, so FastAPI's own telemetry sees it there),
    shown each request without its query string, and with the request id added to its span.

    The query string is taken out of the scope the middleware reads and given back to the app
    below it: a GraphQL GET carries its variables there, and the middleware would record it
    (`http.url`, `url.query`) whatever the semantic conventions in use.
    """

    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute]) -> None:
        from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
        from opentelemetry.instrumentation.utils import suppress_instrumentation

        self._untraced = suppress_instrumentation
        self._inner = app
        self._route_template = RouteTemplates(routes)
        self.app = OpenTelemetryMiddleware(
            self._traced,
            default_span_details=self._span_details,
            # No span per `receive` and `send` message: two more per request, telling nothing
            # the HTTP span does not.
            exclude_spans=["receive", "send"],
            # Headers stay out unless OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_* name some;
            # even then these are recorded as "[REDACTED]".
            http_capture_headers_sanitize_fields=list(SECRET_HEADERS),
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self._inner(scope, receive, send)
            return
        if scope["path"].rstrip("/") in UNTRACED_PATHS:
            with self._untraced():  # nor their SQL, which would start traces of its own
                await self._inner(scope, receive, send)
            return
        query = scope.get("query_string")
        if query:
            scope = {**scope, "query_string": b"", _HIDDEN_QUERY: query}
        await self.app(scope, receive, send)

    def _span_details(self, scope: Scope) -> tuple[str, dict[str, Any]]:
        """`GET /api/tasks/{task_id}`: the route's template, never the raw path (ids, probes of
        unknown paths); only the method when no route matches."""
        method = scope.get("method") or "WS"  # a WebSocket has no method
        template = self._route_template(scope)
        if template == UNMATCHED_ROUTE:
            return method, {}
        return f"{method} {template}", {"http.route": template}

    async def _traced(self, scope: Scope, receive: Receive, send: Send) -> None:
        query = scope.pop(_HIDDEN_QUERY, None)
        if query is not None:
            scope["query_string"] = query
        span = trace.get_current_span()  # the HTTP span, started by the middleware
        tagged = False

        async def send_tagging(message: Message) -> None:
            nonlocal tagged
            if not tagged:
                tagged = True
                # Bound by ServiceMiddleware (inside) before anything is sent.
                request_id = current_request_id()
                if request_id is not None:
                    span.set_attribute(REQUEST_ID_ATTRIBUTE, request_id)
            await send(message)

        await self._inner(scope, receive, send_tagging)


# --- the GraphQL operation span ------------------------------------------------------------------


def _operation(document: Any, name: str | None) -> OperationDefinitionNode | None:
    """The operation a request runs: the one named, or the first."""
    for definition in getattr(document, "definitions", ()):
        if isinstance(definition, OperationDefinitionNode) and (
            name is None or (definition.name is not None and definition.name.value == name)
        ):
            return definition
    return None


class OperationSpan(OpenTelemetryExtension):
    """Strawberry's OpenTelemetryExtension, keeping what may leave the process.

    - One span per operation, a child of the HTTP span and the current span while the
      operation runs, so its SQL statements are its children. It is named as OpenTelemetry's
      GraphQL conventions say (`query TasksPage`, `mutation`; `GraphQL Operation` when no
      operation could be read) and carries `graphql.operation.type` and
      `graphql.operation.name`. Strawberry's would record the whole document (`query`), where
      a client may have written a password inline, and be named `GraphQL Query` for any type.
    - No span per resolver: Strawberry's records each field's arguments, and wraps every
      field of the result in a middleware call even when it records nothing; they made a
      `tasks(first: 20)` page cost x2.4 to x3 the CPU (bench/RESULTS-tracing.md), for SQL
      spans that hang under the operation anyway.
    - No spans for parsing and validation: the document cache answers both for any document
      seen before, so they would time a dictionary lookup, at the price of two more spans.
    """

    # Strawberry calls only the hooks a class overrides: these are the base's again.
    resolve = SchemaExtension.resolve  # type: ignore[assignment]
    on_parse = SchemaExtension.on_parse  # type: ignore[assignment]
    on_validate = SchemaExtension.on_validate  # type: ignore[assignment]

    def on_operation(self) -> Generator[None, None, None]:
        span = self._tracer.start_span("GraphQL Operation", kind=SpanKind.INTERNAL)
        self._span_holder[LifecycleStep.OPERATION] = span
        token = otel_context.attach(trace.set_span_in_context(span))
        try:
            yield
        finally:
            otel_context.detach(token)
            self._name_span(span)
            span.end()

    def _name_span(self, span: Span) -> None:
        context = self.execution_context
        operation = _operation(context.graphql_document, context.operation_name)
        if operation is None:
            return
        kind = operation.operation.value
        span.set_attribute("graphql.operation.type", kind)
        if operation.name is not None:
            name = operation.name.value[:MAX_OPERATION_NAME]
            span.set_attribute("graphql.operation.name", name)
            span.update_name(f"{kind} {name}")
        else:
            span.update_name(kind)


# --- the switch ----------------------------------------------------------------------------------


class Tracing:
    """What the app installs when tracing is on (`api/app.py`); `from_environment` is None
    when it is off."""

    def __init__(self, exporters: Sequence[str]) -> None:
        self.exporters = tuple(exporters)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Tracing | None:
        """None unless configured; raises ConfigError for a setting it cannot honour."""
        environ = os.environ if environ is None else environ
        if not tracing_configured(environ):
            return None
        return cls(_exporters(environ))

    graphql_extensions: tuple[type[SchemaExtension], ...] = (OperationSpan,)

    def wrap(
        self, middleware: Callable[[ASGIApp], ASGIApp], routes: Sequence[BaseRoute]
    ) -> Callable[[ASGIApp], ASGIApp]:
        """The app's outermost layer with the HTTP span around it."""
        return lambda app: HttpSpans(middleware(app), routes)

    def start(self, database: DatabaseTarget, engine: AsyncEngine) -> None:
        """At the app's start-up, in the process that serves it."""
        _tracer_provider(self.exporters)
        _instrument_database(database, engine)
        log.info("tracing: on, exporting to %s", ", ".join(self.exporters))

    def stop(self) -> None:
        """At shutdown: send what is still buffered. The provider stays for any other app of
        the process (tests); a worker's process ends right after."""
        if _provider is not None:
            # Bounded: an unreachable collector must not hold up a graceful shutdown.
            _provider.force_flush(timeout_millis=5000)
