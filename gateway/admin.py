"""The ``/admin`` dashboard: a sign-in form, then one static page polling ``/admin/api/overview``.

No token configured means no dashboard: it answers 403 saying how to turn it on, rather than
being open by default. A browser signs in with a form POST that sets an HttpOnly, SameSite=Strict
cookie (``gateway.admin_auth``); scripts send ``Authorization: Bearer <token>``. The page and the
overview carry counts and pseudonyms only.
"""

from __future__ import annotations

import html
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from gateway.admin_auth import (
    COOKIE,
    COOKIE_PATH,
    COOKIE_TTL_S,
    check_token,
    configured_token,
    issue_cookie,
    require_admin,
    signed_in,
)
from gateway.errors import ApiError
from gateway.sessions import small_body
from gateway.timeline import CHARTED, Timeline
from streams.audit import audit
from streams.control import read_answers, reclaim_memory, send_request
from streams.health import (
    ERROR_RATE_LIMIT,
    ERROR_WINDOW_S,
    MEMORY_LIMIT,
    PROCESSING_LIMIT_S,
    alerts_as_dicts,
    evaluate_alerts,
    gather,
    recent_events,
    recent_outcomes,
    redis_memory,
)

STATIC = Path(__file__).parent / "static"
SIGN_IN = "/admin/sign-in"
FORM_BYTES = 4096
GC_WAIT_S = 5.0
"""How long ``POST /admin/api/gc`` waits for the workers (the sweeping one above all) to answer."""
NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
PAGE_HEADERS = {
    **NO_STORE,
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                               "connect-src 'self'; img-src 'self' data:; form-action 'self'; base-uri 'none'; "
                               "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
}


def wants_html(request: Request) -> bool:
    """A browser navigating (it asks for HTML); scripts and fetch() get JSON errors instead of a redirect."""
    return "text/html" in request.headers.get("accept", "")


def sign_in_page(message: str = "", status: int = 200, headers: dict[str, str] | None = None) -> HTMLResponse:
    text = (STATIC / "admin-sign-in.html").read_text().replace("{{message}}", html.escape(message))
    return HTMLResponse(text, status_code=status, headers={**PAGE_HEADERS, **(headers or {})})


def same_origin(request: Request) -> None:
    """A cross-site form cannot post here (the SameSite cookie already keeps it from acting signed in).

    Browsers say where a request comes from in ``Sec-Fetch-Site``; older ones only in ``Origin``, which
    our no-referrer pages make ``null``. Scripts send neither and are judged by their token alone.
    """
    site = request.headers.get("sec-fetch-site")
    origin = request.headers.get("origin")
    if site is not None:
        allowed = site in ("same-origin", "none")
    else:
        allowed = origin in (None, "null") or urlsplit(origin).netloc == request.headers.get("host")
    if not allowed:
        raise ApiError(403, "cross_origin", "admin actions must come from the admin page itself")


async def form_field(request: Request, name: str) -> str:
    """One field of a small urlencoded form body; anything else is a 4xx."""
    body = await small_body(request, "application/x-www-form-urlencoded", FORM_BYTES, "sign-in forms")
    try:
        values = parse_qs(body.decode(), max_num_fields=10)
    except (UnicodeDecodeError, ValueError):
        raise ApiError(400, "malformed_form", "the form body is not valid") from None
    return (values.get(name) or [""])[0]


async def page(request: Request) -> Response:
    """The dashboard when signed in; a browser that is not goes to the sign-in form, a script gets 401 JSON."""
    configured_token(request)
    if not signed_in(request) and wants_html(request) and "authorization" not in request.headers:
        return RedirectResponse(SIGN_IN, status_code=303, headers=NO_STORE)
    await require_admin(request)
    return FileResponse(STATIC / "admin.html", media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)


async def sign_in_form(request: Request) -> Response:
    configured_token(request)
    if signed_in(request):
        return RedirectResponse("/admin", status_code=303, headers=NO_STORE)
    return sign_in_page()


async def sign_in(request: Request) -> Response:
    """The form's POST: the right token sets the cookie; a wrong one counts towards the lock-out."""
    configured_token(request)
    same_origin(request)
    token = await form_field(request, "token")
    try:
        accepted = await check_token(request, token)
    except ApiError as exc:
        if exc.code != "too_many_attempts":
            raise
        return sign_in_page(exc.message, 429, exc.headers)
    if not accepted:
        return sign_in_page("That is not the admin token.", 401)
    response = RedirectResponse("/admin", status_code=303, headers=NO_STORE)
    response.set_cookie(COOKIE, issue_cookie(token), max_age=COOKIE_TTL_S, path=COOKIE_PATH, httponly=True,
                        samesite="strict", secure=request.url.scheme == "https")
    return response


