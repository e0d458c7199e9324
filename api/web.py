"""The tenant web page at ``/``, its assets, and (dev only) ``POST /dev/token``.

At startup :func:`build_assets` names ``app.js`` and ``app.css`` by the sha256 of their
bytes (``/static/app.<12 hex>.js``), served ``immutable``; ``index.html`` is rendered once
with those names and served ``no-cache`` with an ``ETag``, so a deploy is seen on the next
page load while the assets are never fetched twice.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from api.http_cache import NO_STORE, etag_for, etag_matches
from booking.demo import DEMO_BUILDING_ID, DEMO_TENANT_ID
from booking.errors import ValidationError
from booking.settings import DEV_JWT_SECRET, Settings
from booking.tokens import mint_token

STATIC_DIR: Final = Path(__file__).parent / "static"
ASSET_SOURCES: Final = ("app.js", "app.css")
IMMUTABLE: Final = "public, max-age=31536000, immutable"


@dataclass(frozen=True)
class Asset:
    url_name: str
    content: bytes
    media_type: str


_MEDIA_TYPES: Final = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}


def build_assets(static_dir: Path = STATIC_DIR) -> dict[str, Asset]:
    """The manifest: source name -> asset served under ``name.<hash>.ext``.

    Computed at startup from the files' bytes, so a changed file gets a new URL
    and the old one can stay cached forever.
    """
    manifest: dict[str, Asset] = {}
    for source in ASSET_SOURCES:
        path = static_dir / source
        content = path.read_bytes()
        digest = hashlib.sha256(content).hexdigest()[:12]
        url_name = f"{path.stem}.{digest}{path.suffix}"
        manifest[source] = Asset(url_name, content, _MEDIA_TYPES[path.suffix])
    return manifest


def render_index(
    manifest: dict[str, Asset], settings: Settings, static_dir: Path = STATIC_DIR
) -> bytes:
    html = (static_dir / "index.html").read_text(encoding="utf-8")
    for source, asset in manifest.items():
        html = html.replace("{{asset:" + source + "}}", "/static/" + asset.url_name)
    html = html.replace("{{dev_mode}}", "true" if settings.dev_mode else "false")
    # Under booking dev tokens are signed with its dev secret: the command needs --dev.
    html = html.replace("{{token_flag}}", " --dev" if settings.dev_mode else "")
    return html.encode("utf-8")


def _not_modified_or(
    request: Request, content: bytes, media_type: str, cache_control: str
) -> Response:
    etag = etag_for(content)
    headers = {"ETag": etag, "Cache-Control": cache_control}
    if etag_matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    return Response(content, media_type=media_type, headers=headers)


def _static_routes(settings: Settings) -> list[Route]:
    manifest = build_assets()
    by_url = {asset.url_name: asset for asset in manifest.values()}
    index = render_index(manifest, settings)

    async def page(request: Request) -> Response:
        # The page itself always revalidates (cheap 304) so a deploy is seen at once.
        return _not_modified_or(request, index, "text/html; charset=utf-8", "no-cache")

    async def asset(request: Request) -> Response:
        found = by_url.get(request.path_params["name"])
        if found is None:
            return Response(
                "not found",
                status_code=404,
                media_type="text/plain",
                headers={"Cache-Control": "no-store"},
            )
        return _not_modified_or(request, found.content, found.media_type, IMMUTABLE)

    icon = (STATIC_DIR / "favicon.ico").read_bytes()

    async def favicon(request: Request) -> Response:
        # Browsers ask for it on every site; a 404 there is noise in every log.
        return _not_modified_or(request, icon, "image/x-icon", "public, max-age=86400")

    return [
        Route("/", page, methods=["GET", "HEAD"], name="tenant_page"),
        Route("/static/{name}", asset, methods=["GET", "HEAD"], name="static_asset"),
        Route("/favicon.ico", favicon, methods=["GET", "HEAD"], name="favicon"),
    ]


def _dev_routes(settings: Settings) -> list[Route]:
    # Only while the documented dev secret signs tokens: with an operator's own secret, a
    # route that mints tokens for anyone who asks would hand out real credentials.
    if not settings.dev_mode or settings.jwt_secret != DEV_JWT_SECRET:
        return []

    async def dev_token(request: Request) -> Response:
        if not settings.jwt_secret:
            return JSONResponse(
                {
                    "errors": [
                        {
                            "errorType": ValidationError.error_type,
                            "message": "BOOKING_JWT_SECRET is not set",
                        }
                    ]
                },
                status_code=400,
            )
        user_id = request.query_params.get("userId") or DEMO_TENANT_ID
        token = mint_token(
            settings.jwt_secret,
            user_id,
            ["Tenants"],
            ttl_seconds=8 * 3600,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
        )
        return JSONResponse(
            {"token": token, "userId": user_id, "buildingId": DEMO_BUILDING_ID},
            headers={"Cache-Control": NO_STORE},
        )

    return [Route("/dev/token", dev_token, methods=["POST"], name="dev_token")]


def routes(settings: Settings) -> list[Route]:
    """The page, its assets and (dev only) the demo token route."""
    return _static_routes(settings) + _dev_routes(settings)
