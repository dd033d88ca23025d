"""Dashboard sessions: a signed cookie naming the site and the kind of key typed at sign-in.

The cookie holds `site_id.kind.expiry.signature` and never the key. The signature is an HMAC keyed
by the stored hash of that key (plus RACETRACK_SESSION_SECRET when set): every worker and host can
check it with no shared session store, nobody without the key (or the database) can forge one, and
rotating the key ends its sessions. The cookie is HttpOnly and SameSite=Lax (Secure over https).
State-changing forms carry a CSRF token derived from the session the same way; the sign-in form,
before any session, a double-submit token."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Literal

import asyncpg
from fastapi import Request
from fastapi.responses import Response

from app.store import dashboard_queries
from app.store.sites import Site

SESSION_COOKIE = "racetrack_session"
SIGNIN_COOKIE = "racetrack_signin"
SIGNIN_PATH = "/dashboard/signin"
SESSION_PATH = "/dashboard"  # the API takes keys, never this cookie
SESSION_SECONDS = 7 * 24 * 3600  # a wall display stays signed in for a week
Kind = Literal["read", "admin"]


@dataclass(frozen=True, slots=True)
class Session:
    site: Site
    kind: Kind
    payload: str  # what the signature covers; the CSRF token is derived from it
    signing_key: bytes

    @property
    def can_edit(self) -> bool:
        return self.kind == "admin"

    def csrf_token(self) -> str:
        return _mac(self.signing_key, "csrf:" + self.payload)


def _mac(key: bytes, message: str) -> str:
    digest = hmac.new(key, message.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _signing_key(key_hash: str, secret: str) -> bytes:
    return hashlib.sha256(f"racetrack-session\0{secret}\0{key_hash}".encode()).digest()


def session_cookie(site_id: int, kind: Kind, key_hash: str, secret: str, now: float | None = None) -> str:
    expires = int((now or time.time()) + SESSION_SECONDS)
    payload = f"{site_id}.{kind}.{expires}"
    return f"{payload}.{_mac(_signing_key(key_hash, secret), payload)}"


async def session_of(request: Request, conn: asyncpg.Connection, secret: str) -> Session | None:
    """The request's valid session, or None (no cookie, tampered, expired, or the key rotated)."""
    value = request.cookies.get(SESSION_COOKIE, "")
    parts = value.split(".")
    if len(parts) != 4 or not parts[0].isdigit() or parts[1] not in ("read", "admin") or not parts[2].isdigit():
        return None
    if int(parts[2]) < time.time():
        return None
    keys = await dashboard_queries.signing_keys(conn, int(parts[0]))
    if keys is None:
        return None
    kind: Kind = "admin" if parts[1] == "admin" else "read"
    signing_key = _signing_key(keys.admin_key_hash if kind == "admin" else keys.read_key_hash, secret)
    payload = ".".join(parts[:3])
    if not hmac.compare_digest(parts[3], _mac(signing_key, payload)):
        return None
    return Session(keys.site, kind, payload, signing_key)


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def set_session(response: Response, request: Request, value: str) -> None:
    response.set_cookie(
        SESSION_COOKIE, value, max_age=SESSION_SECONDS, httponly=True, samesite="lax", secure=_secure(request),
        path=SESSION_PATH,
    )  # fmt: skip


def clear_session(response: Response, request: Request) -> None:
    response.delete_cookie(SESSION_COOKIE, httponly=True, samesite="lax", secure=_secure(request), path=SESSION_PATH)


def new_signin_token() -> str:
    return secrets.token_urlsafe(24)


def set_signin_token(response: Response, request: Request, token: str) -> None:
    response.set_cookie(
        SIGNIN_COOKIE, token, max_age=3600, httponly=True, samesite="strict", secure=_secure(request), path=SIGNIN_PATH
    )


def signin_token_ok(request: Request, sent: str) -> bool:
    expected = request.cookies.get(SIGNIN_COOKIE, "")
    return bool(expected) and hmac.compare_digest(expected, sent)


def same_origin(request: Request) -> bool:
    """A browser's form post names its origin; one from another site is refused whatever its token."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    host = request.headers.get("host", "")
    return origin.split("://", 1)[-1] == host
