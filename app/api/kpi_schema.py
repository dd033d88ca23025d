"""The KPI fields of /v1/kpis in the OpenAPI document, from the KPI registry: each KPI's
definition, unit, RACE stage and direction (a KPI added to the registry is documented with it)."""

from __future__ import annotations

from typing import Any

from app.domain.kpis import REGISTRY, Kpi, Unit
from app.domain.kpis.registry import Ratio

KPI_VALUES = "KpiValues"  # the component: one bucket's KPIs
_PATH = "/v1/kpis"


def _field(k: Kpi) -> dict[str, Any]:
    kind = {"type": "integer" if k.unit is Unit.COUNT else "number"}
    return {
        **({"anyOf": [kind, {"type": "null"}]} if isinstance(k.formula, Ratio) else kind),  # null over nothing
        "title": k.label,
        "description": f"{k.stage.capitalize()}: {k.definition} ({k.unit.value}; {k.direction.value} is better)",
        "x-race-stage": k.stage,
        "x-unit": k.unit.value,
        "x-direction": k.direction.value,
    }


def kpi_values_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "title": "KPI values",
        "description": "Every KPI of one bucket (DESIGN §5); a ratio whose denominator is 0 is null.",
        "properties": {name: _field(REGISTRY.kpi(name)) for name in REGISTRY.names()},
        "required": list(REGISTRY.names()),
    }


def document_kpis(schema: dict[str, Any]) -> None:
    """Add the KpiValues component and point the `kpis` of /v1/kpis' buckets at it (in the answer's
    response model when it has one)."""
    schema.setdefault("components", {}).setdefault("schemas", {})[KPI_VALUES] = kpi_values_schema()
    operation = schema.get("paths", {}).get(_PATH, {}).get("get")
    if operation is None:
        return
    ok = operation.setdefault("responses", {}).setdefault("200", {"description": "Successful Response"})
    answer = _resolved(schema, ok.setdefault("content", {}).setdefault("application/json", {}).setdefault("schema", {}))
    if answer.get("type") != "object":  # no model (FastAPI writes a bare Response as a string)
        answer.clear()
        answer["type"] = "object"
    buckets = answer.setdefault("properties", {}).setdefault("buckets", {"type": "array"})
    bucket = _resolved(schema, buckets.setdefault("items", {"type": "object"}))
    bucket.setdefault("properties", {})["kpis"] = {"$ref": f"#/components/schemas/{KPI_VALUES}"}


def _resolved(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """A schema node, or the component it refers to."""
    if "$ref" not in node:
        return node
    found: dict[str, Any] = schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[-1]]
    return found
