"""The data converter: pydantic's payloads, with one TypeAdapter cache per process."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest
from temporalio.contrib.pydantic import pydantic_data_converter

from booking.contract import BookingInput, BookingState, PaymentInput, Reservation
from booking.converter import DATA_CONVERTER, BookingPayloadConverter

VALUES: list[Any] = [
    BookingInput("b-1", "apt-1", "user-1", date(2031, 1, 1), date(2031, 7, 1), 900, "key", None),
    PaymentInput(120_000, "EUR", "ref-1", datetime(2031, 1, 1, 12, 30, 5, 123456, tzinfo=UTC)),
    Reservation(120_000, "EUR", datetime(2031, 1, 1, 12, 45, tzinfo=UTC), created=True),
    BookingState(
        "b-1",
        "booking-b-1",
        "apt-1",
        "user-1",
        "PENDING",
        120_000,
        "EUR",
        datetime(2031, 1, 1, 12, 45, tzinfo=UTC),
        None,
        None,
        None,
        date(2031, 1, 1),
        date(2031, 7, 1),
    ),
    None,
    True,
    "text",
]


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_payloads_are_pydantics_own(value: Any) -> None:
    """Histories written with ``pydantic_data_converter`` read the same, and vice versa."""
    ours = DATA_CONVERTER.payload_converter.to_payloads([value])
    theirs = pydantic_data_converter.payload_converter.to_payloads([value])
    assert ours == theirs
    kind = type(value)
    assert DATA_CONVERTER.payload_converter.from_payloads(theirs, [kind]) == [value]
    assert pydantic_data_converter.payload_converter.from_payloads(ours, [kind]) == [value]


def test_converters_share_their_type_adapters() -> None:
    """The SDK makes a converter per workflow instance; they must not each build adapters."""
    first, second = BookingPayloadConverter(), BookingPayloadConverter()
    payloads = first.to_payloads([VALUES[0]])
    assert first.from_payloads(payloads, [BookingInput]) == [VALUES[0]]
    json_first = next(c for c in first.converters.values() if c.encoding == "json/plain")
    json_second = next(c for c in second.converters.values() if c.encoding == "json/plain")
    assert json_first._type_adapter is json_second._type_adapter  # type: ignore[attr-defined]
    hits = json_second._type_adapter.cache_info().hits  # type: ignore[attr-defined]
    assert second.from_payloads(payloads, [BookingInput]) == [VALUES[0]]
    assert json_second._type_adapter.cache_info().hits == hits + 1  # type: ignore[attr-defined]
