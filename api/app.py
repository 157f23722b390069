"""The app factory: one set of services, two thin surfaces (REST facade and GraphQL)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import orjson
from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response

from api.logging import RequestLogMiddleware
from api.metrics import install_metrics
from api.middleware import ServiceMiddleware
from api.services import Services
from api.settings import Settings, load_settings
from db.migrations import prepare_schema
from graphql_schema import operations
from graphql_schema.router import build_graphql_router
from rest_facade.errors import install_error_handlers
from rest_facade.router import router as rest_router

log = logging.getLogger("todo")


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the ASGI app. Raises ConfigError (one line naming the setting) on bad settings."""
    settings = settings or load_settings()
    services = Services.from_settings(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        log.info("database: %s", services.database.describe())
        try:
            # Migrations (db/migrations): applied when DB_AUTO_MIGRATE, else only checked.
            await prepare_schema(services.database, auto_migrate=settings.auto_migrate)
        except Exception as exc:  # the service still starts; /health and 503s say why
            log.error("could not prepare the database schema: %s: %s", type(exc).__name__, exc)
        # Live updates (api/events.py): LISTEN on PostgreSQL; never fails start-up.
        await services.events.start()
        try:
            yield
        finally:
            await services.events.stop()
            await services.aclose()

    app = FastAPI(
        title="Todo service",
        version="0.1.0",
        description="A multi-user todo service: REST facade under /api, GraphQL at /graphql.",
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
        openapi_url="/openapi.json",
        redirect_slashes=False,
    )
    app.state.services = services
    install_error_handlers(app)
    app.include_router(rest_router)
    app.include_router(build_graphql_router(settings), prefix="/graphql")

    @app.get("/health", tags=["operations"], summary="Liveness and database reachability")
    async def health() -> Response:
        healthy = await operations.database_is_healthy(services=services)
        return Response(
            orjson.dumps({"status": "healthy" if healthy else "unhealthy"}),
            status_code=200 if healthy else 503,
            media_type="application/json",
        )

    app.add_middleware(ServiceMiddleware)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_credentials=True,
        allow_methods=["GET", "POST", "PUT", "DELETE", "OPTIONS"],
        allow_headers=["Authorization", "Content-Type"],
        # Readable by the frontend's JavaScript: when to retry a 429, which request failed.
        expose_headers=["Retry-After", "X-Request-ID"],
        max_age=600,
    )
    # Observability (api/metrics.py, api/logging.py): outside CORS, the request log outermost,
    # so every response is counted and logged and carries X-Request-ID.
    if settings.metrics_enabled:
        install_metrics(app, store=services.store)
    app.add_middleware(RequestLogMiddleware)
    return app
