"""OpenAPI descriptions of the hand-parsed bodies and the real error responses.

The routes read their JSON themselves (to answer 400 with the contract's messages, never 422),
so FastAPI cannot infer request schemas; they are declared here instead.
"""

from __future__ import annotations

from typing import Any

_TASK_SCHEMA = {
    "type": "object",
    "required": ["id", "title", "description", "completed", "user_id", "created_at", "updated_at"],
    "properties": {
        "id": {"type": "string", "format": "uuid"},
        "title": {"type": "string", "maxLength": 255},
        "description": {"type": ["string", "null"], "maxLength": 1000},
        "completed": {"type": "boolean"},
        "user_id": {"type": "string", "format": "uuid"},
        "created_at": {"type": "string", "format": "date-time"},
        "updated_at": {"type": "string", "format": "date-time"},
    },
}
_TASK_EXAMPLE = {
    "id": "6f1c2a8e-4b7d-4e3a-9c1f-2d5e8a7b9c0d",
    "title": "Buy milk",
    "description": None,
    "completed": False,
    "user_id": "0b8e7a52-3f1d-4c9e-8a6b-5d4c3b2a1f0e",
    "created_at": "2026-01-09T14:30:00.123456Z",
    "updated_at": "2026-01-09T14:30:00.123456Z",
}
_AUTH_SCHEMA = {
    "type": "object",
    "required": ["token", "user"],
    "properties": {
        "token": {"type": "string"},
        "user": {
            "type": "object",
            "required": ["id", "email"],
            "properties": {
                "id": {"type": "string", "format": "uuid"},
                "email": {"type": "string", "format": "email"},
            },
        },
    },
}
_ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string"}},
}


def _json_body(schema: dict[str, Any], example: dict[str, Any]) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": schema, "example": example}},
        }
    }


_NO_NUL = "^[^\\u0000]*$"
_NOT_BLANK = "^[^\\u0000]*[^\\s\\u0000][^\\u0000]*$"  # some non-space, no NUL anywhere
SIGNUP_BODY = _json_body(
    {
        "type": "object",
        "required": ["email", "password"],
        "properties": {
            "email": {"type": "string", "format": "email", "maxLength": 255},
            "password": {
                "type": "string",
                "minLength": 8,
                "maxLength": 128,
                "pattern": _NO_NUL,
            },
        },
    },
    {"email": "ada@example.com", "password": "correct horse battery"},
)
LOGIN_BODY = _json_body(
    {
        "type": "object",
        "required": ["email", "password"],
        "properties": {
            "email": {"type": "string", "minLength": 1, "pattern": _NOT_BLANK},
            "password": {"type": "string", "minLength": 1, "pattern": _NO_NUL},
        },
    },
    {"email": "ada@example.com", "password": "correct horse battery"},
)
_TITLE = {
    "type": "string",
    "minLength": 1,
    "maxLength": 255,
    "pattern": _NOT_BLANK,
}
_DESCRIPTION = {"type": ["string", "null"], "maxLength": 1000, "pattern": _NO_NUL}
CREATE_TASK_BODY = _json_body(
    {
        "type": "object",
        "required": ["title"],
        "properties": {"title": _TITLE, "description": _DESCRIPTION},
    },
    {"title": "Buy milk", "description": "Two litres"},
)
UPDATE_TASK_BODY = _json_body(
    {
        "type": "object",
        "properties": {
            "title": _TITLE,
            "description": _DESCRIPTION,
            "completed": {"type": "boolean"},
        },
    },
    {"completed": True},
)

_ERRORS: dict[int, tuple[str, str]] = {
    400: ("Invalid input", "Invalid JSON body"),
    401: ("Missing, invalid or expired token, or wrong credentials", "Unauthorized"),
    404: ("No such task for this caller", "Task not found"),
    409: ("Email already registered", "Email already registered"),
    413: ("Body larger than 1 MiB", "Request body too large"),
    429: ("Too many attempts; see Retry-After", "Too many requests"),
    503: ("Database unreachable", "Service temporarily unavailable"),
}

_SUCCESSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "Signed in", "content": {"application/json": {"schema": _AUTH_SCHEMA}}},
    201: {
        "description": "Account created",
        "content": {"application/json": {"schema": _AUTH_SCHEMA}},
    },
    204: {"description": "Deleted; empty body"},
    "task": {
        "description": "The task",
        "content": {
            "application/json": {
                "schema": {"type": "object", "properties": {"task": _TASK_SCHEMA}},
                "example": {"task": _TASK_EXAMPLE},
            }
        },
    },
    "list": {
        "description": "The caller's tasks, newest first",
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {"tasks": {"type": "array", "items": _TASK_SCHEMA}},
                },
                "example": {"tasks": [_TASK_EXAMPLE]},
            }
        },
    },
}
_SUCCESS_STATUS = {"task": 200, "list": 200, "task201": 201}


def responses(*keys: int | str) -> dict[int | str, dict[str, Any]]:
    out: dict[int | str, dict[str, Any]] = {}
    for key in keys:
        if key == "task201":
            out[201] = {**_SUCCESSES["task"], "description": "The created task"}
        elif key in _SUCCESS_STATUS:
            out[_SUCCESS_STATUS[str(key)]] = _SUCCESSES[key]
        elif isinstance(key, int) and key in _ERRORS:
            description, example = _ERRORS[key]
            out[key] = {
                "description": description,
                "content": {
                    "application/json": {"schema": _ERROR_SCHEMA, "example": {"error": example}}
                },
            }
        else:
            out[key] = _SUCCESSES[key]
    return out
