"""Issue 23 over real HTTP: stays on a calendar. Booking ahead of a current tenant, the
calendar and the search, the waiting list by range, races across two API processes, and the
bad input each refuses, through the real worker, Temporal dev server and Postgres."""

from __future__ import annotations

import asyncio
import itertools
import random
import uuid
from datetime import date
from typing import Any

import pytest

from tests.e2e.helpers import (
    BOOKING_FIELDS,
    CANCEL,
    PAY,
    RESERVE,
    E2EStack,
    Gql,
    create_apartment,
    create_user,
    days_ahead,
    error_types,
)

pytestmark = pytest.mark.e2e

CALENDAR = """
query ($a: ID!, $from: AWSDate!, $to: AWSDate!) {
  getApartmentCalendar(apartmentId: $a, from: $from, to: $to) {
    startDate endDate state bookingId
  }
}
"""
SEARCH = """
query ($input: SearchApartmentsInput!) {
  searchApartments(input: $input) {
    items { id apartmentType numberOfRooms monthlyRent apartmentStatus availableFrom }
    nextToken
  }
}
"""
APARTMENT = """query ($id: ID!) {
  getApartment(id: $id) { apartmentStatus availableFrom tenant { id } }
}"""
JOIN = """
mutation ($input: JoinWaitlistInput!) {
  joinWaitlist(input: $input) { id status position startDate endDate offeredBookingId }
}
"""
ENTRY = """query ($id: ID!) { getWaitlistEntry(id: $id) { status offeredBookingId } }"""
ALL_STAYS = f"""query ($a: String!) {{
  getAllBookingsPerApartment(apartmentId: $a) {{ {BOOKING_FIELDS} }}
}}"""


def _stay(apartment: str, user: str, start: int, end: int, **extra: Any) -> dict[str, Any]:
    """A reserve's input for the nights from ``start`` days ahead up to ``end`` days ahead."""
    return {
        "input": {
            "apartmentId": apartment,
            "userId": user,
            "startDate": days_ahead(start),
            "endDate": days_ahead(end),
            **extra,
        }
    }


async def _booked(gql: Gql, variables: dict[str, Any]) -> dict[str, Any]:
    body = await gql(RESERVE, variables)
    assert "errors" not in body, body
    booking: dict[str, Any] = body["data"]["reserveApartment"]
    assert booking["bookingStatus"] == "PENDING"
    return booking


async def _paid(gql: Gql, booking: dict[str, Any]) -> None:
    body = await gql(
        PAY,
        {
            "input": {
                "bookingId": booking["id"],
                "amount": booking["amountDue"],
                "currency": booking["currency"],
                "paymentReference": f"ref-{uuid.uuid4()}",
            }
        },
    )
    assert body["data"]["payBooking"]["bookingStatus"] == "APPROVED", body


async def test_the_next_stay_is_booked_while_the_current_tenant_lives_there(
    stack: E2EStack,
) -> None:
    async with stack.api.client(stack.key) as http:
        admin = Gql(http)
        _, apartment = await create_apartment(admin)
        current, following_id, late = [await create_user(admin) for _ in range(3)]
        now = await _booked(admin, _stay(apartment, current, 0, 30))
        await _paid(admin, now)
        status = (await admin(APARTMENT, {"id": apartment}))["data"]["getApartment"]
        assert status == {
            "apartmentStatus": "OCCUPIED",
            "availableFrom": days_ahead(30),
            "tenant": {"id": now["userId"]},
        }

        # The stay that follows touches the current one (30 is its move-out day): booked
        # ahead, held, then paid, while the current tenant still lives there.
        following = await _booked(admin, _stay(apartment, following_id, 30, 90))
        await _paid(admin, following)
        status = (await admin(APARTMENT, {"id": apartment}))["data"]["getApartment"]
        assert (status["apartmentStatus"], status["availableFrom"]) == ("OCCUPIED", days_ahead(90))

        # One shared night is enough to refuse, with the range that is taken.
        body = await admin(RESERVE, _stay(apartment, late, 89, 95))
        assert error_types(body) == ["ApartmentUnavailable"], body
        assert f"BOOKED from {days_ahead(30)} to {days_ahead(90)}" in body["errors"][0]["message"]

        stays = (await admin(ALL_STAYS, {"a": apartment}))["data"]["getAllBookingsPerApartment"]
        assert [(s["startDate"], s["endDate"], s["bookingStatus"]) for s in stays] == [
            (days_ahead(0), days_ahead(30), "APPROVED"),
            (days_ahead(30), days_ahead(90), "APPROVED"),
        ]


