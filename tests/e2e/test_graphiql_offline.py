"""GraphiQL (dev mode) on a machine without internet: every file from the API itself.

Chromium loads the IDE with every request to another host blocked (and recorded); a query
typed into it, with the API key set in its headers tab, answers.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.async_api import Browser, Route

from api.ide import VENDOR_DIR, VENDOR_URL, offline_graphiql_html, vendored_urls
from booking.settings import DEV_API_KEY
from booking.tokens import mint_token
from tests.e2e.helpers import API_KEY, JWT_SECRET, Api, E2EStack

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
async def dev_api(stack: E2EStack) -> AsyncIterator[Api]:
    # As booking dev runs it: dev mode, and the documented dev key beside the stack's own.
    api = await stack.extra_api(
        "api-ide", BOOKING_DEV_MODE="1", BOOKING_API_KEYS=f"{API_KEY},{DEV_API_KEY}"
    )
    try:
        yield api
    finally:
        stack.stop_api("api-ide")


def test_every_file_the_page_loads_is_vendored_byte_for_byte() -> None:
    """The page's own SRI hashes prove each vendored file is the one it was written for."""
    files = vendored_urls(offline_graphiql_html())
    assert len(files) >= 5  # React, ReactDOM, GraphiQL (JS + CSS), the explorer plugin
    for path, integrity in files:
        assert integrity is not None and integrity.startswith("sha384-"), path
        content = (VENDOR_DIR / path).read_bytes()
        digest = base64.b64encode(hashlib.sha384(content).digest()).decode()
        assert integrity == f"sha384-{digest}", path
    assert "unpkg.com" not in offline_graphiql_html()


def test_each_vendored_package_comes_with_its_licence() -> None:
    licences = {p.name for p in (VENDOR_DIR / "licenses").iterdir()}
    for path, _ in vendored_urls(offline_graphiql_html()):
        package = path.split("/")[0] if not path.startswith("@") else path.split("/")[1]
        name, version = package.rsplit("@", 1)
        assert any(licence.startswith(f"{name}-{version}") for licence in licences) or (
            name == "plugin-explorer"  # MIT, graphiql's monorepo, bundles graphiql-explorer
            and {"graphiql-3.8.3.LICENSE", "graphiql-explorer-0.9.0.LICENSE"} <= licences
        ), path


async def test_ide_assets_are_served_by_the_api_with_their_licences(dev_api: Api) -> None:
    async with dev_api.client() as http:
        for path, _ in vendored_urls(offline_graphiql_html()):
            response = await http.get(VENDOR_URL + path)
            assert response.status_code == 200, path
        licence = await http.get(VENDOR_URL + "licenses/graphiql-3.8.3.LICENSE")
        assert licence.status_code == 200 and "MIT License" in licence.text


async def test_ide_files_are_not_served_outside_dev_mode(stack: E2EStack) -> None:
    async with httpx.AsyncClient(base_url=stack.api.url) as http:
        response = await http.get(VENDOR_URL + "graphiql@3.8.3/graphiql.min.js")
    assert response.status_code == 404


