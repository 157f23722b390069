# syntax=docker/dockerfile:1
# Multi-stage: dependencies are built in a throwaway stage; the runtime image holds only the
# virtual environment with the service's runtime dependencies (migrations included: they ship
# inside the `db` package), and runs as a non-root user.
#
#   docker build -t todo-service .
#   docker run --rm --env-file prod.env todo-service todo-api migrate    # one-off, each release
#   docker run -p 8000:8000 --env-file prod.env todo-service            # todo-api serve
#
# APP_ENV=production: DATABASE_URL and BETTER_AUTH_SECRET are required, tables are never
# created at start-up (DB_AUTO_MIGRATE defaults to false), logs are JSON lines.
# tests/test_dockerfile.py rebuilds this runtime environment without Docker and runs it.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# The runtime dependencies exactly as locked (requirements.lock, exported from uv.lock: every
# file hash-checked), in a layer that a change of the code alone does not rebuild; then the
# service itself, which resolves nothing (decision 18).
COPY requirements.lock ./
RUN pip install --require-hashes -r requirements.lock
COPY pyproject.toml README.md ./
COPY api ./api
COPY core ./core
COPY db ./db
COPY rest_facade ./rest_facade
COPY graphql_schema ./graphql_schema
RUN pip install --no-deps .

FROM python:3.11-slim AS runtime
RUN useradd --create-home --uid 10001 app && mkdir /data && chown app /data
COPY --from=build /opt/venv /opt/venv
# WEB_CONCURRENCY workers share their metrics through PROMETHEUS_MULTIPROC_DIR (emptied by
# `todo-api serve` at start-up), so /metrics sums all of them.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    APP_ENV=production \
    HOST=0.0.0.0 \
    PORT=8000 \
    WEB_CONCURRENCY=2 \
    DATA_DIR=/data \
    PROMETHEUS_MULTIPROC_DIR=/tmp/todo-metrics
USER app
WORKDIR /home/app
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('PORT', '8000'), timeout=4)"]
CMD ["todo-api", "serve"]
