"""Prometheus metrics at `GET /metrics` (text format), one CollectorRegistry per app.

What is measured:
- `todo_http_requests_total{method,route,status}` and
  `todo_http_request_duration_seconds{method,route}` (observed by `ServiceMiddleware`,
  api/middleware.py): `route` is the template of the route the request matched
  (`/api/tasks/{task_id}`), never the raw path, so ids and probes of unknown paths
  (`unmatched`) cannot grow the number of series; unusual methods count as `other`.
- `todo_db_pool_connections_in_use` and `todo_db_pool_size`: the database connection pool.
- `todo_graphql_operations_total{operation,outcome}`, fed by `record_graphql_operation`.
- Process CPU, memory and garbage collection (single-process mode).

Several workers (`WEB_CONCURRENCY` > 1) are separate processes: set `PROMETHEUS_MULTIPROC_DIR`
(in the environment, not `.env`: prometheus_client reads it when imported) to a directory the
workers share; `python -m api serve` empties it at start-up, and every scrape then sums all
workers. Without it, each scrape shows only the worker that answered.
"""

from __future__ import annotations

import atexit
import os
import re
from collections.abc import Iterable, Sequence
from contextvars import ContextVar, Token
from pathlib import Path
from typing import Any

from fastapi import routing as fastapi_routing
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as prometheus_multiprocess
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, WebSocketRoute
from starlette.types import Scope

from db.store import Store

__all__ = [
    "AppMetrics",
    "RouteTemplates",
    "bind_metrics",
    "install_metrics",
    "prepare_multiprocess_dir",
    "record_graphql_operation",
    "route_template",
    "unbind_metrics",
]

MULTIPROCESS_DIR: str | None = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None

_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED_ROUTE = "unmatched"

_GRAPHQL_NAME = re.compile(r"[_A-Za-z][_0-9A-Za-z]{0,63}")
_OUTCOME = re.compile(r"[a-z][a-z0-9_]{0,31}")
# Operation names come from clients: past this many distinct names, new ones count as "other".
MAX_GRAPHQL_OPERATION_NAMES = 100

_current: ContextVar[AppMetrics | None] = ContextVar("todo_metrics", default=None)


def bind_metrics(metrics: AppMetrics) -> Token[AppMetrics | None]:
    """For the request or websocket being served: `record_graphql_operation` counts here."""
    return _current.set(metrics)


def unbind_metrics(token: Token[AppMetrics | None]) -> None:
    _current.reset(token)


def record_graphql_operation(name: str | None, outcome: str) -> None:
    """Count one executed GraphQL operation in the metrics of the app serving this request.

    `name` is the operation name the client gave (None when anonymous); `outcome` is a short
    lower-case word such as "ok" or an error code ("bad_user_input"; upper case is folded).
    Outside a request served by an app with metrics (METRICS_ENABLED=false, a bare schema in a
    test) this does nothing.
    """
    metrics = _current.get()
    if metrics is not None:
        metrics.record_graphql(name, outcome)


