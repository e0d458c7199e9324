"""`booking dev`'s mailbox page: every message the worker sent to the local SMTP server, as the
tenant would read it.

``GET /dev/mailbox`` lists them (newest first), ``GET /dev/mailbox/<name>`` shows one (its
headers, its HTML in a sandboxed frame, its plain text), ``GET /dev/mailbox/<name>/html`` is
that HTML alone and ``GET /dev/mailbox/messages.json`` the list for scripts. Served only in dev
mode and only when `booking dev` runs the local mailbox (``BOOKING_DEV_MAILBOX_DIR``). A
message's HTML is shown as a mail client would: in a frame with no scripts, no plugins and
no requests to anywhere.
"""

from __future__ import annotations

import html
from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from booking.maildir import StoredMail, message, messages
from booking.settings import Settings

# The page itself: its own inline styles only.
_PAGE_POLICY = "default-src 'none'; style-src 'unsafe-inline'; frame-src 'self'; img-src 'self'"
# A message's HTML: inline styles, nothing fetched, nothing run (the frame is sandboxed too).
_MESSAGE_POLICY = "default-src 'none'; style-src 'unsafe-inline'; sandbox"

_STYLE = """
body { font-family: sans-serif; margin: 2em; max-width: 60em; }
table { border-collapse: collapse; width: 100%; }
td, th { text-align: left; padding: .3em .6em; border-bottom: 1px solid #ddd; }
iframe { width: 100%; height: 24em; border: 1px solid #ccc; }
pre { white-space: pre-wrap; background: #f6f6f6; padding: 1em; }
"""


def _page(title: str, body: str) -> HTMLResponse:
    return HTMLResponse(
        f'<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{_STYLE}</style></head><body>{body}</body></html>",
        headers={"Content-Security-Policy": _PAGE_POLICY, "Cache-Control": "no-store"},
    )


def _row(mail: StoredMail) -> str:
    return (
        f"<tr><td>{mail.received:%Y-%m-%d %H:%M:%S}</td><td>{html.escape(mail.to)}</td>"
        f'<td><a href="/dev/mailbox/{mail.name}">{html.escape(mail.subject)}</a></td></tr>'
    )


def routes(settings: Settings) -> list[BaseRoute]:
    directory = settings.dev_mailbox_dir
    if not settings.dev_mode or directory is None:
        return []
    return _routes(directory)


def _routes(directory: Path) -> list[BaseRoute]:
    async def listing(_request: Request) -> Response:
        found = messages(directory)
        rows = "".join(_row(mail) for mail in found) or (
            '<tr><td colspan="3">No mail yet: reserve an apartment and it arrives here.</td></tr>'
        )
        return _page(
            "Mailbox",
            f"<h1>Mailbox</h1><p>{len(found)} message(s) sent by the worker to `booking dev`'s "
            f"local SMTP server, newest first; kept in <code>{html.escape(str(directory))}"
            "</code>.</p><table><thead><tr><th>Received (UTC)</th><th>To</th><th>Subject</th>"
            f"</tr></thead><tbody>{rows}</tbody></table>",
        )

    async def as_json(_request: Request) -> Response:
        return JSONResponse(
            [
                {
                    "name": mail.name,
                    "messageId": mail.message_id,
                    "from": mail.sender,
                    "to": mail.to,
                    "subject": mail.subject,
                    "received": mail.received.isoformat(),
                    "text": mail.text,
                    "html": mail.html,
                }
                for mail in messages(directory)
            ],
            headers={"Cache-Control": "no-store"},
        )

    def _found(request: Request) -> StoredMail | None:
        return message(directory, str(request.path_params["name"]))

    async def one(request: Request) -> Response:
        mail = _found(request)
        if mail is None:
            return _page("Not found", '<h1>No such message</h1><a href="/dev/mailbox">Mailbox</a>')
        headers = "".join(
            f"<tr><th>{name}</th><td>{html.escape(value)}</td></tr>"
            for name, value in (
                ("From", mail.sender),
                ("To", mail.to),
                ("Subject", mail.subject),
                ("Message-ID", mail.message_id),
                ("Received", f"{mail.received:%Y-%m-%d %H:%M:%S} UTC"),
            )
        )
        frame = (
            f'<h2>As the tenant sees it</h2><iframe sandbox title="message" '
            f'src="/dev/mailbox/{mail.name}/html"></iframe>'
            if mail.html is not None
            else ""
        )
        return _page(
            mail.subject,
            f'<p><a href="/dev/mailbox">&larr; Mailbox</a></p><h1>{html.escape(mail.subject)}'
            f"</h1><table>{headers}</table>{frame}<h2>Plain text</h2>"
            f"<pre>{html.escape(mail.text)}</pre>",
        )

    async def body(request: Request) -> Response:
        mail = _found(request)
        if mail is None or mail.html is None:
            return Response("no such message", status_code=404, media_type="text/plain")
        return HTMLResponse(
            mail.html,
            headers={"Content-Security-Policy": _MESSAGE_POLICY, "Cache-Control": "no-store"},
        )

    return [
        Route("/dev/mailbox", listing, methods=["GET"]),
        Route("/dev/mailbox/messages.json", as_json, methods=["GET"]),
        Route("/dev/mailbox/{name}", one, methods=["GET"]),
        Route("/dev/mailbox/{name}/html", body, methods=["GET"]),
    ]
