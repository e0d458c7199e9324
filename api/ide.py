"""GraphiQL at ``GET /graphql`` (dev mode) that works on a machine without internet.

Strawberry's GraphiQL page loads React, GraphiQL and its explorer plugin from unpkg.com. The
same files, at the versions that page pins, are kept in ``api/static/vendor/`` (the paths
mirror unpkg's, so ``https://unpkg.com/<pkg>@<version>/<file>`` becomes
``/ide/vendor/<pkg>@<version>/<file>``), with their licences in
``api/static/vendor/licenses/``. The page keeps its ``integrity`` (SRI) hashes, so the browser
itself checks that each vendored file is byte for byte the one the page was written for;
``tests/test_ide.py`` checks it too, and fails when a Strawberry upgrade pins other versions.

To refresh after such an upgrade: ``npm pack <pkg>@<version>`` for each package the page
names, copy the named file under ``vendor/<pkg>@<version>/`` and its LICENSE under
``vendor/licenses/``.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Final

from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from strawberry.http.ides import get_graphql_ide_html

VENDOR_DIR: Final = Path(__file__).parent / "static" / "vendor"
VENDOR_URL: Final = "/ide/vendor/"
CDN: Final = "https://unpkg.com/"
# Any src= or href= that would leave the API's own origin.
_EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*["'](?:https?:)?//""", re.IGNORECASE)


_FETCHER: Final = """const fetcher = GraphiQL.createFetcher({
        url: fetchURL,
        headers: defaultHeaders,
        subscriptionUrl,
      });"""
_HEADERS_STATE: Final = "React.useState(parameters.headers)"
# The Headers tab opens with the dev key in it. The key rides along (on WebSockets too, whose
# connection_init GraphiQL does not fill from the tab) while the tab names no other
# credential: a tenant's token typed there instead goes out alone (the API takes x-api-key
# before Authorization).
_KEYED_FETCHER: Final = """const devHeaders = %s;
      const keyedFetcher = GraphiQL.createFetcher({
        url: fetchURL,
        headers: Object.assign({}, defaultHeaders, devHeaders),
        subscriptionUrl,
        wsConnectionParams: devHeaders,
      });
      const plainFetcher = GraphiQL.createFetcher({
        url: fetchURL,
        headers: defaultHeaders,
        subscriptionUrl,
      });
      const fetcher = (params, options) => {
        const own = (options && options.headers) || {};
        const names = Object.keys(own).map((name) => name.toLowerCase());
        const key = Object.keys(own).find((name) => name.toLowerCase() === "x-api-key");
        const credential =
          names.includes("authorization") ||
          (key !== undefined && own[key] !== devHeaders["x-api-key"]);
        return (credential ? plainFetcher : keyedFetcher)(params, options);
      };"""


@functools.cache
def offline_graphiql_html(dev_api_key: str | None = None) -> str:
    """Strawberry's GraphiQL page with every CDN URL pointing at the vendored copy.

    With ``dev_api_key`` (``booking dev``'s documented key, never a real one) the Headers tab
    opens with it, and the page sends it on every request and the WebSocket's
    ``connection_init`` while the tab names no other credential: the schema loads into the Docs
    pane and a first query answers, instead of an UnauthorizedException; a token typed into
    the tab instead goes out alone.
    """
    html = get_graphql_ide_html("graphiql").replace(CDN, VENDOR_URL)
    if dev_api_key is not None:
        if _FETCHER not in html or _HEADERS_STATE not in html:
            raise RuntimeError("Strawberry's GraphiQL page changed: the dev API key has no place")
        headers = json.dumps({"x-api-key": dev_api_key})
        html = html.replace(_FETCHER, _KEYED_FETCHER % headers, 1)
        shown = json.dumps(json.dumps({"x-api-key": dev_api_key}, indent=2))
        html = html.replace(_HEADERS_STATE, f"React.useState(parameters.headers || {shown})", 1)
    leftover = _EXTERNAL.search(html)
    if leftover is not None:
        raise RuntimeError(f"the GraphiQL page still loads from another host: {leftover[0]!r}")
    notice = (
        "<!-- React, GraphiQL and its explorer plugin are served by this API; "
        f"their licences: {VENDOR_URL}licenses/ -->\n"
    )
    return html.replace("<head>", "<head>\n    " + notice, 1)


def vendored_urls(html: str) -> list[tuple[str, str | None]]:
    """(path under VENDOR_URL, integrity) of each vendored file the page loads."""
    found = []
    for tag in re.findall(r"<(?:script|link)\b[^>]*>", html):
        url = re.search(r"""(?:src|href)="([^"]+)\"""", tag)
        if url is None or not url[1].startswith(VENDOR_URL):
            continue
        integrity = re.search(r'integrity="([^"]+)"', tag)
        found.append((url[1].removeprefix(VENDOR_URL), integrity[1] if integrity else None))
    return found


def routes() -> list[Mount]:
    return [Mount(VENDOR_URL.rstrip("/"), StaticFiles(directory=VENDOR_DIR), name="ide-vendor")]
