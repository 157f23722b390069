"""Reading a JSON object body: bounded in size while it streams, strict about what JSON is.

- More than MAX_BODY_BYTES is refused (413) as soon as Content-Length or the stream says so,
  before the body is read whole.
- NaN/Infinity literals and invalid UTF-8 are not JSON (400 `Invalid JSON body`).
- Numbers too large to be meaningful decode to TOO_LARGE, which no validator accepts, so the
  field's own message (or `Invalid request body`) answers; nesting too deep is
  `Invalid request body`.
- Lone surrogates decode to strings the validators reject with the field's message.
"""

from __future__ import annotations

import json
import math
from typing import Any

from starlette.requests import Request

from rest_facade.errors import HttpError

MAX_BODY_BYTES = 1 << 20
_MAX_NUMBER_CHARS = 100


class _TooLarge:
    def __repr__(self) -> str:
        return "TOO_LARGE"


TOO_LARGE = _TooLarge()


def _reject_constant(_name: str) -> Any:
    raise ValueError("not JSON")


def _parse_int(text: str) -> Any:
    return TOO_LARGE if len(text) > _MAX_NUMBER_CHARS else int(text)


def _parse_float(text: str) -> Any:
    if len(text) > _MAX_NUMBER_CHARS:
        return TOO_LARGE
    value = float(text)
    return value if math.isfinite(value) else TOO_LARGE


async def read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > MAX_BODY_BYTES:
                raise HttpError(413, "Request body too large")
        except ValueError:
            raise HttpError(400, "Invalid JSON body") from None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise HttpError(413, "Request body too large")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json_object(raw: bytes) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8")
        value = json.loads(
            text,
            parse_constant=_reject_constant,
            parse_int=_parse_int,
            parse_float=_parse_float,
        )
    except RecursionError:
        raise HttpError(400, "Invalid request body") from None
    except ValueError:  # includes UnicodeDecodeError and JSONDecodeError
        raise HttpError(400, "Invalid JSON body") from None
    if not isinstance(value, dict):
        raise HttpError(400, "Invalid JSON body")
    return value


async def read_json_object(request: Request) -> dict[str, Any]:
    return parse_json_object(await read_body(request))
