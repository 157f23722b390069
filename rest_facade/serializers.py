"""Records to the contract's JSON shapes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from graphql_schema.operations import AuthResult, TaskRecord


def timestamp(value: datetime) -> str:
    """ISO 8601 in UTC ending in `Z`, always with microseconds (values are stored UTC)."""
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def task_json(task: TaskRecord) -> dict[str, Any]:
    return {
        "id": str(task.id),
        "title": task.title,
        "description": task.description,
        "completed": task.completed,
        "user_id": str(task.user_id),
        "created_at": timestamp(task.created_at),
        "updated_at": timestamp(task.updated_at),
    }


def auth_json(result: AuthResult) -> dict[str, Any]:
    return {"token": result.token, "user": {"id": str(result.user.id), "email": result.user.email}}
