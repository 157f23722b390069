"""Records to the contract's JSON shapes, for `orjson.dumps(..., option=JSON_OPTIONS)`.

Ids and most timestamps are handed to orjson as they are: it writes a `uuid.UUID` as
`str(uuid)` does and a UTC datetime with microseconds exactly as `timestamp` does, several
times faster than Python formatting them (a list of 20 tasks spent most of its time in
`strftime`). Everything else (a UUID or datetime subclass, another zone, no microseconds,
which orjson would leave out, a year below 1000) is formatted here.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import orjson

from core.records import AuthResult, TaskRecord

JSON_OPTIONS = orjson.OPT_UTC_Z


def timestamp(value: datetime) -> str:
    """ISO 8601 in UTC ending in `Z`, always with microseconds (values are stored UTC)."""
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _instant(value: datetime) -> datetime | str:
    if type(value) is datetime and value.tzinfo is UTC and value.microsecond and value.year >= 1000:
        return value
    return timestamp(value)


def _id(value: uuid.UUID) -> uuid.UUID | str:
    return value if type(value) is uuid.UUID else str(value)


def task_json(task: TaskRecord) -> dict[str, Any]:
    return {
        "id": _id(task.id),
        "title": task.title,
        "description": task.description,
        "completed": task.completed,
        "user_id": _id(task.user_id),
        "created_at": _instant(task.created_at),
        "updated_at": _instant(task.updated_at),
    }


def auth_json(result: AuthResult) -> dict[str, Any]:
    return {"token": result.token, "user": {"id": str(result.user.id), "email": result.user.email}}
