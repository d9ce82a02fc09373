"""Session tokens: HMAC over (session id, expiry), and tus upload ids: HMAC over the session id.
Both are checked by any gateway without state."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time

from streams.crypto import Keyring, derive_key

SESSION_ID = re.compile(r"^[0-9a-f]{32}$")
UPLOAD_ID = re.compile(r"^([0-9a-f]{32})-([0-9a-f]{32})$")
EXPIRY = re.compile(r"^[0-9]{1,12}$")
"""ASCII digits only, and few: ``str.isdigit`` also accepts ``²`` and Arabic-Indic digits, which ``int``
then refuses or reads, and a 4,400-digit expiry is more than ``int`` converts."""


def new_session_id() -> str:
    """128 random bits, hex."""
    return secrets.token_hex(16)


def valid_session_id(sid: str) -> bool:
    return bool(SESSION_ID.match(sid))


def _signature(keyring: Keyring, sid: str, expires: int) -> str:
    key = derive_key(keyring.master, "token")
    return hmac.new(key, f"{sid}.{expires}".encode(), hashlib.sha256).hexdigest()


def issue_token(keyring: Keyring, sid: str, ttl_s: int, now: float | None = None) -> tuple[str, int]:
    expires = int((now if now is not None else time.time()) + ttl_s)
    return f"{expires}.{_signature(keyring, sid, expires)}", expires


def check_token(keyring: Keyring, sid: str, token: str, now: float | None = None, *, allow_expired: bool = False) -> str | None:
    """None when the token is good for this session; otherwise why not. ``allow_expired`` accepts an authentic
    token past its expiry (erasure: the right to erase lasts as long as the result is kept)."""
    expires_s, _, signature = token.partition(".")
    if not EXPIRY.fullmatch(expires_s) or not signature.isascii():
        return "malformed token"
    if not hmac.compare_digest(signature, _signature(keyring, sid, int(expires_s))):
        return "token is not valid for this session"
    if not allow_expired and int(expires_s) < (now if now is not None else time.time()):
        return "token expired"
    return None


def _upload_secret(keyring: Keyring, sid: str) -> str:
    key = derive_key(keyring.master, "tus-upload")
    return hmac.new(key, sid.encode(), hashlib.sha256).hexdigest()[:32]


def upload_id_of(keyring: Keyring, sid: str) -> str:
    """The id in a tus upload URL: the session id and 128 bits only the gateway can make, so the
    URL itself is the capability (as tusd's random ids are) and stock tus clients need no header."""
    return f"{sid}-{_upload_secret(keyring, sid)}"


def session_of_upload(keyring: Keyring, upload_id: str) -> str | None:
    """The session id an upload id stands for, or None when it is not one this gateway made."""
    match = UPLOAD_ID.match(upload_id)
    if match is None or not hmac.compare_digest(match[2], _upload_secret(keyring, match[1])):
        return None
    return match[1]
