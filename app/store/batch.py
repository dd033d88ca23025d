"""Many rows as one statement parameter: a jsonb array of arrays, unpacked by PostgreSQL.

asyncpg encodes a Python list as a PostgreSQL array element by element, checking every element
against abstract collection types (about a microsecond each): for a derivation's tens of thousands
of values that was a fifth of its time. One jsonb parameter is one orjson call; PostgreSQL unpacks
it with jsonb_array_elements (a few milliseconds for ten thousand rows)."""

from __future__ import annotations

from collections.abc import Sequence


def json_rows(param: int, names: Sequence[str], types: Sequence[str]) -> str:
    """`SELECT ... AS names` over the rows (tuples in that column order) passed as $param::jsonb. One
    parameter, encoded by orjson in one call: much cheaper for the client than binary COPY records or
    one array per column."""
    columns = ", ".join(f"{_value(i, t)} AS {n}" for i, (n, t) in enumerate(zip(names, types, strict=True)))
    return f"SELECT {columns} FROM jsonb_array_elements(${param}::jsonb) AS r(v)"


def _value(i: int, sql_type: str) -> str:
    if sql_type.lower() == "jsonb":  # the value itself, not its text parsed again; JSON null is SQL NULL
        return f"NULLIF(r.v->{i}, 'null'::jsonb)"
    return f"(r.v->>{i})::{sql_type}"


# Lookups of many keys of one site. `site_id = $1 AND key = ANY($2)` is planned from the site's row
# count, which PostgreSQL only knows from statistics: with none (autovacuum behind, or off, or a
# table just grown) it guesses a few rows and scans every row of the site, filtering the keys (a
# person lookup of 300 ids read a site's 240,000 events). A LATERAL subquery with OFFSET 0 cannot be
# turned into a join, so each key is one index probe whatever the statistics say.


def each_key(param: int, key_type: str, table: str, key: str, columns: str, where: str = "") -> str:
    """`SELECT columns FROM table` of site $1 for each distinct key of the array $param."""
    return (
        f"SELECT t.* FROM (SELECT DISTINCT unnest(${param}::{key_type}[])) AS k(key) CROSS JOIN LATERAL "
        f"(SELECT {columns} FROM {table} WHERE site_id = $1 AND {key} = k.key {where} OFFSET 0) AS t"
    )


def rows_of_keys(param: int, key_type: str, table: str, key: str, where: str = "") -> str:
    """A condition on `table` selecting those rows by their ctid (for UPDATE and DELETE)."""
    return f"ctid = ANY(ARRAY({each_key(param, key_type, table, key, 'ctid', where)}))"
