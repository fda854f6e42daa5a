"""Signed, purpose-bound tokens (HMAC-SHA256) for unsubscribe, preferences and sign-up confirmation links.

A token is 56 characters of canonical unpadded base64url over 42 bytes: a 24-byte payload followed by an
18-byte MAC of that payload. The MAC is checked before any byte of the payload is interpreted, so nothing an
outsider writes is ever parsed. Payload: version (1), purpose (1), then

* unsubscribe / preferences: subscriber id (8, big-endian, < 2**63), issued (6), address tag (8) — the tag
  is a keyed hash of the subscriber's address, so a link stops working if its id is ever given to someone else;
* confirm: a random nonce (16) that names the pending sign-up in the store, issued (6).

Links minted before this format (`<base64 "id.code.issued">.<base64 mac>`) are still read for unsubscribe
and preferences, with a strict grammar, so mails already in inboxes keep working.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import secrets as pysecrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from .errors import PublisherError, SecretError

PURPOSES = {"unsubscribe": b"u", "preferences": b"p", "confirm": b"c"}
MIN_SECRET = 16
VERSION = b"\x02"
PAYLOAD_BYTES, MAC_BYTES = 24, 18
TOKEN_CHARS = (PAYLOAD_BYTES + MAC_BYTES) * 4 // 3  # 56: no padding, so the encoding is canonical by length
MAX_ID = 2**63 - 1
_TOKEN_RE = re.compile(rf"[A-Za-z0-9_-]{{{TOKEN_CHARS}}}")
_LEGACY_RE = re.compile(r"([A-Za-z0-9_-]{4,44})\.([A-Za-z0-9_-]{24})")
_LEGACY_PAYLOAD_RE = re.compile(r"([1-9][0-9]{0,17})\.([up])\.([0-9a-f]{1,12})")


class TokenError(PublisherError):
    """A token that is malformed (status 400), or forged, expired or used up (status 403)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def damaged() -> TokenError:
    return TokenError("the link is damaged or incomplete", 400)


@dataclass(frozen=True, slots=True)
class Secrets:
    """The current signing secret and older ones still accepted (rotation); `source` says where it came from."""

    current: bytes
    previous: tuple[bytes, ...] = ()
    source: str = ""

    @property
    def all(self) -> tuple[bytes, ...]:
        return (self.current, *self.previous)


def _old_secrets(name: str) -> tuple[bytes, ...]:
    return tuple(s.strip().encode() for s in os.environ.get(f"{name}_OLD", "").split(",")
                 if len(s.strip()) >= MIN_SECRET)


def env_secrets(name: str) -> Secrets | None:
    """Secrets from $NAME (older ones from $NAME_OLD), None when $NAME is unset or empty."""
    value = os.environ.get(name, "")
    if not value:
        return None
    if len(value) < MIN_SECRET:
        raise SecretError(f"the environment variable {name} is too short ({len(value)} characters) to sign links",
                          f"set it to a random secret of {MIN_SECRET}+ characters, e.g. export "
                          f"{name}=$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))'), or unset it "
                          "to use the secret publisher keeps in the state folder")
    return Secrets(value.encode(), _old_secrets(name), f"${name}")


def secrets_from_text(value: str, name: str, source: str) -> Secrets | None:
    """Secrets from a kept secret's text (older ones from $NAME_OLD); None when it is too short to use."""
    value = value.strip()
    if len(value) < MIN_SECRET:
        return None
    return Secrets(value.encode(), _old_secrets(name), source)


def throwaway_secrets() -> Secrets:
    """A random secret for dry runs, which show no links and must not write a secret file."""
    return Secrets(pysecrets.token_bytes(32))


def keyed_hash(secret: bytes, label: str, text: str, size: int = 16) -> bytes:
    """A keyed hash of `text` for one use (`label`): stable while the secret is, meaningless without it."""
    return hmac.new(secret, f"{label}\0{text}".encode(), hashlib.sha256).digest()[:size]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _mac(secret: bytes, payload: bytes) -> bytes:
    return hmac.new(secret, b"publisher-link\0" + payload, hashlib.sha256).digest()[:MAC_BYTES]


def _issued(issued: int | None) -> bytes:
    value = int(time.time()) if issued is None else issued
    return max(0, value).to_bytes(6, "big")


def make_token(secrets: Secrets, subscriber_id: int, email: str, purpose: str, issued: int | None = None) -> str:
    """An unsubscribe or preferences token naming the subscriber, bound to their address (not revealed)."""
    if purpose not in ("unsubscribe", "preferences") or not 0 <= subscriber_id <= MAX_ID:
        raise ValueError(f"cannot make a {purpose} token for subscriber {subscriber_id}")
    tag = keyed_hash(secrets.current, "address", email.lower(), 8)
    payload = VERSION + PURPOSES[purpose] + subscriber_id.to_bytes(8, "big") + _issued(issued) + tag
    return _b64(payload + _mac(secrets.current, payload))


