"""Reading a request's body: capped while it arrives (compressed bodies too), then decoded (app.wire.body)."""

from __future__ import annotations

from typing import Any

from starlette.requests import ClientDisconnect, Request

from app.errors import PayloadTooLarge
from app.wire.body import decoded, parse_json


async def read_body(request: Request, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:  # request.receive() itself: Request.stream() costs a one-event request more than this
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:  # never buffer without bound
            raise PayloadTooLarge(f"request body exceeds {limit} bytes")
        chunks.append(chunk)
        more = message.get("more_body", False)
    body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    return decoded(body, request.headers.get("content-encoding", ""), limit)


async def read_json(request: Request, limit: int) -> Any:
    """The body read as read_body does, as JSON (400 empty_body or malformed_json)."""
    return parse_json(await read_body(request, limit))