async def sign_out(request: Request) -> Response:
    same_origin(request)
    response = RedirectResponse(SIGN_IN, status_code=303, headers=NO_STORE)
    response.delete_cookie(COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict")
    return response


async def script(_request: Request) -> Response:
    """The page's code: public, it holds no data (the data comes from the overview, behind the token)."""
    return FileResponse(STATIC / "admin.js", media_type="text/javascript; charset=utf-8", headers=PAGE_HEADERS)


async def backfilled(app: Starlette) -> Timeline:
    """The gateway's timeline, with the hour before it started read once from the analytics stream."""
    timeline: Timeline = app.state.metrics.timeline
    if not timeline.backfilled:
        records = await recent_events(app.state.redis, timeline.minutes * 60, frozenset(t.value for t in CHARTED))
        if not timeline.backfilled:
            timeline.backfill(records)
    return timeline


async def overview(request: Request) -> JSONResponse:
    """Everything the page shows, in one answer: live figures, counters, outcomes, alerts, the last hour."""
    await require_admin(request)
    app = request.app
    figures = await gather(app.state.redis, app.state.config.stream, app.state.lag)
    outcomes = await recent_outcomes(app.state.redis)
    body = {
        **figures,
        "websockets": app.state.hub.connections,
        "counters": app.state.metrics.counters(),
        "timeline": (await backfilled(app)).snapshot(),
        "outcomes": outcomes,
        "alerts": alerts_as_dicts(evaluate_alerts(figures, outcomes)),
        "thresholds": {"memory": MEMORY_LIMIT, "processing_s": PROCESSING_LIMIT_S, "error_rate": ERROR_RATE_LIMIT,
                       "error_window_s": ERROR_WINDOW_S},
    }
    return JSONResponse(body, headers=NO_STORE)


async def collect_garbage(request: Request) -> JSONResponse:
    """The design note's ``POST /api/admin/gc``: sweep now, collect every process's memory, say what was freed.

    The sweep and the workers' collection run in the workers (asked over ``dodo:control``): the gateway
    cannot import them, and with no worker running there is no sweeper to run either.
    """
    await require_admin(request)
    same_origin(request)
    app = request.app
    r = app.state.redis
    redis_before = await redis_memory(r)
    gateway = {"role": "gateway", "name": "gateway", **reclaim_memory()}
    request_id = await send_request(r, "gc")
    workers = await read_answers(r, request_id, enough=lambda replies: any("sweep" in w for w in replies),
                                 timeout_s=GC_WAIT_S)
    redis_after = await redis_memory(r)
    sweep = next((w.pop("sweep") for w in workers if "sweep" in w), None)
    processes = [gateway, *workers]
    freed = {"keys": sweep["orphan_keys"] if sweep else 0, "key_bytes": sweep["orphan_bytes"] if sweep else 0,
             "redis_bytes": max(0, redis_before["used_bytes"] - redis_after["used_bytes"]),
             "process_bytes": sum(p["freed_bytes"] for p in processes)}
    await audit(r, app.state.config.stream, "admin_gc", keys_deleted=freed["keys"], workers=len(workers))
    body = {
        "freed": freed,
        "sweep": sweep,
        "workers_answered": len(workers),
        "processes": processes,
        "redis": {"used_before": redis_before["used_bytes"], "used_after": redis_after["used_bytes"]},
        "note": None if sweep else f"no worker answered within {GC_WAIT_S:.0f} s: nothing was swept",
    }
    return JSONResponse(body, headers=NO_STORE)


routes = [
    Route("/admin", page, methods=["GET"]),
    Route(SIGN_IN, sign_in_form, methods=["GET"]),
    Route(SIGN_IN, sign_in, methods=["POST"]),
    Route("/admin/sign-out", sign_out, methods=["POST"]),
    Route("/admin/admin.js", script, methods=["GET"]),
    Route("/admin/api/overview", overview, methods=["GET"]),
    Route("/admin/api/gc", collect_garbage, methods=["POST"]),
]
