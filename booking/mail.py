"""What a tenant is told, by email: one message per kind of transition, plain text and HTML.

Pure (no I/O): the worker's mail activity reads the facts (the booking, the event's details)
and hands them here. Every message names the apartment and the stay's dates; money is shown
in the booking's currency from its minor units.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

# ISO 4217 currencies whose minor unit is not a hundredth (the ones a rent may plausibly use).
_MINOR_DIGITS = {"JPY": 0, "KRW": 0, "ISK": 0, "CLP": 0, "BHD": 3, "KWD": 3, "JOD": 3, "TND": 3}


def money(minor: int, currency: str) -> str:
    """``123456, "EUR"`` -> ``1,234.56 EUR``; ``5000, "JPY"`` -> ``5,000 JPY``."""
    digits = _MINOR_DIGITS.get(currency, 2)
    sign = "-" if minor < 0 else ""
    whole, part = divmod(abs(minor), 10**digits)
    text = f"{whole:,}"
    if digits:
        text += f".{part:0{digits}d}"
    return f"{sign}{text} {currency}"


@dataclass(frozen=True)
class MailFacts:
    """What a message may say: the stay, and what the transition recorded."""

    apartment_id: str
    start_date: date
    end_date: date
    currency: str
    amount_due: int | None = None
    hold_expires_at: datetime | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Mail:
    subject: str
    text: str
    html: str


def _when(at: datetime | str | None) -> str:
    if at is None:
        return "(not set)"
    if isinstance(at, str):
        at = datetime.fromisoformat(at)
    return at.strftime("%Y-%m-%d %H:%M UTC")


def _lines(kind: str, f: MailFacts) -> tuple[str, list[str]]:
    stay = f"apartment {f.apartment_id}, {f.start_date} to {f.end_date} (move-out day)"
    due = f.details.get("amountDue", f.amount_due)
    amount = money(int(due), f.currency) if due is not None else None
    if kind == "RESERVED":
        return f"Your hold on apartment {f.apartment_id}", [
            f"We are holding {stay} for you.",
            f"Pay {amount} before {_when(f.details.get('holdExpiresAt') or f.hold_expires_at)}"
            " to keep it; after that the nights are free again.",
        ]
    if kind == "HOLD_ENDING":
        return f"Your hold on apartment {f.apartment_id} ends soon", [
            f"Your hold on {stay} ends at {_when(f.hold_expires_at)}.",
            f"Pay {amount} before then to keep it.",
        ]
    if kind == "EXPIRED":
        return f"Your hold on apartment {f.apartment_id} has ended", [
            f"No payment arrived in time, so the hold on {stay} has ended.",
            "Any payment that still reaches us for it will be refunded.",
        ]
    if kind == "PAID":
        reference = f.details.get("paymentReference", "")
        return f"Payment received: apartment {f.apartment_id}", [
            f"Thank you: we received {amount} (reference {reference}).",
            f"It confirms {stay}.",
        ]
    if kind == "OFFERED":
        return f"Apartment {f.apartment_id} is offered to you", [
            f"The nights you were waiting for are free: {stay}.",
            f"Pay {amount} before {_when(f.hold_expires_at)} to take them.",
        ]
    if kind == "LAPSED":
        return f"Your offer for apartment {f.apartment_id} has lapsed", [
            f"The offer of {stay} ended without a payment; the nights went to the next in line.",
        ]
    if kind.startswith("RENT_"):
        due_date = f.details.get("dueDate", "")
        what = {
            "RENT_ISSUED": (f"Rent due {due_date}", f"Your rent of {amount} is due on {due_date}."),
            "RENT_DUE": ("Rent due today", f"Your rent of {amount} is due today ({due_date})."),
            "RENT_OVERDUE": (
                "Rent overdue",
                f"Your rent due {due_date} is overdue; with the late fee it is now {amount}.",
            ),
            "RENT_REMINDER": (
                "Rent still overdue",
                f"Your rent due {due_date} is still unpaid: {amount}.",
            ),
            "RENT_PAID": (
                "Rent received",
                f"Thank you: we received {money(int(f.details.get('amount', 0)), f.currency)}"
                f" (reference {f.details.get('paymentReference', '')}).",
            ),
        }.get(kind, (kind, kind))
        return f"{what[0]}: apartment {f.apartment_id}", [what[1], f"Your stay: {stay}."]
    raise ValueError(f"no message for {kind}")


def render(kind: str, facts: MailFacts) -> Mail:
    """The message for a transition of ``kind`` (a ``booking_events`` reason)."""
    subject, lines = _lines(kind, facts)
    text = "\n\n".join(lines) + "\n"
    body = "".join(f"<p>{html.escape(line)}</p>" for line in lines)
    page = (
        '<!doctype html><html><body style="font-family: sans-serif">'
        f'<h1 style="font-size: 1.2em">{html.escape(subject)}</h1>{body}</body></html>'
    )
    return Mail(subject, text, page)
