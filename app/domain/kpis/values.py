"""How a KPI's value is written: ratios (null over nothing) and money in exact integer cents. Pure."""

from __future__ import annotations


def ratio(numerator: float, denominator: float) -> float | None:
    return None if denominator == 0 else numerator / denominator


# Money is added up in cents (minor units, two decimals), as integers: exact, in every path (SQL
# over the events, rollups, Python), and written in currency units rounded to the cent, so the same
# revenue reads the same everywhere. A value with more decimals counts to the nearest cent.
MONEY_SCALE = 100


def cents(value: float | None) -> int:
    """An amount in cents, rounded as PostgreSQL's round(value * 100) rounds (to nearest, ties to even)."""
    return round((value or 0.0) * MONEY_SCALE)


def money(amount_cents: int) -> float:
    return amount_cents / MONEY_SCALE


def money_ratio(amount_cents: int, denominator: float) -> float | None:
    """Money per something (AOV, CLV, value per visit), rounded to the cent."""
    return None if denominator == 0 else round(amount_cents / denominator) / MONEY_SCALE
