"""The store as a port: typed rows and the methods the rest of the code calls; no connection leaves a store.

Host-local facts (the parse cache, the feed files this host wrote, settings of the last pass) are kept
apart from shared facts (published posts and their ids, subscribers, digests, the send ledger, leases,
runs), so a shared database can serve several hosts while each keeps its own cache.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from datetime import datetime
from typing import NamedTuple, Protocol

# Rows are NamedTuples: typed, immutable, and cheap to define (a pass with nothing new imports this module).

LEDGER_STATES = ("pending", "sending", "sent", "failed", "unknown", "skipped")
SUBSCRIBER_STATES = ("active", "unsubscribed", "bounced", "pending")


class Published(NamedTuple):
    """A post as first published: its permanent id, first publication time (ISO 8601 UTC) and content hash,
    and the time of the pass that last saw its content change (ISO 8601 UTC, None if never edited)."""

    key: str
    post_id: str
    first_published: str
    content_hash: str
    edited: str | None = None


class NewPublished(NamedTuple):
    key: str
    post_id: str
    first_published: datetime
    content_hash: str
    title: str
    url: str
    categories: tuple[str, ...]
    adopted: bool = False  # older than the digest period on the first pass over a blog: never in a digest
    edited: datetime | None = None  # update_published: the pass that saw the change


class PublishedPost(NamedTuple):
    """What the store keeps of a published post for the digest and the subscription pages."""

    key: str
    title: str
    url: str
    categories: tuple[str, ...]
    first_published: datetime


class FeedRecord(NamedTuple):
    path: str
    fingerprint: str
    size: int
    mtime_ns: int
    entries: int


class FeedSlug(NamedTuple):
    """A category's feed slug, assigned once (like a post id) and changed only by an explicit rename."""

    category: str
    slug: str
    assigned: str  # ISO 8601 UTC


class FeedMove(NamedTuple):
    """A slug a category's feed used to have: its old files carry a notice pointing to the new address."""

    old_slug: str
    category: str
    moved: str  # ISO 8601 UTC


class Ping(NamedTuple):
    """A WebSub publish notification to send (or sent) to one hub for one feed URL."""

    hub: str
    feed_url: str
    state: str  # pending, sent or failed
    attempts: int
    queued: str  # ISO 8601 UTC: when the feed last changed
    next_attempt: str
    updated: str
    last_error: str = ""


class Subscriber(NamedTuple):
    id: int
    email: str
    name: str
    categories: tuple[str, ...]
    status: str
    joined: str


class Digest(NamedTuple):
    id: int
    period_start: str
    period_end: str
    subject: str
    posts: tuple[str, ...]
    status: str  # sending, done or missed
    created: str = ""  # when the digest was first created (the run's time, ISO 8601 UTC)


class LedgerEntry(NamedTuple):
    """A pending ledger row with its subscriber as they are now (status 'deleted' if the row is gone)."""

    subscriber: Subscriber
    attempts: int
    message_id: str | None
    batch_key: str | None
    updated: str = ""  # when the row last changed (after a refusal: when it was refused)


class Outcome(NamedTuple):
    """The state a ledger row moves to, with the provider's id or the error."""

    subscriber_id: int
    state: str
    provider_id: str = ""
    error: str = ""


class Problem(NamedTuple):
    email: str
    state: str
    attempts: int
    error: str
    provider_id: str = ""


class LeaseInfo(NamedTuple):
    owner: str
    expires: str
    fence: int = 0


class LeaseGrant(NamedTuple):
    """The answer to taking a lease: taken or not, who holds it now, until when, and its fencing token."""

    taken: bool
    owner: str
    expires: str
    fence: int


class Holder(NamedTuple):
    """Who acts on the ledger: the lease they hold (name, owner) and the fencing token it was granted with.
    Every claim and every batch about to be sent is checked against it in the same statement."""

    lease: str
    owner: str
    fence: int


