"""The auth matrix over real HTTP: credentials, groups, and whose booking it is."""

from __future__ import annotations

import uuid

import jwt
import pytest

from booking.tokens import mint_token
from tests.e2e.helpers import (
    JWT_SECRET,
    PAY,
    RESERVE,
    RSA_KID,
    E2EStack,
    Gql,
    bad_credentials,
    claims,
    create_apartment,
    create_user,
    error_types,
    reserve_input,
)

pytestmark = pytest.mark.e2e

QUERY = {"query": 'query { getApartment(id: "1234567") { id } }'}


@pytest.mark.parametrize("case", list(bad_credentials()))
async def test_no_or_invalid_credentials_are_401(stack: E2EStack, case: str) -> None:
    headers = bad_credentials()[case]
    async with stack.api.client(headers) as http:
        response = await http.post("/graphql", json=QUERY)
        assert response.status_code == 401, response.text
        body = response.json()
        assert body["errors"][0]["errorType"] == "UnauthorizedException"
        assert body["errors"][0]["message"]
        assert "data" not in body or body.get("data") is None
        # GET is refused the same way.
        response = await http.get("/graphql", params=QUERY)
        assert response.status_code == 401


async def test_rs256_token_from_jwks_is_accepted_and_a_wrong_key_is_not(stack: E2EStack) -> None:
    tenant = claims(sub="rs-user", **{"cognito:groups": ["Tenants"]})
    token = jwt.encode(tenant, stack.rsa_private_key, algorithm="RS256", headers={"kid": RSA_KID})
    async with stack.api.client({"Authorization": f"Bearer {token}"}) as http:
        response = await http.post("/graphql", json=QUERY)
        assert response.status_code == 200, response.text
    from cryptography.hazmat.primitives.asymmetric import rsa

    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(tenant, other, algorithm="RS256", headers={"kid": RSA_KID})
    async with stack.api.client({"Authorization": forged}) as http:
        response = await http.post("/graphql", json=QUERY)
        assert response.status_code == 401


async def test_jwt_without_bearer_prefix_is_accepted(stack: E2EStack) -> None:
    async with stack.api.client({"Authorization": stack.token("x", ["Tenants"])}) as http:
        assert (await http.post("/graphql", json=QUERY)).status_code == 200


USERS_PAGE = "query { getAllUserAccounts(pagination: {limit: 1}) { items { id } } }"
CREATE_BUILDING = """mutation ($input: BuildingInput!) { createBuilding(input: $input) { id } }"""


async def _as(stack: E2EStack, user: str, *groups: str) -> Gql:
    http = stack.api.client(stack.bearer(user, *groups))
    return Gql(http)


@pytest.mark.parametrize(
    ("groups", "allowed"),
    [((), False), (("Tenants",), False), (("Caretakers",), True), (("Admins",), True)],
)
async def test_get_all_user_accounts_needs_admins_or_caretakers(
    stack: E2EStack, groups: tuple[str, ...], allowed: bool
) -> None:
    gql = await _as(stack, "u-groups", *groups)
    async with gql.http:
        body = await gql(USERS_PAGE)
    assert gql.last.status_code == 200
    if allowed:
        assert "errors" not in body, body
        assert len(body["data"]["getAllUserAccounts"]["items"]) == 1
    else:
        assert error_types(body) == ["Unauthorized"]
        assert body["data"] is None
        assert body["errors"][0]["path"] == ["getAllUserAccounts"]


@pytest.mark.parametrize(
    ("groups", "allowed"),
    [(("Tenants",), False), (("Caretakers",), False), (("Admins",), True)],
)
async def test_create_building_needs_admins(
    stack: E2EStack, admin: Gql, groups: tuple[str, ...], allowed: bool
) -> None:
    owner = await create_user(admin, "ADMIN")
    gql = await _as(stack, owner, *groups)
    building = {
        "name": "Group House",
        "userId": owner,
        "numberOfApartments": 0,
        "address": {"streetAddress": "s", "postalCode": "p", "city": "c", "country": "DE"},
    }
    async with gql.http:
        body = await gql(CREATE_BUILDING, {"input": building})
    assert ("errors" not in body) is allowed, body
    if not allowed:
        assert error_types(body) == ["Unauthorized"]


async def test_create_apartment_booking_needs_tenants(stack: E2EStack, admin: Gql) -> None:
    tenant = await create_user(admin)
    _, apartment = await create_apartment(admin)
    mutation = (
        """mutation ($input: CreateBookingInput!) { createApartmentBooking(input: $input) }"""
    )
    booking = {
        "input": {
            "userId": tenant,
            "apartmentId": apartment,
            "startDate": "2031-02-01",
            "endDate": "2031-03-01",
            "bookingStatus": "PENDING",
        }
    }
    gql = await _as(stack, tenant, "Admins")  # AppSync's rule: Tenants only
    async with gql.http:
        assert error_types(await gql(mutation, booking)) == ["Unauthorized"]
    gql = await _as(stack, "somebody-else", "Tenants")  # in another user's name
    async with gql.http:
        assert error_types(await gql(mutation, booking)) == ["Unauthorized"]


