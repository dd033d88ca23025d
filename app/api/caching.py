"""Conditional GET for dashboards that poll: a weak ETag of the answer's bytes, `Cache-Control:
private, max-age=5`, and 304 Not Modified when the client's If-None-Match names the same tag.

The tag is a hash of the body, so it changes exactly when the answer does (new events, a
reclassification, a new target, another format or period): no invalidation to get wrong. A 304
still runs the queries; it saves the transfer and the client's re-rendering."""

from __future__ import annotations

import hashlib

from fastapi import Request
from fastapi.responses import Response

CACHE_CONTROL = "private, max-age=5"


def etag_of(body: bytes) -> str:
    return f'W/"{hashlib.blake2b(body, digest_size=16).hexdigest()}"'


def etag_matches(if_none_match: str | None, tag: str) -> bool:
    """Weak comparison (RFC 9110 §13.1.2): opaque tags equal with or without W/; '*' matches."""
    if not if_none_match:
        return False
    opaque = tag.removeprefix("W/")
    return any(t.strip() == "*" or t.strip().removeprefix("W/") == opaque for t in if_none_match.split(","))


def conditional(request: Request, response: Response) -> Response:
    """The answer with ETag and Cache-Control, or an empty 304 when If-None-Match matches it."""
    tag = etag_of(bytes(response.body))
    headers = {"ETag": tag, "Cache-Control": CACHE_CONTROL, "Vary": "Accept, Authorization"}
    if etag_matches(request.headers.get("if-none-match"), tag):
        return Response(status_code=304, headers=headers)
    response.headers.update(headers)
    return response
