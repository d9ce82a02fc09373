"""Who may use ``/admin``: a script sending the admin token as ``Authorization: Bearer``, or a browser
that signed in with it and holds the sign-in cookie.

The cookie is ``<expiry>.<HMAC keyed by the admin token>``: it never contains the token, it stops
working at its expiry whatever the browser does, and changing the token signs every browser out.
The gateway faces the internet, so a wrong token is counted and, past a few per client (and a
larger number overall) in a moving window, every token check answers 429 without comparing: the
sign-in form and the Bearer header cannot be used to try tokens one after the other.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import time

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter
from starlette.requests import Request

from gateway.errors import ApiError

COOKIE = "dodolens_admin"
COOKIE_PATH = "/admin"
COOKIE_TTL_S = 12 * 3600
FAILURES_PER_CLIENT = parse("5/5 minutes")
FAILURES_OVERALL = parse("50/5 minutes")
"""Past this, nobody signs in with the token for a while (signed-in browsers keep working): it bounds a
guesser spread over many addresses."""


def _mac(admin_token: str, expires: int) -> str:
    return hmac.new(admin_token.encode(), f"dodolens-admin-cookie.{expires}".encode(), hashlib.sha256).hexdigest()


def issue_cookie(admin_token: str, now: float | None = None, ttl_s: int = COOKIE_TTL_S) -> str:
    expires = int((time.time() if now is None else now) + ttl_s)
    return f"{expires}.{_mac(admin_token, expires)}"


def valid_cookie(admin_token: str, value: str, now: float | None = None) -> bool:
    expires, _, mac = value.partition(".")
    if not expires.isdigit() or not mac:
        return False
    fresh = int(expires) >= (time.time() if now is None else now)
    return hmac.compare_digest(mac.encode(), _mac(admin_token, int(expires)).encode()) and fresh


def same_token(given: str, expected: str) -> bool:
    """Constant time in the token's content (its length may show, not its bytes)."""
    return hmac.compare_digest(given.encode(), expected.encode())


class FailedAttempts:
    """Wrong admin tokens per client address and overall, in this gateway's memory (``limits``' moving window)."""

    def __init__(self, per_client: RateLimitItem = FAILURES_PER_CLIENT, overall: RateLimitItem = FAILURES_OVERALL) -> None:
        self.limiter = MovingWindowRateLimiter(MemoryStorage())
        self.per_client, self.overall = per_client, overall

    def _buckets(self, client: str) -> tuple[tuple[RateLimitItem, str], ...]:
        return (self.per_client, f"client:{client}"), (self.overall, "overall")

    async def locked_for(self, client: str) -> int:
        """Seconds until ``client`` may try a token again; 0 when it may now."""
        wait = 0.0
        for item, key in self._buckets(client):
            stats = await self.limiter.get_window_stats(item, key)
            if stats.remaining <= 0:
                wait = max(wait, stats.reset_time - time.time())
        return max(1, math.ceil(wait)) if wait > 0 else 0

    async def failed(self, client: str) -> None:
        for item, key in self._buckets(client):
            await self.limiter.hit(item, key)


def client_of(request: Request) -> str:
    """The peer address: behind a reverse proxy every client shares the proxy's bucket (stricter, never looser)."""
    return request.client.host if request.client else "unknown"


def configured_token(request: Request) -> str:
    expected: str | None = request.app.state.config.admin_token
    if not expected:
        raise ApiError(403, "admin_disabled", "the admin dashboard is off: set DODOLENS_ADMIN_TOKEN to a long random "
                       "secret and restart, then sign in at /admin or send 'Authorization: Bearer <secret>'")
    return expected


async def check_token(request: Request, given: str) -> bool:
    """Whether ``given`` is the admin token; raises 429 while this client (or everyone) is locked out."""
    expected = configured_token(request)
    guard: FailedAttempts = request.app.state.admin_attempts
    client = client_of(request)
    wait = await guard.locked_for(client)
    if wait:
        raise ApiError(429, "too_many_attempts", f"too many wrong admin tokens; try again in {wait} s",
                       headers={"Retry-After": str(wait)}, retry_after_s=wait)
    if same_token(given, expected):
        return True
    await guard.failed(client)
    return False


def signed_in(request: Request) -> bool:
    """A valid sign-in cookie (a stale or forged one is just "not signed in": 256-bit MACs are not guessed)."""
    value = request.cookies.get(COOKIE, "")
    return bool(value) and valid_cookie(configured_token(request), value)


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    return header[7:].strip() if header.lower().startswith("bearer ") else None


async def require_admin(request: Request) -> None:
    """The Bearer token (scripts) or the sign-in cookie (browsers); JSON 401/403/429 otherwise."""
    configured_token(request)
    given = bearer(request)
    if given is not None:
        if not await check_token(request, given):
            raise ApiError(401, "bad_token", "the admin token is not valid",
                           headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        return
    if signed_in(request):
        return
    raise ApiError(401, "missing_token", "sign in at /admin, or send 'Authorization: Bearer <admin token>'",
                   headers={"WWW-Authenticate": "Bearer"})
