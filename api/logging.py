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
- No line, at any level, holds a password, a token or a part of one, a header's value, a body
  or a GraphQL variable's value. Our own records are written that way; what other code logs is
  made so here (see "request data in records" below): WebSocket frames and handshakes, the
  query string in uvicorn's WebSocket lines, and exception messages that quote input.
"""

from __future__ import annotations

import importlib.util
import logging
import logging.config
import os
import re
import time
import traceback
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
from starlette.types import Scope

from graphql_schema.privacy import loggable_error_message

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

    def formatException(self, ei: Any) -> str:
        return format_exception(ei[1])


class TextFormatter(logging.Formatter):
    """`2026-01-09 14:30:00,123 INFO todo.access [<request id>] GET /api/tasks 200 3.1ms`."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        if not hasattr(record, "request_id"):
            record.request_id = _request_id.get() or "-"
        record.message = _escape_control(record.message)
        return super().formatMessage(record)

    def formatException(self, ei: Any) -> str:
        return format_exception(ei[1])


# --- request data in records --------------------------------------------------------------
#
# What we log ourselves never holds request data. Two kinds of records from other code could:
#
# - What uvicorn and the `websockets` library log about WebSocket connections: at DEBUG every
#   frame (`connection_init` holds the token, `subscribe` the variables), the request line
#   (with its query string) and the headers; at INFO the path with its query string.
#   `RequestDataFilter` (on the handler) rewrites those records down to what holds no data.
# - Exception messages in stack traces and in what graphql_schema logs about GraphQL errors:
#   graphql-core quotes the value it refused, PostgreSQL's DETAIL quotes the row, asyncpg the
#   argument it could not encode, pydantic the input. `format_exception` (both formatters)
#   and `loggable_error_message` leave those parts out. Other messages are kept whole: they
#   are what a stack trace is read for.

_PYDANTIC_INPUT = re.compile(r"input_value=.*?, input_type=")
_SQL_PARAMETERS = re.compile(r"^\[parameters: .*$", re.MULTILINE)
_SERVER_ERROR_NAMES = ("schema_name", "table_name", "column_name", "constraint_name")
_QUOTING_SQLSTATE_CLASSES = ("22", "P0")  # data exceptions, PL/pgSQL's RAISE


