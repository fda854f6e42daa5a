"""Digest runs: plan the period, keep the send ledger, deliver each message exactly once or report it."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from .config import Config
from .digest import (
    PREFERENCES_MARK,
    UNSUBSCRIBE_MARK,
    DigestPost,
    DigestRenderer,
    RenderedDigest,
    last_slot,
    period_for,
    utc_stamp,
)
from .message import Outgoing, Skeleton, list_headers, message_id
from .pipeline import load_posts
from .posts import scan_posts
from .state import Store
from .subscribers import Subscriber
from .tokens import Secrets, make_token
from .transports.base import FAILED, RETRY, SENT, UNKNOWN, RateLimiter, SendResult, Transport, TransportError

PAGE = 200  # ledger rows read per query; messages are built a page at a time, so memory stays flat


@dataclass(slots=True)
class DigestPlan:
    """The digest for one scheduled slot: its period and the posts first published in it."""

    slot: datetime
    start: datetime
    end: datetime
    posts: list[DigestPost]

    @property
    def keys(self) -> list[str]:
        return [p.key for p in self.posts]


@dataclass(slots=True)
class DigestReport:
    plan: DigestPlan
    digest_id: int = 0
    already_done: bool = False
    sent_now: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    problems: list[tuple[str, str, int, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    stopped: bool = False
    error: str = ""


def _digest_posts(cfg: Config, store: Store, keys: list[str]) -> list[DigestPost]:
    """DigestPosts for the given keys, from the posts (cached parses) or, for deleted files, the store."""
    wanted = set(keys)
    posts = {}
    if wanted:
        sources = [s for s in scan_posts(cfg.posts_dir, cfg.posts.patterns) if s.key in wanted]
        found, _, _, _ = load_posts(cfg, store, sources)
        posts = {p.key: DigestPost.from_post(p) for p in found}
    missing = [k for k in keys if k not in posts]
    for key, (title, url, categories, first) in store.published_rows(missing).items():
        posts[key] = DigestPost(key, title, url, datetime.fromisoformat(first), "", "", 1,
                                tuple(json.loads(categories)))
    return [posts[k] for k in keys if k in posts]


def plan_digest(cfg: Config, store: Store, slot: datetime) -> DigestPlan:
    """The digest for `slot`: its posts are fixed when the digest is first created and reused after that."""
    start, end = period_for(cfg, slot)
    existing = store.digest_for(utc_stamp(end))
    if existing:
        keys = json.loads(existing[4])
    else:
        rows = store.published_between(utc_stamp(start), utc_stamp(end))
        keys = [row[0] for row in rows][: cfg.digest.max_posts]
    return DigestPlan(slot, start, end, _digest_posts(cfg, store, keys))


class MessageFactory:
    """Builds each subscriber's message from the render their category set shares."""

    def __init__(self, cfg: Config, renderer: DigestRenderer, secrets: Secrets, digest_id: int, now: datetime,
                 test: bool = False) -> None:
        self.cfg, self.renderer, self.secrets = cfg, renderer, secrets
        self.digest_id, self.now, self.test = digest_id, now, test
        self.warned: set[frozenset[str]] = set()
        self.skeletons: dict[int, Skeleton] = {}  # per render (the renderer keeps each render alive)
        self.warnings: list[str] = []

    def build(self, sub: Subscriber, mid: str | None = None) -> Outgoing | None:
        rendered = self.renderer.for_categories(sub.categories, test=self.test)
        if rendered is None:
            return None
        cfg = self.cfg
        issued = int(self.now.timestamp())
        unsubscribe = cfg.unsubscribe_url.format(
            token=make_token(self.secrets, sub.id, sub.email, "unsubscribe", issued))
        preferences = cfg.preferences_url.format(
            token=make_token(self.secrets, sub.id, sub.email, "preferences", issued))
        out = Outgoing(
            key=sub.id, to=sub.email, to_name=sub.name, sender=cfg.digest.from_address, subject=rendered.subject,
            html_body=None, text_body=None,
            message_id=mid or message_id(cfg.digest.from_address, self.digest_id, sub.id),
            headers=list_headers(cfg.list_id, cfg.site.title, unsubscribe, self.now, cfg.digest.reply_to),
            template=(rendered.html, rendered.text),
            links={UNSUBSCRIBE_MARK: unsubscribe, PREFERENCES_MARK: preferences},
        )
        if id(rendered) not in self.skeletons:
            self.skeletons[id(rendered)] = Skeleton(out)
        out.skeleton = self.skeletons[id(rendered)]
        self._check_size(sub, rendered, out)
        return out

    def _check_size(self, sub: Subscriber, rendered: RenderedDigest, out: Outgoing) -> None:
        key = frozenset(sub.categories)
        if key in self.warned:
            return
        self.warned.add(key)
        size = len(out.as_bytes())
        if out.too_large():
            which = ", ".join(sorted(key)) or "all categories"
            self.warnings.append(f"the digest for {which} is {size // 1024} KB; Gmail clips messages over 102 KB "
                                 f"— lower [digest] max_posts or shorten excerpts")


