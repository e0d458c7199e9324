"""What every scenario shares: sizes, the ``Bench`` handle, CPU meters, concurrency."""

from __future__ import annotations

import asyncio
import itertools
import os
import time
import uuid
from collections import Counter as Tally
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from typing import Any

import asyncpg

from bench import store
from bench.graphql import ApiClient, Reply
from bench.procs import cpu_seconds
from bench.progress import Progress
from bench.stack import Stack
from booking.errors import ApartmentUnavailable

RENT = 100_000
CURRENCY = "EUR"
UNAVAILABLE = ApartmentUnavailable.error_type
# The scale scenario starts its holds at this share of the placing rate it calibrated.
SCALE_START_SHARE = 0.55
# Holds that must outlive their scenario; they are never paid or cancelled.
LONG_HOLD = 3600
CONTENTION_HOLD = 300


@dataclass(frozen=True)
class Sizes:
    """How much each scenario does; ``QUICK`` is the CI smoke size."""

    reserve_count: int = 200
    payment_count: int = 100
    throughput_clients: int = 32
    throughput_seconds: float = 20.0
    throughput_warmup: float = 2.0
    contention_clients: int = 64
    contention_rounds: int = 50
    scale_holds: int = 10_000
    scale_hold_seconds: int = 60
    scale_clients: int = 64
    scale_calibration: int = 256
    scale_grace: float = 120.0
    # Seconds of slack on top of the calibrated time it takes to place every hold.
    scale_margin: int = 10
    live_subscribers: int = 10_000
    # The live subscribers' protocol, and whether they offer permessage-deflate as browsers do.
    live_protocol: str = "graphql-transport-ws"
    live_deflate: bool = True
    calendar_apartments: int = 10_000
    calendar_stays: int = 100
    calendar_queries: int = 300
    rent_leases: int = 10_000
    # Seconds the worker is watched resting (before the leases' moment, and after it).
    rent_idle_seconds: float = 20.0
    warmup: int = 10

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


QUICK = Sizes(
    reserve_count=5,
    payment_count=3,
    throughput_clients=4,
    throughput_seconds=1.0,
    throughput_warmup=0.2,
    contention_clients=4,
    contention_rounds=2,
    scale_holds=12,
    scale_hold_seconds=2,
    scale_clients=8,
    scale_calibration=8,
    scale_grace=30.0,
    scale_margin=2,
    live_subscribers=20,
    calendar_apartments=40,
    calendar_stays=10,
    calendar_queries=5,
    rent_leases=20,
    rent_idle_seconds=1.0,
    warmup=1,
)


def ms(seconds: float) -> float:
    return seconds * 1000.0


@dataclass
class Bench:
    """What every scenario needs: the stack, clients, and a source of fresh apartments."""

    stack: Stack
    api: ApiClient
    pool: asyncpg.Pool
    progress: Progress
    sizes: Sizes
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    users: list[str] = field(default_factory=list)
    _seq: Iterator[int] = field(default_factory=itertools.count)

    @property
    def prefix(self) -> str:
        return f"bench-{self.run_id}-"

    @property
    def building_id(self) -> str:
        return f"{self.prefix}building"

    # Far enough ahead that no lease timer of a paid booking fires during the run.
    start_date: str = field(default_factory=lambda: (date.today() + timedelta(days=30)).isoformat())
    end_date: str = field(default_factory=lambda: (date.today() + timedelta(days=60)).isoformat())

    async def setup(self, user_count: int) -> None:
        self.users = [f"{self.prefix}user-{i}" for i in range(user_count)]
        async with self.pool.acquire() as conn, conn.transaction():
            await store.insert_users(conn, self.users)
            await store.insert_building(conn, self.building_id, self.users[0], 0)

    async def apartments(self, count: int, tag: str) -> list[str]:
        ids = [f"{self.prefix}{tag}-{next(self._seq)}" for _ in range(count)]
        async with self.pool.acquire() as conn, conn.transaction():
            await store.insert_apartments(conn, self.building_id, ids, RENT, CURRENCY)
        return ids

    async def reserve(self, apartment_id: str, hold_seconds: int, user: int = 0) -> Reply:
        return await self.api.reserve(
            apartment_id, self.users[user], self.start_date, self.end_date, hold_seconds
        )

    async def reserve_ok(self, apartment_id: str, hold_seconds: int) -> dict[str, Any]:
        reply = await self.reserve(apartment_id, hold_seconds)
        if not reply.ok or reply.data is None or reply.data.get("bookingStatus") != "PENDING":
            raise BenchFailure(f"reserveApartment failed: {reply.error_type}: {reply.message}")
        return reply.data


class BenchFailure(Exception):
    """The system under test did something a scenario cannot measure around."""


class CpuMeter:
    """CPU time each process of the stack (and this one) used over a scenario."""

    def __init__(self, pids: dict[str, int]) -> None:
        self._pids = {**pids, "bench": os.getpid()}
        self._start = time.monotonic()
        self._cpu = self._read()

    def _read(self) -> dict[str, float]:
        found = {}
        for name, pid in self._pids.items():
            value = cpu_seconds(pid, tree=name in ("postgres", "api"))
            if value is not None:
                found[name] = value
        return found

    def usage(self) -> dict[str, float]:
        """Cores each process used since the meter started (unrounded)."""
        wall = time.monotonic() - self._start
        now = self._read()
        return {
            name: (now[name] - self._cpu[name]) / wall
            for name in now
            if name in self._cpu and wall > 0
        }

    def cores_used(self) -> dict[str, float]:
        return {name: round(cores, 2) for name, cores in self.usage().items()}


def cpu_ms_per(usage: dict[str, float], rate: float) -> dict[str, float]:
    """CPU milliseconds per item, per process, for work done at ``rate`` items per second
    while the processes used ``usage`` cores (the warm-up included: the same rate)."""
    if rate <= 0:
        return {}
    return {name: round(cores / rate * 1000, 2) for name, cores in usage.items()}


async def run_concurrently(count: int, clients: int, job: Callable[[int], Awaitable[None]]) -> None:
    """Run ``job(i)`` for i in 0..count-1 with at most ``clients`` in flight."""
    indexes = iter(range(count))

    async def client() -> None:
        for i in indexes:
            await job(i)

    await asyncio.gather(*(client() for _ in range(min(clients, count))))


def error_counts(replies: list[Reply]) -> dict[str, int]:
    return dict(Tally(r.error_type for r in replies if r.error_type is not None))
