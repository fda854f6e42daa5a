"""Signed, purpose-bound subscriber tokens (HMAC-SHA256) for unsubscribe and preference links."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from .errors import PublisherError

PURPOSES = {"unsubscribe": "u", "preferences": "p", "confirm": "c"}
PREVIEW_SECRET = b"preview-only-secret-never-used-for-sending"


class TokenError(PublisherError):
    """A token that is malformed, forged, for another purpose, or expired."""


@dataclass(frozen=True, slots=True)
class Secrets:
    """The current signing secret and older ones still accepted (rotation)."""

    current: bytes
    previous: tuple[bytes, ...] = ()

    @classmethod
    def from_env(cls, name: str, required: bool = True) -> Secrets:
        """Secret from $NAME, old secrets from $NAME_OLD (comma-separated); a preview secret when not required."""
        value = os.environ.get(name, "")
        if len(value) < 16:
            if required:
                raise PublisherError(f"set the environment variable {name} to a random secret of 16+ characters "
                                     "(it signs unsubscribe links); e.g. export "
                                     f"{name}=$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')")
            return cls(PREVIEW_SECRET)
        old = tuple(s.encode() for s in os.environ.get(f"{name}_OLD", "").split(",") if len(s) >= 16)
        return cls(value.encode(), old)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: bytes, payload: str, email: str) -> bytes:
    return hmac.new(secret, f"{payload}\0{email.lower()}".encode(), hashlib.sha256).digest()[:18]


def make_token(secrets: Secrets, subscriber_id: int, email: str, purpose: str, issued: int | None = None) -> str:
    """A URL-safe token naming the subscriber id and purpose, signed over the address (which it does not reveal)."""
    issued = int(time.time()) if issued is None else issued
    payload = f"{subscriber_id}.{PURPOSES[purpose]}.{issued:x}"
    return f"{_b64(payload.encode())}.{_b64(_mac(secrets.current, payload, email))}"


def read_token(secrets: Secrets, token: str, purpose: str, email_of: Callable[[int], str | None],
               max_age: int | None = None, now: float | None = None) -> int:
    """The subscriber id a valid token names; raises TokenError for anything forged, truncated or expired."""
    try:
        payload_b64, mac_b64 = token.split(".")
        payload = _unb64(payload_b64).decode("ascii")
        sid_text, code, issued_hex = payload.split(".")
        subscriber_id, issued, mac = int(sid_text), int(issued_hex, 16), _unb64(mac_b64)
    except (ValueError, UnicodeDecodeError):
        raise TokenError("the link is damaged or incomplete") from None
    if code != PURPOSES.get(purpose):
        raise TokenError("the link is not meant for this page")
    email = email_of(subscriber_id)
    if email is None or not any(hmac.compare_digest(mac, _mac(s, payload, email))
                                for s in (secrets.current, *secrets.previous)):
        raise TokenError("the link is not valid")
    now = time.time() if now is None else now
    if max_age is not None and now - issued > max_age:
        raise TokenError("the link has expired")
    return subscriber_id
