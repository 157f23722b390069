"""The HTML pages (Swagger UI at /docs, GraphiQL at /graphql): pinned assets and a CSP.

Each asset on another origin is an exact version with a Subresource Integrity hash; each page
sends a Content-Security-Policy that allows exactly those assets and the page's own inline
script and style. JSON responses are as they were. In a browser: test_browser_docs.py and
test_browser_graphiql.py.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from starlette.requests import Request

from api.html_pages import PinnedPage, csp_hash, swagger_ui

EXACT_VERSION = re.compile(r"^https://unpkg\.com/(?:@[^/@]+/)?[^/@]+@\d+\.\d+\.\d+/[^?#]+$")
SHA384 = re.compile(r"^sha384-[A-Za-z0-9+/]{64}$")
PAGES = {
    "/docs": {},
    "/graphql": {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"},
}


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """The pages never reach the database: SQLite only (conftest's runs PostgreSQL too)."""
    return f"sqlite:///{tmp_path / 'todo.db'}"


class _Tags(HTMLParser):
    """Every start tag with its attributes, and the text of each inline script and style."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.inline: dict[str, list[str]] = {"script": [], "style": []}
        self._open: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {name: value or "" for name, value in attrs}
        self.tags.append((tag, found))
        if tag in self.inline and "src" not in found:
            self._open = tag
            self.inline[tag].append("")

    def handle_data(self, data: str) -> None:
        if self._open:
            self.inline[self._open][-1] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == self._open:
            self._open = None


def parse(html: str) -> _Tags:
    tags = _Tags()
    tags.feed(html)
    tags.close()
    return tags


def directives(policy: str) -> dict[str, list[str]]:
    parsed: dict[str, list[str]] = {}
    for directive in policy.split(";"):
        name, *sources = directive.split()
        assert name not in parsed, f"{name} twice"
        parsed[name] = sources
    return parsed


async def _page(client: httpx.AsyncClient, path: str) -> httpx.Response:
    response = await client.get(path, headers=PAGES[path])
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    return response


@pytest.mark.parametrize("path", list(PAGES))
async def test_every_asset_on_another_origin_is_pinned_with_integrity(
    client: httpx.AsyncClient, path: str
) -> None:
    page = parse((await _page(client, path)).text)
    external = []
    for tag, attrs in page.tags:
        for attribute in ("src", "href"):
            url = attrs.get(attribute, "")
            if not url or url.startswith("data:") or re.match(r"^/(?!/)", url):
                continue  # the page itself, or the service
            external.append(url)
            assert EXACT_VERSION.match(url), f"<{tag}> {url}: not an exact version"
            assert SHA384.match(attrs.get("integrity", "")), f"<{tag}> {url}: no integrity"
            # Without it the browser cannot check the hash of a file from another origin.
            assert attrs.get("crossorigin") in ("", "anonymous"), f"<{tag}> {url}: crossorigin"
    assert external, "the page loads nothing from the CDN any more: update this test"


@pytest.mark.parametrize("path", list(PAGES))
async def test_pages_send_a_strict_content_security_policy(
    client: httpx.AsyncClient, path: str
) -> None:
    response = await _page(client, path)
    page = parse(response.text)
    policy = directives(response.headers["content-security-policy"])
    assert policy["default-src"] == ["'none'"]
    assert policy["object-src"] == ["'none'"]
    assert policy["base-uri"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["form-action"] == ["'none'"]
    assert policy["img-src"] == ["'self'", "data:"]
    assert policy["font-src"] == ["'self'", "data:"]
    scripts = [attrs["src"] for tag, attrs in page.tags if tag == "script" and "src" in attrs]
    styles = [
        attrs["href"] for tag, attrs in page.tags if tag == "link" and attrs["rel"] == "stylesheet"
    ]
    # Exactly the page's pinned files (not the CDN's whole origin) and its inline code.
    assert policy["script-src"] == scripts + [csp_hash(s) for s in page.inline["script"]]
    assert policy["style-src"][: len(styles)] == styles
    for text in page.inline["style"]:
        assert csp_hash(text) in policy["style-src"]
    for name in ("script-src", "style-src"):
        for source in policy[name]:
            assert EXACT_VERSION.match(source) or re.match(r"^'sha256-[A-Za-z0-9+/]+=*'$", source)
    if path == "/graphql":  # fetches and its subscriptions' WebSocket, to the service only
        assert policy["connect-src"] == ["'self'", "ws://testserver", "wss://testserver"]
    else:
        assert policy["connect-src"] == ["'self'"]
    # ServiceMiddleware's headers are still there.
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_graphiql_never_repeats_a_malformed_host_in_its_policy(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get(
        "/graphql", headers={"Accept": "text/html", "Host": "x; script-src *"}
    )
    assert directives(response.headers["content-security-policy"])["connect-src"] == ["'self'"]


async def test_graphiql_keeps_headers_only_when_asked(client: httpx.AsyncClient) -> None:
    """The page's GraphiQL options (what it does with them: test_browser_graphiql.py)."""
    text = (await _page(client, "/graphql")).text
    assert "shouldPersistHeaders: persistHeaders," in text
    assert "showPersistHeadersSettings: true," in text
    assert "storage: storage," in text


async def test_json_responses_have_no_policy_and_redoc_is_not_served(
    client: httpx.AsyncClient,
) -> None:
    for response in (
        await client.get("/health"),
        await client.get("/openapi.json"),
        await client.post("/graphql", json={"query": "{ __typename }"}),
        await client.get("/api/tasks"),
    ):
        assert response.headers["content-type"].startswith("application/json")
        assert "content-security-policy" not in response.headers
    assert (await client.get("/redoc")).status_code == 404
    assert (await client.get("/docs/oauth2-redirect")).status_code == 404


async def test_docs_reads_the_document_under_the_root_path() -> None:
    app = FastAPI(openapi_url="/openapi.json")
    scope = {"type": "http", "method": "GET", "path": "/docs", "headers": [], "app": app}
    for root_path, expected in (("", "/openapi.json"), ("/todo/", "/todo/openapi.json")):
        response = await swagger_ui(Request({**scope, "root_path": root_path}))
        assert f'data-openapi-url="{expected}"' in response.body.decode()


@pytest.mark.parametrize(
    ("tag", "error"),
    [
        ('<script src="https://unpkg.com/swagger-ui-dist@5/swagger-ui-bundle.js"', "exact"),
        ('<script src="https://unpkg.com/react@18.2.0/umd/react.js" crossorigin', "integrity"),
        ('<script src="https://cdn.example/react@18.2.0/react.js"', "exact version"),
        ('<link rel="stylesheet" href="https://unpkg.com/a@1.0.0/a.css"', "integrity"),
        ('<link rel="icon" href="https://example.com/favicon.png"', "outside"),
        ('<div onclick="steal()"', "unsafe-inline"),
        ('<img src="https://example.com/pixel.png"', "not allowed"),
    ],
)
def test_a_page_with_anything_unpinned_is_refused(tag: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        PinnedPage(f"<!doctype html><html><head>{tag}></head></html>")
