"""The live-updates load generator: N subscribers of one booking in one process, over any of
the three WebSocket protocols the API speaks (``--protocol``: graphql-transport-ws, the legacy
graphql-ws, AppSync's real-time protocol), offering ``permessage-deflate`` as browsers do
(``--deflate``) or not.

Run by the ``live`` scenario as ``python -m bench.subscribers`` so that its CPU and memory
are its own, not the bench's or the API's. It speaks the least WebSocket a subscriber needs
(RFC 6455 handshake, small unfragmented text frames, pong for ping) over plain asyncio
protocols: a general client (``websockets``) keeps tasks and buffers per connection, and its
per-message work would sit on the same two cores as the API it measures.

With ``--deflate`` each handshake offers ``permessage-deflate; client_max_window_bits`` (what
Chromium and Firefox send); when the server accepts, every compressed message is inflated with
the connection's own context, as a browser does.

Protocol with the parent, one JSON object per line on stdout:

- ``{"subscribed": n, "failed": {...}, "seconds": s, "deflate": k}`` once every subscriber is
  subscribed (its first ``next`` / ``data``, the booking as it is; AppSync: its ``start_ack``)
  or failed; ``k``: how many connections the server agreed to compress;
- ``{"received": [t, ...], "failed": {...}}`` once every subscriber saw ``--until`` in
  ``bookingStatus`` (or ``--wait`` seconds passed after the parent wrote a line on stdin);
  ``t`` is ``time.monotonic()`` at receipt: CLOCK_MONOTONIC, one clock for every process on
  Linux (the bench's ``perf_counter`` is the same clock there).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import sys
import time
import zlib
from collections import Counter
from urllib.parse import urlencode, urlsplit

from booking.rlimits import raise_open_file_limit

PROTOCOLS = ("graphql-transport-ws", "graphql-ws", "appsync")
QUERY = (
    "subscription Status($id: ID!) { onBookingStatusChanged(id: $id) "
    "{ id apartmentId userId bookingStatus amountDue currency holdExpiresAt paidAt } }"
)


def frame(opcode: int, payload: bytes) -> bytes:
    """A masked, unfragmented frame (clients must mask, RFC 6455 5.3)."""
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        header = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        header = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    repeated = (mask * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(n, "big")
    return header + mask + masked


class Subscriber(asyncio.Protocol):
    def __init__(self, run: Run) -> None:
        self.run = run
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.upgraded = False
        self.nexts = 0
        self.done = False
        self.inflate: zlib._Decompress | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        offer = (
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
            if self.run.deflate
            else ""
        )
        transport.write(
            (
                f"GET {self.run.path} HTTP/1.1\r\nHost: {self.run.host}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                f"Sec-WebSocket-Protocol: {self.run.subprotocol}\r\n{offer}\r\n"
            ).encode()
        )

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done:
            self.fail("connection closed")

    def fail(self, why: str) -> None:
        if not self.done:
            self.done = True
            self.run.failed(self, why)
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.upgraded:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(self.buffer[:12])
            if not status.startswith(b"HTTP/1.1 101"):
                self.fail(f"upgrade refused: {status.decode(errors='replace')}")
                return
            headers = bytes(self.buffer[:end]).decode(errors="replace").lower()
            del self.buffer[: end + 4]
            self.upgraded = True
            if "sec-websocket-extensions: permessage-deflate" in headers:
                # Raw DEFLATE with the server's context carried across messages.
                self.inflate = zlib.decompressobj(-zlib.MAX_WBITS)
                self.run.deflated += 1
            if self.run.protocol == "appsync":
                self.send({"type": "connection_init"})
            else:
                self.send({"type": "connection_init", "payload": {"x-api-key": self.run.api_key}})
        while len(self.buffer) >= 2:
            first, second = self.buffer[0], self.buffer[1]
            length, start = second & 0x7F, 2
            if length == 126:
                if len(self.buffer) < 4:
                    return
                length, start = int.from_bytes(self.buffer[2:4], "big"), 4
            elif length == 127:
                if len(self.buffer) < 10:
                    return
                length, start = int.from_bytes(self.buffer[2:10], "big"), 10
            if len(self.buffer) < start + length:
                return
            payload = bytes(self.buffer[start : start + length])
            del self.buffer[: start + length]
            opcode = first & 0x0F
            if first & 0x40 and self.inflate is not None:  # RSV1: a compressed message
                payload = self.inflate.decompress(payload + b"\x00\x00\xff\xff")
            if opcode == 0x1:
                self.on_message(json.loads(payload))
            elif opcode == 0x9 and self.transport is not None:
                self.transport.write(frame(0xA, payload))  # pong
            elif opcode == 0x8:
                code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 0
                self.fail(f"closed by the server ({code})")
                return

    def send(self, message: dict[str, object]) -> None:
        if self.transport is not None:
            self.transport.write(frame(0x1, json.dumps(message).encode()))

    def subscribe(self) -> None:
        request = {"query": QUERY, "variables": {"id": self.run.booking_id}}
        if self.run.protocol == "graphql-transport-ws":
            self.send({"id": "1", "type": "subscribe", "payload": request})
        elif self.run.protocol == "graphql-ws":
            self.send({"id": "1", "type": "start", "payload": request})
        else:
            self.send(
                {
                    "id": "1",
                    "type": "start",
                    "payload": {
                        "data": json.dumps(request),
                        "extensions": {"authorization": self.run.authorization},
                    },
                }
            )

    def on_message(self, message: dict[str, object]) -> None:
        kind = message.get("type")
        if kind == "connection_ack":
            self.subscribe()
        elif kind == "ping":
            self.send({"type": "pong"})
        elif kind == "ka":
            pass
        elif kind == "start_ack":
            self.nexts += 1  # AppSync sends no first message: subscribed once acknowledged
            self.run.subscribed()
        elif kind in ("next", "data"):
            payload = message.get("payload")
            data = payload.get("data") if isinstance(payload, dict) else None
            booking = data.get("onBookingStatusChanged") if isinstance(data, dict) else None
            if not isinstance(booking, dict):
                self.fail(f"next without the booking: {str(payload)[:120]}")
                return
            self.nexts += 1
            if self.nexts == 1 and self.run.protocol != "appsync":
                self.run.subscribed()
            if booking.get("bookingStatus") == self.run.until and not self.done:
                self.done = True
                self.run.received(time.monotonic())
        elif kind in ("error", "complete"):
            self.fail(f"{kind}: {str(message.get('payload'))[:120]}")


class Run:
    def __init__(self, args: argparse.Namespace) -> None:
        parts = urlsplit(args.url)
        self.host = parts.netloc
        self.address = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.path = parts.path or "/graphql"
        self.api_key: str = args.api_key
        self.protocol: str = args.protocol
        self.deflate: bool = args.deflate
        self.deflated = 0
        self.subprotocol = "graphql-transport-ws"
        self.authorization = {"host": self.host, "x-api-key": self.api_key}
        if self.protocol != "graphql-transport-ws":
            self.subprotocol = "graphql-ws"
        if self.protocol == "appsync":
            header = base64.b64encode(json.dumps(self.authorization).encode()).decode()
            query = urlencode({"header": header, "payload": "e30="})
            self.path = f"{self.path}/realtime?{query}"
        self.booking_id: str = args.booking_id
        self.until: str = args.until
        self.count: int = args.count
        self.failures: Counter[str] = Counter()
        self.times: list[float] = []
        self.pending_subscribe = args.count
        self.all_subscribed = asyncio.Event()
        self.all_received = asyncio.Event()
        self.settled = 0

    def subscribed(self) -> None:
        self.pending_subscribe -= 1
        if self.pending_subscribe <= 0:
            self.all_subscribed.set()

    def failed(self, sub: Subscriber, why: str) -> None:
        self.failures[why] += 1
        if sub.nexts == 0:
            self.subscribed()
        self._one_settled()

    def received(self, at: float) -> None:
        self.times.append(at)
        self._one_settled()

    def _one_settled(self) -> None:
        self.settled += 1
        if self.settled >= self.count:
            self.all_received.set()


def emit(obj: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def main(args: argparse.Namespace) -> None:
    run = Run(args)
    loop = asyncio.get_running_loop()
    started = time.monotonic()
    # Connect in bounded waves: a burst of 10,000 SYNs would overflow the listen backlog.
    opening = asyncio.Semaphore(args.connecting)
    subscribers: list[Subscriber] = []

    async def open_one() -> None:
        async with opening:
            sub = Subscriber(run)
            subscribers.append(sub)
            try:
                await loop.create_connection(lambda: sub, *run.address)
            except OSError as exc:
                sub.fail(f"connect: {type(exc).__name__}")

    await asyncio.gather(*(open_one() for _ in range(run.count)))
    try:
        await asyncio.wait_for(run.all_subscribed.wait(), args.subscribe_timeout)
    except TimeoutError:
        run.failures["no first next in time"] += run.pending_subscribe
    emit(
        {
            "subscribed": sum(1 for s in subscribers if s.nexts >= 1),
            "failed": dict(run.failures),
            "seconds": round(time.monotonic() - started, 2),
            "deflate": run.deflated,
        }
    )
    # The parent makes the change now and writes a line when it has.
    await loop.run_in_executor(None, sys.stdin.readline)
    try:
        await asyncio.wait_for(run.all_received.wait(), args.wait)
    except TimeoutError:
        missing = sum(1 for s in subscribers if not s.done)
        run.failures[f"not received within {args.wait:.0f} s"] += missing
    emit({"received": run.times, "failed": dict(run.failures)})
    for sub in subscribers:
        if sub.transport is not None:
            sub.transport.close()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.subscribers")
    p.add_argument("--url", required=True, help="ws://host:port/graphql")
    p.add_argument("--api-key", required=True)
    p.add_argument("--booking-id", required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--until", default="APPROVED", help="the bookingStatus that ends the wait")
    p.add_argument("--protocol", choices=PROTOCOLS, default=PROTOCOLS[0])
    p.add_argument("--deflate", action="store_true", help="offer permessage-deflate")
    p.add_argument("--connecting", type=int, default=256, help="connections opening at once")
    p.add_argument("--subscribe-timeout", type=float, default=300.0)
    p.add_argument("--wait", type=float, default=60.0)
    return p.parse_args(argv)


if __name__ == "__main__":
    arguments = parse_args()
    raise_open_file_limit(arguments.count + 256)  # a descriptor per subscriber
    asyncio.run(main(arguments))