def make_confirm_token(secrets: Secrets, nonce: bytes, issued: int | None = None) -> str:
    """A sign-up confirmation token naming the pending confirmation `nonce` (16 random bytes)."""
    if len(nonce) != 16:
        raise ValueError("a confirmation nonce is 16 bytes")
    payload = VERSION + PURPOSES["confirm"] + nonce + _issued(issued)
    return _b64(payload + _mac(secrets.current, payload))


@dataclass(frozen=True, slots=True)
class _Verified:
    payload: bytes
    secret: bytes


def _verify(secrets: Secrets, token: str) -> _Verified:
    """Strict decoding and the MAC check; nothing in the payload is looked at before the MAC holds."""
    if not _TOKEN_RE.fullmatch(token):
        raise damaged()
    try:
        raw = base64.urlsafe_b64decode(token)
    except (binascii.Error, ValueError):
        raise damaged() from None
    if _b64(raw) != token:  # only one spelling of each token is accepted
        raise damaged()
    payload, mac = raw[:PAYLOAD_BYTES], raw[PAYLOAD_BYTES:]
    for secret in secrets.all:
        if hmac.compare_digest(mac, _mac(secret, payload)):
            return _Verified(payload, secret)
    raise TokenError("the link is not valid", 403)


def _check_purpose_and_age(payload: bytes, purpose: str, max_age: int | None, now: float | None) -> None:
    if payload[:1] != VERSION:
        raise damaged()
    if payload[1:2] != PURPOSES[purpose]:
        raise TokenError("the link is not meant for this page", 400)
    issued = int.from_bytes(payload[-6:] if purpose == "confirm" else payload[10:16], "big")
    now = time.time() if now is None else now
    if max_age is not None and now - issued > max_age:
        raise TokenError("the link has expired", 403)


def read_token(secrets: Secrets, token: str, purpose: str, email_of: Callable[[int], str | None],
               max_age: int | None = None, now: float | None = None) -> int:
    """The subscriber id an unsubscribe or preferences token names; TokenError for anything else."""
    if purpose not in ("unsubscribe", "preferences"):
        raise ValueError(purpose)
    if len(token) > 120:
        raise damaged()
    if "." in token:
        return _read_legacy(secrets, token, purpose, email_of, max_age, now)
    verified = _verify(secrets, token)
    payload = verified.payload
    _check_purpose_and_age(payload, purpose, max_age, now)
    subscriber_id = int.from_bytes(payload[2:10], "big")
    if not 0 < subscriber_id <= MAX_ID:
        raise damaged()
    email = email_of(subscriber_id)
    if email is None or not hmac.compare_digest(payload[16:24], keyed_hash(verified.secret, "address",
                                                                           email.lower(), 8)):
        raise TokenError("the link is not valid", 403)
    return subscriber_id


def read_confirm_token(secrets: Secrets, token: str, max_age: int, now: float | None = None) -> bytes:
    """The nonce of the pending sign-up a confirmation token names; TokenError for anything else."""
    verified = _verify(secrets, token)
    _check_purpose_and_age(verified.payload, "confirm", max_age, now)
    return verified.payload[2:18]


def _legacy_mac(secret: bytes, payload: str, email: str) -> bytes:
    return hmac.new(secret, f"{payload}\0{email.lower()}".encode(), hashlib.sha256).digest()[:18]


def _read_legacy(secrets: Secrets, token: str, purpose: str, email_of: Callable[[int], str | None],
                 max_age: int | None, now: float | None) -> int:
    """Links of the first format (their MAC covers the address, so the id is read first, by a strict grammar)."""
    match = _LEGACY_RE.fullmatch(token)
    if not match:
        raise damaged()
    try:
        raw, mac = (base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)) for part in match.groups())
    except (binascii.Error, ValueError):
        raise damaged() from None
    if (_b64(raw), _b64(mac)) != match.groups() or not raw.isascii():
        raise damaged()
    fields = _LEGACY_PAYLOAD_RE.fullmatch(raw.decode("ascii"))
    if not fields:
        raise damaged()
    sid_text, code, issued_hex = fields.groups()
    if code.encode() != PURPOSES[purpose]:
        raise TokenError("the link is not meant for this page", 400)
    subscriber_id = int(sid_text)
    email = email_of(subscriber_id)
    if email is None or not any(hmac.compare_digest(mac, _legacy_mac(s, raw.decode(), email)) for s in secrets.all):
        raise TokenError("the link is not valid", 403)
    now = time.time() if now is None else now
    if max_age is not None and now - int(issued_hex, 16) > max_age:
        raise TokenError("the link has expired", 403)
    return subscriber_id
