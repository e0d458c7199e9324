"""Progress lines on stderr: a live counter on a terminal, a few milestones otherwise."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import IO


@dataclass
class Progress:
    out: IO[str] = field(default_factory=lambda: sys.stderr)
    started: float = field(default_factory=time.monotonic)
    quiet: bool = False

    @property
    def live(self) -> bool:
        return self.out.isatty()

    def say(self, message: str) -> None:
        if self.quiet:
            return
        elapsed = time.monotonic() - self.started
        self.out.write(f"[{elapsed:6.1f}s] {message}\n")
        self.out.flush()

    def counter(self, label: str, total: int) -> Counter:
        return Counter(self, label, total)


@dataclass
class Counter:
    progress: Progress
    label: str
    total: int
    done: int = 0
    _next_milestone: float = 0.25

    def advance(self, n: int = 1) -> None:
        self.done += n
        self.show()

    def set(self, done: int) -> None:
        self.done = done
        self.show()

    def show(self) -> None:
        p = self.progress
        if p.quiet or self.total <= 0:
            return
        if p.live:
            elapsed = time.monotonic() - p.started
            p.out.write(f"\r[{elapsed:6.1f}s]   {self.label}: {self.done}/{self.total}  ")
            p.out.flush()
            return
        if self.done / self.total >= self._next_milestone:
            p.say(f"  {self.label}: {self.done}/{self.total}")
            while self._next_milestone <= self.done / self.total:
                self._next_milestone += 0.25

    def finish(self) -> None:
        p = self.progress
        if not p.quiet and p.live:
            p.out.write("\n")
            p.out.flush()
