"""GET /race.js and /race.core.js: Racetrack's own tracker, as a site embeds it with one script tag.

The files are app/static/*.js, built from tracker/src/race.js (tracker/build.mjs). The plain URL is
cached for an hour and revalidated by ETag (an update reaches every site within the hour);
`?v=<version>`, the hash the ETag carries, is immutable for a year. Gzip-compressed when the browser
accepts it; `Cross-Origin-Resource-Policy: cross-origin` so pages isolated with COEP may load it."""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from app.api.caching import etag_matches

router = APIRouter(tags=["tracker"])
STATIC = Path(__file__).resolve().parents[1] / "static"
SHORT_CACHE = "public, max-age=3600"
IMMUTABLE = "public, max-age=31536000, immutable"
MEDIA_TYPE = "text/javascript; charset=utf-8"

Version = Annotated[
    str | None,
    Query(
        description="The script's version (the hash in its ETag): with it the answer is cached for a year",
        examples=["3f2a9c0d1b7e"],
    ),
]


@dataclass(frozen=True, slots=True)
class Script:
    body: bytes
    gzipped: bytes
    version: str


@cache
def script(name: str) -> Script:
    body = (STATIC / name).read_bytes()
    # mtime=0: the same bytes (and tag) in every worker and after every restart
    return Script(body, gzip.compress(body, compresslevel=9, mtime=0), hashlib.sha256(body).hexdigest()[:12])


def accepts_gzip(accept_encoding: str) -> bool:
    for part in accept_encoding.lower().split(","):
        name, _, params = part.strip().partition(";")
        if name.strip() in ("gzip", "*"):
            return params.replace(" ", "") not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False


def script_answer(request: Request, name: str, v: str | None) -> Response:
    found = script(name)
    zipped = accepts_gzip(request.headers.get("accept-encoding", ""))
    tag = f'"{found.version}-gz"' if zipped else f'"{found.version}"'
    headers = {
        "ETag": tag,
        "Cache-Control": IMMUTABLE if v == found.version else SHORT_CACHE,
        "Vary": "Accept-Encoding",
        "X-Content-Type-Options": "nosniff",
        "Cross-Origin-Resource-Policy": "cross-origin",
    }
    if etag_matches(request.headers.get("if-none-match"), tag):
        return Response(status_code=304, headers=headers)
    if zipped:
        headers["Content-Encoding"] = "gzip"
    return Response(found.gzipped if zipped else found.body, media_type=MEDIA_TYPE, headers=headers)


SCRIPT_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The script (gzip when accepted)",
        "content": {"text/javascript": {"schema": {"type": "string"}}},
    },
    304: {"description": "Not Modified: If-None-Match names the script's ETag"},
}


SCRIPTS = {  # file in app/static -> its summary
    "race.js": "The tracker: page views, goals, orders (<= 3 KB gz)",
    "race.core.js": "The tracker's core: page views, identity, JS API (<= 1.5 KB gz)",
}


def add_script_route(name: str, summary: str) -> None:
    """GET (and HEAD) /<name>, answered by script_answer."""

    async def serve(request: Request, v: Version = None) -> Response:
        return script_answer(request, name, v)

    route_name = name.replace(".", "_")  # race_js: the operation ids stay as they were
    router.add_api_route(f"/{name}", serve, methods=["GET"], name=route_name, summary=summary,
                         response_class=Response, responses=SCRIPT_ANSWERS)  # fmt: skip
    router.add_api_route(f"/{name}", serve, methods=["HEAD"], name=route_name, include_in_schema=False)


for _name, _summary in SCRIPTS.items():
    add_script_route(_name, _summary)
