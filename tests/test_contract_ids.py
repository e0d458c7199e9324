"""Derived ids never share a space: a caller cannot choose strings that give another source's id.

Booking ids come from (user, idempotency key) pairs and from waiting-list entries (an offer's
booking); the outside round found a user named ``waitlist-offer`` whose key was an entry's id
taking that entry's future offer id. The class: for any strings a caller controls, the id of
one source is never the id of another, and two different (user, key) pairs never share one.
"""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from booking.contract import booking_id_for, offer_booking_id_for, text_problem

# What the API lets a caller send as a user id or key (text_problem refuses the rest).
TEXT = st.text(min_size=1, max_size=40).filter(lambda value: text_problem("x", value) is None)


def test_the_reported_collision_is_gone() -> None:
    entry_id = str(uuid.uuid4())
    assert booking_id_for("waitlist-offer", entry_id) != offer_booking_id_for(entry_id)


@given(user=TEXT, key=TEXT, entry=TEXT)
def test_no_user_and_key_give_an_offers_id(user: str, key: str, entry: str) -> None:
    assert booking_id_for(user, key) != offer_booking_id_for(entry)


@given(first=st.tuples(TEXT, TEXT), second=st.tuples(TEXT, TEXT))
def test_different_user_and_key_pairs_give_different_ids(
    first: tuple[str, str], second: tuple[str, str]
) -> None:
    if first != second:
        assert booking_id_for(*first) != booking_id_for(*second)


def test_a_user_id_with_a_control_character_is_not_an_id() -> None:
    # The one way two pairs could meet ("a\0b", "c" and "a", "b\0c"): refused at the door.
    assert text_problem("userId", "a\x00b") is not None
    assert text_problem("sub", "a\x00b") is not None