async def test_the_calendar_shows_free_held_and_booked_nights(stack: E2EStack) -> None:
    async with stack.api.client(stack.key) as http:
        admin = Gql(http)
        _, apartment = await create_apartment(admin)
        tenant = await create_user(admin)
        paid = await _booked(admin, _stay(apartment, tenant, 10, 20))
        await _paid(admin, paid)
        held = await _booked(admin, _stay(apartment, await create_user(admin), 20, 25))
        window = {"a": apartment, "from": days_ahead(5), "to": days_ahead(40)}
        ranges = (await admin(CALENDAR, window))["data"]["getApartmentCalendar"]
        assert ranges == [
            {
                "startDate": days_ahead(5),
                "endDate": days_ahead(10),
                "state": "FREE",
                "bookingId": None,
            },
            {
                "startDate": days_ahead(10),
                "endDate": days_ahead(20),
                "state": "BOOKED",
                "bookingId": paid["id"],
            },
            {
                "startDate": days_ahead(20),
                "endDate": days_ahead(25),
                "state": "HELD",
                "bookingId": held["id"],
            },
            {
                "startDate": days_ahead(25),
                "endDate": days_ahead(40),
                "state": "FREE",
                "bookingId": None,
            },
        ]
        # Inside one stay: one range, clipped to the window.
        inside = {"a": apartment, "from": days_ahead(12), "to": days_ahead(14)}
        assert [
            (r["startDate"], r["endDate"], r["state"])
            for r in (await admin(CALENDAR, inside))["data"]["getApartmentCalendar"]
        ] == [(days_ahead(12), days_ahead(14), "BOOKED")]

    # A tenant sees the states only, its own stay's id included.
    async with stack.api.client(stack.bearer(tenant, "Tenants")) as http:
        seen = (await Gql(http)(CALENDAR, window))["data"]["getApartmentCalendar"]
        assert [r["state"] for r in seen] == ["FREE", "BOOKED", "HELD", "FREE"]
        assert {r["bookingId"] for r in seen} == {None}


async def test_the_search_finds_what_is_free_for_the_whole_stay(stack: E2EStack) -> None:
    async with stack.api.client(stack.key) as http:
        admin = Gql(http)
        owner = await create_user(admin, "ADMIN")
        building, first = await create_apartment(admin, rent=80_000, owner=owner)
        apartments = [first]
        for rooms, kind, rent in (
            (1, "SINGLE_ROOM", 50_000),
            (4, "VILLA", 300_000),
            (2, "DOUBLE_ROOM", 90_000),
        ):
            body = await admin(
                """mutation ($input: ApartmentInput) { createApartment(input: $input) { id } }""",
                {
                    "input": {
                        "apartmentNumber": f"{rooms}{kind[0]}",
                        "buildingId": building,
                        "numberOfRooms": rooms,
                        "kitchen": True,
                        "apartmentType": kind,
                        "apartmentStatus": "VACANT",
                        "monthlyRent": rent,
                        "currency": "EUR",
                    }
                },
            )
            apartments.append(body["data"]["createApartment"]["id"])
        tenant = await create_user(admin)
        # The first apartment is taken for one night inside the searched month; the last one
        # only up to the month's first night (it touches, it does not overlap).
        await _booked(admin, _stay(apartments[0], tenant, 45, 46))
        await _booked(admin, _stay(apartments[3], await create_user(admin), 20, 30))

        async def search(**extra: Any) -> dict[str, Any]:
            body = await admin(
                SEARCH,
                {
                    "input": {
                        "startDate": days_ahead(30),
                        "endDate": days_ahead(60),
                        "buildingId": building,
                        **extra,
                    }
                },
            )
            assert "errors" not in body, body
            result: dict[str, Any] = body["data"]["searchApartments"]
            return result

        found = await search()
        assert {a["id"] for a in found["items"]} == set(apartments[1:])
        assert found["nextToken"] is None
        assert [a["id"] for a in found["items"]] == sorted(apartments[1:])
        assert {a["id"] for a in (await search(apartmentType="VILLA"))["items"]} == {apartments[2]}
        assert {a["id"] for a in (await search(minRooms=2))["items"]} == {
            apartments[2],
            apartments[3],
        }
        assert {a["id"] for a in (await search(maxMonthlyRent=90_000))["items"]} == {
            apartments[1],
            apartments[3],
        }
        # Pages, AppSync-style: every item once, in order.
        seen: list[str] = []
        token = None
        for _ in range(5):
            page = await search(limit=1, **({"nextToken": token} if token else {}))
            seen += [a["id"] for a in page["items"]]
            token = page["nextToken"]
            if token is None:
                break
        assert seen == sorted(apartments[1:])
        # A token is for the range it was made for.
        token = (await search(limit=1))["nextToken"]
        body = await admin(
            SEARCH,
            {"input": {"startDate": days_ahead(31), "endDate": days_ahead(60), "nextToken": token}},
        )
        assert error_types(body) == ["ValidationError"], body


