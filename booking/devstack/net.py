"""Small network checks used before and while `booking dev` starts things."""

from __future__ import annotations

import random
import socket
import time
from collections.abc import Callable
from pathlib import Path

import httpx


def connect_host(host: str) -> str:
    """The address a client on this machine uses to reach a server bound to ``host``."""
    return "127.0.0.1" if host in ("", "0.0.0.0") else host


# Ports this process handed out: a port is free until its server binds it, and nothing stops
# it being handed out twice meanwhile (seen: Temporal given the port just handed to Postgres,
# "address already in use").
_handed_out: set[int] = set()
_random = random.SystemRandom()
_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
# Where ports are picked: above the well-known and registered ranges most servers use.
_LOWEST = 10_000


def _below_ephemeral() -> range | None:
    """The ports below the kernel's ephemeral range (Linux: 32768-60999), or None."""
    try:
        low = int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return range(_LOWEST, low) if low - _LOWEST >= 1000 else None


def _bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def keep_out(*ports: int) -> None:
    """Ports the caller gave servers itself (``booking dev --port`` and the like): ``free_port``
    never hands them out, though they stay free until those servers bind them (seen: the
    embedded Postgres given the port just chosen for the API, "address already in use")."""
    _handed_out.update(ports)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing uses now, never one handed out before by this process.

    Picked at random below the kernel's ephemeral range: a port from that range (the kernel's
    own choice for ``bind(0)``) can be taken, between now and the moment its server binds it,
    as the source port of any outgoing connection on the machine, a client of Postgres say
    (seen: Temporal's frontend refused "address already in use" on the port it was given).
    Where that range cannot be read, the kernel chooses.
    """
    ports = _below_ephemeral()
    if ports is not None:
        for _ in range(200):
            port = _random.choice(ports)
            if port not in _handed_out and _bindable(host, port):
                _handed_out.add(port)
                return port
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = int(s.getsockname()[1])
        if port not in _handed_out:
            _handed_out.add(port)
            return port
    raise OSError("no free TCP port that was not handed out already")


def port_free(host: str, port: int) -> bool:
    """Whether a server could listen on ``host:port`` now.

    Binding (rather than connecting) also catches a listener on 0.0.0.0 or one
    that does not accept connections yet; SO_REUSEADDR keeps a port that only
    has connections in TIME_WAIT from looking busy.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def tcp_open(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex((connect_host(host), port)) == 0


def http_answers(url: str, *, timeout: float = 1.0) -> bool:
    """Whether ``url`` answers a GET with a status below 500."""
    try:
        response = httpx.get(url, timeout=timeout)
    except httpx.HTTPError:
        return False
    return response.status_code < 500


def wait_until(check: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    """Call ``check()`` until it is true or ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