class NewBatch(NamedTuple):
    """One provider request, frozen before it is made: its idempotency key and its members
    (subscriber id, Message-ID), in request order."""

    key: str
    members: tuple[tuple[int, str], ...]


class Claim(NamedTuple):
    """A batch held by one sender: state changes carry `fence` and are refused once another sender holds it.
    `created` is when the batch was frozen (its messages are rebuilt as of then, so a replay is identical);
    `maybe_sent` when a request for it first went unanswered (only an idempotent replay may follow)."""

    batch_id: int
    digest_id: int
    fence: int
    key: str
    created: str
    maybe_sent: str | None = None


class InDoubt(NamedTuple):
    """A ledger row whose message may or may not have been accepted, with what the provider can be asked by."""

    subscriber_id: int
    email: str
    message_id: str
    provider_id: str
    batch_key: str
    tried: str  # when the request was last made (ISO 8601 UTC)


class RunInfo(NamedTuple):
    finished: datetime
    summary: dict


class RateLimit(NamedTuple):
    """At most `limit` events in any `period` seconds for `bucket`; the allowance refills steadily (GCRA)."""

    bucket: str
    limit: int
    period: float


class PendingConfirmation(NamedTuple):
    """A sign-up waiting for its confirmation link: the address and the categories it asked for."""

    nonce: str
    email: str
    categories: tuple[str, ...]
    created: str
    expires: str


class LocalStore(Protocol):
    """Facts about this host's files: kept next to the files they describe."""

    def get_meta(self, name: str) -> str | None: ...
    def set_meta(self, name: str, value: str) -> None: ...
    def cached_posts(self) -> dict[str, tuple[int, int, bytes]]: ...
    def cached_records(self, keys: list[str]) -> dict[str, bytes]: ...
    def save_cache(self, rows: Iterable[tuple[str, int, int, bytes]], gone: Iterable[str]) -> None: ...
    def feed_files(self) -> dict[str, FeedRecord]: ...
    def save_feeds(self, records: Iterable[FeedRecord], removed: Iterable[str]) -> None: ...


