"""What a tenant is told, by email: one message per kind of notification, plain text and HTML.

Pure (no I/O): the worker's mail activity reads the facts (the stay, the event's details) and
hands them here. Every message names the apartment and the stay's dates; money is shown in
the stay's currency from its minor units. The kinds are the outbox's (``notification_kind``
in ``0007_mail.sql`` decides which transition is which).
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from booking.contract import (
    REFUND_ALREADY_PAID,
    REFUND_INVOICE_VOID,
    REFUND_LATE,
    REFUND_NOT_AN_INVOICE,
    REFUND_NOT_PENDING,
    REFUND_WRONG_AMOUNT,
    REFUND_WRONG_CURRENCY,
)

# ISO 4217 currencies whose minor unit is not a hundredth (the ones a rent may plausibly use).
_MINOR_DIGITS = {"JPY": 0, "KRW": 0, "ISK": 0, "CLP": 0, "BHD": 3, "KWD": 3, "JOD": 3, "TND": 3}

# Why a payment was refunded, as the tenant reads it (the refunds' reasons, booking.contract).
_REFUND_REASONS = {
    REFUND_LATE: "it arrived after the hold had ended",
    REFUND_WRONG_AMOUNT: "it was not the amount due",
    REFUND_WRONG_CURRENCY: "it was not in the currency due",
    REFUND_ALREADY_PAID: "it had already been paid",
    REFUND_NOT_PENDING: "the booking was no longer waiting for a payment",
    REFUND_INVOICE_VOID: "the invoice it paid was void (the lease ended before it)",
    REFUND_NOT_AN_INVOICE: "it named no invoice of this lease",
}

KINDS = (
    "HOLD_PLACED",
    "HOLD_ENDING",
    "HOLD_EXPIRED",
    "PAYMENT_RECEIVED",
    "PAYMENT_REFUNDED",
    "OFFERED",
    "OFFER_LAPSED",
    "WAITLIST_LAPSED",
    "RENT_ISSUED",
    "RENT_DUE",
    "RENT_OVERDUE",
    "RENT_REMINDER",
    "RENT_PAID",
    "LEASE_ENDS_EARLIER",
    "LEASE_RENEWED",
)


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

    def amount(self, key: str = "amountDue") -> str:
        """A sum of the event's (``key``), else the booking's amount due."""
        value = self.details.get(key, self.amount_due)
        if value is None:
            return "the amount due"
        return money(int(value), str(self.details.get("currency", self.currency)))

    def hold_end(self) -> str:
        return _when(self.details.get("holdExpiresAt") or self.hold_expires_at)


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


def _rent(kind: str, f: MailFacts) -> tuple[str, list[str]]:
    due = f.details.get("dueDate", "")
    period = f"{f.details.get('periodStart', due)} to {f.details.get('periodEnd', '')}".strip()
    head, line = {
        "RENT_ISSUED": ("Rent due", f"Your rent of {f.amount()} for {period} is due on {due}."),
        "RENT_DUE": ("Rent due today", f"Your rent of {f.amount()} for {period} is due today."),
        "RENT_OVERDUE": (
            "Rent overdue",
            f"Your rent for {period}, due {due}, has not arrived. A late fee of "
            f"{f.amount('lateFee')} is added: {f.amount()} is now due.",
        ),
        "RENT_REMINDER": (
            "Rent still overdue",
            f"Your rent for {period}, due {due}, is still unpaid: {f.amount()} is due.",
        ),
        "RENT_PAID": (
            "Rent received",
            f"Thank you: we received {f.amount('amount')} "
            f"(reference {f.details.get('paymentReference', '')}).",
        ),
    }[kind]
    return f"{head}: apartment {f.apartment_id}", [line]


def _lines(kind: str, f: MailFacts) -> tuple[str, list[str]]:
    apartment = f"apartment {f.apartment_id}"
    if kind == "HOLD_PLACED":
        return f"Your hold on {apartment}", [
            "We are holding it for you.",
            f"Pay {f.amount()} before {f.hold_end()} to book it; after that the nights are "
            "free again.",
        ]
    if kind == "HOLD_ENDING":
        return f"Your hold on {apartment} ends soon", [
            f"Your hold ends at {f.hold_end()}.",
            f"Pay {f.amount()} before then to book it.",
        ]
    if kind == "HOLD_EXPIRED":
        return f"Your hold on {apartment} has ended", [
            "No payment arrived in time, so the hold has ended and the nights are free again.",
            "A payment that still reaches us for it will be refunded.",
        ]
    if kind == "PAYMENT_RECEIVED":
        return f"Payment received: {apartment} is booked", [
            f"Thank you: we received {f.amount()} "
            f"(reference {f.details.get('paymentReference', '')}).",
            "It pays for your stay, which is now booked.",
        ]
    if kind == "PAYMENT_REFUNDED":
        why = _REFUND_REASONS.get(str(f.details.get("refundReason")), "it could not be applied")
        return f"Payment refunded: {apartment}", [
            f"We received {f.amount('amount')} (reference "
            f"{f.details.get('paymentReference', '')}) and are refunding it in full: {why}.",
        ]
    if kind == "OFFERED":
        return f"{apartment.capitalize()} is offered to you", [
            "The nights you were waiting for are free, and held for you.",
            f"Pay {f.amount()} before {f.hold_end()} to book them; after that they go to the "
            "next tenant in line.",
        ]
    if kind == "OFFER_LAPSED":
        return f"Your offer for {apartment} has lapsed", [
            "The offer ended without a payment; the nights went to the next tenant in line.",
        ]
    if kind == "WAITLIST_LAPSED":
        return f"Your place on the waiting list for {apartment} has ended", [
            "Your stay's first night has passed without the nights coming free.",
        ]
    if kind.startswith("RENT_"):
        return _rent(kind, f)
    if kind in ("LEASE_ENDS_EARLIER", "LEASE_RENEWED"):
        refunded = int(f.details.get("refunded", 0))
        lines = [f"Your stay now ends on {f.details.get('to', f.end_date)} (move-out day)."]
        if refunded:
            lines.append(f"{money(refunded, f.currency)} you paid for nights dropped is refunded.")
        verb = "ends earlier" if kind == "LEASE_ENDS_EARLIER" else "is renewed"
        return f"Your lease of {apartment} {verb}", lines
    raise ValueError(f"no message for {kind}")


def render(kind: str, facts: MailFacts) -> Mail:
    """The message for a notification of ``kind`` (one of :data:`KINDS`)."""
    subject, lines = _lines(kind, facts)
    stay = (
        f"Apartment {facts.apartment_id}, from {facts.start_date} to {facts.end_date} "
        "(move-out day)."
    )
    lines = [*lines, stay]
    text = "\n\n".join(lines) + "\n"
    body = "".join(f"<p>{html.escape(line)}</p>" for line in lines)
    page = (
        '<!doctype html><html><head><meta charset="utf-8"><title>'
        f"{html.escape(subject)}</title></head>"
        '<body style="font-family: sans-serif; max-width: 40em">'
        f'<h1 style="font-size: 1.2em">{html.escape(subject)}</h1>{body}</body></html>'
    )
    return Mail(subject, text, page)
