"""Rollup parts: a derivation appends one part per key it changes; compaction folds a key's parts
into its base, so that reads merge few rows and writes cost what the new events changed (not the
size of a day's person sets). Both run in the caller's transaction, under the site's derivation
lock (parts are ordered by their id, taken under that lock)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from app import metrics
from app.domain.rollup import Unit, folded
from app.domain.rollup_delta import Change
from app.store import rollups as rollup_store
from app.store.rollups import rollup_of

COMPACT_AT = 8  # delta parts a key may gather before a derivation folds them


async def append(conn: asyncpg.Connection, site_id: int, changes: dict[tuple[str, Unit, str], Change]) -> None:
    if not changes:
        return
    await rollup_store.append_parts(conn, site_id, await rollup_store.next_part(conn), changes)
    crowded = await rollup_store.crowded_keys(conn, site_id, list(changes), COMPACT_AT)
    await compact(conn, site_id, crowded)


async def compact(conn: asyncpg.Connection, site_id: int, keys: Sequence[tuple[str, Unit, str]]) -> int:
    """Fold each key's parts into one base row."""
    if not keys:
        return 0
    by_key: dict[tuple[str, Unit, str], list[Any]] = {}
    for record in await rollup_store.load_keys(conn, site_id, keys):
        by_key.setdefault((record["dim"], (record["level"], record["slot"]), record["grp"]), []).append(record)
    rows = [(dim, unit, grp, folded(rollup_of(r) for r in records)) for (dim, unit, grp), records in by_key.items()]
    await rollup_store.replace_keys(conn, site_id, rows)
    metrics.ROLLUP_COMPACTIONS.inc(len(rows))
    return len(rows)


async def compact_some(conn: asyncpg.Connection, site_id: int, limit: int = 500) -> int:
    """Fold up to `limit` keys that have delta parts (when the deriver has nothing else to do)."""
    return await compact(conn, site_id, await rollup_store.keys_with_deltas(conn, site_id, limit))
