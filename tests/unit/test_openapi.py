"""BI tools and SDK authors read the OpenAPI document: every parameter of every endpoint says what
it is, the read endpoints' parameters carry an example, and every answer and request body has a schema."""

from __future__ import annotations

from typing import Any

from app.config import Settings
from app.main import create_app

ERROR = {"$ref": "#/components/schemas/ErrorBody"}


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


def _operations() -> list[tuple[str, str, dict[str, Any]]]:
    spec = create_app(Settings(database_url="postgresql://unused/unused")).openapi()
    return [(path, method.upper(), op) for path, ops in spec["paths"].items() for method, op in ops.items()]


def test_every_success_answer_has_a_schema() -> None:
    """Drift: a new route (or one whose answer lost its model) shows up here, not in a client."""
    missing = []
    for path, method, op in _operations():
        successes = {status: r for status, r in op["responses"].items() if status.startswith("2")}
        if not successes:
            missing.append(f"{method} {path}: no 2xx answer")
        for status, response in successes.items():
            content = response.get("content") or {}
            missing += [f"{method} {path} {status}: no content"] if not content else []
            missing += [
                f"{method} {path} {status} {media}" for media, body in content.items() if not body.get("schema")
            ]
    assert not missing, missing


def test_every_json_error_is_the_error_body() -> None:
    """Errors are {code, message, details} (FastAPI's own 422 model is never answered); the GIF routes'
    errors are GIFs."""
    wrong = []
    for path, method, op in _operations():
        for status, response in op["responses"].items():
            content = response.get("content", {})
            json_schema = content.get("application/json", {}).get("schema")
            if status[0] in "45" and (not content or ("application/json" in content and json_schema != ERROR)):
                wrong.append(f"{method} {path} {status}")
    assert not wrong, wrong


def test_every_operation_documents_its_refusals() -> None:
    """The edge's refusals on every operation; a keyed one's 401, 429 and 503 too."""
    missing = []
    for path, method, op in _operations():
        expected = {"400", "413", "431"} | ({"401", "429", "503"} if op.get("security") else set())
        missing += [f"{method} {path} {status}" for status in sorted(expected - set(op["responses"]))]
    assert not missing, missing


def test_every_request_body_is_described() -> None:
    missing = [
        f"{method} {path}"
        for path, method, op in _operations()
        if method in ("POST", "PUT")
        and not all(body.get("schema") for body in op.get("requestBody", {}).get("content", {"": {}}).values())
    ]
    assert not missing, missing