def _require_sender(cfg: Config) -> None:
    if "@" not in cfg.digest.from_address:
        from .errors import ConfigError

        raise ConfigError(cfg.source, "digest.from_address", "is needed to send: e.g. \"Site <news@example.com>\"")


def ensure_digest(cfg: Config, store: Store, plan: DigestPlan, now: datetime) -> tuple[int, bool]:
    """The digest row for the plan (created with its ledger if new); (id, already done)."""
    existing = store.digest_for(utc_stamp(plan.end))
    if existing:
        return existing[0], existing[5] == "done"
    subject = cfg.digest.subject.format(site=cfg.site.title, start=plan.start, end=plan.end, count=len(plan.posts))
    return store.create_digest(utc_stamp(plan.start), utc_stamp(plan.end), subject, plan.keys, utc_stamp(now)), False


def send_digest(cfg: Config, store: Store, transport_factory: Callable[[], Transport], now: datetime,
                slot: datetime | None = None, progress: Callable[[int, int], None] | None = None,
                should_stop: Callable[[], bool] = lambda: False, by_hand: bool = False) -> DigestReport:
    """Send (or resume) the digest for `slot` (default: the latest slot at or before `now`). By hand, a
    period the scheduler skipped as missed is sent all the same."""
    _require_sender(cfg)
    secrets = Secrets.from_env(cfg.digest.token_secret_env)
    slot = slot or last_slot(cfg, now)
    if by_hand:
        store.forget_missed(utc_stamp(period_for(cfg, slot)[1]))
    plan = plan_digest(cfg, store, slot)
    report = DigestReport(plan)
    report.digest_id, report.already_done = ensure_digest(cfg, store, plan, now)
    if not report.already_done:
        renderer = DigestRenderer(cfg, plan.posts, plan.start, plan.end)
        factory = MessageFactory(cfg, renderer, secrets, report.digest_id, now)
        _Delivery(cfg, store, transport_factory, factory, report, progress, should_stop).run()
        report.warnings = factory.warnings
    _fill_counts(store, report)
    return report


def _fill_counts(store: Store, report: DigestReport) -> None:
    report.counts = store.ledger_counts(report.digest_id)
    report.skipped = store.skip_reasons(report.digest_id)
    report.problems = store.ledger_problems(report.digest_id)


