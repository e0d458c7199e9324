"""The SQL layer: small typed functions, ``$n`` parameters, no SQL elsewhere.

Every function takes a :data:`Conn` so that the caller (an activity, the
API's read path, the CLI) decides the transaction.
"""

from __future__ import annotations

from typing import TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

Conn: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"