async def test_tenants_act_only_on_their_own_bookings(stack: E2EStack, admin: Gql) -> None:
    owner, other = await create_user(admin), await create_user(admin)
    _, apartment = await create_apartment(admin, rent=7_000)

    other_gql = await _as(stack, other, "Tenants")
    owner_gql = await _as(stack, owner, "Tenants")
    caretaker = await _as(stack, "care-1", "Caretakers")
    async with other_gql.http, owner_gql.http, caretaker.http:
        # Reserving in another user's name is refused, and places no hold.
        body = await other_gql(RESERVE, reserve_input(apartment, owner))
        assert error_types(body) == ["Unauthorized"]
        body = await owner_gql(RESERVE, reserve_input(apartment, owner))
        booking_id = body["data"]["reserveApartment"]["id"]

        # Reading, paying, cancelling another tenant's booking: Unauthorized.
        read = "query ($id: ID!) { getBooking(id: $id) { id } }"
        assert error_types(await other_gql(read, {"id": booking_id})) == ["Unauthorized"]
        pay = {
            "input": {
                "bookingId": booking_id,
                "amount": 7_000,
                "currency": "EUR",
                "paymentReference": f"ref-{uuid.uuid4()}",
            }
        }
        assert error_types(await other_gql(PAY, pay)) == ["Unauthorized"]
        cancel = "mutation ($id: ID!) { cancelBooking(id: $id) { id } }"
        assert error_types(await other_gql(cancel, {"id": booking_id})) == ["Unauthorized"]
        # Caretakers may read but not act.
        assert (await caretaker(read, {"id": booking_id}))["data"]["getBooking"]["id"] == booking_id
        assert error_types(await caretaker(PAY, pay)) == ["Unauthorized"]

        # Lists show another tenant nothing of it; the owner sees it.
        listing = "query ($a: String!) { getAllBookingsPerApartment(apartmentId: $a) { id } }"
        assert (await other_gql(listing, {"a": apartment}))["data"] == {
            "getAllBookingsPerApartment": []
        }
        assert (await owner_gql(listing, {"a": apartment}))["data"] == {
            "getAllBookingsPerApartment": [{"id": booking_id}]
        }
        # The owner may pay.
        paid = await owner_gql(PAY, pay)
        assert paid["data"]["payBooking"]["bookingStatus"] == "APPROVED"


async def test_user_accounts_are_their_owners(stack: E2EStack, admin: Gql) -> None:
    me = f"self-{uuid.uuid4().hex[:8]}"
    # An ID token: it carries the email the account is created with.
    token = mint_token(JWT_SECRET, me, [], email=f"{me}@example.com")
    gql = Gql(stack.api.client({"Authorization": f"Bearer {token}"}))
    async with gql.http:
        body = await gql(
            "mutation ($input: UserInput!) { createUserAccount(input: $input) { id userType } }",
            {
                "input": {
                    "firstName": "Sam",
                    "lastName": "Self",
                    "email": f"{me}@example.com",
                    "verified": False,
                    "userType": "TENANT",
                }
            },
        )
        assert body["data"]["createUserAccount"] == {"id": me, "userType": "TENANT"}
        stranger = await create_user(admin)
        read = "query ($id: ID!) { getUserAccount(id: $id) { id } }"
        assert error_types(await gql(read, {"id": stranger})) == ["Unauthorized"]
        assert (await gql(read, {"id": me}))["data"]["getUserAccount"] == {"id": me}
        body = await gql("mutation ($id: ID!) { deleteUserAccount(id: $id) }", {"id": stranger})
        assert error_types(body) == ["Unauthorized"]
        body = await gql(
            """mutation ($input: UserInput!) { createUserAccount(input: $input) { id } }""",
            {
                "input": {
                    "id": f"not-{me}",
                    "firstName": "A",
                    "lastName": "B",
                    "email": f"not-{me}@example.com",
                    "verified": False,
                    "userType": "ADMIN",
                }
            },
        )
        assert error_types(body) == ["Unauthorized"]
        assert (await gql("mutation ($id: ID!) { deleteUserAccount(id: $id) }", {"id": me}))[
            "data"
        ] == {"deleteUserAccount": True}


async def test_step_functions_need_an_api_key_or_admins(stack: E2EStack) -> None:
    gql = await _as(stack, "t", "Tenants")
    async with gql.http:
        body = await gql("query { getStepFunctions { id } }")
    assert error_types(body) == ["Unauthorized"]
    gql = await _as(stack, "a", "Admins")
    async with gql.http:
        body = await gql("query { getStepFunctions { id } }")
    assert isinstance(body["data"]["getStepFunctions"], list)