async def test_bad_calendar_and_search_input_is_refused(stack: E2EStack) -> None:
    async with stack.api.client(stack.key) as http:
        admin = Gql(http)
        _, apartment = await create_apartment(admin)
        for window, why in (
            ({"from": days_ahead(5), "to": days_ahead(5)}, "to must be after from"),
            ({"from": days_ahead(5), "to": days_ahead(1)}, "to must be after from"),
            ({"from": days_ahead(0), "to": days_ahead(367)}, "at most 366 days"),
        ):
            body = await admin(CALENDAR, {"a": apartment, **window})
            assert error_types(body) == ["ValidationError"], body
            assert why in body["errors"][0]["message"]
        body = await admin(
            CALENDAR, {"a": "no-such-apartment", "from": days_ahead(0), "to": days_ahead(9)}
        )
        assert error_types(body) == ["ApartmentNotFound"], body
        for stay, why in (
            (
                {"startDate": days_ahead(9), "endDate": days_ahead(9)},
                "endDate must be after startDate",
            ),
            (
                {"startDate": days_ahead(9), "endDate": days_ahead(2)},
                "endDate must be after startDate",
            ),
            ({"startDate": days_ahead(-1), "endDate": days_ahead(2)}, "must not be in the past"),
            ({"startDate": days_ahead(0), "endDate": days_ahead(5000)}, "BOOKING_MAX_STAY_DAYS"),
            (
                {"startDate": days_ahead(4000), "endDate": days_ahead(4001)},
                "BOOKING_MAX_ADVANCE_DAYS",
            ),
            ({"startDate": days_ahead(1), "endDate": days_ahead(2), "minRooms": -1}, "negative"),
            ({"startDate": days_ahead(1), "endDate": days_ahead(2), "limit": 0}, "limit"),
        ):
            body = await admin(SEARCH, {"input": stay})
            assert error_types(body) == ["ValidationError"], body
            assert why in body["errors"][0]["message"], body
        # The reserve's own range rule, the same words.
        body = await admin(RESERVE, _stay(apartment, await create_user(admin), 3, 3))
        assert error_types(body) == ["ValidationError"], body
        assert body["errors"][0]["message"] == "endDate must be after startDate"
        assert (await admin(ALL_STAYS, {"a": apartment}))["data"][
            "getAllBookingsPerApartment"
        ] == []


