"""Logging: one line per request, JSON lines or readable text, a request id on every record.

- `ServiceMiddleware` (api/middleware.py, the outermost layer) takes the client's
  `X-Request-ID` when it is sane (1-128 of `[A-Za-z0-9._-]`, see `request_id_from`), else makes
  one, returns it in the response, and logs one line per request on `todo.access` with
  `log_request`: method, path (never the query string), status, duration in ms, peer address.
  Nothing else of the request is logged: no headers (so no `Authorization`), no bodies.
- The request id lives in a context variable; `RequestContextFilter` puts it on every record
  logged while the request runs. The stack trace of an unhandled error is logged once, by
  `api.middleware` (which turns it into the masked 500); it carries the same request id as the
  request's line, which is logged at ERROR for every 5xx.
- `logging_config(settings)` is a `dictConfig` for `python -m api`. Handed to uvicorn, it is
  applied in every worker process too; uvicorn's own access log is replaced by ours.
"""

from __future__ import annotations

import logging
import logging.config
import os
import re
import time
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
from starlette.types import Scope

if TYPE_CHECKING:
    from api.settings import Settings

access_log = logging.getLogger("todo.access")

REQUEST_ID_HEADER = "X-Request-ID"
RAW_REQUEST_ID_HEADER = REQUEST_ID_HEADER.lower().encode("latin-1")
_SANE_REQUEST_ID = re.compile(rb"[A-Za-z0-9._-]{1,128}")
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")
_MAX_LOGGED_PATH = 1000

_request_id: ContextVar[str | None] = ContextVar("todo_request_id", default=None)


def current_request_id() -> str | None:
    """The id of the request being served in this context (None outside a request)."""
    return _request_id.get()


def request_id_from(given: bytes | None) -> str:
    """The client's X-Request-ID value when it is sane, else a new id (32 hex digits)."""
    if given is not None and _SANE_REQUEST_ID.fullmatch(given):
        return given.decode("ascii")
    # `uuid.uuid4().hex` without building the UUID object, which costs twice the rest.
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    return raw.hex()


def bind_request_id(request_id: str) -> Token[str | None]:
    return _request_id.set(request_id)


def unbind_request_id(token: Token[str | None]) -> None:
    _request_id.reset(token)


def _escape_control(text: str) -> str:
    """Control characters (a newline in a path...) would let a client forge log lines."""
    if _CONTROL_CHARACTERS.search(text) is None:
        return text
    return _CONTROL_CHARACTERS.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _loggable_path(path: str) -> str:
    if len(path) > _MAX_LOGGED_PATH:
        path = path[:_MAX_LOGGED_PATH] + "..."
    return _escape_control(path)


def log_request(scope: Scope, status: int, started: float) -> None:
    """The request's line; nothing is built when `todo.access` would drop it."""
    level = logging.ERROR if status >= 500 else logging.INFO
    if not access_log.isEnabledFor(level):
        return
    duration_ms = round((time.perf_counter() - started) * 1000, 2)
    method = scope.get("method", "WEBSOCKET")
    path = _loggable_path(scope["path"])
    client = scope.get("client")
    access_log.log(
        level,
        "%s %s %s %.1fms",
        method,
        path,
        status,
        duration_ms,
        extra={
            "request_id": _request_id.get(),  # also for handlers without RequestContextFilter
            "method": method,
            "path": path,
            "status": status,
            "duration_ms": duration_ms,
            "client": client[0] if client else None,
        },
    )


# --- records and formats ------------------------------------------------------------------


class RequestContextFilter(logging.Filter):
    """Puts `request_id` on every record (`-` outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = _request_id.get() or "-"
        return True


_STANDARD_ATTRIBUTES = frozenset(
    [*logging.LogRecord("", 0, "", 0, "", (), None).__dict__, "message", "asctime", "request_id"]
)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, the `extra`
    fields, and `exc_info` (the formatted stack trace) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or _request_id.get(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRIBUTES and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc_info"] = record.exc_text
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        return orjson.dumps(entry, default=str).decode()


class TextFormatter(logging.Formatter):
    """`2026-01-09 14:30:00,123 INFO todo.access [<request id>] GET /api/tasks 200 3.1ms`."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        if not hasattr(record, "request_id"):
            record.request_id = _request_id.get() or "-"
        record.message = _escape_control(record.message)
        return super().formatMessage(record)


def logging_config(settings: Settings, *, migrations_verbose: bool = False) -> dict[str, Any]:
    """The `dictConfig` of the service: one stderr handler, JSON or text (LOG_FORMAT)."""
    level = settings.log_level.upper()
    formatter = "JsonFormatter" if settings.effective_log_format == "json" else "TextFormatter"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request": {"()": "api.logging.RequestContextFilter"}},
        "formatters": {"main": {"()": f"api.logging.{formatter}"}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "main",
                "filters": ["request"],
            }
        },
        "loggers": {
            # uvicorn's own handlers go: its records reach ours through the root logger.
            "uvicorn": {"handlers": [], "propagate": True},
            "uvicorn.error": {"handlers": [], "propagate": True},
            "uvicorn.access": {"handlers": [], "propagate": False},  # todo.access replaces it
            # Start-up migrations log their own summary; `migrate` shows Alembic's steps.
            "alembic": {"level": "INFO" if migrations_verbose else "WARNING"},
            # Even at LOG_LEVEL=debug: these log statements with their parameters (emails,
            # password hashes, task titles).
            "sqlalchemy": {"level": "WARNING"},
            "aiosqlite": {"level": "WARNING"},
        },
        "root": {"handlers": ["stderr"], "level": level},
    }


def configure_logging(settings: Settings, *, migrations_verbose: bool = False) -> None:
    logging.config.dictConfig(logging_config(settings, migrations_verbose=migrations_verbose))
