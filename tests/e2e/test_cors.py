"""BOOKING_CORS_ORIGINS over real HTTP and WebSockets: who may call the API from a browser.

(Amplify in a real browser, allowed and refused, is in test_appsync_clients.py.)
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Callable

import pydantic
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Subprotocol

from api.cors import ALLOWED_HEADERS
from booking.settings import Settings
from tests.e2e.helpers import API_KEY, Api, E2EStack

pytestmark = pytest.mark.e2e

ALLOWED = "https://app.example.com"
ALSO_ALLOWED = "http://127.0.0.1:5173"
REFUSED = "https://evil.example.net"
QUERY = {"query": 'query { getApartment(id: "1234567") { id } }'}


@pytest.fixture(scope="module")
async def cors_api(stack: E2EStack) -> AsyncIterator[Api]:
    api = await stack.extra_api("api-cors", BOOKING_CORS_ORIGINS=f"{ALLOWED}, {ALSO_ALLOWED}")
    try:
        yield api
    finally:
        stack.stop_api("api-cors")


def preflight(origin: str, headers: str = ",".join(ALLOWED_HEADERS)) -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": headers,
    }


@pytest.mark.parametrize("origin", [ALLOWED, ALSO_ALLOWED])
async def test_preflight_from_an_allowed_origin_allows_what_appsync_clients_send(
    cors_api: Api, origin: str
) -> None:
    async with cors_api.client() as http:
        response = await http.options("/graphql", headers=preflight(origin))
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == origin
    methods = {m.strip() for m in response.headers["access-control-allow-methods"].split(",")}
    assert {"GET", "POST", "OPTIONS"} <= methods
    listed = response.headers["access-control-allow-headers"].split(",")
    allowed = {h.strip().lower() for h in listed}
    assert set(ALLOWED_HEADERS) <= allowed
    assert "access-control-allow-credentials" not in response.headers


@pytest.mark.parametrize(
    "origin", [REFUSED, ALLOWED + ":8443", ALLOWED.replace("https", "http"), "null"]
)
async def test_preflight_from_any_other_origin_gets_no_allow_origin(
    cors_api: Api, origin: str
) -> None:
    async with cors_api.client() as http:
        response = await http.options("/graphql", headers=preflight(origin))
    assert "access-control-allow-origin" not in response.headers
    assert response.status_code == 400


async def test_preflight_for_a_header_clients_do_not_send_is_refused(cors_api: Api) -> None:
    async with cors_api.client() as http:
        response = await http.options("/graphql", headers=preflight(ALLOWED, "x-api-key,x-evil"))
    assert response.status_code == 400


async def test_requests_carry_allow_origin_only_for_allowed_origins(cors_api: Api) -> None:
    async with cors_api.client({"x-api-key": API_KEY}) as http:
        allowed = await http.post("/graphql", json=QUERY, headers={"Origin": ALLOWED})
        refused = await http.post("/graphql", json=QUERY, headers={"Origin": REFUSED})
        read = await http.get("/graphql", params=QUERY, headers={"Origin": ALLOWED})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == ALLOWED
    assert "origin" in allowed.headers.get("vary", "").lower()
    assert read.headers["access-control-allow-origin"] == ALLOWED
    # The API answers (CORS is the browser's rule), but the browser will not show it.
    assert "access-control-allow-origin" not in refused.headers


async def test_without_the_setting_no_origin_is_allowed(stack: E2EStack) -> None:
    async with stack.api.client({"x-api-key": API_KEY}) as http:
        answer = await http.post("/graphql", json=QUERY, headers={"Origin": ALLOWED})
        checked = await http.options("/graphql", headers=preflight(ALLOWED))
    assert "access-control-allow-origin" not in answer.headers
    assert "access-control-allow-origin" not in checked.headers


def _realtime_url(api: Api) -> str:
    header = base64.b64encode(json.dumps({"host": "h", "x-api-key": API_KEY}).encode()).decode()
    return f"{api.ws_url}/realtime?header={header}&payload=e30="


def _graphql_url(api: Api) -> str:
    return api.ws_url


WS_PATHS: dict[str, tuple[Callable[[Api], str], str]] = {
    "graphql-transport-ws": (_graphql_url, "graphql-transport-ws"),
    "legacy graphql-ws": (_graphql_url, "graphql-ws"),
    "appsync realtime": (_realtime_url, "graphql-ws"),
}


@pytest.mark.parametrize("path", list(WS_PATHS))
async def test_websocket_origin_is_checked_against_the_same_list(cors_api: Api, path: str) -> None:
    url_of, protocol = WS_PATHS[path]
    url = url_of(cors_api)
    subprotocols = [Subprotocol(protocol)]
    with pytest.raises(InvalidStatus) as refused:
        await connect(url, subprotocols=subprotocols, origin=REFUSED)  # type: ignore[arg-type]
    assert refused.value.response.status_code == 403
    for origin in (ALLOWED, None):  # an allowed page, and a client outside any browser
        async with connect(url, subprotocols=subprotocols, origin=origin) as ws:  # type: ignore[arg-type]
            assert ws.subprotocol == protocol


@pytest.mark.parametrize("path", list(WS_PATHS))
async def test_without_the_setting_websockets_take_the_same_origin_only(
    stack: E2EStack, path: str
) -> None:
    url_of, protocol = WS_PATHS[path]
    url, subprotocols = url_of(stack.api), [Subprotocol(protocol)]
    with pytest.raises(InvalidStatus) as refused:
        await connect(url, subprotocols=subprotocols, origin=REFUSED)  # type: ignore[arg-type]
    assert refused.value.response.status_code == 403
    own = stack.api.url  # the API's own origin (its tenant page), and no Origin at all
    for origin in (own, None):
        async with connect(url, subprotocols=subprotocols, origin=origin) as ws:  # type: ignore[arg-type]
            assert ws.subprotocol == protocol


@pytest.mark.parametrize(
    "value", ["*", "https://app.example.com/", "app.example.com", "https://*.example.com"]
)
def test_an_origin_that_is_not_exact_is_a_configuration_error(value: str) -> None:
    with pytest.raises(pydantic.ValidationError, match="exact origin"):
        Settings.model_validate({"BOOKING_CORS_ORIGINS": value})


def test_origins_are_kept_as_browsers_send_them() -> None:
    settings = Settings.model_validate(
        {"BOOKING_CORS_ORIGINS": "HTTPS://App.Example.com:443, http://127.0.0.1:80,http://x:8080"}
    )
    assert settings.cors_origins == ("https://app.example.com", "http://127.0.0.1", "http://x:8080")
