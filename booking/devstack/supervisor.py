"""Child processes of `booking dev`: started in order, watched, stopped in reverse.

Each child runs in its own session so that a Ctrl-C in the terminal reaches
only `booking dev`, which then stops the children in the right order (API
before worker before Temporal before Postgres) instead of all of them dying at
once. Each child also asks the kernel to send it SIGTERM if `booking dev`
itself dies (even by SIGKILL), so no crash of ours leaves a process behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

_PR_SET_PDEATHSIG = 1


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None
    prctl: Callable[..., int] = libc.prctl
    return prctl


# Looked up once in the parent: the child, between fork and exec, only calls it.
_PRCTL = _load_prctl()


def die_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None]:
    """A ``preexec_fn`` that has the kernel send ``sig`` to the child when its parent exits."""

    def preexec() -> None:
        if _PRCTL is not None:
            _PRCTL(_PR_SET_PDEATHSIG, sig)

    return preexec


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    stop_signal: int
    stop_timeout: float
    reader: threading.Thread | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None


@dataclass
class Supervisor:
    """Owns the processes it spawns; ``stop_all`` leaves none of them running."""

    out: IO[str] = field(default_factory=lambda: sys.stdout)
    children: list[Child] = field(default_factory=list)

    def spawn(
        self,
        name: str,
        args: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        log_file: Path | None = None,
        stop_signal: int = signal.SIGTERM,
        stop_timeout: float = 20.0,
    ) -> Child:
        """Start ``args``; output goes to ``log_file``, else to ``out`` prefixed with ``name``."""
        if log_file is not None:
            log_file.parent.mkdir(parents=True, exist_ok=True)
            with log_file.open("ab") as log:
                process = subprocess.Popen(
                    list(args),
                    env=dict(env) if env is not None else None,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=die_with_parent(),
                )
            child = Child(name, process, stop_signal, stop_timeout)
        else:
            process = subprocess.Popen(
                list(args),
                env=dict(env) if env is not None else None,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent(),
            )
            child = Child(name, process, stop_signal, stop_timeout)
            child.reader = threading.Thread(
                target=self._relay, args=(name, process), name=f"relay-{name}", daemon=True
            )
            child.reader.start()
        self.children.append(child)
        return child

    def _relay(self, name: str, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        prefix = f"{name:>8} | "
        for raw in process.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            try:
                self.out.write(prefix + line + "\n")
                self.out.flush()
            except (OSError, ValueError):
                pass  # our terminal is gone; keep draining so the child never blocks

    def first_exited(self) -> Child | None:
        """A child that is no longer running, if any (they should all run until stopped)."""
        for child in self.children:
            if not child.alive():
                return child
        return None

    def pids(self) -> list[int]:
        return [child.pid for child in self.children]

    def stop_all(self, report: Callable[[str], None] | None = None) -> None:
        """Stop the children in reverse start order, each gracefully then by force."""
        for child in reversed(self.children):
            if child.alive():
                if report:
                    report(f"stopping {child.name} (pid {child.pid})")
                try:
                    child.process.send_signal(child.stop_signal)
                    child.process.wait(child.stop_timeout)
                except subprocess.TimeoutExpired:
                    if report:
                        report(
                            f"{child.name} did not stop in {child.stop_timeout:.0f} s; killing it"
                        )
                    child.process.kill()
                    child.process.wait()
            # Anything the child started in its session goes with it.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.pid, signal.SIGKILL)
            if child.reader is not None:
                child.reader.join(timeout=2)
        self.children.clear()
