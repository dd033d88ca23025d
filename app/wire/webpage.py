"""Helpers the tracker mappings share: a Segment `context.page` and `context.campaign` from a page URL.

Segment's analytics.js fills context.campaign from the URL's utm_* parameters itself; PostHog and
Snowplow send the bare URL, so their mappings read the campaign from it here. Pure.
"""

from __future__ import annotations

import base64
import binascii
import math
from typing import Any
from urllib.parse import parse_qs, urlsplit

# utm_* parameter -> Segment context.campaign key
UTM_KEYS = {
    "utm_source": "source",
    "utm_medium": "medium",
    "utm_campaign": "name",
    "utm_term": "term",
    "utm_content": "content",
}


def text(value: Any) -> str | None:
    """A non-empty string, or an int given where a string was meant (ids); else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    return value if isinstance(value, str) and value else None


def path_of(url: str | None) -> str | None:
    if not url:
        return None
    try:
        return urlsplit(url).path or "/"
    except ValueError:
        return None


def campaign_of(url: str | None) -> dict[str, str]:
    if not url:
        return {}
    try:
        query = parse_qs(urlsplit(url).query)
    except ValueError:
        return {}
    return {key: query[param][0] for param, key in UTM_KEYS.items() if query.get(param) and query[param][0]}


def page_context(
    url: str | None, *, path: str | None = None, referrer: str | None = None, title: str | None = None
) -> dict[str, str]:
    page = {"url": url, "path": path or path_of(url), "referrer": referrer, "title": title}
    return {k: v for k, v in page.items() if v}


def number(value: Any) -> Any:
    """A string-typed number as int or float ("2" -> 2, "99.50" -> 99.5); anything else unchanged."""
    if not isinstance(value, str):
        return value
    stripped = value.strip()
    try:
        return int(stripped)
    except ValueError:
        pass
    try:
        parsed = float(stripped)
    except ValueError:
        return value
    return parsed if math.isfinite(parsed) else value


def b64_json_bytes(encoded: str) -> bytes:
    """base64 or base64url, with or without '=' padding (trackers differ). Raises ValueError."""
    cleaned = "".join(encoded.split()).replace("+", "-").replace("/", "_").rstrip("=")
    if len(cleaned) % 4 == 1:
        raise ValueError("truncated base64")
    try:
        return base64.b64decode(cleaned + "=" * (-len(cleaned) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"not base64: {exc}") from None
