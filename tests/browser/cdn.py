"""unpkg.com for a browser on a machine with no internet: the npm packages' own files.

The service's HTML pages (Swagger UI at /docs, GraphiQL at /graphql) load pinned files from
unpkg.com (api/html_pages.py, specs/decisions.md 14). `fetch_packages` packs exactly the
package versions those pages name with npm (which checks each tarball against the registry's
hash) and `serve_from` answers the browser's unpkg requests from their files. The browser still
checks every file against the page's integrity hash, so a passing test proves the pages' hashes
are those of the packages' files, which unpkg serves byte for byte.
"""

from __future__ import annotations

import json
import mimetypes
import re
import shutil
import subprocess
import tarfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

UNPKG = re.compile(r"^https://unpkg\.com/((?:@[^/@]+/)?[^/@]+)@([^/]+)/(.+)$")
_ASSET = re.compile(r"""(?:src|href)\s*=\s*["'](https://[^"']+)["']""")


def served_pages() -> dict[str, str]:
    """The HTML the service sends for /docs and for GraphiQL, as it sends it."""
    from api.graphiql import GRAPHIQL
    from api.html_pages import SWAGGER_UI

    return {"/docs": SWAGGER_UI.text, "/graphql": GRAPHIQL.text}


def external_urls(html: str) -> list[str]:
    """Every absolute http(s) URL the page loads with `src=` or `href=`."""
    return _ASSET.findall(html)


def packages_named(pages: Iterable[str]) -> list[str]:
    """`name@version` of every npm package whose files the pages load from unpkg."""
    wanted = set()
    for html in pages:
        for url in external_urls(html):
            match = UNPKG.match(url)
            assert match, f"{url} is not a file of an npm package on unpkg.com"
            wanted.add(f"{match.group(1)}@{match.group(2)}")
    return sorted(wanted)


def fetch_packages(wanted: list[str], directory: Path) -> Path:
    """`directory/node_modules/<name>/...`: each package's tarball unpacked, nothing else
    (no dependencies: the pages load bundles)."""
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is needed to fetch the pages' CDN assets")
    packed = subprocess.run(
        [npm, "pack", "--json", "--silent", "--pack-destination", str(directory), *wanted],
        cwd=directory,
        check=True,
        capture_output=True,
        timeout=300,
    )
    node_modules = directory / "node_modules"
    for package in json.loads(packed.stdout):
        target = node_modules / package["name"]
        with tarfile.open(directory / package["filename"]) as archive:
            for member in archive.getmembers():
                if not member.isfile():
                    continue
                relative = Path(member.name).relative_to("package")  # npm's tarball layout
                path = target / relative
                path.parent.mkdir(parents=True, exist_ok=True)
                source = archive.extractfile(member)
                assert source is not None
                path.write_bytes(source.read())
    return node_modules


def page_assets(path: str, directory: Path) -> Path:
    """node_modules with exactly the packages (and versions) the served page at `path` names."""
    wanted = packages_named([served_pages()[path]])
    assert wanted, f"the page at {path} names no unpkg assets any more"
    return fetch_packages(wanted, directory)


def serve_from(node_modules: Path) -> Callable[[Any], None]:
    """A Playwright route handler for `https://unpkg.com/**` (404 for anything not packed)."""

    def handle(route: Any) -> None:
        match = UNPKG.match(route.request.url)
        path = node_modules / match.group(1) / match.group(3) if match else None
        if path is None or not path.is_file():
            route.fulfill(status=404, body="not installed")
            return
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        route.fulfill(
            status=200,
            body=path.read_bytes(),
            content_type=content_type,
            headers={"Access-Control-Allow-Origin": "*"},
        )

    return handle


# Before any of the page's scripts: every Content-Security-Policy violation, kept on `window`.
WATCH_CSP = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolations.push(
    `${event.violatedDirective} blocked ${event.blockedURI || "inline"}`
    + ` (${event.sourceFile}:${event.lineNumber})`
  );
});
"""


def csp_violations(page: Any) -> list[str]:
    return list(page.evaluate("() => window.__cspViolations || []"))
