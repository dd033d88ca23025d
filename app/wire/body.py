"""Request bodies (pure: app.api.body reads them): size caps measured after decompression, gzip/deflate,
JSON in any content type."""

from __future__ import annotations

import zlib
from typing import Any

import orjson

from app.errors import BadRequest, PayloadTooLarge


def decoded(data: bytes, content_encoding: str, limit: int) -> bytes:
    """The body as sent before its Content-Encoding (identity, gzip or deflate), at most limit bytes."""
    encoding = content_encoding.lower().strip() or "identity"
    if encoding == "identity":
        return data
    if encoding not in ("gzip", "deflate", "x-gzip"):
        raise BadRequest(f"unsupported Content-Encoding {encoding!r}", "unsupported_encoding")
    return _inflate(data, encoding, limit)


def _inflate(data: bytes, encoding: str, limit: int) -> bytes:
    wbits = 16 + zlib.MAX_WBITS if encoding in ("gzip", "x-gzip") else zlib.MAX_WBITS
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(data, limit + 1)  # a decompression bomb is cut off here
        if len(out) > limit or inflater.unconsumed_tail:
            raise PayloadTooLarge(f"decompressed body exceeds {limit} bytes")
        return out + inflater.flush()
    except zlib.error as exc:
        raise BadRequest(f"body is not valid {encoding}: {exc}", "malformed_body") from None


def parse_json(body: bytes) -> Any:
    if not body.strip():
        raise BadRequest("request body is empty", "empty_body")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"malformed JSON: {exc}", "malformed_json") from None
