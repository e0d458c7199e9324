"""Debian packages some tests need, installed by the tests themselves when they are missing.

The README's test command must pass on a machine that has only Python, so the tests that
drive a browser (Chromium) or put a cache in front of the API (nginx) install what they need
the first time they run, with apt-get (as root, or through sudo), and say so. Nothing is
downloaded at run time otherwise: this happens at test setup, from Debian's own archive.

Pins: nginx to Debian 12's 1.22.1 packaging (``1.22.1-9+deb12u*``: security updates only);
Node.js (only where the machine has no ``node`` of its own, for the Amplify client tests) to
Debian 12's 18.20.4 (``18.20.4+dfsg-1~deb12u*``) and its npm;
Chromium to Debian 12's build, whatever its current security update is (Debian keeps only the
newest Chromium in its archive, so an exact version would stop installing within weeks; the
browser tests drive it through Playwright's CDP, which does not care which build it is).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DebianPackage:
    name: str
    version: str | None  # an apt version pattern, or None for the release's current build
    binary: str  # the executable the tests run

    @property
    def spec(self) -> str:
        return f"{self.name}={self.version}" if self.version else self.name


NGINX = DebianPackage("nginx", "1.22.1-9+deb12u*", "/usr/sbin/nginx")
CHROMIUM = DebianPackage("chromium", None, "/usr/bin/chromium")
NODEJS = DebianPackage("nodejs", "18.20.4+dfsg-1~deb12u*", "/usr/bin/node")
NPM = DebianPackage("npm", "9.2.0~ds1-1", "/usr/bin/npm")

_LOCK = Path("/tmp/booking-tests-apt.lock")  # noqa: S108 - a lock shared by test processes
_updated: list[bool] = []


class MissingSystemPackage(RuntimeError):
    """A Debian package is missing and could not be installed here; the message says why."""


def _privileged() -> list[str] | None:
    if os.geteuid() == 0:
        return []
    if shutil.which("sudo") and subprocess.run(["sudo", "-n", "true"], check=False).returncode == 0:
        return ["sudo", "-n"]
    return None


def ensure(package: DebianPackage) -> str:
    """The package's executable, installing the package first if it is missing."""
    if Path(package.binary).exists():
        return package.binary
    prefix = _privileged()
    if prefix is None or not shutil.which("apt-get"):
        raise MissingSystemPackage(
            f"{package.binary} is missing and cannot be installed here (needs apt-get and "
            f"root or sudo); install it with: apt-get install {package.spec}"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    with _LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if Path(package.binary).exists():  # another test process installed it meanwhile
            return package.binary
        print(f"\n[tests] installing Debian's {package.spec} (missing {package.binary})")
        if not _updated:
            subprocess.run([*prefix, "apt-get", "update", "-qq"], check=True, env=env)
            _updated.append(True)
        subprocess.run(
            [*prefix, "apt-get", "install", "-y", "-qq", package.spec],
            check=True,
            env=env,
        )
    if not Path(package.binary).exists():
        raise MissingSystemPackage(f"installing {package.spec} did not provide {package.binary}")
    return package.binary
