"""Clients nobody here wrote, as their users configure them, against the API over TLS.

- Amplify JS v6 in Node (pinned npm packages, tests/clients/node.py): a query, a mutation and
  onBookingStatusChanged pushing PENDING -> APPROVED, with an API key and with a tenant's JWT
  in each JWT mode Amplify has (oidc, userPool, lambda); another tenant's booking is refused.
- Amplify JS bundled into a page served from another origin, in Debian's Chromium: works when
  the origin is in BOOKING_CORS_ORIGINS, and the browser refuses when it is not.
- gql's AppSyncWebsocketsTransport (AppSync's protocol) with an API key and with a JWT, and
  gql's WebsocketsTransport speaking the legacy Apollo graphql-ws protocol on /graphql.

The API serves HTTPS and WSS with a certificate of the local CA that ``booking dev --tls``
makes (``booking.devstack.tls``), trusted the way the banner tells users to trust it.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import ssl
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from gql import Client, GraphQLRequest
from gql.transport.appsync_auth import AppSyncApiKeyAuthentication, AppSyncJWTAuthentication
from gql.transport.appsync_websockets import AppSyncWebsocketsTransport
from gql.transport.exceptions import TransportQueryError
from gql.transport.websockets import WebsocketsTransport
from playwright.async_api import Browser, async_playwright
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.routing import Route

from booking.devstack.net import free_port
from booking.devstack.tls import LocalTls, ensure_local_tls
from tests.clients.node import AmplifyClient, amplify
from tests.e2e.helpers import (
    API_KEY,
    CHROMIUM_ARGS,
    PAY,
    RESERVE,
    Api,
    E2EStack,
    Gql,
    ServedApp,
    create_apartment,
    create_user,
    reserve_input,
)
from tests.system_packages import CHROMIUM, ensure

pytestmark = pytest.mark.e2e

SUBSCRIPTION = "subscription ($id: ID!) { onBookingStatusChanged(id: $id) { id bookingStatus } }"
STAY = {"startDate": "2031-02-01", "endDate": "2031-08-01"}


@dataclass
class TlsApi:
    api: Api
    tls: LocalTls
    allowed_origin: str  # the one origin in its BOOKING_CORS_ORIGINS
    allowed_port: int
    refused_port: int

    @property
    def endpoint(self) -> str:
        return f"{self.api.url}/graphql"

    @property
    def port(self) -> int:
        return int(self.api.url.rsplit(":", 1)[1])

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.tls.ca_file))


@pytest.fixture(scope="module")
async def tls_api(stack: E2EStack) -> AsyncIterator[TlsApi]:
    tls = ensure_local_tls(Path(tempfile.mkdtemp(prefix="booking-tls-")) / "tls")
    stack.parts.tls_verify = ssl.create_default_context(cafile=str(tls.ca_file))
    allowed_port, refused_port = free_port(), free_port()
    origin = f"http://127.0.0.1:{allowed_port}"
    api = await stack.extra_api(
        "api-tls",
        BOOKING_TLS_CERTFILE=str(tls.cert_file),
        BOOKING_TLS_KEYFILE=str(tls.key_file),
        BOOKING_CORS_ORIGINS=origin,
    )
    assert api.url.startswith("https://")
    try:
        yield TlsApi(api, tls, origin, allowed_port, refused_port)
    finally:
        stack.stop_api("api-tls")


@pytest.fixture(scope="module")
def amplify_client() -> AmplifyClient:
    return amplify()


async def vacant_apartment(admin: Gql, rent: int) -> tuple[str, str]:
    """(tenant id, apartment id): a new tenant and a new VACANT apartment."""
    tenant = await create_user(admin)
    _, apartment = await create_apartment(admin, rent=rent)
    return tenant, apartment


async def booking_status(admin: Gql, booking_id: str) -> str:
    query = "query ($id: ID!) { getBooking(id: $id) { bookingStatus } }"
    body = await admin(query, {"id": booking_id})
    status: str = body["data"]["getBooking"]["bookingStatus"]
    return status


async def run_amplify(
    client: AmplifyClient, tls: LocalTls, config: dict[str, Any]
) -> tuple[int, list[dict[str, Any]], str]:
    env = {**os.environ, "NODE_EXTRA_CA_CERTS": str(tls.ca_file)}
    process = await asyncio.create_subprocess_exec(
        client.node,
        str(client.script),
        json.dumps(config),
        cwd=client.directory,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 90)
    lines = [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]
    assert process.returncode is not None
    return process.returncode, lines, err.decode()


def assert_booked_and_paid(lines: list[dict[str, Any]], stderr: str) -> str:
    steps = {line.get("step"): line for line in lines if "step" in line}
    assert steps["query"]["apartmentStatus"] == "VACANT", (lines, stderr)
    assert steps["mutation"]["status"] == "PENDING", lines
    statuses = [line["status"] for line in lines if line.get("step") == "subscription"]
    assert statuses == ["PENDING", "APPROVED"], (lines, stderr)
    assert steps["pay"]["status"] == "APPROVED", lines
    done = lines[-1]["done"]
    booking_id: str = done["bookingId"]
    return booking_id


async def test_amplify_node_with_api_key_queries_mutates_and_subscribes(
    tls_api: TlsApi, amplify_client: AmplifyClient, admin: Gql
) -> None:
    tenant, apartment = await vacant_apartment(admin, 2_100)
    code, lines, stderr = await run_amplify(
        amplify_client,
        tls_api.tls,
        {
            "endpoint": tls_api.endpoint,
            "authMode": "apiKey",
            "apiKey": API_KEY,
            "apartmentId": apartment,
            "userId": tenant,
            "paymentReference": f"amp-{uuid.uuid4()}",
            **STAY,
        },
    )
    assert code == 0, (lines, stderr)
    booking_id = assert_booked_and_paid(lines, stderr)
    assert await booking_status(admin, booking_id) == "APPROVED"


@pytest.mark.parametrize("mode", ["oidc", "userPool", "lambda"])
async def test_amplify_node_with_a_tenant_jwt_books_and_pays_its_own_booking(
    stack: E2EStack, tls_api: TlsApi, amplify_client: AmplifyClient, admin: Gql, mode: str
) -> None:
    tenant, apartment = await vacant_apartment(admin, 2_200)
    # By name, as a user's app would: the certificate is for localhost as well as 127.0.0.1.
    endpoint = f"https://localhost:{tls_api.port}/graphql"
    code, lines, stderr = await run_amplify(
        amplify_client,
        tls_api.tls,
        {
            "endpoint": endpoint,
            "authMode": mode,
            "token": stack.token(tenant, ["Tenants"]),
            "apartmentId": apartment,
            "userId": tenant,
            "paymentReference": f"amp-{uuid.uuid4()}",
            **STAY,
        },
    )
    assert code == 0, (lines, stderr)
    booking_id = assert_booked_and_paid(lines, stderr)
    assert await booking_status(admin, booking_id) == "APPROVED"


async def test_amplify_subscription_to_another_tenants_booking_is_refused(
    stack: E2EStack, tls_api: TlsApi, amplify_client: AmplifyClient, admin: Gql
) -> None:
    tenant, apartment = await vacant_apartment(admin, 2_300)
    reserved = await admin(RESERVE, reserve_input(apartment, tenant))
    booking_id = reserved["data"]["reserveApartment"]["id"]
    code, lines, stderr = await run_amplify(
        amplify_client,
        tls_api.tls,
        {
            "endpoint": tls_api.endpoint,
            "authMode": "oidc",
            "token": stack.token("intruder", ["Tenants"]),
            "action": "refusal",
            "bookingId": booking_id,
        },
    )
    assert code == 0, (lines, stderr)
    assert '"errorType":"Unauthorized"' in lines[-1]["done"], lines


# -- Amplify in a browser page on another origin --------------------------------------------


def page_server(client: AmplifyClient, tls_api: TlsApi, config: dict[str, Any]) -> Starlette:
    """A web app of its own origin that loads the Amplify bundle, like the tenant's SPA."""
    html = (
        "<!doctype html><html><head><meta charset='utf-8'><title>AppSync app</title></head>"
        f"<body><pre id='log'></pre><script>window.BOOKING_CONFIG = {json.dumps(config)};"
        "</script><script type='module' src='/app.js'></script></body></html>"
    )

    async def index(_request: Request) -> Response:
        return HTMLResponse(html)

    async def bundle(_request: Request) -> Response:
        return FileResponse(client.bundle, media_type="text/javascript")

    return Starlette(routes=[Route("/", index), Route("/app.js", bundle)])