class SharedStore(Protocol):
    """Facts every host shares: posts and their ids, subscribers, digests, the ledger, leases, runs."""

    def transaction(self) -> AbstractContextManager[None]: ...

    # published posts
    def published(self) -> dict[str, Published]: ...
    def record_published(self, rows: Iterable[NewPublished]) -> None: ...
    def update_published(self, rows: Iterable[NewPublished]) -> None: ...
    def published_between(self, start: datetime, end: datetime) -> list[PublishedPost]: ...  # adopted left out
    def published_posts(self, keys: list[str]) -> dict[str, PublishedPost]: ...
    def known_categories(self) -> list[str]: ...

    # feed slugs (assigned once) and moved feeds
    def feed_slugs(self) -> dict[str, FeedSlug]: ...
    def feed_moves(self) -> dict[str, FeedMove]: ...
    def record_slugs(self, rows: Iterable[FeedSlug]) -> None: ...
    def rename_slug(self, category: str, old: str, new: str, now: str) -> bool: ...

    # WebSub publish notifications
    def queue_pings(self, rows: Iterable[tuple[str, str]], now: str) -> None: ...
    def drop_pings(self, keep_hubs: Iterable[str]) -> int: ...
    def claim_pings(self, now: str, claim_until: str, limit: int) -> list[Ping]: ...
    def settle_ping(self, hub: str, feed_url: str, queued: str, state: str, next_attempt: str, error: str,
                    now: str) -> None: ...
    def next_ping_due(self) -> str | None: ...
    def pings(self, states: tuple[str, ...] = ("pending", "failed"), limit: int = 100) -> list[Ping]: ...
    def ping_counts(self) -> dict[str, int]: ...

    # runs
    def record_run(self, kind: str, started: datetime, finished: datetime, summary: dict) -> None: ...
    def last_run(self, kind: str) -> RunInfo | None: ...

    # subscribers
    def subscriber(self, email: str) -> Subscriber | None: ...
    def subscriber_by_id(self, subscriber_id: int) -> Subscriber | None: ...
    def insert_subscriber(self, email: str, name: str, categories: Iterable[str], status: str,
                          now: str) -> Subscriber: ...
    def update_subscriber(self, subscriber_id: int, name: str, categories: Iterable[str], status: str,
                          now: str) -> None: ...
    def set_subscriber_status(self, subscriber_id: int, status: str, now: str) -> None:
        """Set the status; unsubscribing also drops the address's pending sign-ups, so no older link undoes it."""
    def delete_subscriber(self, subscriber_id: int) -> None:
        """Forget the subscriber and the address's pending sign-ups."""
    def subscribers(self, status: str | None = None) -> Iterator[Subscriber]: ...
    def count_subscribers(self) -> dict[str, int]: ...
    def purge_pending(self, before: str) -> int: ...

    # digests and the send ledger
    def digest_for(self, period_end: str) -> Digest | None: ...
    def latest_digest(self) -> Digest | None: ...
    def create_digest(self, start: str, end: str, subject: str, keys: list[str], now: str) -> Digest: ...
    def unfinished_digests(self) -> list[Digest]: ...
    def mark_missed(self, start: str, end: str, now: str) -> None: ...
    def forget_missed(self, period_end: str) -> None: ...
    def finish_digest(self, digest_id: int) -> None: ...
    def pending_entries(self, digest_id: int, after: int, limit: int) -> list[LedgerEntry]: ...
    def settle(self, digest_id: int, outcomes: list[Outcome], holder: Holder, now: datetime) -> None: ...
    def ledger_counts(self, digest_id: int) -> dict[str, int]: ...
    def ledger_problems(self, digest_id: int, limit: int | None = 1000) -> list[Problem]: ...
    def skip_reasons(self, digest_id: int) -> dict[str, int]: ...

    # batches: one provider request each, frozen before it is made, claimed with a fencing token
    def recover_batches(self, digest_id: int, holder: Holder, idempotent: bool, replay_since: datetime | None,
                        now: datetime) -> int: ...
    def freeze_batches(self, digest_id: int, batches: list[NewBatch], holder: Holder, created: str,
                       now: datetime) -> list[Claim]: ...
    def claim_batch(self, digest_id: int, holder: Holder, now: datetime) -> Claim | None: ...
    def batch_members(self, batch_id: int) -> list[LedgerEntry]: ...
    def start_batch(self, claim: Claim, holder: Holder, now: datetime) -> None: ...
    def settle_batch(self, claim: Claim, outcomes: list[Outcome], now: datetime, reopen: bool = False,
                     maybe_sent: bool = False) -> None: ...
    def give_up(self, digest_id: int, reason: str, now: datetime) -> int: ...
    def reopen(self, digest_id: int, state: str, now: str) -> int: ...
    def in_doubt(self, digest_id: int) -> list[InDoubt]: ...
    def resolve(self, digest_id: int, outcomes: list[Outcome], now: str) -> None: ...

    # leases
    def take_lease(self, name: str, owner: str, now: datetime, seconds: float,
                   dead_owner: str | None = None) -> LeaseGrant: ...
    def drop_lease(self, name: str, owner: str, now: datetime) -> None: ...
    def lease(self, name: str) -> LeaseInfo | None: ...

    # the subscription pages: rate limits and pending sign-ups (all web state lives here, none in a process)
    def take_rates(self, limits: list[RateLimit], now: float) -> int | None: ...
    def add_confirmation(self, pending: PendingConfirmation) -> None: ...
    def pending_confirmation(self, nonce: str, now: str) -> PendingConfirmation | None: ...
    def confirm_signup(self, nonce: str, now: str) -> Subscriber | None: ...
    def purge_web_state(self, now: str, epoch: float) -> int: ...


class Store(LocalStore, SharedStore, Protocol):
    """Everything a run needs; `close()` releases the connections."""

    readonly: bool

    def close(self) -> None: ...
