"""Security schemes in the OpenAPI description (so /docs has an Authorize button): which key each
operation takes, from its tag. Documentation only: authentication itself lives in app/api/deps.py."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from app.api import contract
from app.api.kpi_schema import document_kpis

SCHEMES = {
    "writeKeyBasic": {"type": "http", "scheme": "basic", "description": "The site's write key as the user name"},
    "writeKeyQuery": {"type": "apiKey", "in": "query", "name": "writeKey", "description": "The site's write key"},
    "readKey": {"type": "http", "scheme": "bearer", "description": "The site's read key (or its admin key)"},
    "adminKey": {"type": "http", "scheme": "bearer", "description": "The site's admin key"},
    "rootToken": {"type": "http", "scheme": "bearer", "description": "RACETRACK_ADMIN_TOKEN"},
}
BY_TAG: dict[str, list[dict[str, list[str]]]] = {
    "ingestion": [{"writeKeyBasic": []}, {"writeKeyQuery": []}],
    "ingestion: other trackers": [{"writeKeyBasic": []}, {"writeKeyQuery": []}],
    "kpis": [{"readKey": []}],
    "reports": [{"readKey": []}],
    "rules": [{"adminKey": []}],
    "plan": [{"adminKey": []}],
    "failed events": [{"adminKey": []}],
    "keys": [{"adminKey": []}],
    "audit": [{"adminKey": []}],
    "persons": [{"adminKey": []}],
    "sites": [{"rootToken": []}],
    "tracker": [],  # race.js: public, no key (an explicit empty list says so)
}


def install(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        schema.setdefault("components", {})["securitySchemes"] = SCHEMES
        document_kpis(schema)
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                for tag in operation.get("tags", []):
                    if tag in BY_TAG:
                        operation["security"] = BY_TAG[tag]
        contract.complete(schema)  # the error answers each operation can give, by its key
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