def spki_pin(cert_file: Path) -> str:
    """Chromium's --ignore-certificate-errors-spki-list value for the server's key."""
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    der = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


@pytest.fixture(scope="module")
async def tls_browser(tls_api: TlsApi) -> AsyncIterator[Browser]:
    """Chromium that trusts the API's certificate (and nothing else it would not trust)."""
    executable = ensure(CHROMIUM)
    pin = f"--ignore-certificate-errors-spki-list={spki_pin(tls_api.tls.cert_file)}"
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=executable, args=[*CHROMIUM_ARGS, pin], headless=True
        )
        try:
            yield launched
        finally:
            await launched.close()


async def run_page(
    browser: Browser, client: AmplifyClient, tls_api: TlsApi, port: int, config: dict[str, Any]
) -> tuple[dict[str, Any], list[str]]:
    async with ServedApp(page_server(client, tls_api, config), port=port) as served:
        context = await browser.new_context()
        page = await context.new_page()
        console: list[str] = []
        page.on("console", lambda message: console.append(message.text))
        try:
            await page.goto(served.url + "/")
            await page.wait_for_function("window.bookingResult !== undefined", timeout=15_000)
            result: dict[str, Any] = await page.evaluate("window.bookingResult")
        finally:
            await context.close()
    return result, console