async def test_disjoint_ranges_all_succeed_at_once_and_overlapping_ones_leave_disjoint_winners(
    stack: E2EStack,
) -> None:
    """Across both API processes: eight weekly stays of one apartment, all at once, are all
    placed; then a rush of random overlapping ranges on another ends with winners whose ranges
    are pairwise disjoint, every loser told ApartmentUnavailable."""
    async with stack.api.client(stack.key) as one, stack.api2.client(stack.key) as two:
        apis = [Gql(one), Gql(two)]
        _, weekly = await create_apartment(apis[0])
        _, rushed = await create_apartment(apis[0])
        tenants = [await create_user(apis[0]) for _ in range(24)]

        weeks = await asyncio.gather(
            *(apis[i % 2](RESERVE, _stay(weekly, tenants[i], 7 * i, 7 * (i + 1))) for i in range(8))
        )
        assert [error_types(body) for body in weeks] == [[]] * 8, weeks

        rng = random.Random(23)
        asked = []
        for _ in range(16):
            start = rng.randrange(0, 40)
            asked.append((start, start + rng.randrange(1, 15)))
        answers = await asyncio.gather(
            *(
                apis[i % 2](RESERVE, _stay(rushed, tenants[8 + i], start, end))
                for i, (start, end) in enumerate(asked)
            )
        )
        won = []
        for (start, end), body in zip(asked, answers, strict=True):
            if "errors" in body:
                assert error_types(body) == ["ApartmentUnavailable"], body
            else:
                won.append((start, end))
        assert won
        for (a_start, a_end), (b_start, b_end) in itertools.combinations(won, 2):
            assert a_end <= b_start or b_end <= a_start, (won, asked)
        rows = await stack.pool.fetch(
            "SELECT start_date, end_date FROM bookings WHERE apartment_id = $1 "
            "AND booking_status = 'PENDING'",
            rushed,
        )
        today = date.today()
        assert sorted(
            ((r["start_date"] - today).days, (r["end_date"] - today).days) for r in rows
        ) == sorted(won)


async def test_the_waiting_list_asks_for_a_range(stack: E2EStack) -> None:
    async with stack.api.client(stack.key) as http:
        admin = Gql(http)
        _, apartment = await create_apartment(admin)
        holder, waiting, early = [await create_user(admin) for _ in range(3)]
        held = await _booked(admin, _stay(apartment, holder, 10, 40))

        def join(user: str, start: int, end: int) -> dict[str, Any]:
            return {
                "input": {
                    "apartmentId": apartment,
                    "userId": user,
                    "startDate": days_ahead(start),
                    "endDate": days_ahead(end),
                }
            }

        # Nights that are free: reserve them instead.
        body = await admin(JOIN, join(waiting, 40, 50))
        assert error_types(body) == ["ValidationError"], body
        assert "reserve it instead" in body["errors"][0]["message"]
        # Nights inside the hold: waiting.
        entry = (await admin(JOIN, join(waiting, 20, 30)))["data"]["joinWaitlist"]
        assert (entry["status"], entry["position"]) == ("WAITING", 1)
        # Overlapping the hold and the night before it (free): still taken in part, so waits.
        second = (await admin(JOIN, join(early, 5, 15)))["data"]["joinWaitlist"]
        assert second["status"] == "WAITING"

        # The hold is cancelled: its nights go to the first entry whose whole range is free.
        body = await admin(CANCEL, {"id": held["id"]})
        assert body["data"]["cancelBooking"]["bookingStatus"] == "CANCELLED", body

        async def entry_status(entry_id: str) -> str:
            answer = await admin(ENTRY, {"id": entry_id})
            status: str = answer["data"]["getWaitlistEntry"]["status"]
            return status

        for _ in range(100):
            if await entry_status(entry["id"]) == "OFFERED":
                break
            await asyncio.sleep(0.1)
        assert await entry_status(entry["id"]) == "OFFERED"
        # One release, one offer: the other entry keeps its place (its nights are free now,
        # and `booking doctor` would offer them).
        assert await entry_status(second["id"]) == "WAITING"
        ranges = (
            await admin(CALENDAR, {"a": apartment, "from": days_ahead(0), "to": days_ahead(40)})
        )["data"]["getApartmentCalendar"]
        assert [(r["startDate"], r["endDate"], r["state"]) for r in ranges] == [
            (days_ahead(0), days_ahead(20), "FREE"),
            (days_ahead(20), days_ahead(30), "HELD"),
            (days_ahead(30), days_ahead(40), "FREE"),
        ]
