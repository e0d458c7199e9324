"""Child processes of a stack: started in order, watched, restarted, stopped in reverse.

Each child runs in its own session so that a Ctrl-C in the terminal reaches only the
program that started it, which then stops the children in the right order (API before
worker before Temporal before Postgres) instead of all of them dying at once. Each child
also asks the kernel to send it SIGTERM if its parent dies (even by SIGKILL), so no crash of
ours leaves a process behind.

A child spawned with a :class:`RestartPolicy` is brought back when it dies on its own: the
supervisor says what happened, waits (with a backoff that doubles, up to a cap) and starts it
again with the same command, leaving the other children running. A child that keeps dying
(more than ``max_restarts`` times within ``window`` seconds) is given up on:
:meth:`Supervisor.watch` raises :class:`ChildKeepsDying`, and the caller stops everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
import threading
import time
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


@dataclass(frozen=True)
class RestartPolicy:
    """How a child that dies on its own is brought back."""

    first_delay: float = 0.5  # seconds before the first restart
    max_delay: float = 10.0  # the backoff doubles up to this
    max_restarts: int = 5  # more deaths than this within ``window`` s: give up
    window: float = 60.0


class ChildKeepsDying(Exception):
    """A supervised child died more often than its policy allows."""

    def __init__(self, child: Child) -> None:
        policy = child.restart
        assert policy is not None
        super().__init__(
            f"{child.name} keeps dying: it exited {len(child.deaths)} times within "
            f"{policy.window:.0f} s (last status {child.returncode}); giving up"
        )
        self.child = child


@dataclass
class Child:
    name: str
    args: list[str]
    env: dict[str, str] | None
    log_file: Path | None
    stop_signal: int
    stop_timeout: float
    restart: RestartPolicy | None
    process: subprocess.Popen[bytes] = field(init=False, repr=False)
    reader: threading.Thread | None = field(default=None, init=False, repr=False)
    deaths: list[float] = field(default_factory=list, init=False)
    restarts: int = field(default=0, init=False)
    # Set while the owner stops or kills it on purpose: not a death to restart from.
    stopping: bool = field(default=False, init=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return self.process.returncode

    def alive(self) -> bool:
        return self.process.poll() is None


@dataclass
class Supervisor:
    """Owns the processes it spawns; ``stop_all`` leaves none of them running."""

    out: IO[str] = field(default_factory=lambda: sys.stdout)
    children: list[Child] = field(default_factory=list)
    # Called with a line whenever the supervisor has something to report (restarts).
    report: Callable[[str], None] | None = None

    def spawn(
        self,
        name: str,
        args: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        log_file: Path | None = None,
        stop_signal: int = signal.SIGTERM,
        stop_timeout: float = 20.0,
        restart: RestartPolicy | None = None,
    ) -> Child:
        """Start ``args``; output goes to ``log_file``, else to ``out`` prefixed with ``name``."""
        child = Child(
            name=name,
            args=list(args),
            env=dict(env) if env is not None else None,
            log_file=log_file,
            stop_signal=stop_signal,
            stop_timeout=stop_timeout,
            restart=restart,
        )
        self._start(child)
        self.children.append(child)
        return child

    def child(self, name: str) -> Child:
        for child in self.children:
            if child.name == name:
                return child
        raise KeyError(name)

    def _start(self, child: Child) -> None:
        child.stopping = False
        if child.log_file is not None:
            child.log_file.parent.mkdir(parents=True, exist_ok=True)
            with child.log_file.open("ab") as log:
                log.write(f"\n=== start {time.strftime('%H:%M:%S')} ===\n".encode())
                log.flush()
                child.process = subprocess.Popen(
                    child.args,
                    env=child.env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=die_with_parent(),
                )
            return
        child.process = subprocess.Popen(
            child.args,
            env=child.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent(),
        )
        child.reader = threading.Thread(
            target=self._relay, args=(child.name, child.process), name=f"relay-{child.name}"
        )
        child.reader.daemon = True
        child.reader.start()

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

    def _say(self, line: str) -> None:
        if self.report is not None:
            self.report(line)

    # -- faults and restarts, by hand ---------------------------------------------------------

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` (a crash, by default) and wait for the end; no restart follows."""
        child = self.child(name)
        child.stopping = True
        if child.alive():
            child.process.send_signal(sig)
            child.process.wait(30)
        self._reap_session(child)

    def stop(self, name: str) -> None:
        """Stop one child gracefully (then by force); no restart follows."""
        self._stop(self.child(name), None)

    def start_again(self, name: str) -> Child:
        """Start a stopped or killed child again with its command."""
        child = self.child(name)
        if child.alive():
            raise RuntimeError(f"{name} is still running (pid {child.pid})")
        self._start(child)
        return child

    # -- watching -----------------------------------------------------------------------------

    def first_exited(self) -> Child | None:
        """A child that is no longer running and will not be restarted, if any."""
        for child in self.children:
            if not child.alive() and not child.stopping and child.restart is None:
                return child
        return None

    async def watch(self, interval: float = 0.25) -> Child:
        """Restart dead children that have a policy; return the first that has none.

        Runs until a child without a restart policy dies (returned) or one with a policy
        keeps dying (:class:`ChildKeepsDying`).
        """
        while True:
            for child in self.children:
                if child.alive() or child.stopping:
                    continue
                if child.restart is None:
                    return child
                await self._restart(child)
            await asyncio.sleep(interval)

    async def _restart(self, child: Child) -> None:
        policy = child.restart
        assert policy is not None
        now = time.monotonic()
        child.deaths = [t for t in child.deaths if now - t < policy.window] + [now]
        if len(child.deaths) > policy.max_restarts:
            raise ChildKeepsDying(child)
        delay = min(policy.max_delay, policy.first_delay * 2 ** (len(child.deaths) - 1))
        self._say(
            f"{child.name} (pid {child.pid}) exited with status {child.returncode}; "
            f"restarting it in {delay:.1f} s ({len(child.deaths)} of {policy.max_restarts} "
            f"restarts allowed within {policy.window:.0f} s)"
        )
        self._reap_session(child)
        await asyncio.sleep(delay)
        self._start(child)
        child.restarts += 1
        self._say(f"{child.name} restarted (pid {child.pid})")

    # -- stopping ------------------------------------------------------------------------------

    def pids(self) -> list[int]:
        return [child.pid for child in self.children if child.alive()]

    def _stop(self, child: Child, report: Callable[[str], None] | None) -> None:
        child.stopping = True
        if child.alive():
            if report:
                report(f"stopping {child.name} (pid {child.pid})")
            try:
                child.process.send_signal(child.stop_signal)
                child.process.wait(child.stop_timeout)
            except subprocess.TimeoutExpired:
                if report:
                    report(f"{child.name} did not stop in {child.stop_timeout:.0f} s; killing it")
                child.process.kill()
                child.process.wait()
        self._reap_session(child)

    @staticmethod
    def _reap_session(child: Child) -> None:
        # Anything the child started in its session goes with it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.pid, signal.SIGKILL)
        if child.reader is not None:
            child.reader.join(timeout=2)
            child.reader = None

    def stop_all(self, report: Callable[[str], None] | None = None) -> None:
        """Stop the children in reverse start order, each gracefully then by force."""
        for child in reversed(self.children):
            self._stop(child, report)
        self.children.clear()
