"""The ``/admin`` dashboard: one static page polling ``/admin/api/overview``, behind the admin token.

No token configured means no dashboard: it answers 403 saying how to turn it on, rather than
being open by default. Opening ``/admin?token=…`` once sets an HttpOnly, SameSite=Strict cookie
(derived from the token, not the token itself) and redirects to ``/admin``, so the token leaves
the address bar and a reload still works. The page and the overview carry counts and pseudonyms only.
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from gateway.errors import ApiError
from streams.health import (
    ERROR_RATE_LIMIT,
    ERROR_WINDOW_S,
    MEMORY_LIMIT,
    PROCESSING_LIMIT_S,
    alerts_as_dicts,
    evaluate_alerts,
    gather,
    recent_outcomes,
)

STATIC = Path(__file__).parent / "static"
COOKIE = "dodolens_admin"
COOKIE_MAX_AGE_S = 12 * 3600
NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
PAGE_HEADERS = {
    **NO_STORE,
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                               "connect-src 'self'; img-src 'self' data:; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
}


def cookie_value(admin_token: str) -> str:
    return hmac.new(admin_token.encode(), b"dodolens-admin-cookie", hashlib.sha256).hexdigest()


def require_admin(request: Request) -> None:
    """The admin token as ``Authorization: Bearer``, ``?token=`` or the cookie, compared in constant time."""
    expected = request.app.state.config.admin_token
    if not expected:
        raise ApiError(403, "admin_disabled", "the admin dashboard is off: set DODOLENS_ADMIN_TOKEN to a long random "
                       "secret and restart, then open /admin?token=<secret> or send 'Authorization: Bearer <secret>'")
    header = request.headers.get("authorization", "")
    given = header[7:].strip() if header.lower().startswith("bearer ") else request.query_params.get("token", "")
    if given:
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise ApiError(403, "bad_token", "the admin token is not valid")
        return
    cookie = request.cookies.get(COOKIE, "")
    if cookie and hmac.compare_digest(cookie.encode(), cookie_value(expected).encode()):
        return
    raise ApiError(401, "missing_token", "open /admin?token=<admin token>, or send 'Authorization: Bearer <token>'",
                   headers={"WWW-Authenticate": "Bearer"})


async def page(request: Request) -> Response:
    """The page; a token in the query becomes the cookie, and the address bar loses it."""
    require_admin(request)
    if "token" in request.query_params:
        response: Response = RedirectResponse("/admin", status_code=303, headers=NO_STORE)
        response.set_cookie(COOKIE, cookie_value(request.app.state.config.admin_token), max_age=COOKIE_MAX_AGE_S,
                            path="/admin", httponly=True, samesite="strict", secure=request.url.scheme == "https")
        return response
    return FileResponse(STATIC / "admin.html", media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)


async def script(_request: Request) -> Response:
    """The page's code: public, it holds no data (the data comes from the overview, behind the token)."""
    return FileResponse(STATIC / "admin.js", media_type="text/javascript; charset=utf-8", headers=PAGE_HEADERS)


async def overview(request: Request) -> JSONResponse:
    """Everything the page shows, in one answer: live figures, counters, outcomes, alerts."""
    require_admin(request)
    app = request.app
    figures = await gather(app.state.redis, app.state.config.stream, app.state.lag)
    outcomes = await recent_outcomes(app.state.redis)
    body = {
        **figures,
        "websockets": app.state.hub.connections,
        "counters": app.state.metrics.counters(),
        "outcomes": outcomes,
        "alerts": alerts_as_dicts(evaluate_alerts(figures, outcomes)),
        "thresholds": {"memory": MEMORY_LIMIT, "processing_s": PROCESSING_LIMIT_S, "error_rate": ERROR_RATE_LIMIT,
                       "error_window_s": ERROR_WINDOW_S},
    }
    return JSONResponse(body, headers=NO_STORE)


routes = [
    Route("/admin", page, methods=["GET"]),
    Route("/admin/admin.js", script, methods=["GET"]),
    Route("/admin/api/overview", overview, methods=["GET"]),
]
