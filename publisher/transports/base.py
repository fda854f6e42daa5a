"""The transport protocol and the values every transport returns."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from ..errors import Interrupted, TransportError
from ..message import Outgoing

SENT, FAILED, RETRY, UNKNOWN = "sent", "failed", "retry", "unknown"
__all__ = ["FAILED", "RETRY", "SENT", "UNKNOWN", "Interrupted", "Lookup", "RateLimiter", "SendResult", "Transport",
           "TransportError", "backoff", "chunks", "interruptible_sleep"]
SLICE = 0.1  # seconds: how often a wait looks whether a stop was asked for


@dataclass(frozen=True, slots=True)
class SendResult:
    """What the server or provider answered about one message: sent, failed (permanent), retry (refused for
    now: counts as an attempt) or unknown (maybe sent). Outages, throttling and refused credentials are not
    results: the transport raises TransportError and no recipient is charged an attempt."""

    key: int
    status: str
    provider_id: str = ""
    error: str = ""


@dataclass(frozen=True, slots=True)
class Lookup:
    """A message whose fate is unknown, with everything the provider can be asked by."""

    key: int
    to: str
    message_id: str
    provider_id: str
    batch_key: str
    tried: str  # when its request was made (ISO 8601 UTC)


class Transport(Protocol):
    """Delivers messages. `requests` splits messages into the groups that go out in one request each (at most
    `batch_size`); `send` makes exactly one request for one such group, under `key` where the provider takes
    an idempotency key. `idempotent`: a repeated request cannot duplicate (within `replay_hours`, if set).
    `sleep` is how the transport waits between retries (the sender makes it interruptible)."""

    batch_size: int
    idempotent: bool
    sleep: Callable[[float], None]

    def requests(self, messages: Sequence[Outgoing]) -> list[tuple[Outgoing, ...]]: ...

    def send(self, messages: Sequence[Outgoing], key: str = "") -> list[SendResult]: ...

    def close(self) -> None: ...


def chunks(messages: Sequence[Outgoing], size: int) -> list[tuple[Outgoing, ...]]:
    return [tuple(messages[i:i + size]) for i in range(0, len(messages), size)]


def interruptible_sleep(should_stop: Callable[[], bool]) -> Callable[[float], None]:
    """A sleep that ends within a tenth of a second once `should_stop()` is true, raising Interrupted."""

    def sleep(seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while True:
            if should_stop():
                raise Interrupted()
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(SLICE, left))

    return sleep


class RateLimiter:
    """Spaces sends so no more than `rate` messages per second go out (0: no limit); thread-safe."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.next_time = time.monotonic()
        self.lock = threading.Lock()

    def wait(self, count: int = 1, sleep: Callable[[float], None] = time.sleep) -> None:
        if not self.interval:
            return
        with self.lock:
            now = time.monotonic()
            start = max(now, self.next_time)
            self.next_time = start + self.interval * count
        if start > now:
            sleep(start - now)


def backoff(attempt: int, base: float, cap: float = 60.0) -> float:
    """Exponential backoff delay before retry number `attempt` (1-based)."""
    return min(cap, base * (2 ** (attempt - 1)))
