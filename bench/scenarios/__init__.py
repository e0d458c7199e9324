"""The benchmark's scenarios, one module each, every one returning a JSON-ready dict.

Every scenario books its own freshly seeded apartments (ids carry the run id), so scenarios
never interfere through data and can be selected one by one. Latencies are wall-clock times
seen by the client, in milliseconds. ``harness`` holds what they share.
"""

from bench.scenarios.calendar import calendar
from bench.scenarios.contention import contention, versus_uncontended
from bench.scenarios.harness import QUICK, Bench, BenchFailure, Sizes
from bench.scenarios.integrity import double_bookings
from bench.scenarios.live import live_updates
from bench.scenarios.payment import payment
from bench.scenarios.rent import leases
from bench.scenarios.reserve import reserve_latency
from bench.scenarios.scale import scale, start_hold
from bench.scenarios.throughput import throughput

__all__ = [
    "QUICK",
    "Bench",
    "BenchFailure",
    "Sizes",
    "calendar",
    "contention",
    "double_bookings",
    "leases",
    "live_updates",
    "payment",
    "reserve_latency",
    "scale",
    "start_hold",
    "throughput",
    "versus_uncontended",
]
