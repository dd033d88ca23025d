"""BI tools and SDK authors read the OpenAPI document: every parameter of every endpoint says what
it is, and the read endpoints' parameters carry an example."""

from __future__ import annotations

from typing import Any

from app.config import Settings
from app.main import create_app


def _parameters() -> list[tuple[str, dict[str, Any]]]:
    spec = create_app(Settings(database_url="postgresql://unused/unused")).openapi()
    return [(path, p) for path, ops in spec["paths"].items() for op in ops.values() for p in op.get("parameters", [])]


def test_every_parameter_is_described() -> None:
    missing = [f"{path} {p['name']}" for path, p in _parameters() if not p.get("description")]
    assert not missing, missing


def test_kpi_parameters_have_examples() -> None:
    read = ("/v1/kpis", "/v1/funnel", "/v1/goals", "/v1/report", "/v1/cohorts", "/v1/quality")
    missing = [
        f"{path} {p['name']}"
        for path, p in _parameters()
        if path in read and not (p.get("example") is not None or p.get("examples") or p["schema"].get("examples"))
    ]
    assert not missing, missing
