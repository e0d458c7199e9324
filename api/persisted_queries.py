"""Automatic persisted queries (Apollo's APQ protocol), on GET and POST ``/graphql``.

1. The client sends ``extensions={"persistedQuery":{"version":1,"sha256Hash":"<hex>"}}``
   without ``query``.
2. Unknown hash: HTTP 200 with ``PersistedQueryNotFound`` (``private, no-store``).
3. The client repeats the request with ``query`` and the hash; the hash is checked, the query
   stored, the request answered.
4. From then on the hash alone works, which keeps GET URLs short and identical for
   identical reads (what a CDN keys on).

A query is registered only once it has run: a document that does not parse or validate is
answered and forgotten, so junk cannot fill the store. Each caller (an API key, a user) may
own at most :data:`APQ_MAX_ENTRIES_PER_CALLER` entries; past that its own oldest entry makes
room, never another caller's. So one tenant's flood evicts nothing of anyone else's while
fewer than ``APQ_MAX_ENTRIES / APQ_MAX_ENTRIES_PER_CALLER`` callers register at once.

The store is a bounded in-memory LRU per API process. A query one process registers is
announced to the others (``NOTIFY persisted_query``, heard on the LISTEN connection every
API process keeps, ``api.notify``), so behind a round-robin load balancer the next process
knows it too; a notice that is missed costs one extra round trip, nothing more.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from booking.errors import ValidationError

APQ_VERSION: Final = 1
APQ_MAX_ENTRIES: Final = 2000
APQ_MAX_ENTRIES_PER_CALLER: Final = 100
APQ_MAX_QUERY_CHARS: Final = 20_000
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
_INVALID = ValidationError.error_type


class PersistedQueryStore:
    """Bounded LRU of hash -> query text, per process, with a quota per registering caller.

    A miss is cheap and self-healing (the client re-sends the query with its
    hash), so several API processes need no shared store.
    """

    def __init__(
        self,
        max_entries: int = APQ_MAX_ENTRIES,
        on_new: Callable[[str, str, str], None] | None = None,
        *,
        max_per_caller: int = APQ_MAX_ENTRIES_PER_CALLER,
    ) -> None:
        # hash -> (query, the caller who registered it)
        self._entries: OrderedDict[str, tuple[str, str]] = OrderedDict()
        self._owned: dict[str, int] = {}
        self._max = max_entries
        self._max_per_caller = max_per_caller
        # Told of every query a client registers here (to announce it to other processes).
        self._on_new = on_new

    def get(self, sha256_hash: str) -> str | None:
        entry = self._entries.get(sha256_hash)
        if entry is None:
            return None
        self._entries.move_to_end(sha256_hash)
        return entry[0]

    def put(self, sha256_hash: str, query: str, owner: str, *, announce: bool = True) -> bool:
        """Store ``query`` for ``owner``; True when it was not known yet.

        A hash already known keeps its first owner (the text is the same: it is its hash).
        """
        if sha256_hash in self._entries:
            self._entries.move_to_end(sha256_hash)
            return False
        if self._owned.get(owner, 0) >= self._max_per_caller:
            self._drop(next(h for h, (_, o) in self._entries.items() if o == owner))
        self._entries[sha256_hash] = (query, owner)
        self._owned[owner] = self._owned.get(owner, 0) + 1
        while len(self._entries) > self._max:
            self._drop(next(iter(self._entries)))
        if announce and self._on_new is not None:
            self._on_new(sha256_hash, query, owner)
        return True

    def _drop(self, sha256_hash: str) -> None:
        _, owner = self._entries.pop(sha256_hash)
        left = self._owned[owner] - 1
        if left:
            self._owned[owner] = left
        else:
            del self._owned[owner]

    def learn(self, sha256_hash: str, query: str, owner: str) -> None:
        """A query another process registered (its hash checked again: notices are input)."""
        if (
            _SHA256_HEX.match(sha256_hash)
            and len(query) <= APQ_MAX_QUERY_CHARS
            and hashlib.sha256(query.encode()).hexdigest() == sha256_hash
        ):
            self.put(sha256_hash, query, owner, announce=False)

    def owned_by(self, owner: str) -> int:
        return self._owned.get(owner, 0)

    def __len__(self) -> int:
        return len(self._entries)


@dataclass(frozen=True)
class APQError(Exception):
    status: int
    error_type: str
    message: str
    code: str

    def body(self) -> bytes:
        error = {
            "message": self.message,
            "errorType": self.error_type,
            "errorInfo": None,
            "path": None,
            "locations": None,
            "data": None,
            # Apollo clients look at extensions.code to decide to re-send the query.
            "extensions": {"code": self.code},
        }
        return json.dumps({"data": None, "errors": [error]}).encode()


@dataclass(frozen=True)
class Resolved:
    """The query to run, and the hash to register it under once it has run (None: nothing to
    register, the request used a known hash or no persisted query)."""

    query: str | None
    register: str | None = None


def resolve_persisted_query(
    store: PersistedQueryStore, query: object, extensions: object
) -> Resolved:
    """Apply APQ: the query text to execute (None when the request uses no persisted query
    and has none), with the hash to register it under when it is new and verified.

    Raises APQError for an unknown hash (PersistedQueryNotFound), a hash that
    does not match the query, or an unsupported protocol version.
    """
    persisted = extensions.get("persistedQuery") if isinstance(extensions, dict) else None
    if persisted is None:
        return Resolved(query if isinstance(query, str) else None)
    if not isinstance(persisted, dict) or persisted.get("version") != APQ_VERSION:
        raise APQError(400, _INVALID, "Unsupported persisted query version", "BAD_REQUEST")
    sha = persisted.get("sha256Hash")
    if not isinstance(sha, str) or not _SHA256_HEX.match(sha):
        raise APQError(
            400, _INVALID, "persistedQuery.sha256Hash must be 64 hex digits", "BAD_REQUEST"
        )
    if isinstance(query, str) and query:
        if hashlib.sha256(query.encode()).hexdigest() != sha:
            raise APQError(400, _INVALID, "provided sha does not match query", "BAD_REQUEST")
        known = store.get(sha) is not None
        return Resolved(query, None if known or len(query) > APQ_MAX_QUERY_CHARS else sha)
    stored = store.get(sha)
    if stored is None:
        raise APQError(
            200, "PersistedQueryNotFound", "PersistedQueryNotFound", "PERSISTED_QUERY_NOT_FOUND"
        )
    return Resolved(stored)