async def test_graphiql_renders_offline_and_a_typed_query_answers(
    dev_api: Api, browser: Browser
) -> None:
    own = urlsplit(dev_api.url).netloc
    blocked: list[str] = []
    context = await browser.new_context(viewport={"width": 1400, "height": 900})

    async def only_the_api(route: Route) -> None:
        if urlsplit(route.request.url).netloc == own or route.request.url.startswith("data:"):
            await route.continue_()
        else:
            blocked.append(route.request.url)
            await route.abort()

    await context.route("**/*", only_the_api)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        await page.goto(dev_api.url + "/graphql")
        query_editor = page.locator(".graphiql-query-editor .CodeMirror").first
        await query_editor.wait_for(timeout=20_000)

        # A tenant's token in the headers tab, as a user would set it: it goes out alone
        # (booking dev's key rides along only while the tab names no credential).
        await page.locator('.graphiql-editor-tools button[data-name="headers"]').click()
        headers_editor = page.locator(
            'section.graphiql-editor-tool[aria-label="Headers"] '
            ".graphiql-editor:not(.hidden) .CodeMirror"
        )
        await headers_editor.click()
        # The tab opens with booking dev's key: replaced by the token.
        await page.keyboard.press("Control+A")
        await page.keyboard.press("Delete")
        token = mint_token(JWT_SECRET, "ide-tenant", ["Tenants"])
        await page.keyboard.type(f'{{"Authorization": "{token}"')

        await query_editor.click()
        await page.keyboard.press("Control+A")
        await page.keyboard.press("Delete")
        # getStepFunctions is for API keys and Admins: a tenant is refused it.
        await page.keyboard.type(
            '{ getStepFunctions { id } getApartment(id: "1234567") { id apartmentStatus '
        )
        await page.locator(".graphiql-execute-button").click()

        result = page.locator(".result-window")
        await result.get_by_text('"apartmentStatus"').wait_for(timeout=20_000)
        text = await result.inner_text()
    finally:
        await context.close()
    assert '"id": "1234567"' in text, text
    assert '"errorType": "Unauthorized"' in text, text
    assert blocked == [], blocked
    assert errors == [], errors


def test_only_the_documented_dev_key_is_ever_put_in_the_page() -> None:
    assert "x-api-key" not in offline_graphiql_html()
    page = offline_graphiql_html(DEV_API_KEY)
    assert f'const devHeaders = {{"x-api-key": "{DEV_API_KEY}"}};' in page
    assert "wsConnectionParams: devHeaders" in page
    # ... and shown in the Headers tab the page opens with.
    assert 'React.useState(parameters.headers || "{\\n  \\"x-api-key\\"' in page


async def test_the_ide_of_booking_dev_loads_the_schema_and_answers_without_typing_a_key(
    dev_api: Api, browser: Browser
) -> None:
    """A newcomer opens GraphiQL: the Docs pane shows the schema and a first query answers,
    with nothing typed into the headers tab (the page sends booking dev's key itself)."""
    page = await browser.new_page(viewport={"width": 1400, "height": 900})
    try:
        await page.goto(dev_api.url + "/graphql")
        query_editor = page.locator(".graphiql-query-editor .CodeMirror").first
        await query_editor.wait_for(timeout=20_000)
        # The Headers tab shows the key the page sends.
        await page.locator('.graphiql-editor-tools button[data-name="headers"]').click()
        shown = page.locator('section.graphiql-editor-tool[aria-label="Headers"]')
        await shown.get_by_text(DEV_API_KEY).first.wait_for(timeout=20_000)
        await page.locator('button[aria-label="Show Documentation Explorer"]').click()
        docs = page.locator(".graphiql-doc-explorer")
        await docs.get_by_text("Query", exact=True).first.wait_for(timeout=20_000)
        await query_editor.click()
        await page.keyboard.press("Control+A")
        await page.keyboard.press("Delete")
        await page.keyboard.type('{ getApartment(id: "1234567") { id ')
        await page.locator(".graphiql-execute-button").click()
        result = page.locator(".result-window")
        await result.get_by_text('"getApartment"').wait_for(timeout=20_000)
        text = await result.inner_text()
    finally:
        await page.close()
    assert "UnauthorizedException" not in text and '"id": "1234567"' in text, text


async def test_the_tenant_page_of_booking_dev_names_the_dev_token_command(dev_api: Api) -> None:
    async with dev_api.client() as http:
        page = (await http.get("/")).text
    assert "booking token --dev --user ID --groups Tenants" in page


async def test_outside_booking_dev_the_tenant_page_names_the_plain_command(
    stack: E2EStack,
) -> None:
    async with stack.api.client() as http:
        page = (await http.get("/")).text
    assert "booking token --user ID --groups Tenants" in page and "--dev" not in page
