"""The service's HTML pages: pinned third-party assets and a Content-Security-Policy.

Two pages are for people in a browser: Swagger UI at /docs (here) and GraphiQL at /graphql
(api/graphiql.py); ReDoc is not served. Each is a template in the repository whose
third-party JavaScript and CSS come from unpkg.com, every file pinned to an exact version and
carrying its Subresource Integrity hash (sha384 of that file in the npm package, which unpkg
serves byte for byte): a CDN that served anything else would have the browser refuse it
(specs/decisions.md, 14).

The page's Content-Security-Policy is read off the page itself, so the two cannot drift apart:
scripts and stylesheets only from the exact URLs the page names and its own inline script and
style (by SHA-256), images and fonts from the service or `data:`, requests only to the service,
no plugins, frames, forms or `<base>`. A page that loads anything unpinned, has an event-handler
or `style` attribute, or names an asset on another origin any other way fails at import.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
from collections.abc import Iterable
from html.parser import HTMLParser
from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse

# An exact version of an npm package's file on unpkg: no ranges, tags or redirects.
PINNED_ASSET = re.compile(
    r"^https://unpkg\.com/(?:@[a-z0-9][a-z0-9._-]*/)?[a-z0-9][a-z0-9._-]*"
    r"@\d+\.\d+\.\d+/[A-Za-z0-9._/-]+$"
)
_INTEGRITY = re.compile(r"^sha384-[A-Za-z0-9+/]{64}$")
# A Host header the policy may repeat: a name or an address, and a port.
_HOST = re.compile(r"^(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$")


def csp_hash(text: str) -> str:
    """The CSP source for an inline `<script>` or `<style>` whose content is `text`."""
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode('ascii')}'"


class _Sources(HTMLParser):
    """What a page loads: its external scripts and stylesheets, its inline scripts' and
    styles' hashes. Raises ValueError for anything a strict policy could not allow."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.scripts: list[str] = []
        self.styles: list[str] = []
        self.script_hashes: list[str] = []
        self.style_hashes: list[str] = []
        self._inline: str | None = None  # "script" or "style" while inside one
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {name: value or "" for name, value in attrs}
        for name in found:
            if name.startswith("on") or name == "style":
                raise ValueError(f"<{tag} {name}=...> needs 'unsafe-inline'")
        if tag == "script":
            if "src" in found:
                self.scripts.append(self._pinned(tag, found["src"], found))
            else:
                self._inline, self._text = "script", []
        elif tag == "style":
            self._inline, self._text = "style", []
        elif tag == "link":
            href = found.get("href", "")
            if found.get("rel") == "stylesheet":
                self.styles.append(self._pinned(tag, href, found))
            elif not href.startswith("data:"):
                raise ValueError(f"<link href={href!r}> loads from outside the page")
        elif tag in ("img", "iframe", "object", "embed", "base", "form", "meta"):
            if tag != "meta" or "http-equiv" in found:
                raise ValueError(f"<{tag}> is not allowed by the policy")

    def handle_data(self, data: str) -> None:
        if self._inline is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == self._inline:
            digest = csp_hash("".join(self._text))
            (self.script_hashes if tag == "script" else self.style_hashes).append(digest)
            self._inline = None

    @staticmethod
    def _pinned(tag: str, url: str, attrs: dict[str, str]) -> str:
        if not PINNED_ASSET.match(url):
            raise ValueError(f"<{tag}> {url!r} is not an exact version on unpkg.com")
        if not _INTEGRITY.match(attrs.get("integrity", "")):
            raise ValueError(f"<{tag}> {url!r} has no sha384 integrity hash")
        if attrs.get("crossorigin") != "anonymous":
            raise ValueError(f'<{tag}> {url!r} needs crossorigin="anonymous"')
        return url


class PinnedPage:
    """An HTML page and the Content-Security-Policy made from it."""

    def __init__(self, text: str, injected_styles: Iterable[str] = ()) -> None:
        """`injected_styles`: CSP hashes of `<style>` elements the page's scripts add."""
        sources = _Sources()
        sources.feed(text)
        sources.close()
        self.text = text
        styles = [*sources.styles, *sources.style_hashes, *injected_styles]
        self._script_src = " ".join([*sources.scripts, *sources.script_hashes]) or "'none'"
        self._style_src = " ".join(styles) or "'none'"

    @classmethod
    def from_file(cls, path: Path, injected_styles: Iterable[str] = ()) -> PinnedPage:
        return cls(path.read_text(encoding="utf-8"), injected_styles)

    def content_security_policy(self, connect: Iterable[str] = ()) -> str:
        """`connect`: origins the page may reach besides its own (GraphiQL's WebSocket)."""
        return "; ".join(
            [
                "default-src 'none'",
                f"script-src {self._script_src}",
                f"style-src {self._style_src}",
                "img-src 'self' data:",
                "font-src 'self' data:",
                " ".join(["connect-src 'self'", *connect]),
                "object-src 'none'",
                "base-uri 'none'",
                "form-action 'none'",
                "frame-ancestors 'none'",
            ]
        )

    def response(self, text: str | None = None, connect: Iterable[str] = ()) -> HTMLResponse:
        """The page (or `text`, the page with its placeholders filled) with its policy."""
        return HTMLResponse(
            self.text if text is None else text,
            headers={
                "Content-Security-Policy": self.content_security_policy(connect),
                "Cache-Control": "no-cache",
            },
        )


def websocket_origins(request: Request) -> tuple[str, ...]:
    """`ws://` and `wss://` on the host the browser asked for: browsers that predate CSP 3 do
    not count a WebSocket to the page's own host as 'self'. Nothing for a malformed Host."""
    host = request.headers.get("host", "")
    if not _HOST.match(host):
        return ()
    return (f"ws://{host}", f"wss://{host}")


SWAGGER_UI = PinnedPage.from_file(Path(__file__).with_name("swagger_ui.html"))


async def swagger_ui(request: Request) -> HTMLResponse:
    """GET /docs: Swagger UI for the REST facade's OpenAPI document (what FastAPI's own page
    shows, with pinned assets and a policy)."""
    root_path = str(request.scope.get("root_path", "")).rstrip("/")
    openapi_url = html.escape(root_path + request.app.openapi_url, quote=True)
    return SWAGGER_UI.response(SWAGGER_UI.text.replace("__OPENAPI_URL__", openapi_url))
