"""What may be logged of a GraphQL error's message: never the part that quotes the request.

Used by the schema's error log and by api/logging.py's exception formatters.
"""

from __future__ import annotations

import re

_VALUE_FOLLOWS = re.compile(r": |; | got invalid value")
_MAX_ERROR_MESSAGE = 500


def loggable_error_message(message: str) -> str:
    """A GraphQL error's message without the part that can quote the request.

    graphql-core puts the value it refused after a colon ("Variable '$p' has invalid value:
    String cannot represent a non string value: [...]", "Syntax Error: Unexpected Name '...'",
    "... found: {...}."); before it come only names of types, fields, arguments and variables.
    The service's own (domain) error messages hold no colon and stay whole.
    """
    found = _VALUE_FOLLOWS.search(message)
    if found is not None:
        message = message[: found.start()]
    if len(message) > _MAX_ERROR_MESSAGE:
        message = message[:_MAX_ERROR_MESSAGE] + "..."
    return message
