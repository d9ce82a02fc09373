"""Every failure answers JSON ``{"error": {"code", "message"}}``: never a stack trace."""

from __future__ import annotations

import logging
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse

from streams.chunks import MediaGone
from streams.connection import RETRYABLE

log = logging.getLogger("dodolens.gateway")

RETRY_AFTER_S = 2


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers, self.extra = status, code, message, headers or {}, extra


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, **extra}}, status_code=status, headers=headers)


async def api_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.code, exc.message, exc.headers, **exc.extra)


async def http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return error_response(exc.status_code, code, str(exc.detail), dict(exc.headers or {}))


async def redis_unavailable(_request: Request, _exc: Exception) -> JSONResponse:
    return error_response(503, "unavailable", "storage is unreachable; retry shortly", {"Retry-After": str(RETRY_AFTER_S)})


async def session_gone(_request: Request, exc: Exception) -> JSONResponse:
    return error_response(410, "session_gone", str(exc))


async def client_gone(_request: Request, _exc: Exception) -> JSONResponse:
    """The client went away mid-body: nothing to tell it and nothing wrong here, so no log line."""
    return error_response(400, "client_disconnected", "the request body ended before it was complete")


async def unexpected(_request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", exc_info=exc)
    return error_response(500, "internal_error", "unexpected server error")


HANDLERS = {
    ApiError: api_error,
    MediaGone: session_gone,
    ClientDisconnect: client_gone,
    HTTPException: http_error,
    **{cls: redis_unavailable for cls in RETRYABLE},
    Exception: unexpected,
}
