"""Many rows as one statement parameter: a jsonb array of arrays, unpacked by PostgreSQL.

asyncpg encodes a Python list as a PostgreSQL array element by element, checking every element
against abstract collection types (about a microsecond each): for a derivation's tens of thousands
of values that was a fifth of its time. One jsonb parameter is one orjson call; PostgreSQL unpacks
it with jsonb_array_elements (a few milliseconds for ten thousand rows)."""

from __future__ import annotations

from collections.abc import Sequence


def json_rows(param: int, names: Sequence[str], types: Sequence[str]) -> str:
    """`SELECT ... AS names` over the rows (tuples in that column order) passed as $param::jsonb."""
    columns = ", ".join(f"(r.v->>{i})::{t} AS {n}" for i, (n, t) in enumerate(zip(names, types, strict=True)))
    return f"SELECT {columns} FROM jsonb_array_elements(${param}::jsonb) AS r(v)"
