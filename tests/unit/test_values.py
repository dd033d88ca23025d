"""Order values: negative, absurd or non-finite amounts are rejected by name, never changed."""

from __future__ import annotations

from typing import Any

import pytest

from app.domain.normalize import IncomingEvent, Rejection, normalize
from tests.factories import make_raw, make_receipt


def order(**properties: Any) -> dict[str, Any]:
    return make_raw(type="track", event="Order Completed", properties={"order_id": "o1", **properties})


@pytest.mark.parametrize(
    ("properties", "field"),
    [
        ({"revenue": -50}, "properties.revenue"),
        ({"revenue": 1e308}, "properties.revenue"),
        ({"revenue": "1e308"}, "properties.revenue"),
        ({"revenue": "-0.01"}, "properties.revenue"),
        ({"revenue": "nan"}, "properties.revenue"),
        ({"total": -1}, "properties.total"),
        ({"value": 1e13}, "properties.value"),
    ],
)
def test_negative_or_absurd_values_are_rejected_by_name(properties: dict[str, Any], field: str) -> None:
    got = normalize(order(**properties), make_receipt())
    assert isinstance(got, Rejection)
    assert (got.code, got.field) == ("invalid_value", field)
    assert field in got.message


@pytest.mark.parametrize("revenue", [0, 42.5, "19.99", 1e12, None, "free", True])
def test_sane_or_non_numeric_values_pass_unchanged(revenue: Any) -> None:
    got = normalize(order(revenue=revenue), make_receipt())
    assert isinstance(got, IncomingEvent)
    assert got.properties["revenue"] == revenue
