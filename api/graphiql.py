"""GraphiQL at GET /graphql for browsers: the page in graphiql.html, beside this file.

It is Strawberry's page (the same GraphiQL, React and explorer versions and hashes) with what
Strawberry's lacks: every asset pinned with `crossorigin="anonymous"`, a Content-Security-
Policy (api/html_pages.py) that also lets it open its WebSocket for subscriptions, and the
headers editor's content, the token, kept in localStorage only after the user turns on
"Persist headers" in GraphiQL's settings. Strawberry's page turned that on for everyone.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse

from api.html_pages import PinnedPage, websocket_origins

# The one <style> element graphiql.min.js adds: react-remove-scroll-bar's scroll lock while a
# dialog (settings, shortcuts) is open. Its text depends only on the page's scrollbar width,
# 0 here, where the page never scrolls (the body hides its overflow); Chromium's report of the
# blocked element gives the hash, and tests/test_browser_graphiql.py opens the dialog.
SCROLL_LOCK_STYLE = "'sha256-Y/huXlwoYkVyQlxwSVcCi1RCDGDCSVBzDt0hYP9qlTc='"
GRAPHIQL = PinnedPage.from_file(
    Path(__file__).with_name("graphiql.html"), injected_styles=[SCROLL_LOCK_STYLE]
)


def graphiql_response(request: Request) -> HTMLResponse:
    return GRAPHIQL.response(connect=websocket_origins(request))