async def _page_config(tls_api: TlsApi, admin: Gql, rent: int) -> dict[str, Any]:
    """What the Amplify page is told: the endpoint, its key, a vacant apartment to book."""
    tenant, apartment = await vacant_apartment(admin, rent)
    return {
        "endpoint": tls_api.endpoint,
        "apiKey": API_KEY,
        "apartmentId": apartment,
        "userId": tenant,
        "paymentReference": f"page-{uuid.uuid4()}",
        **STAY,
    }


async def test_amplify_in_a_page_on_an_allowed_origin_books_and_subscribes(
    tls_api: TlsApi, amplify_client: AmplifyClient, tls_browser: Browser, admin: Gql
) -> None:
    config = await _page_config(tls_api, admin, 2_400)
    result, console = await run_page(
        tls_browser, amplify_client, tls_api, tls_api.allowed_port, config
    )
    assert result["ok"], (result, console)
    lines = [*result["lines"], {"done": result["done"]}]
    booking_id = assert_booked_and_paid(lines, "\n".join(console))
    assert await booking_status(admin, booking_id) == "APPROVED"


async def test_amplify_in_a_page_on_another_origin_is_refused_by_the_browser(
    tls_api: TlsApi, amplify_client: AmplifyClient, tls_browser: Browser, admin: Gql
) -> None:
    config = await _page_config(tls_api, admin, 2_500)
    result, console = await run_page(
        tls_browser, amplify_client, tls_api, tls_api.refused_port, config
    )
    assert not result["ok"], result
    assert result["lines"] == [], result  # not even the first query's answer was readable
    assert any("CORS" in line for line in console), console
    # The preflight failed, so the browser never sent the mutation: nothing was held.
    body = await admin(
        "query ($id: ID!) { getApartment(id: $id) { apartmentStatus } }",
        {"id": config["apartmentId"]},
    )
    assert body["data"]["getApartment"]["apartmentStatus"] == "VACANT"


# -- gql ------------------------------------------------------------------------------------


def subscription(booking_id: str) -> GraphQLRequest:
    return GraphQLRequest(SUBSCRIPTION, variable_values={"id": booking_id})


