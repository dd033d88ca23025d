"""JSON answers rendered with orjson (datetimes as ISO 8601 with offsets)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import JSONResponse


# A JSONResponse, so that FastAPI documents the answer's model (response_model or responses=) in OpenAPI.
class JSONAnswer(JSONResponse):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)
