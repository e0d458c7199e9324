"""The process's open-file limit: one descriptor per connection, so a server holding
thousands of WebSockets needs its soft limit raised to what it serves.

Deployments set the hard limit (``ulimit -Hn``, systemd's ``LimitNOFILE``, compose's
``ulimits: nofile``, 65,536 in docker-compose.yml); the soft limit a process starts with is
often 1,024. A process may raise its own soft limit up to the hard one, as servers such as
nginx (``worker_rlimit_nofile``) do, which is what this does.
"""

from __future__ import annotations

import resource
from dataclasses import dataclass


@dataclass(frozen=True)
class OpenFileLimit:
    before: int
    now: int
    hard: int  # -1: unlimited

    @property
    def raised(self) -> bool:
        return self.now > self.before


def raise_open_file_limit(need: int) -> OpenFileLimit:
    """Raise the soft RLIMIT_NOFILE towards ``need`` (never above the hard limit, never down)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    ceiling = need if hard == resource.RLIM_INFINITY else min(hard, need)
    wanted = max(soft, ceiling) if soft != resource.RLIM_INFINITY else soft
    if wanted != soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return OpenFileLimit(int(soft), int(wanted), -1 if hard == resource.RLIM_INFINITY else hard)
