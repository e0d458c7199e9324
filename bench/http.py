"""A lean HTTP/1.1 client for the load generator: keep-alive connections, one request at a
time each, requests written as prepared bytes.

Why not httpx here: the load generator shares the machine's two cores with the service,
and httpx spent more CPU per request than the API answering it (in the contention scenario,
0.66 cores for the client against 0.33 for the API), so the client's own queueing showed up
as the service's latency. This client does the least HTTP/1.1 needs: a request line, fixed
headers, ``Content-Length`` bodies and responses (chunked ones too), nothing else. Plain
``http://`` only; :class:`bench.graphql.ApiClient` falls back to httpx for anything else.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from urllib.parse import urlsplit


class LeanHttpError(Exception):
    """The connection failed or the response was not HTTP/1.1 as this client reads it."""


@dataclass
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


class LeanHttp:
    def __init__(self, base_url: str, headers: dict[str, str], *, connections: int) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or parts.hostname is None:
            raise ValueError(f"LeanHttp speaks plain http:// only, not {base_url!r}")
        self._host = parts.hostname
        self._port = parts.port or 80
        fixed = {"host": f"{self._host}:{self._port}", "connection": "keep-alive", **headers}
        self._fixed = "".join(f"{k}: {v}\r\n" for k, v in fixed.items()).encode("latin-1")
        self._idle: list[_Connection] = []
        self._slots = asyncio.Semaphore(connections)

    @staticmethod
    def usable(base_url: str) -> bool:
        return urlsplit(base_url).scheme == "http"

    async def post(
        self, path: str, body: bytes, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        """POST ``body``; (status code, response body)."""
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items()).encode("latin-1")
        request = b"".join(
            (
                f"POST {path} HTTP/1.1\r\n".encode("latin-1"),
                self._fixed,
                extra,
                f"content-length: {len(body)}\r\n\r\n".encode("latin-1"),
                body,
            )
        )
        async with self._slots:
            connection = self._idle.pop() if self._idle else await self._open()
            try:
                status, payload, keep = await self._exchange(connection, request)
            except (OSError, asyncio.IncompleteReadError, ValueError, LeanHttpError) as exc:
                connection.close()
                raise LeanHttpError(f"{type(exc).__name__}: {exc}") from exc
            if keep:
                self._idle.append(connection)
            else:
                connection.close()
            return status, payload

    async def aclose(self) -> None:
        while self._idle:
            self._idle.pop().close()

    async def _open(self) -> _Connection:
        try:
            reader, writer = await asyncio.open_connection(self._host, self._port)
        except OSError as exc:
            raise LeanHttpError(f"connect failed: {exc}") from exc
        return _Connection(reader, writer)

    @staticmethod
    async def _exchange(connection: _Connection, request: bytes) -> tuple[int, bytes, bool]:
        connection.writer.write(request)
        head = await connection.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        version, _, rest = lines[0].partition(" ")
        if not version.startswith("HTTP/1."):
            raise LeanHttpError(f"not an HTTP/1.x response: {lines[0]!r}")
        status = int(rest.partition(" ")[0])
        fields: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                fields[name.strip().lower()] = value.strip()
        if fields.get("transfer-encoding", "").lower() == "chunked":
            body = await _read_chunked(connection.reader)
        else:
            body = await connection.reader.readexactly(int(fields.get("content-length", "0")))
        keep = fields.get("connection", "").lower() != "close"
        return status, body, keep


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)
