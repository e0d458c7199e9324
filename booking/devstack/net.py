"""Small network checks used before and while `booking dev` starts things."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import httpx


def connect_host(host: str) -> str:
    """The address a client on this machine uses to reach a server bound to ``host``."""
    return "127.0.0.1" if host in ("", "0.0.0.0") else host


# Ports this process handed out: the kernel may offer a port again once its probe socket is
# closed, before the server it was meant for has bound it (seen: Temporal given the port
# just handed to Postgres, "address already in use").
_handed_out: set[int] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on now (the kernel's choice), never one handed out before
    by this process."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port: int = s.getsockname()[1]
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
