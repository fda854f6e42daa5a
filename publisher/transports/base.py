"""The transport protocol and the values every transport returns."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from ..errors import TransportError
from ..message import Outgoing

SENT, FAILED, RETRY, UNKNOWN = "sent", "failed", "retry", "unknown"
__all__ = ["FAILED", "RETRY", "SENT", "UNKNOWN", "RateLimiter", "SendResult", "Transport", "TransportError", "backoff"]


@dataclass(frozen=True, slots=True)
class SendResult:
    """What happened to one message: sent, failed (permanent), retry (temporary) or unknown (maybe sent)."""

    key: int
    status: str
    provider_id: str = ""
    error: str = ""


class Transport(Protocol):
    """Delivers messages. `batch_size` messages at most per call; `idempotent` if a resend cannot duplicate."""

    batch_size: int
    idempotent: bool

    def send(self, messages: Sequence[Outgoing]) -> list[SendResult]: ...

    def close(self) -> None: ...


class RateLimiter:
    """Spaces sends so no more than `rate` messages per second go out (0: no limit); thread-safe."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.next_time = time.monotonic()
        self.lock = threading.Lock()

    def wait(self, count: int = 1) -> None:
        if not self.interval:
            return
        with self.lock:
            now = time.monotonic()
            start = max(now, self.next_time)
            self.next_time = start + self.interval * count
        if start > now:
            time.sleep(start - now)


def backoff(attempt: int, base: float, cap: float = 60.0) -> float:
    """Exponential backoff delay before retry number `attempt` (1-based)."""
    return min(cap, base * (2 ** (attempt - 1)))
