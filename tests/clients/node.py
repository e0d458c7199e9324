"""Amplify JS v6, installed for the tests from the npm registry into a cache outside the repo.

``tests/clients/amplify/`` holds the client code (``flow.mjs``: what a tenant's app does;
``node.mjs``: run it in Node; ``browser.mjs``: run it in a page) and the pins: ``package.json``
names exact versions and ``package-lock.json`` fixes every transitive package and its
integrity hash. :func:`amplify` copies them into ``~/.cache/apartment-booking/amplify-<hash>``
(``$XDG_CACHE_HOME`` if set), where ``npm ci`` installs exactly the locked tree once per
lockfile; later runs reuse it. Node comes from the machine; where there is none, Debian's
``nodejs`` and ``npm`` are installed (``tests/system_packages.py``). The browser bundle is made
with the locked esbuild.

This is test setup, the one time these machines may reach a package registry.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.system_packages import NODEJS, NPM, ensure

SOURCE = Path(__file__).with_name("amplify")
PINS = ("package.json", "package-lock.json")
CODE = ("flow.mjs", "node.mjs", "browser.mjs")
NPM_TIMEOUT_SECONDS = 600


@dataclass(frozen=True)
class AmplifyClient:
    directory: Path
    node: str

    @property
    def script(self) -> Path:
        return self.directory / "node.mjs"

    @property
    def bundle(self) -> Path:
        return self.directory / "browser.bundle.js"


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "apartment-booking"


def _tools() -> tuple[str, str]:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        node, npm = ensure(NODEJS), ensure(NPM)
    return node, npm


def amplify() -> AmplifyClient:
    """The installed client (installed now if this lockfile was never installed here)."""
    node, npm = _tools()
    digest = hashlib.sha256(b"".join((SOURCE / name).read_bytes() for name in PINS)).hexdigest()
    directory = cache_root() / f"amplify-{digest[:16]}"
    directory.mkdir(parents=True, exist_ok=True)
    with (directory.parent / f"{directory.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = directory / ".installed"
        if not done.exists():
            for name in PINS:
                shutil.copy2(SOURCE / name, directory / name)
            print(f"\n[tests] installing the pinned Amplify JS client into {directory}")
            subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=directory,
                check=True,
                timeout=NPM_TIMEOUT_SECONDS,
            )
            done.touch()
        # The client code is small and changes with the tests: copied (and bundled) each run.
        for name in CODE:
            shutil.copy2(SOURCE / name, directory / name)
        subprocess.run(
            [
                # A native binary or a Node script, depending on whether npm ran its postinstall.
                str(directory / "node_modules" / ".bin" / "esbuild"),
                "browser.mjs",
                "--bundle",
                "--format=esm",
                "--platform=browser",
                "--log-level=warning",
                "--outfile=browser.bundle.js",
            ],
            cwd=directory,
            check=True,
            timeout=120,
            env={**os.environ, "PATH": f"{Path(node).parent}{os.pathsep}{os.environ['PATH']}"},
        )
    return AmplifyClient(directory, node)
