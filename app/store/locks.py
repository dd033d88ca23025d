"""Advisory locks on identities ("i"), persons ("p") and jobs, taken in one global order."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import asyncpg


def lock_key(namespace: str, site_id: int, key: str) -> int:
    digest = hashlib.blake2b(f"{namespace}:{site_id}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


async def lock_all(conn: asyncpg.Connection, keys: Iterable[int]) -> None:
    """Transaction-scoped locks, sorted, so concurrent writers cannot deadlock. Every writer takes
    all its identity locks before any person lock."""
    ordered = sorted(set(keys))
    if ordered:
        await conn.execute(
            "SELECT count(pg_advisory_xact_lock(k)) FROM unnest($1::bigint[]) WITH ORDINALITY AS t(k, n)", ordered
        )
