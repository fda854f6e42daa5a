"""WebSub (W3C Recommendation) publishing: tell each configured hub which feeds changed, so readers that
subscribed through the hub get new posts at once instead of at their next poll.

A pass queues one ping per (hub, changed feed) in the store; `deliver` sends the due ones as form-encoded
`hub.mode=publish&hub.topic=<feed URL>&hub.url=<feed URL>` POSTs, retries temporary failures with exponential
backoff, and records every outcome. Bookkeeping uses the wall clock (not a pass's --now), since pings happen in
real time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from ..config import Config
from ..store.base import Ping, SharedStore

MAX_BACKOFF = 3600.0
PARALLEL = 4  # requests in flight at once
ERROR_BYTES = 2048  # read at most this much of a refusal, for the error message
USER_AGENT = "publisher (WebSub publisher)"


def stamp(when: datetime) -> str:
    """A time as the ping table keeps it: UTC, microseconds always written, so strings sort as times."""
    return when.astimezone(UTC).isoformat(timespec="microseconds")


def utcnow() -> datetime:
    return datetime.now(UTC)


def queue_pings(cfg: Config, store: SharedStore, urls: Iterable[str]) -> int:
    """Queue a ping to every configured hub for each feed URL that changed; how many were queued."""
    rows = [(hub, url) for url in urls for hub in cfg.feeds.websub_hubs]
    if rows:
        store.queue_pings(rows, stamp(utcnow()))
    return len(rows)


@dataclass(slots=True)
class PingReport:
    """What one delivery round did."""

    sent: int = 0
    retrying: list[tuple[Ping, str]] = field(default_factory=list)  # failed for now, left pending
    failed: list[tuple[Ping, str]] = field(default_factory=list)  # given up
    pending: int = 0  # still pending when the round ended


@dataclass(frozen=True, slots=True)
class Outcome:
    ok: bool
    permanent: bool = False
    error: str = ""
    retry_after: float = 0.0


def _retry_after(value: str | None) -> float:
    try:
        return max(0.0, float(value)) if value else 0.0
    except ValueError:
        return 0.0


def publish_form(feed_url: str) -> dict[str, str]:
    """The publish notification's form. The Recommendation leaves it to the hubs: Google's and Superfeedr's read
    `hub.url`, WebSubHub, Flask-WebSub and other W3C-era hubs `hub.topic`; naming the feed both ways suits all."""
    return {"hub.mode": "publish", "hub.topic": feed_url, "hub.url": feed_url}


def send_ping(client, ping: Ping, timeout: float) -> Outcome:
    """One publish notification; 2xx is success, 408/425/429/5xx and network errors are temporary, any other
    answer is permanent (the hub refuses this feed), and so is a redirect that turns the POST into a GET (307
    and 308 keep it). At most ERROR_BYTES of the answer are read."""
    import httpx

    started = time.monotonic()
    try:
        with client.stream("POST", ping.hub, data=publish_form(ping.feed_url), timeout=timeout) as resp:
            status, retry_after = resp.status_code, resp.headers.get("retry-after")
            if resp.request.method != "POST":  # a 301/302/303 made the ping a GET that tells the hub nothing
                first = resp.history[0].status_code if resp.history else status
                return Outcome(False, True, f"HTTP {first}: the hub redirected the ping to {resp.url}, where it "
                               "became a GET; set [feeds] websub_hubs to the address that takes the POST")
            body = b""
            if not 200 <= status < 300:
                for chunk in resp.iter_bytes():
                    body += chunk
                    if len(body) >= ERROR_BYTES or time.monotonic() - started > timeout:
                        break
    except httpx.HTTPError as exc:
        return Outcome(False, error=f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
    if 200 <= status < 300:
        return Outcome(True)
    text = " ".join(body[:ERROR_BYTES].decode("utf-8", "replace").split())[:200]
    error = f"HTTP {status}" + (f": {text}" if text else "")
    temporary = status in (408, 425, 429) or status >= 500
    return Outcome(False, not temporary, error, _retry_after(retry_after))


def send_all(client, pings: list[Ping], timeout: float) -> list[Outcome]:
    """Send pings PARALLEL at a time, each given at most twice its timeout whatever the hub does (a hub that
    trickles its answer is left behind in a daemon thread and counted as a temporary failure)."""
    limit = 2 * timeout + 1
    results: list[Outcome | None] = [None] * len(pings)

    def work(i: int) -> None:
        results[i] = send_ping(client, pings[i], timeout)

    threads = [threading.Thread(target=work, args=(i,), daemon=True, name="websub-ping") for i in range(len(pings))]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + limit
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return [r if r is not None else Outcome(False, error=f"no answer within {limit:.0f} s") for r in results]


def _settle(cfg: Config, store: SharedStore, ping: Ping, outcome: Outcome, report: PingReport) -> None:
    now = utcnow()
    if outcome.ok:
        store.settle_ping(ping.hub, ping.feed_url, ping.queued, "sent", stamp(now), "", stamp(now))
        report.sent += 1
        return
    too_old = now - datetime.fromisoformat(ping.queued) > timedelta(hours=cfg.feeds.websub_give_up_hours)
    if outcome.permanent or too_old:
        store.settle_ping(ping.hub, ping.feed_url, ping.queued, "failed", stamp(now), outcome.error, stamp(now))
        report.failed.append((ping, outcome.error))
        return
    delay = min(MAX_BACKOFF, cfg.feeds.websub_retry_delay * 2 ** max(0, ping.attempts - 1))
    delay = min(MAX_BACKOFF, max(delay, outcome.retry_after))
    store.settle_ping(ping.hub, ping.feed_url, ping.queued, "pending", stamp(now + timedelta(seconds=delay)),
                      outcome.error, stamp(now))
    report.retrying.append((ping, outcome.error))


def _sweep(cfg: Config, store: SharedStore, client, report: PingReport, deadline: float | None,
           stop: threading.Event | None) -> None:
    """Send the pings due now, PARALLEL at a time, until none is due, `deadline` (monotonic) has passed or
    `stop` is set; at least one round is sent unless stopped first."""
    for _ in range(100_000):  # bounded: each round claims (and so moves forward) up to PARALLEL pings
        if stop is not None and stop.is_set():
            return
        now = utcnow()
        claim_until = now + timedelta(seconds=4 * cfg.feeds.websub_timeout + 5)
        claimed = store.claim_pings(stamp(now), stamp(claim_until), PARALLEL)
        if not claimed:
            return
        for ping, outcome in zip(claimed, send_all(client, claimed, cfg.feeds.websub_timeout), strict=True):
            _settle(cfg, store, ping, outcome, report)
        if deadline is not None and time.monotonic() >= deadline:
            return


def deliver(cfg: Config, store: SharedStore, budget: float | None = None, stop: threading.Event | None = None,
            client=None) -> PingReport:
    """Send the due pings. With a budget (one-shot `publish`), keep sending and retrying failed ones (backoff)
    until `budget` seconds have passed, the last round taking at most one request's time limit more; without
    one (`publish serve`'s sender), send every ping due now and return. Never raises for a hub's failure:
    outcomes are recorded in the store and returned."""
    import httpx

    report = PingReport()
    own = client is None
    if client is None:
        client = httpx.Client(follow_redirects=True, headers={"User-Agent": USER_AGENT})
    deadline = None if budget is None else time.monotonic() + budget
    try:
        for _ in range(10_000):  # bounded: each round sends, or waits for the next retry, or stops
            _sweep(cfg, store, client, report, deadline, stop)
            due = store.next_ping_due()
            if due is None or deadline is None or (stop is not None and stop.is_set()):
                break
            wait = (datetime.fromisoformat(due) - utcnow()).total_seconds()
            if wait > deadline - time.monotonic():
                break
            if wait > 0 and (stop.wait(wait) if stop is not None else time.sleep(wait)):
                break
    finally:
        if own:
            client.close()
    report.pending = store.ping_counts().get("pending", 0)
    return report
