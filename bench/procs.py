"""Resident memory of the stack's processes, read from /proc (Linux).

``VmHWM`` is the kernel's own high-water mark of a process's resident set, so
a peak between two samples is never missed; the sampler records the current
``VmRSS`` as well to show how memory moved during a scenario.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path


def _status_kib(pid: int, key: str) -> int | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return None


def children(pid: int) -> list[int]:
    """Every descendant of ``pid``."""
    found: list[int] = []
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            tasks = list(Path(f"/proc/{current}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                kids = (task / "children").read_text().split()
            except OSError:
                continue
            for kid in kids:
                found.append(int(kid))
                pending.append(int(kid))
    return found


def _pss_kib(pid: int) -> int | None:
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return None


def rss_bytes(pid: int, *, tree: bool = False) -> int | None:
    """Current resident set of ``pid``; with ``tree``, the proportional set size (PSS) of it
    and its descendants, since summing RSS would count shared memory (Postgres' shared
    buffers) once per process."""
    if not tree:
        value = _status_kib(pid, "VmRSS")
        return value * 1024 if value is not None else None
    values = [_pss_kib(p) for p in [pid, *children(pid)]]
    known = [v for v in values if v is not None]
    return sum(known) * 1024 if known else None


def peak_rss_bytes(pid: int) -> int | None:
    """The kernel's high-water mark of the resident set of ``pid`` since it started."""
    value = _status_kib(pid, "VmHWM")
    return value * 1024 if value is not None else None


def _own_cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # Fields after the command name: state is index 0; utime 11, stime 12.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int, *, tree: bool = False) -> float | None:
    """User + system CPU time ``pid`` (plus its live descendants when ``tree``) used so far."""
    pids = [pid, *children(pid)] if tree else [pid]
    values = [_own_cpu_seconds(p) for p in pids]
    known = [v for v in values if v is not None]
    return sum(known) if known else None


@dataclass
class RssSampler:
    """Samples the RSS of named processes every ``interval`` seconds while running."""

    pids: dict[str, int]
    interval: float = 0.5
    tree: frozenset[str] = frozenset()
    peaks: dict[str, int] = field(default_factory=dict)
    samples: int = 0
    _task: asyncio.Task[None] | None = None

    def sample(self) -> None:
        for name, pid in self.pids.items():
            value = rss_bytes(pid, tree=name in self.tree)
            if value is not None and value > self.peaks.get(name, 0):
                self.peaks[name] = value
        self.samples += 1

    async def _run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> dict[str, int]:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.sample()
        return dict(self.peaks)
