"""The app factory: one set of services, two thin surfaces (REST facade and GraphQL)."""

from __future__ import annotations

import functools
import gc
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import orjson
from fastapi import FastAPI
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.responses import Response
from starlette.types import ASGIApp

from api.dispatch import request_path
from api.graphiql import graphiql_response
from api.html_pages import swagger_ui
from api.metrics import install_metrics, record_graphql_operation
from api.middleware import ServiceMiddleware
from api.services import Services
from api.settings import Settings, load_settings
from api.tracing import Tracing
from core.tasks import database_is_healthy
from db.migrations import prepare_schema
from graphql_schema.router import build_graphql_router
from rest_facade.errors import install_error_handlers
from rest_facade.router import router as rest_router

log = logging.getLogger("todo")


class ServiceApp(FastAPI):
    """FastAPI with `ServiceMiddleware` (api/middleware.py) as its outermost layer.

    It takes the place of FastAPI's ServerErrorMiddleware, whose plain-text 500 would come
    before its JSON one and without CORS headers; the rest of FastAPI's stack (middleware
    added with `add_middleware`, exception handlers, routing) is what it hands requests to,
    as one layer when only the exception handlers and the router have work to do
    (api/dispatch.py).
    """

    service_middleware: Callable[[ASGIApp], ASGIApp] | None = None

    def build_middleware_stack(self) -> ASGIApp:
        stack = super().build_middleware_stack()
        if self.service_middleware is None:
            return stack
        if not isinstance(stack, ServerErrorMiddleware):  # pragma: no cover - FastAPI changed
            raise RuntimeError("FastAPI's outermost middleware is not ServerErrorMiddleware")
        return self.service_middleware(request_path(self, stack.app))


_frozen = False


def _freeze_start_up_objects() -> None:
    """Once per process, when the first app has started: what exists now (modules, schemas,
    metadata, settings: ~140,000 objects) lives as long as the process, so the collector stops
    rescanning it in every full collection, which took ~60 ms each (latency spikes under
    load). Garbage is collected first so that it is not kept for ever."""
    global _frozen
    if not _frozen:
        _frozen = True
        gc.collect()
        gc.freeze()


def create_app(settings: Settings | None = None) -> ServiceApp:
    """Build the ASGI app. Raises ConfigError (one line naming the setting) on bad settings."""
    settings = settings or load_settings()
    tracing = Tracing.from_environment()  # None unless OTEL_* variables ask (api/tracing.py)
    services = Services.from_settings(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        log.info("database: %s", services.database.describe())
        try:
            # Migrations (db/migrations): applied when DB_AUTO_MIGRATE, else only checked.
            await prepare_schema(services.database, auto_migrate=settings.auto_migrate)
        except Exception as exc:  # the service still starts; /health and 503s say why
            log.error("could not prepare the database schema: %s: %s", type(exc).__name__, exc)
        # Live updates (core/events.py): LISTEN on PostgreSQL; never fails start-up.
        await services.events.start()
        if tracing is not None:
            tracing.start(services.database, services.engine)
        _freeze_start_up_objects()
        try:
            yield
        finally:
            await services.events.stop()
            await services.aclose()
            if tracing is not None:
                tracing.stop()

    app = ServiceApp(
        title="Todo service",
        version="0.1.0",
        description="A multi-user todo service: REST facade under /api, GraphQL at /graphql.",
        lifespan=lifespan,
        # /docs is the service's own Swagger UI page (api/html_pages.py: pinned assets, a
        # Content-Security-Policy); FastAPI's loads an unpinned build. No ReDoc.
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
        openapi_tags=[
            {"name": "auth", "description": "Accounts and the bearer tokens the task routes take"},
            {"name": "tasks", "description": "The caller's own tasks"},
            {"name": "operations", "description": "For load balancers and operators"},
        ],
        redirect_slashes=False,
        # FastAPI's own spans would duplicate the HTTP span (api/tracing.py) and record the
        # query string; it would find no tracer provider with tracing off either.
        telemetry={"tracing": False, "metrics": False, "logs": False, "auto_configure": False},
    )
    app.state.services = services
    app.state["todo"] = services.todo  # what the surfaces call (core/service.py)
    install_error_handlers(app)
    graphql = build_graphql_router(
        introspection=settings.graphql_introspection,
        max_cost=settings.graphql_max_cost,
        allowed_origins=settings.cors_origins,
        keep_alive_seconds=settings.ws_keepalive_seconds,
        graphiql_page=graphiql_response,
        report=record_graphql_operation,
        extensions=tracing.graphql_extensions if tracing is not None else (),
        documents=services.documents,
    )
    # The surfaces' routes join the app's own table rather than being included: FastAPI 0.165
    # includes a router lazily and matches through it twice per request, saving and restoring
    # scope keys for every candidate, a measurable share of a REST read (decision 9). The
    # router tries routes in order: first POST /graphql, which serves every GraphQL operation
    # but GET's queries (a REST request pays one failed match for it; behind the REST routes
    # it paid one for each of them), then the REST routes, then GraphQL's others.
    operations = graphql.operations_route
    others = [route for route in graphql.routes if route is not operations]
    app.router.routes[:0] = [operations, *rest_router.routes, *others]
    app.add_api_route("/docs", swagger_ui, methods=["GET"], include_in_schema=False)

    @app.get("/health", tags=["operations"], summary="Liveness and database reachability")
    async def health() -> Response:
        healthy = await database_is_healthy(services.store)
        return Response(
            orjson.dumps({"status": "healthy" if healthy else "unhealthy"}),
            status_code=200 if healthy else 503,
            media_type="application/json",
        )

    # Observability (api/metrics.py, api/logging.py), trailing slashes, CORS, security headers
    # and the last-resort 500, around FastAPI's stack (api/middleware.py).
    metrics = install_metrics(app, store=services.store) if settings.metrics_enabled else None
    app.service_middleware = functools.partial(
        ServiceMiddleware,
        cors={
            "allow_origins": settings.cors_origins,
            "allow_credentials": True,
            "allow_methods": ["GET", "POST", "PUT", "DELETE", "OPTIONS"],
            "allow_headers": ["Authorization", "Content-Type"],
            # Readable by the frontend's JavaScript: when to retry a 429, which request failed.
            "expose_headers": ["Retry-After", "X-Request-ID"],
            "max_age": 600,
        },
        metrics=metrics,
        routes=app.router.routes,
    )
    if tracing is not None:  # the HTTP span outside everything (api/tracing.py)
        app.service_middleware = tracing.wrap(app.service_middleware, app.router.routes)
    return app
