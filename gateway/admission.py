"""Who may create a session, and whether there is room: API keys, per-client quotas, the global cap.

``POST /sessions`` and tus ``POST /files/`` both go through :func:`admit_request`, so neither
protocol is a way around the other's limits.
"""

from __future__ import annotations

import asyncio
import hmac
import logging

from starlette.requests import HTTPConnection

from gateway.auth import new_session_id
from gateway.config import GatewayConfig
from gateway.errors import ApiError
from streams.admission import Admission, admit, retry_after
from streams.audit import pseudonym
from streams.connection import RETRYABLE, Redis
from streams.lifecycle import reap_idle, trim_live_events

log = logging.getLogger("dodolens.gateway")

API_KEY_HEADER = "x-api-key"


def has_api_key(request: HTTPConnection, cfg: GatewayConfig) -> bool:
    """True for a request carrying one of ``api_keys``; raises 401/403 when keys are configured and it
    carries none or a wrong one; False when no keys are configured (anyone may create)."""
    if not cfg.api_keys:
        return False
    sent = request.headers.get(API_KEY_HEADER, "")
    if not sent:
        raise ApiError(401, "missing_api_key", f"creating a session needs an API key in the {API_KEY_HEADER} header")
    if not any(hmac.compare_digest(sent.encode(), key.encode()) for key in cfg.api_keys):
        raise ApiError(403, "bad_api_key", "this API key is not valid")
    return True


def client_of(request: HTTPConnection, cfg: GatewayConfig) -> str:
    """A keyed pseudonym of the client's address: the peer, or what a trusted proxy says (uvicorn's
    proxy-headers middleware rewrites the peer only for ``trusted_proxies``). Redis never sees the address."""
    host = request.client.host if request.client else "unknown"
    return pseudonym(cfg.stream, f"client:{host}")


async def admit_request(request: HTTPConnection, *, force: bool = False) -> str:
    """The id of a new session admitted for this request, or a 401/403/429 (with ``Retry-After``).

    When the service is full, idle uploads past their deadline are reaped first and admission tried
    once more: a slot is never refused for a session that should already be gone.
    """
    cfg: GatewayConfig = request.app.state.config
    client = "" if has_api_key(request, cfg) else client_of(request, cfg)
    return await admit_client(request.app.state.redis, cfg, client, force=force)


async def admit_client(r: Redis, cfg: GatewayConfig, client: str, *, force: bool = False) -> str:
    """:func:`admit_request` for ``client`` (a pseudonym; "" for one exempt from the per-client quota,
    as a request with an API key or the in-process ``dodolens analyze`` is)."""
    sid = new_session_id()
    outcome = Admission.ADMITTED
    for attempt in range(2):
        outcome = await admit(r, cfg.stream, sid, client=client, max_sessions=cfg.max_sessions,
                              quota=cfg.client_max_sessions, force=force)
        if outcome == Admission.ADMITTED:
            return sid
        if attempt == 0 and not await reap_idle(r, cfg.stream):
            break
    if outcome == Admission.OVER_QUOTA:
        raise ApiError(429, "too_many_client_sessions",
                       f"this client already has {cfg.client_max_sessions} uploads open; finish one or retry later",
                       headers={"Retry-After": str(await retry_after(r, cfg.stream, client))})
    raise ApiError(429, "too_many_sessions", "the service is busy; retry later",
                   headers={"Retry-After": str(await retry_after(r, cfg.stream))})


async def run_housekeeping(r: Redis, cfg: GatewayConfig) -> None:
    """Every ``reap_interval_s``: reap idle uploads and trim the live event stream. Runs in every
    gateway (each reaped session is claimed by one), so it holds with one gateway or many."""
    while True:
        try:
            await reap_idle(r, cfg.stream)
            await trim_live_events(r, cfg.stream)
        except RETRYABLE:
            log.warning("housekeeping skipped: Redis unreachable")
        except Exception:
            log.exception("housekeeping failed; trying again next round")
        await asyncio.sleep(cfg.reap_interval_s)
