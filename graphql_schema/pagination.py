"""Connection arguments: the page size rule and opaque keyset cursors.

A cursor is `base64url("v1|<created_at>|<id>")`: the task's place in the newest-first order,
not an offset, so pages stay correct while tasks are added or deleted between them. Clients
must treat it as opaque; the version prefix lets the format change without ambiguity.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import datetime

from core.errors import InvalidInput
from core.records import TaskPosition, TaskRecord

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100

_VERSION = "v1"
_MAX_CURSOR_CHARS = 200  # a real cursor is about 90; refuse junk before decoding it


def page_size(first: int | None) -> int:
    """`first` as a row count: absent or null means the default, the cap is hard."""
    if first is None:
        return DEFAULT_PAGE_SIZE
    if not 0 <= first <= MAX_PAGE_SIZE:
        raise InvalidInput(f"first must be between 0 and {MAX_PAGE_SIZE}")
    return first


def encode_cursor(task: TaskRecord) -> str:
    raw = f"{_VERSION}|{task.created_at.isoformat(timespec='microseconds')}|{task.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode()


def decode_cursor(cursor: str | None) -> TaskPosition | None:
    if cursor is None:
        return None
    try:
        if len(cursor) > _MAX_CURSOR_CHARS:
            raise ValueError("too long")
        raw = base64.b64decode(cursor, altchars=b"-_", validate=True).decode()
        version, created_at, task_id = raw.split("|")
        position = TaskPosition(
            created_at=datetime.fromisoformat(created_at), id=uuid.UUID(task_id)
        )
        if version != _VERSION or position.created_at.tzinfo is None:
            raise ValueError("not a cursor of ours")
    except (ValueError, binascii.Error):  # UnicodeDecodeError is a ValueError
        raise InvalidInput("Invalid cursor") from None
    return position
