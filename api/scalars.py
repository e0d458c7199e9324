"""The AWS scalars AppSync clients send and expect, with AppSync's formats.

``AWSDate`` is ``YYYY-MM-DD`` with an optional zone designator (``Z`` or
``±hh:mm[:ss]``), which carries no meaning for a calendar date and is dropped.
``AWSDateTime`` is an ISO 8601 date-time whose zone designator is mandatory; we
answer in UTC with millisecond precision and ``Z``, as AppSync does.
Anything else is rejected while the request is validated, so resolvers only
ever see ``date`` and tz-aware ``datetime`` values.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import NewType

import strawberry
from strawberry.types.scalar import ScalarDefinition

AWSDate = NewType("AWSDate", date)

# A stay is the nights [startDate, endDate): said once for every type that carries one.
FIRST_NIGHT = "The first night of the stay."
MOVE_OUT = (
    "The move-out day: not a night of the stay, so a stay ending on a day and one starting "
    "on it do not overlap."
)
AWSDateTime = NewType("AWSDateTime", datetime)

_ZONE = r"(?:Z|[+-]\d{2}:\d{2}(?::\d{2})?)"
_DATE_RE = re.compile(rf"^(\d{{4}}-\d{{2}}-\d{{2}})({_ZONE})?$")
_DATETIME_RE = re.compile(
    rf"^\d{{4}}-\d{{2}}-\d{{2}}T\d{{2}}:\d{{2}}(?::\d{{2}}(?:\.\d{{1,9}})?)?{_ZONE}$"
)


def parse_aws_date(value: object) -> date:
    if not isinstance(value, str) or not (match := _DATE_RE.match(value)):
        raise ValueError(f"AWSDate must be YYYY-MM-DD, got {value!r:.60}")
    try:
        return date.fromisoformat(match.group(1))
    except ValueError:
        raise ValueError(f"AWSDate is not a calendar date: {value!r:.60}") from None


def serialize_aws_date(value: object) -> str:
    if isinstance(value, datetime) or not isinstance(value, date):
        raise TypeError(f"AWSDate cannot represent {type(value).__name__}")
    return value.isoformat()


def parse_aws_datetime(value: object) -> datetime:
    if not isinstance(value, str) or not _DATETIME_RE.match(value):
        raise ValueError(
            "AWSDateTime must be ISO 8601 with a zone designator "
            f"(e.g. 2026-01-31T12:00:00Z), got {value!r:.60}"
        )
    text = value
    # fromisoformat accepts at most 6 fractional digits; AppSync allows 9.
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    try:
        return datetime.fromisoformat(text).astimezone(UTC)
    except ValueError:
        raise ValueError(f"AWSDateTime is not a valid instant: {value!r:.60}") from None


def serialize_aws_datetime(value: object) -> str:
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise TypeError("AWSDateTime needs a tz-aware datetime")
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


SCALAR_MAP: dict[object, ScalarDefinition] = {
    AWSDate: strawberry.scalar(
        name="AWSDate",
        description="An ISO 8601 calendar date, YYYY-MM-DD (AppSync AWSDate).",
        serialize=serialize_aws_date,
        parse_value=parse_aws_date,
    ),
    AWSDateTime: strawberry.scalar(
        name="AWSDateTime",
        description="An ISO 8601 date-time with a mandatory zone (AppSync AWSDateTime).",
        serialize=serialize_aws_datetime,
        parse_value=parse_aws_datetime,
    ),
}