class AppMetrics:
    def __init__(self, *, store: Store | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.requests = Counter(
            "todo_http_requests_total",
            "HTTP requests by method, route template and status.",
            ["method", "route", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "todo_http_request_duration_seconds",
            "Time to answer an HTTP request, by method and route template.",
            ["method", "route"],
            registry=registry,
        )
        self.pool_in_use = Gauge(
            "todo_db_pool_connections_in_use",
            "Database connections checked out of the pool.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.pool_size = Gauge(
            "todo_db_pool_size",
            "Connections the database pool keeps at most (DB_POOL_SIZE; 1 on SQLite).",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.graphql_operations = Counter(
            "todo_graphql_operations_total",
            "GraphQL operations by operation name and outcome.",
            ["operation", "outcome"],
            registry=registry,
        )
        self._request_series: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._operation_names: set[str] = set()
        if MULTIPROCESS_DIR is None:
            ProcessCollector(registry=registry)
            PlatformCollector(registry=registry)
            GCCollector(registry=registry)
        else:
            Path(MULTIPROCESS_DIR).mkdir(parents=True, exist_ok=True)
            _forget_this_process_at_exit()
        if store is not None:
            self.watch_pool(store)

    def watch_pool(self, store: Store) -> None:
        self.pool_size.set(store.pool_capacity)
        store.watch_pool(self.pool_in_use.inc, self.pool_in_use.dec)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """One answered request; unusual methods count as `other`."""
        if method not in _KNOWN_METHODS:
            method = "other"
        key = (method, route, status)
        series = self._request_series.get(key)
        if series is None:
            series = (
                self.requests.labels(method, route, str(status)),
                self.latency.labels(method, route),
            )
            self._request_series[key] = series
        series[0].inc()
        series[1].observe(seconds)

    def record_graphql(self, name: str | None, outcome: str) -> None:
        if name is None or name == "":
            operation = "anonymous"
        elif _GRAPHQL_NAME.fullmatch(name) is None:
            operation = "other"
        elif name in self._operation_names:
            operation = name
        elif len(self._operation_names) < MAX_GRAPHQL_OPERATION_NAMES:
            self._operation_names.add(name)
            operation = name
        else:
            operation = "other"
        folded = outcome.lower() if isinstance(outcome, str) else ""
        self.graphql_operations.labels(
            operation, folded if _OUTCOME.fullmatch(folded) else "other"
        ).inc()

    def exposition(self) -> bytes:
        if MULTIPROCESS_DIR is None:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        prometheus_multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)

    async def endpoint(self, _request: Request) -> Response:
        return Response(self.exposition(), media_type=CONTENT_TYPE_LATEST)


class RouteTemplates:
    """Finds the template of the route a request is for before the router has seen it, from
    the app's own route table: the tracing's span names (api/tracing.py), given when the
    span starts, outside every layer. The metrics, counted after the response, read the route
    the router matched (`route_template`). The table is built on first use and again whenever
    routes were added.
    """

    def __init__(self, routes: Sequence[BaseRoute]) -> None:
        self._routes = routes
        self._size = -1
        self._table: list[tuple[re.Pattern[str], str, frozenset[str] | None]] = []

    def _build(self) -> None:
        table = []
        for route in _flattened(self._routes):
            if isinstance(getattr(route, "original_route", route), WebSocketRoute):
                continue
            regex = getattr(route, "path_regex", None)
            template = getattr(route, "path_format", None)
            if isinstance(regex, re.Pattern) and isinstance(template, str) and template:
                methods = getattr(route, "methods", None)
                table.append((regex, template, frozenset(methods) if methods else None))
        self._table = table
        self._size = len(self._routes)

    def __call__(self, scope: Scope) -> str:
        if len(self._routes) != self._size:
            self._build()
        path: str = scope["path"]
        root_path: str = scope.get("root_path", "")
        if root_path and path.startswith(root_path):
            path = path[len(root_path) :] or "/"
        if len(path) > 1 and path.endswith("/"):
            path = path.rstrip("/") or "/"  # api.middleware serves /x/ as /x
        method = scope.get("method")
        partial = None
        for regex, template, methods in self._table:
            if regex.match(path) is not None:
                if methods is None or method in methods:
                    return template
                partial = partial or template  # a 405, or a preflight, for this route
        return partial or UNMATCHED_ROUTE


def route_template(scope: Scope, routes: Sequence[BaseRoute]) -> str:
    """The template of the route a request was for, `unmatched` when none was.

    FastAPI's routes put themselves in `scope["route"]` when they match, fully or by path
    alone (405). Two kinds of request have none there: preflights, which CORS answers
    before routing, and requests served by plain Starlette routes (`/openapi.json`,
    `/metrics`), which FastAPI's router leaves unmarked; for those, the same routes are
    asked, in the router's order, whether they match (`Route.matches`).
    """
    template = getattr(scope.get("route"), "path_format", None)
    if template:
        return template
    if "endpoint" not in scope and scope.get("method") != "OPTIONS":
        return UNMATCHED_ROUTE  # no route matched: a 404
    probe = {
        "type": "http",
        "method": scope.get("method"),
        "path": scope["path"],
        "root_path": scope.get("root_path", ""),
    }
    partial = None
    for route in _flattened(routes):
        match, _ = route.matches(probe)
        if match is Match.FULL:
            return route.path_format or UNMATCHED_ROUTE
        if match is Match.PARTIAL and partial is None:
            partial = route.path_format
    return partial or UNMATCHED_ROUTE


def _flattened(routes: Sequence[BaseRoute]) -> Iterable[Any]:
    # FastAPI 0.165+ keeps included routers lazily; this public helper yields their routes
    # with the full path (prefix included). Older versions copy them into the app's routes.
    iter_route_contexts = getattr(fastapi_routing, "iter_route_contexts", None)
    return iter_route_contexts(routes) if iter_route_contexts is not None else routes


def install_metrics(app: Any, *, store: Store | None) -> AppMetrics:
    """Serve `GET /metrics`. Requests are counted by `ServiceMiddleware` (api/middleware.py),
    which is handed the returned metrics."""
    metrics = AppMetrics(store=store)
    app.add_route("/metrics", metrics.endpoint, methods=["GET"], include_in_schema=False)
    app.state.metrics = metrics
    return metrics


def prepare_multiprocess_dir() -> None:
    """Before the workers start: empty PROMETHEUS_MULTIPROC_DIR of a previous run's files."""
    if MULTIPROCESS_DIR is None:
        return
    directory = Path(MULTIPROCESS_DIR)
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink(missing_ok=True)


_forgetting = False


def _forget_this_process_at_exit() -> None:
    # A worker's "live" gauges (the pool) must stop counting once it has exited.
    global _forgetting
    if not _forgetting:
        _forgetting = True
        pid = os.getpid()
        atexit.register(prometheus_multiprocess.mark_process_dead, pid, MULTIPROCESS_DIR)
