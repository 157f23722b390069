"""Input rules and their messages, shared by both surfaces.

The validators take `object` on purpose: REST hands over whatever JSON decoded to (a number
where a string belongs, a lone surrogate, an out-of-range number), GraphQL hands over values its
type system already coerced. Either way the same rule yields the same message.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from core.errors import InvalidInput

TITLE_MAX = 255
DESCRIPTION_MAX = 1000
EMAIL_MAX = 255
PASSWORD_MIN = 8
PASSWORD_MAX = 128


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()
"""A field absent from the input, as opposed to one given as null."""

# A pragmatic address check: a dot-atom local part, then a domain of letter/digit/hyphen labels
# ending in an alphabetic top-level label of two or more letters.
_EMAIL_RE = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
)
_SURROGATES_RE = re.compile("[\ud800-\udfff]")


def has_invalid_characters(value: str) -> bool:
    """NUL, or a lone surrogate (JSON can carry one; no database or encoder can)."""
    return "\x00" in value or _SURROGATES_RE.search(value) is not None


def _clean_text(value: str, field: str) -> str:
    if has_invalid_characters(value):
        raise InvalidInput(f"{field} contains invalid characters")
    return value


def normalize_email(value: str) -> str:
    return value.strip().lower()


def is_valid_email(email: str) -> bool:
    return len(email) <= EMAIL_MAX and _EMAIL_RE.fullmatch(email) is not None


@dataclass(frozen=True, slots=True)
class Credentials:
    email: str
    password: str


def validate_signup(email: object, password: object) -> Credentials:
    if not isinstance(email, str):
        raise InvalidInput("Invalid email format")
    email = normalize_email(_clean_text(email, "Email"))
    if not is_valid_email(email):
        raise InvalidInput("Invalid email format")
    if not isinstance(password, str):
        raise InvalidInput(f"Password must be at least {PASSWORD_MIN} characters")
    _clean_text(password, "Password")
    if len(password) < PASSWORD_MIN:
        raise InvalidInput(f"Password must be at least {PASSWORD_MIN} characters")
    if len(password) > PASSWORD_MAX:
        raise InvalidInput(f"Password must be at most {PASSWORD_MAX} characters")
    return Credentials(email=email, password=password)


def validate_login(email: object, password: object) -> Credentials:
    """Shape only: a well-formed but unknown address is a 401 later, never a 400."""
    if not isinstance(email, str) or not isinstance(password, str) or not email or not password:
        raise InvalidInput("Email and password required")
    email = normalize_email(_clean_text(email, "Email"))
    _clean_text(password, "Password")
    if not email:
        raise InvalidInput("Email and password required")
    return Credentials(email=email, password=password)


def _title(value: object, *, message_when_empty: str) -> str:
    if not isinstance(value, str):
        raise InvalidInput(message_when_empty)
    title = _clean_text(value, "Title").strip()
    if not title:
        raise InvalidInput(message_when_empty)
    if len(title) > TITLE_MAX:
        raise InvalidInput(f"Title must not exceed {TITLE_MAX} characters")
    return title


def _description(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput("Invalid request body")
    _clean_text(value, "Description")
    if len(value) > DESCRIPTION_MAX:
        raise InvalidInput(f"Description must not exceed {DESCRIPTION_MAX} characters")
    return value


@dataclass(frozen=True, slots=True)
class NewTask:
    title: str
    description: str | None


def validate_new_task(title: object, description: object = MISSING) -> NewTask:
    clean_title = _title(title, message_when_empty="Title is required")
    clean_description = None if description is MISSING else _description(description)
    return NewTask(title=clean_title, description=clean_description)


def validate_task_changes(fields: Mapping[str, object]) -> dict[str, object]:
    """The subset of title/description/completed present in `fields`, validated.

    Other keys are ignored, as the contract ignores ids, owners and timestamps in bodies.
    """
    changes: dict[str, object] = {}
    if "title" in fields:
        changes["title"] = _title(fields["title"], message_when_empty="Title cannot be empty")
    if "description" in fields:
        changes["description"] = _description(fields["description"])
    if "completed" in fields:
        completed = fields["completed"]
        if not isinstance(completed, bool):
            raise InvalidInput("Completed must be a boolean")
        changes["completed"] = completed
    return changes