class _Delivery:
    """Walks the ledger in subscriber order: skip, build, commit 'sending', send, record the outcome."""

    def __init__(self, cfg: Config, store: Store, transport_factory: Callable[[], Transport],
                 factory: MessageFactory, report: DigestReport, progress: Callable[[int, int], None] | None,
                 should_stop: Callable[[], bool]) -> None:
        self.cfg, self.store, self.factory, self.report = cfg, store, factory, report
        self.digest_id = report.digest_id
        self.progress, self.should_stop = progress, should_stop
        self.limiter = RateLimiter(cfg.digest.rate)
        workers = cfg.digest.concurrency
        self.transports = [transport_factory() for _ in range(workers)]
        self.free = list(self.transports)
        self.done = 0
        self.total = sum(store.ledger_counts(self.digest_id).get(s, 0) for s in ("pending", "sending"))

    def now(self) -> str:
        return datetime.now(UTC).isoformat()

    def run(self) -> None:
        idempotent = self.transports[0].idempotent
        self.store.recover_sending(self.digest_id, idempotent, self.now())
        size = self.transports[0].batch_size
        cursor = 0
        queue: list[Outgoing] = []
        exhausted = False
        in_flight: dict[Future, tuple[Transport, list[Outgoing]]] = {}
        pool = ThreadPoolExecutor(max_workers=len(self.transports)) if len(self.transports) > 1 else None
        try:
            while True:
                while self.free and not self.should_stop() and not self.report.error:
                    if not queue and not exhausted:
                        queue, cursor, exhausted = self._next_page(cursor, max(size, PAGE))
                        continue
                    if not queue:
                        break
                    batch, queue = queue[:size], queue[size:]
                    transport = self.free.pop()
                    self._mark_sending(batch)
                    self.limiter.wait(len(batch))
                    if pool is None:
                        self._settle(transport, batch, self._call(transport, batch))
                    else:
                        in_flight[pool.submit(self._call, transport, batch)] = (transport, batch)
                if not in_flight:
                    break
                finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in finished:
                    transport, batch = in_flight.pop(future)
                    self._settle(transport, batch, future.result())
        finally:
            if pool is not None:
                pool.shutdown(wait=True)
            for transport in self.transports:
                transport.close()
        self.report.stopped = self.should_stop()
        counts = self.store.ledger_counts(self.digest_id)
        if not counts.get("pending") and not counts.get("sending") and not self.report.error:
            self.store.finish_digest(self.digest_id)

    def _next_page(self, cursor: int, size: int) -> tuple[list[Outgoing], int, bool]:
        """Messages for the next pending rows after subscriber id `cursor`; (messages, cursor, no more rows)."""
        rows = self.store.pending_rows(self.digest_id, cursor, size)
        if not rows:
            return [], cursor, True
        batch, settled = [], []
        for sid, email, name, categories, status, attempts, mid, _ in rows:
            sub = Subscriber(sid, email, name, tuple(json.loads(categories)), status, "")
            if status != "active":  # re-checked at send time: an unsubscribe always wins
                settled.append((sid, "skipped", "", f"subscriber is {status}"))
            elif attempts >= self.cfg.digest.max_attempts:
                settled.append((sid, "failed", "", f"gave up after {attempts} attempts"))
            else:
                message = self.factory.build(sub, mid)
                if message is None:
                    settled.append((sid, "skipped", "", "nothing new in their categories"))
                else:
                    batch.append(message)
        if settled:
            self.store.settle(self.digest_id, settled, self.now())
            self._advance(len(settled))
        return batch, rows[-1][0], len(rows) < size

    def _mark_sending(self, batch: list[Outgoing]) -> None:
        key = batch[0].message_id
        self.store.mark_sending(self.digest_id, [(m.key, m.message_id, key) for m in batch], self.now())

    def _call(self, transport: Transport, batch: list[Outgoing]) -> list[SendResult] | TransportError:
        try:
            return transport.send(batch)
        except TransportError as exc:
            return exc

    def _settle(self, transport: Transport, batch: list[Outgoing], outcome: list[SendResult] | TransportError) -> None:
        self.free.append(transport)
        results = outcome.results if isinstance(outcome, TransportError) else outcome
        by_key = {r.key: r for r in results}
        rows = []
        for message in batch:
            result = by_key.get(message.key)
            if result is None:  # never attempted: the transport stopped before it
                rows.append((message.key, "pending", "", str(outcome) if isinstance(outcome, Exception) else ""))
                continue
            state = {SENT: "sent", FAILED: "failed", UNKNOWN: "unknown", RETRY: "pending"}[result.status]
            rows.append((message.key, state, result.provider_id, result.error))
            self.report.sent_now += result.status == SENT
        self.store.settle(self.digest_id, rows, self.now())
        self._advance(len(results))
        if isinstance(outcome, TransportError):
            self.report.error = str(outcome)

    def _advance(self, count: int) -> None:
        self.done += count
        if self.progress:
            self.progress(self.done, self.total)


