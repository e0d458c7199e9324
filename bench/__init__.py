"""`booking bench`: the benchmark suite of the booking service (see BENCHMARKS.md).

Kept import-light on purpose: the floor workflow lives in this package and the
Temporal sandbox re-imports a workflow's parent packages, so this module only
forwards to :mod:`bench.cli` when called.
"""

from __future__ import annotations

from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark command line; return the exit status."""
    from bench.cli import run

    return run(argv)