def _exception_text(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        return f"<{type(exc).__name__}: str() failed>"


def loggable_exception_message(exc: BaseException, _depth: int = 0) -> str:
    """`str(exc)`, without what can quote the input (see the comment above)."""
    module = type(exc).__module__
    if module.startswith("asyncpg"):
        sqlstate = getattr(exc, "sqlstate", None)
        if isinstance(sqlstate, str):  # from the server
            # Its DETAIL quotes the row ("Failing row contains (...)", "Key (email)=(...)"),
            # and so does the message itself of a data exception ('invalid input syntax for
            # type uuid: "..."') or of a PL/pgSQL RAISE; other messages name things only.
            names = [
                f"{name.removesuffix('_name')} {value}"
                for name in _SERVER_ERROR_NAMES
                if (value := getattr(exc, name, None))
            ]
            about = ", ".join([f"SQLSTATE {sqlstate}", *names])
            if sqlstate.startswith(_QUOTING_SQLSTATE_CLASSES):
                return f"message not logged ({about})"
            return f"{getattr(exc, 'message', None) or ''} ({about})".lstrip()
        if isinstance(exc, ValueError):  # asyncpg.DataError quotes the argument it refused
            return loggable_error_message(_exception_text(exc))
    elif module.startswith("graphql"):
        # `str()` of a GraphQLError adds the lines of the document around the error.
        return loggable_error_message(str(getattr(exc, "message", "")))
    text = _exception_text(exc)
    if module.startswith("pydantic"):
        return _PYDANTIC_INPUT.sub("input_type=", text)
    if module.startswith("sqlalchemy"):
        text = _SQL_PARAMETERS.sub("[parameters not logged]", text)
    if _depth < 10:
        # A wrapper that repeats the message of what it wraps (SQLAlchemy's errors, our
        # ConstraintViolation) repeats it in its loggable form.
        for inner in (getattr(exc, "orig", None), exc.__cause__, exc.__context__):
            if isinstance(inner, BaseException) and inner is not exc:
                inner_text = _exception_text(inner)
                if inner_text and inner_text in text:
                    loggable = loggable_exception_message(inner, _depth + 1)
                    if loggable != inner_text:
                        return text.replace(inner_text, loggable)
    return text


_CAUSE = "\nThe above exception was the direct cause of the following exception:\n\n"
_CONTEXT = "\nDuring handling of the above exception, another exception occurred:\n\n"


def _type_name(exc: BaseException) -> str:
    kind = type(exc)
    if kind.__module__ in ("builtins", "__main__"):
        return kind.__qualname__
    return f"{kind.__module__}.{kind.__qualname__}"


def format_exception(exc: BaseException | None) -> str:
    """What `traceback.format_exception` writes (the chain of causes and contexts, each with
    its frames: file, line, function, source line), with `loggable_exception_message` as each
    exception's message."""
    if exc is None:
        return "NoneType: None"
    chain: list[tuple[BaseException, str]] = []  # the logged exception first
    seen: set[int] = set()
    current: BaseException | None = exc
    link = ""
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        chain.append((current, link))
        if current.__cause__ is not None:
            current, link = current.__cause__, _CAUSE
        elif current.__context__ is not None and not current.__suppress_context__:
            current, link = current.__context__, _CONTEXT
        else:
            current = None
    parts: list[str] = []
    for position in range(len(chain) - 1, -1, -1):  # the oldest first, as Python prints
        item, link = chain[position]
        if item.__traceback__ is not None:
            parts.append("Traceback (most recent call last):\n")
            parts.extend(traceback.format_tb(item.__traceback__))
        message = loggable_exception_message(item)
        parts.append(f"{_type_name(item)}: {message}\n" if message else f"{_type_name(item)}\n")
        if isinstance(item, BaseExceptionGroup):
            for number, inner in enumerate(item.exceptions, 1):
                nested = format_exception(inner).replace("\n", "\n  | ")
                parts.append(f"  +---------------- {number} ----------------\n  | {nested}\n")
        if position:
            parts.append(link)
    return "".join(parts).rstrip("\n")


def _package_directory(name: str) -> str | None:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        return None
    return os.path.dirname(spec.origin) + os.sep


_WEBSOCKETS_DIRECTORY = _package_directory("websockets")
# websockets' DEBUG lines that hold no data, as they are.
_WEBSOCKETS_PLAIN = frozenset(
    ["= connection is %s", "< EOF", "> EOF", "> HTTP/1.1 %d %s", "> [body] (%d bytes)"]
)
# Request headers whose values are logged (the others' values could be credentials).
_PLAIN_HEADERS = frozenset(
    [
        "host",
        "origin",
        "user-agent",
        "upgrade",
        "connection",
        "sec-websocket-version",
        "sec-websocket-extensions",
    ]
)
_NOT_LOGGED = "[not logged]"


def _without_query(path: object) -> str:
    return str(path).partition("?")[0]


def _frame_summary(frame: Any) -> str:
    data = bytes(frame.data)
    kind = frame.opcode.name
    if kind == "CLOSE" and len(data) >= 2:  # the code, not the peer's reason
        kind = f"CLOSE {int.from_bytes(data[:2], 'big')}"
    return f"{kind} [{len(data)} bytes]"


def _loggable_websockets_record(record: logging.LogRecord) -> bool:
    """websockets logs with the logger uvicorn gives it; see the comment above."""
    if record.levelno > logging.DEBUG:
        # "connection open", "connection rejected (%d %s)"; errors keep their (loggable) stack.
        return True
    msg, args = record.msg, record.args if isinstance(record.args, tuple) else ()
    if record.exc_info:  # "! invalid handshake": the exception quotes the header it refused
        exc = record.exc_info[1]
        record.msg = f"{msg} ({type(exc).__name__})" if exc is not None else msg
        record.exc_info = None
        record.exc_text = None
        return True
    if msg in _WEBSOCKETS_PLAIN:  # states and our response
        return True
    if msg in ("< %s", "> %s") and len(args) == 1 and hasattr(args[0], "opcode"):
        record.args = (_frame_summary(args[0]),)  # a frame: its kind and size only
        return True
    if msg == "< %s %s %s" and len(args) == 3:  # the request line
        record.args = (args[0], _without_query(args[1]), args[2])
        return True
    if msg == "< %s: %s" and len(args) == 2:  # a request header
        if str(args[0]).lower() not in _PLAIN_HEADERS:
            record.args = (args[0], _NOT_LOGGED)
        return True
    if msg == "> %s: %s":  # a response header: ours
        return True
    return False  # anything else websockets may log at DEBUG one day


class RequestDataFilter(logging.Filter):
    """Rewrites uvicorn's and websockets' records about WebSocket connections so that they
    hold no request data (see the comment above); every other record passes untouched."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _WEBSOCKETS_DIRECTORY is not None and record.pathname.startswith(_WEBSOCKETS_DIRECTORY):
            return _loggable_websockets_record(record)
        if (
            record.name == "uvicorn.error"
            and isinstance(record.msg, str)
            and '"WebSocket %s"' in record.msg  # '%s - "WebSocket %s" [accepted]' and others
            and isinstance(record.args, tuple)
            and len(record.args) >= 2
        ):
            record.args = (record.args[0], _without_query(record.args[1]), *record.args[2:])
        return True


def logging_config(settings: Settings, *, migrations_verbose: bool = False) -> dict[str, Any]:
    """The `dictConfig` of the service: one stderr handler, JSON or text (LOG_FORMAT)."""
    level = settings.log_level.upper()
    formatter = "JsonFormatter" if settings.effective_log_format == "json" else "TextFormatter"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "request": {"()": "api.logging.RequestContextFilter"},
            "request_data": {"()": "api.logging.RequestDataFilter"},
        },
        "formatters": {"main": {"()": f"api.logging.{formatter}"}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "main",
                "filters": ["request", "request_data"],
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
            # Strawberry's default `process_errors` logs every GraphQL error's message (which
            # quotes variables' values) there; the schema's own logs them on `todo.graphql`.
            "strawberry.execution": {"level": "CRITICAL"},
        },
        "root": {"handlers": ["stderr"], "level": level},
    }


def configure_logging(settings: Settings, *, migrations_verbose: bool = False) -> None:
    logging.config.dictConfig(logging_config(settings, migrations_verbose=migrations_verbose))
