"""Pace requests by what the provider says of its limits, so a send slows down before it is refused.

Understood headers: `Retry-After` (seconds or an HTTP date), SendGrid's and Mailgun's `X-RateLimit-Limit`,
`-Remaining` and `-Reset` (epoch seconds), and the IETF draft's `RateLimit-Limit`, `-Remaining` and `-Reset`
(seconds from now; Resend). With R requests left until the window resets in T seconds, requests are spaced
T / R apart; with none left, the next waits for the reset. One Pace is shared by every connection to the
same provider, so parallel senders slow down together.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime

EPOCH_CUTOFF = 1_000_000_000  # a reset above this is an epoch time, below it a number of seconds


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value.split(",")[0].split(";")[0].strip())
    except ValueError:
        return None
    return number if number >= 0 and number == number and number != float("inf") else None


def retry_after(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds to wait from Retry-After (seconds or an HTTP date), or None."""
    value = headers.get("retry-after")
    if not value:
        return None
    seconds = _number(value)
    if seconds is not None:
        return seconds
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def window(headers: Mapping[str, str], now: float) -> tuple[float, float] | None:
    """(requests remaining, seconds until the window resets) from either header family, or None."""
    for prefix in ("x-ratelimit-", "ratelimit-"):
        remaining, reset = _number(headers.get(prefix + "remaining")), _number(headers.get(prefix + "reset"))
        if remaining is None or reset is None:
            continue
        if reset > EPOCH_CUTOFF * 1000:
            reset = reset / 1000 - now  # epoch milliseconds
        elif reset > EPOCH_CUTOFF:
            reset = reset - now  # epoch seconds
        return remaining, max(0.0, reset)
    return None


class Pace:
    """When the next request to one provider may start; fed every answer's headers."""

    def __init__(self, max_wait: float = 60.0, clock: Callable[[], float] = time.time) -> None:
        self.max_wait = max_wait
        self.clock = clock
        self.next_at = 0.0
        self.lock = threading.Lock()

    def observe(self, headers: Mapping[str, str], refused: bool = False) -> float:
        """Take in an answer's headers; returns the delay the provider asked for (0 if none)."""
        now = self.clock()
        lower = {k.lower(): v for k, v in headers.items()}
        delay = 0.0
        hinted = retry_after(lower, now)
        if hinted is not None:
            delay = hinted
        limits = window(lower, now)
        if limits is not None:
            remaining, reset = limits
            if remaining < 1 or refused:
                delay = max(delay, reset)
            else:
                delay = max(delay, reset / remaining)  # spread what is left over the rest of the window
        delay = min(delay, self.max_wait)
        with self.lock:
            self.next_at = max(self.next_at, now + delay) if delay > 0 else self.next_at
        return delay

    def wait_time(self) -> float:
        """Seconds to wait before the next request (0 when it may go now); reserves nothing."""
        with self.lock:
            return max(0.0, self.next_at - self.clock())


_PACES: dict[str, Pace] = {}
_PACES_LOCK = threading.Lock()


def pace_for(key: str, max_wait: float) -> Pace:
    """The Pace shared by every transport talking to `key` (a provider and its API address) in this process."""
    with _PACES_LOCK:
        if key not in _PACES:
            _PACES[key] = Pace(max_wait)
        return _PACES[key]
