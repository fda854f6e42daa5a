"""Provider events in one shape: what happened to which address, by whose word, and when."""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from ..errors import PublisherError
from ..subscribers import SubscriberError, normalize_email

DELIVERED, HARD_BOUNCE, SOFT_BOUNCE, COMPLAINT, UNSUBSCRIBE = (
    "delivered", "hard_bounce", "soft_bounce", "complaint", "unsubscribe")
KINDS = (DELIVERED, HARD_BOUNCE, SOFT_BOUNCE, COMPLAINT, UNSUBSCRIBE)
MAX_ID = 200  # longest provider event id or message id kept
MAX_DETAIL = 500


@dataclass(frozen=True, slots=True)
class Event:
    """One provider event about one address, normalised: the kinds publisher acts on, nothing else."""

    provider: str
    event_id: str  # unique per provider; a repeat of the same id is the same event
    kind: str  # one of KINDS
    address: str  # normalised (lower-case) when it is a valid address
    time: datetime  # UTC
    provider_message_id: str = ""  # the id the provider's send API returned (Postmark MessageID, SES MessageId…)
    message_id: str = ""  # the RFC 5322 Message-ID, with angle brackets, when the provider echoes it
    detail: str = ""  # the provider's reason (bounce diagnostic, complaint type)
    metadata: Mapping[str, str] = field(default_factory=dict)  # custom args / user variables / tags, as text


@dataclass(frozen=True, slots=True)
class WebhookRequest:
    """A webhook call as it arrived: lower-cased header names, the raw body bytes, and the time it came."""

    headers: Mapping[str, str]
    body: bytes
    received: float = field(default_factory=time.time)

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), "")


@dataclass(frozen=True, slots=True)
class Received:
    """What a verified webhook call held: its events, and whether it was a replay already handled."""

    events: list[Event]
    replayed: bool = False
    note: str = ""  # e.g. "subscription confirmed" for SNS


class WebhookRejected(PublisherError):
    """A webhook call that is not from the provider (401/403), too old, or not understood (400, 413)."""

    exit_code = 2

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def unauthorized(reason: str) -> WebhookRejected:
    return WebhookRejected(401, reason)


def forbidden(reason: str) -> WebhookRejected:
    return WebhookRejected(403, reason)


def bad_request(reason: str) -> WebhookRejected:
    return WebhookRejected(400, reason)


class ReplayGuard(Protocol):
    """Remembers one-time values (Mailgun tokens): True the first time a key is seen before it expires."""

    def first_use(self, key: str, expires: float) -> bool: ...


class MemoryReplayGuard:
    """A bounded in-process ReplayGuard (tests, and a single `publish web` without a store)."""

    def __init__(self, limit: int = 100_000) -> None:
        self.seen: OrderedDict[str, float] = OrderedDict()
        self.limit = limit
        self.lock = threading.Lock()

    def first_use(self, key: str, expires: float) -> bool:
        now = time.time()
        with self.lock:
            while self.seen and (len(self.seen) >= self.limit or next(iter(self.seen.values())) < now):
                self.seen.popitem(last=False)
            if key in self.seen and self.seen[key] >= now:
                return False
            self.seen[key] = expires
            return True


def json_body(request: WebhookRequest) -> object:
    """The body parsed as JSON, or a 400 naming what is wrong."""
    try:
        return json.loads(request.body)
    except (ValueError, RecursionError):
        raise bad_request("the body is not JSON") from None


def text(value: object, limit: int = MAX_ID) -> str:
    """A payload value as one clean line of text ('' for missing or structured values)."""
    if isinstance(value, bool) or value is None or isinstance(value, dict | list):
        return ""
    return " ".join(str(value).split())[:limit]


def address(value: object) -> str:
    """A recipient address from a payload, normalised when valid (kept lower-cased when not)."""
    raw = text(value, 320)
    try:
        return normalize_email(raw)
    except SubscriberError:
        return raw.lower()


def parse_time(value: object, fallback: float) -> datetime:
    """An ISO 8601 string or epoch seconds as a UTC datetime; `fallback` (epoch) when missing or unreadable."""
    when: datetime | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            when = datetime.fromtimestamp(float(value), UTC)
        except (OverflowError, OSError, ValueError):
            when = None
    elif isinstance(value, str) and value:
        try:
            when = datetime.fromisoformat(value.strip())
        except ValueError:
            when = None
        if when is not None and when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
    if when is None:
        when = datetime.fromtimestamp(fallback, UTC)
    return when.astimezone(UTC)


def string_map(value: object) -> dict[str, str]:
    """A metadata object as str → str (lists joined with ','; nested objects dropped)."""
    if not isinstance(value, dict):
        return {}
    out: dict[str, str] = {}
    for key, item in list(value.items())[:50]:
        if isinstance(item, list):
            item = ",".join(text(v) for v in item if text(v))
        line = text(item)
        if line:
            out[text(key, 100)] = line
    return out


def bracketed(message_id: object) -> str:
    """A Message-ID with its angle brackets (providers store it with or without)."""
    value = text(message_id)
    if not value:
        return ""
    return value if value.startswith("<") else f"<{value}>"
