"""`api.main:app`, the ASGI app for uvicorn, gunicorn or any other server."""

from __future__ import annotations

import sys

from api.app import create_app
from api.settings import SETTING_ERRORS

try:
    app = create_app()
except SETTING_ERRORS as exc:
    print(f"configuration error: {exc}", file=sys.stderr)
    raise SystemExit(1) from None
