"""booking.rlimits: the soft open-file limit goes up to what is needed, never past the hard
limit and never down (in a child process: the limits are the process's own)."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import json, resource, sys
from booking.rlimits import raise_open_file_limit
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
answers = [raise_open_file_limit(n) for n in (32, 200, 10**9)]
print(json.dumps({
    "hard": hard,
    "infinity": resource.RLIM_INFINITY,
    "answers": [[a.before, a.now, a.raised] for a in answers],
    "final": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
}))
"""


def test_soft_limit_is_raised_to_the_need_capped_by_the_hard_limit() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    result = json.loads(out)
    hard = result["hard"]
    cap = 10**9 if hard == result["infinity"] else hard
    assert hard >= 200, "this machine's hard open-file limit is too low to test with"
    assert result["answers"] == [
        [64, 64, False],  # enough already: never lowered
        [64, 200, True],
        [200, cap, True],  # capped at the hard limit
    ]
    assert result["final"] == cap
