"""Rollup parts: a derivation appends one part per key it changes; compaction folds a key's parts
into its base, so that reads merge few rows and writes cost what the new events changed (not the
size of a day's person sets). Both run in the caller's transaction, under the site's derivation
lock (parts are ordered by their id, taken under that lock).

Parts are written in the registry's layout. A site whose rows are recorded in another layout is
marked for a rebuild (app.rollups.convert, run by the deriver); until it is done its keys may hold
rows of both layouts, so they are not compacted, and reads use the events."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from app import metrics
from app.domain.kpis import REGISTRY
from app.domain.kpis.registry import ROLLUP_FAMILIES
from app.domain.rollup import Unit, folded
from app.domain.rollup_delta import Change
from app.store import rollups as rollup_store
from app.store.rollups import rollup_of

COMPACT_AT = 8  # delta parts a key may gather before a derivation folds them


async def append(conn: asyncpg.Connection, site_id: int, changes: dict[tuple[str, Unit, str], Change]) -> None:
    if not changes:
        return
    current = await ensure_layouts(conn, site_id)
    await rollup_store.append_parts(conn, site_id, await rollup_store.next_part(conn), changes)
    if current:
        crowded = await rollup_store.crowded_keys(conn, site_id, list(changes), COMPACT_AT)
        await compact(conn, site_id, crowded)


async def ensure_layouts(conn: asyncpg.Connection, site_id: int) -> bool:
    """Whether every rollup row of the site is in the registry's layouts (the report counters'
    families aside: they are not rollup rows); when a family is not, the registry's layout is
    recorded, incomplete (its rows are to be rebuilt)."""
    wanted = REGISTRY.layouts()
    found = await rollup_store.rollup_layouts(conn, site_id)
    if found and all(found.get(family) == (layout.fingerprint, True) for family, layout in wanted.items()):
        return True
    if not found:  # the site's first rows, unless it has rows from before layouts were recorded
        current = not await rollup_store.has_rollups(conn, site_id)
        await rollup_store.record_layouts(conn, site_id, wanted, current)
        return current
    changed = {f: layout for f, layout in wanted.items() if found.get(f, ("", False))[0] != layout.fingerprint}
    await rollup_store.record_layouts(conn, site_id, changed, False)
    return all(f not in changed and found.get(f) == (wanted[f].fingerprint, True) for f in ROLLUP_FAMILIES)


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