@dataclass(slots=True)
class DryRun:
    plan: DigestPlan
    already_done: bool
    recipients: int = 0
    nothing_new: int = 0
    by_categories: list[tuple[str, int, int, int]] = field(default_factory=list)  # (set, subscribers, posts, bytes)


def dry_run_digest(cfg: Config, store: Store, now: datetime, slot: datetime | None = None) -> DryRun:
    """Who would get what for the slot: recipients, post counts and message sizes; nothing sent or recorded."""
    plan = plan_digest(cfg, store, slot or last_slot(cfg, now))
    existing = store.digest_for(utc_stamp(plan.end))
    result = DryRun(plan, bool(existing and existing[5] == "done"))
    renderer = DigestRenderer(cfg, plan.posts, plan.start, plan.end)
    factory = MessageFactory(cfg, renderer, Secrets.from_env(cfg.digest.token_secret_env, required=False), 0, now)
    groups: Counter[frozenset[str]] = Counter()
    for row in store.subscribers("active"):
        groups[frozenset(json.loads(row[3]))] += 1
    for categories, count in sorted(groups.items(), key=lambda kv: sorted(kv[0])):
        sample = Subscriber(0, "preview@example.com", "", tuple(sorted(categories)), "active", "")
        message = factory.build(sample) if cfg.digest.from_address else None
        rendered = renderer.for_categories(categories)
        if rendered is None:
            result.nothing_new += count
            continue
        result.recipients += count
        size = len(message.as_bytes()) if message else len(rendered.html.encode()) + len(rendered.text.encode())
        result.by_categories.append((", ".join(sorted(categories)) or "(all)", count, rendered.post_count, size))
    return result


def preview_digest(cfg: Config, store: Store, now: datetime, folder: Path,
                   slot: datetime | None = None) -> list[Path]:
    """Write the digest's HTML and text, and one .eml per sample recipient, into `folder`."""
    from .feeds import write_if_changed
    from .transports.file import FileTransport

    plan = plan_digest(cfg, store, slot or last_slot(cfg, now))
    renderer = DigestRenderer(cfg, plan.posts, plan.start, plan.end)
    secrets = Secrets.from_env(cfg.digest.token_secret_env, required=False)
    factory = MessageFactory(cfg, renderer, secrets, 0, now)
    samples = _sample_subscribers(cfg, store)
    written: list[Path] = []
    everything = Subscriber(0, "preview@example.com", "Preview", (), "active", "")
    first = factory.build(everything)
    if first is None:
        return written
    written += [folder / "digest.html", folder / "digest.txt"]
    write_if_changed(written[0], first.html.encode())
    write_if_changed(written[1], first.text.encode())
    outbox = FileTransport(folder)
    for sub in samples:
        message = factory.build(sub)
        if message is not None:
            outbox.send([message])
            written.append(outbox.path_for(message))
    return written


def _sample_subscribers(cfg: Config, store: Store) -> list[Subscriber]:
    subs = []
    for address in cfg.digest.sample_recipients:
        row = store.subscriber(address)
        subs.append(Subscriber.from_row(row) if row else Subscriber(0, address, "", (), "active", ""))
    if not subs:
        for row in store.subscribers("active"):
            subs.append(Subscriber.from_row(row))
            if len(subs) == 3:
                break
    return subs or [Subscriber(0, "preview@example.com", "Preview", (), "active", "")]


def send_test(cfg: Config, store: Store, transport: Transport, now: datetime, address: str,
              slot: datetime | None = None) -> SendResult | None:
    """One message to one address, subject marked as a test; not recorded in the ledger."""
    _require_sender(cfg)
    plan = plan_digest(cfg, store, slot or last_slot(cfg, now))
    renderer = DigestRenderer(cfg, plan.posts, plan.start, plan.end)
    factory = MessageFactory(cfg, renderer, Secrets.from_env(cfg.digest.token_secret_env, required=False), 0,
                             now, test=True)
    row = store.subscriber(address)
    sub = Subscriber.from_row(row) if row else Subscriber(0, address, "", (), "active", "")
    message = factory.build(Subscriber(sub.id, address, sub.name, sub.categories, "active", sub.joined))
    if message is None:
        return None
    try:
        return transport.send([message])[0]
    finally:
        transport.close()
