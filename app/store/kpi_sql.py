"""The KPI registry's quantities as SQL aggregates (app.domain.kpis.registry): the event path
(app.store.kpi_queries) and the rollups' rebuild (app.store.rollups) render the same entries.

Only registry constants become SQL text (column names and the constants of conditions, both checked
when an entry is made); nothing that comes from a request or an event does.
"""

from __future__ import annotations

from app.domain.kpis.registry import ColumnCondition, Counter, Measure, PersonSet, Where


def _constant(value: object) -> str:
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    assert isinstance(value, int | float) and not isinstance(value, bool), value
    return repr(value)


def condition_sql(c: ColumnCondition, alias: str) -> str:
    column = f"{alias}.{c.column}"
    if c.op == "is":
        return column
    if c.op == "present":
        return f"{column} IS NOT NULL"
    if c.op == "in":
        assert isinstance(c.value, tuple)
        return f"{column} IN ({', '.join(_constant(v) for v in c.value)})"
    return f"{column} {c.op} {_constant(c.value)}"


def where_sql(where: Where, alias: str) -> str:
    """The conditions as one SQL boolean ('true' for none)."""
    return " AND ".join(condition_sql(c, alias) for c in where) or "true"


def _filtered(aggregate: str, where: Where, alias: str) -> str:
    return f"{aggregate} FILTER (WHERE {where_sql(where, alias)})" if where else aggregate


def counter_sql(c: Counter, alias: str) -> str:
    """The counter over the rows of `alias` (events e or sessions s); cents and counts are exact integers."""
    if c.measure is Measure.CENTS:
        return f"COALESCE({_filtered(f'sum(round({alias}.value * 100))', c.where, alias)}, 0)::int8"
    if c.measure is Measure.SECONDS:
        seconds = f"sum(extract(epoch FROM {alias}.ended_at - {alias}.started_at))"
        return f"COALESCE({_filtered(seconds, c.where, alias)}, 0)::float8"
    return _filtered("count(*)", c.where, alias)


def distinct_persons_sql(s: PersonSet, alias: str) -> str:
    return _filtered(f"count(DISTINCT {alias}.person_id)", s.where, alias)


def person_numbers_sql(s: PersonSet, alias: str, numbers: str) -> str:
    """The person numbers (`numbers`) of the rows that put their person in the set."""
    return _filtered(f"array_agg({numbers})", s.where, alias)
