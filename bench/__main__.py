"""``python -m bench``: same as ``booking bench``."""

from __future__ import annotations

import os
import sys

from bench import main

if __name__ == "__main__":
    status = main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    # The Temporal SDK's native runtime can abort in interpreter teardown
    # (sdk-python issue 300); leave with the true status instead.
    os._exit(status)
