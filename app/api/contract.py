"""The error answers every operation of a kind can give, added to the OpenAPI document in one place:
those of the edge (app/api/edge.py: any path), of authentication and rate limits (by the key the
operation takes, from its security), of the database, of routing and of parameter validation (our
ErrorBody, not FastAPI's default 422 model). Operation-specific answers are on the routes
(app/api/schemas.py's answers())."""

from __future__ import annotations

from typing import Any

from app.api.schemas import EXTRA_SCHEMAS, schema_of
from app.errors import ErrorBody

RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying", "schema": {"type": "integer"}}}
EDGE = {
    400: "A NUL character in the path or query (invalid_character), a Content-Length that is not a number, "
    "or a request the handler refuses (the code names why)",
    413: "The body (declared or decompressed) is over the cap (payload_too_large)",
    431: "Too many headers, or headers too large (headers_too_large)",
}
WITH_BODY = {408: "The body did not arrive within RACETRACK_BODY_TIMEOUT_SECONDS (request_timeout)"}
BY_KEY = {
    "write": {401: "No write key (missing_write_key), or an unknown or revoked one (invalid_write_key)"},
    "read": {401: "No key (missing_key), or an unknown or revoked one (invalid_key)"},
    "admin": {
        401: "No key (missing_key), or an unknown or revoked one (invalid_key)",
        403: "A read key where the admin key is needed (admin_key_required)",
    },
    "root": {
        401: "Not the root token (invalid_admin_token)",
        403: "RACETRACK_ADMIN_TOKEN is not set on the server (admin_token_unset)",
    },
}
KEY_OF_SCHEME = {"writeKeyBasic": "write", "writeKeyQuery": "write", "readKey": "read", "adminKey": "admin",
                 "rootToken": "root"}  # fmt: skip
RATE_LIMITED = "A rate limit is used up (rate_limited; failed authentications count per client address)"
UNAVAILABLE = (
    "The database is unreachable (database_unavailable), the writer is saturated (writer_saturated), or a "
    "query ran past the statement timeout (query_timeout)"
)
NOT_FOUND = "A path that names no resource (not_found)"
INVALID = "A parameter or body field is invalid (invalid_parameter; details name each field)"
BODY_METHODS = ("post", "put", "patch", "delete")


def _error(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
    }
    if headers:
        answer["headers"] = headers
    return answer


def _key_kind(operation: dict[str, Any]) -> str | None:
    for requirement in operation.get("security", []):
        for scheme in requirement:
            return KEY_OF_SCHEME.get(scheme)
    return None


def _complete_operation(method: str, operation: dict[str, Any]) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})

    def add(status: int, answer: dict[str, Any]) -> None:
        responses.setdefault(str(status), answer)

    validation = responses.get("422", {}).get("content", {}).get("application/json", {}).get("schema", {})
    if validation.get("$ref", "").endswith("/HTTPValidationError"):
        responses["422"] = _error(INVALID)
    for status, description in EDGE.items():
        add(status, _error(description))
    if method in BODY_METHODS:
        for status, description in WITH_BODY.items():
            add(status, _error(description))
    if any(p.get("in") == "path" for p in operation.get("parameters", [])):
        add(404, _error(NOT_FOUND))
    kind = _key_kind(operation)
    if kind is not None:
        for status, description in BY_KEY[kind].items():
            add(status, _error(description))
        add(429, _error(RATE_LIMITED, RETRY_AFTER))
        add(503, _error(UNAVAILABLE, RETRY_AFTER))
    operation["responses"] = dict(sorted(responses.items()))


def complete(schema: dict[str, Any]) -> None:
    """Add the shared error answers to every operation and the documentation-only models to the
    components; drop FastAPI's validation-error models, which no answer uses."""
    schema_of(ErrorBody)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for operations in schema.get("paths", {}).values():
        for method, operation in operations.items():
            _complete_operation(method, operation)
    components.update(EXTRA_SCHEMAS)
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    schema["components"]["schemas"] = dict(sorted(components.items()))
