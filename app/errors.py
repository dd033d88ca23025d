"""Error answers: always JSON with top-level string `code` and `message`, plus `details`.

RacetrackError
  x BadRequest (400: malformed_json, invalid_message, invalid_parameter, ...)
  x Unauthorized (401: missing_key, invalid_key)
  x Forbidden (403: wrong_key_kind)
  x NotFound (404)
  x PayloadTooLarge (413: payload_too_large)
  x Unprocessable (422: invalid_ruleset, ...)
  x TooManyRequests (429: rate_limited; sets Retry-After)
  x Unavailable (503: database_unavailable, writer_saturated; sets Retry-After)
(and 503 query_timeout when a statement runs past the request statement timeout)
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from app import metrics
from app.jsonresponse import JSONAnswer

log = logging.getLogger("racetrack.errors")


class RacetrackError(Exception):
    status: ClassVar[int] = 500
    default_code: ClassVar[str] = "internal_error"
    retry_after: int | None = None  # seconds: sent as Retry-After when set

    def __init__(self, message: str, code: str | None = None, details: list[Any] | None = None) -> None:
        super().__init__(message)
        self.code = code or self.default_code
        self.message = message
        self.details = details or []

    def headers(self) -> dict[str, str]:
        return {} if self.retry_after is None else {"Retry-After": str(self.retry_after)}

    async def hold(self) -> None:
        """Wait, if this refusal is to be answered late (a client over a rate limit, app.api.ratelimit)."""


class BadRequest(RacetrackError):
    status, default_code = 400, "bad_request"


class Unauthorized(RacetrackError):
    status, default_code = 401, "invalid_key"


class Forbidden(RacetrackError):
    status, default_code = 403, "forbidden"


class NotFound(RacetrackError):
    status, default_code = 404, "not_found"


class PayloadTooLarge(RacetrackError):
    status, default_code = 413, "payload_too_large"


class Unprocessable(RacetrackError):
    status, default_code = 422, "unprocessable"


class TooManyRequests(RacetrackError):
    status, default_code = 429, "rate_limited"

    def __init__(
        self,
        message: str,
        retry_after: int,
        details: list[Any] | None = None,
        hold: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        super().__init__(message, None, details)
        self.retry_after = max(1, retry_after)
        self._hold = hold

    async def hold(self) -> None:
        if self._hold is not None:
            await self._hold()


class Unavailable(RacetrackError):
    status, default_code = 503, "unavailable"

    def __init__(self, message: str, code: str | None = None, retry_after: int = 5) -> None:
        super().__init__(message, code)
        self.retry_after = retry_after


def client_went_away(scope: Any) -> None:
    """A client that disconnects mid-request is counted in a metric, not logged as an error."""
    metrics.CLIENT_DISCONNECTS.inc()
    log.debug("client disconnected during %s %s", scope["method"], scope["path"])


class ErrorBody(BaseModel):
    """Every error answer's body (documentation: error_response builds it without validation)."""

    code: str = Field(description="Machine-readable reason, e.g. invalid_parameter, invalid_key, rate_limited",
                      examples=["invalid_parameter"])  # fmt: skip
    message: str = Field(description="What went wrong, for people", examples=["invalid value for from"])
    details: list[dict[str, Any]] = Field(
        description="Per field or rule: at least `field` and `message` (a ruleset problem also names `rule` "
        "and `goal`; a validation error its `type`)",
        examples=[[{"field": "from", "message": "cannot parse 'yesterday'"}]],
    )


INTERNAL_ERROR = "internal error; it has been logged"  # the message of every 500


def error_response(
    status: int, code: str, message: str, details: list[Any] | None = None, headers: dict[str, str] | None = None
) -> JSONAnswer:
    body = {"code": code, "message": message, "details": details or []}
    return JSONAnswer(body, status_code=status, headers=headers)


# What asyncpg raises while the database is unreachable, starting up or shutting down.
DATABASE_DOWN: tuple[type[Exception], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.InterfaceError,
)


def database_down_response(exc: Exception) -> JSONAnswer:
    log.warning("database unavailable: %s", exc)
    return error_response(503, "database_unavailable", "database unavailable, retry later",
                          headers={"Retry-After": "5"})  # fmt: skip


async def _database_down(request: Request, exc: Exception) -> JSONAnswer:
    return database_down_response(exc)


def _field(loc: tuple[Any, ...]) -> str:
    parts = loc[1:] if loc and loc[0] in ("query", "body", "path", "header") else loc
    return ".".join(str(p) for p in parts) or "request"


async def racetrack_error_response(exc: RacetrackError) -> JSONAnswer:
    await exc.hold()
    return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers())


def add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RacetrackError)
    async def _racetrack(request: Request, exc: RacetrackError) -> JSONAnswer:
        return await racetrack_error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONAnswer:
        details = [{"field": _field(err["loc"]), "message": err["msg"], "type": err["type"]} for err in exc.errors()]
        first = details[0]["field"] if details else "request"
        return error_response(422, "invalid_parameter", f"invalid value for {first}", details)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONAnswer:
        code = {404: "not_found", 405: "method_not_allowed", 408: "request_timeout"}.get(exc.status_code, "http_error")
        headers = dict(exc.headers) if exc.headers else None
        return error_response(exc.status_code, code, str(exc.detail), headers=headers)

    @app.exception_handler(ClientDisconnect)
    async def _gone(request: Request, exc: ClientDisconnect) -> JSONAnswer:
        # not an error (counted at the edge, app/api/edge.py): nobody reads this answer
        return error_response(400, "client_disconnected", "the client went away")

    @app.exception_handler(asyncpg.QueryCanceledError)
    async def _timeout(request: Request, exc: Exception) -> JSONAnswer:
        # statement_timeout (Settings.read_statement_timeout_ms): bounded work, the worker stays free
        log.warning("query canceled on %s %s: %s", request.method, request.url.path, exc)
        return error_response(
            503,
            "query_timeout",
            "the query ran past the statement timeout; ask for a shorter period or a coarser granularity",
            headers={"Retry-After": "30"},
        )

    for kind in DATABASE_DOWN:
        app.add_exception_handler(kind, _database_down)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONAnswer:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", INTERNAL_ERROR)