def appsync_transport(tls_api: TlsApi, auth: Any) -> AppSyncWebsocketsTransport:
    return AppSyncWebsocketsTransport(
        url=f"{tls_api.endpoint}/realtime", auth=auth, ssl=tls_api.ssl_context()
    )


async def watch_until_approved(
    client: Client, booking_id: str, admin: Gql, amount: int
) -> list[str]:
    statuses: list[str] = []
    async with client as session:
        async with asyncio.timeout(20):
            async for result in session.subscribe(subscription(booking_id)):
                status = result["onBookingStatusChanged"]["bookingStatus"]
                statuses.append(status)
                if status == "PENDING":
                    paid = await admin(
                        PAY,
                        {
                            "input": {
                                "bookingId": booking_id,
                                "amount": amount,
                                "currency": "EUR",
                                "paymentReference": f"gql-{uuid.uuid4()}",
                            }
                        },
                    )
                    assert paid["data"]["payBooking"]["bookingStatus"] == "APPROVED", paid
                if status == "APPROVED":
                    break
    return statuses


async def reserved_booking(admin: Gql, rent: int) -> tuple[str, str]:
    tenant, apartment = await vacant_apartment(admin, rent)
    body = await admin(RESERVE, reserve_input(apartment, tenant))
    return tenant, body["data"]["reserveApartment"]["id"]


async def test_gql_appsync_transport_with_api_key(tls_api: TlsApi, admin: Gql) -> None:
    _, booking_id = await reserved_booking(admin, 2_600)
    host = tls_api.api.url.split("://", 1)[1]
    auth = AppSyncApiKeyAuthentication(host, API_KEY)
    client = Client(transport=appsync_transport(tls_api, auth))
    assert await watch_until_approved(client, booking_id, admin, 2_600) == ["PENDING", "APPROVED"]


async def test_gql_appsync_transport_with_a_tenant_jwt(
    stack: E2EStack, tls_api: TlsApi, admin: Gql
) -> None:
    tenant, booking_id = await reserved_booking(admin, 2_700)
    host = tls_api.api.url.split("://", 1)[1]
    auth = AppSyncJWTAuthentication(host, stack.token(tenant, ["Tenants"]))
    client = Client(transport=appsync_transport(tls_api, auth))
    assert await watch_until_approved(client, booking_id, admin, 2_700) == ["PENDING", "APPROVED"]


async def test_gql_appsync_transport_refuses_another_tenants_booking(
    stack: E2EStack, tls_api: TlsApi, admin: Gql
) -> None:
    _, booking_id = await reserved_booking(admin, 2_800)
    host = tls_api.api.url.split("://", 1)[1]
    auth = AppSyncJWTAuthentication(host, stack.token("intruder", ["Tenants"]))
    async with Client(transport=appsync_transport(tls_api, auth)) as session:
        with pytest.raises(TransportQueryError) as refused:
            async for _ in session.subscribe(subscription(booking_id)):
                pytest.fail("data arrived for someone else's booking")
    # gql hands over the error frame's payload as it came: AppSync's {"errors": [...]}.
    assert refused.value.errors is not None
    assert [e["errorType"] for e in refused.value.errors[0]["errors"]] == ["Unauthorized"]


async def test_legacy_apollo_graphql_ws_clients_subscribe_on_graphql(
    stack: E2EStack, tls_api: TlsApi, admin: Gql
) -> None:
    tenant, booking_id = await reserved_booking(admin, 2_900)
    transport = WebsocketsTransport(
        url=tls_api.api.ws_url,
        subprotocols=[WebsocketsTransport.APOLLO_SUBPROTOCOL],
        init_payload={"Authorization": stack.token(tenant, ["Tenants"])},
        ssl=tls_api.ssl_context(),
    )
    statuses = await watch_until_approved(Client(transport=transport), booking_id, admin, 2_900)
    assert statuses == ["PENDING", "APPROVED"]
    assert transport.subprotocol == WebsocketsTransport.APOLLO_SUBPROTOCOL
