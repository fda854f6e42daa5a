"""The one orchestrator: read → select → feeds → record → digest. The CLI and the scheduler both call
`run_pass`; it returns a report (data) that they render."""

from __future__ import annotations

import hashlib
import json
import marshal
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from ..app import App
from ..errors import EXIT_FAILED, Finding, PublisherError
from ..feeds.build import Entries, settings_signature
from ..feeds.slugs import SlugPlan, assign_slugs, categories_in_order
from ..feeds.update import FeedChanges, feeds_intact, update_feeds
from ..reading.load import decode_record, load_posts, reader_signature, render_posts
from ..reading.posts import Post, ReaderSettings, SourceFile, site_posts
from ..selection import Held, mint_post_id, select_posts
from ..store.base import Digest, Holder, NewPublished, Store

if TYPE_CHECKING:
    import threading

    from ..feeds.websub import PingReport


@dataclass(slots=True)
class ScheduledDigest:
    """What a pass did about the weekly digest."""

    slot: datetime
    action: str  # "sent", "would-send", "missed" (too late, skipped) or "gave-up" (unsent after give_up_hours)
    sent_now: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    recipients: int = 0  # would-send: messages; posts: the digest's posts
    nothing_new: int = 0
    posts: int = 0
    warnings: list[str] = field(default_factory=list)
    stopped: bool = False
    error: str = ""
    error_code: int = EXIT_FAILED  # the exit code of the error that stopped it, as the command itself would exit
    given_up: int = 0

    @property
    def unfinished(self) -> int:
        return self.counts.get("pending", 0) + self.counts.get("sending", 0)


@dataclass(slots=True)
class PassReport:
    """What one pass did (or, in a dry run, would do)."""

    now: datetime
    dry_run: bool
    posts_read: int = 0
    new: list[tuple[Post, str]] = field(default_factory=list)
    changed: list[Post] = field(default_factory=list)
    held: list[Held] = field(default_factory=list)
    rejected: list[Finding] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    feeds: FeedChanges = field(default_factory=FeedChanges)
    pings_queued: int = 0  # WebSub pings queued for the feeds this pass changed (sent after the pass)
    digest: ScheduledDigest | None = None
    adopted: set[str] = field(default_factory=set)  # keys of new posts adopted as a blog's back catalogue
    adopted_before: datetime | None = None  # the start of the next digest's period, on an adopting pass
    earlier: list[ScheduledDigest] = field(default_factory=list)  # older digests resumed or given up

    @property
    def digest_error(self) -> str:
        return next((d.error for d in self.digests if d.error), "")

    @property
    def digests(self) -> list[ScheduledDigest]:
        return self.earlier + ([self.digest] if self.digest else [])

    def summary(self) -> dict[str, int]:
        return {"new": len(self.new), "changed": len(self.changed), "feeds_written": len(self.feeds.written),
                "feeds_removed": len(self.feeds.removed), "feeds_unchanged": self.feeds.unchanged,
                "held": len(self.held), "rejected": len(self.rejected), "posts": self.posts_read}


def run_pass(app: App, dry_run: bool = False, store: Store | None = None, with_digest: bool = True,
             should_stop: Callable[[], bool] = lambda: False, holder: Holder | None = None,
             feeds_done: Callable[[PassReport], None] = lambda report: None) -> PassReport:
    """One publishing pass at `app.now()`: publish what came due, rebuild changed feeds, record it, and send
    the weekly digest when its time has come (resuming any digest still unfinished), acting under `holder`'s
    lease. `feeds_done` is called once the feeds are written and recorded (before the digest): `publish
    serve` wakes its WebSub sender there."""
    cfg = app.cfg
    now = app.now()
    own_store = store is None
    if store is None:
        store = app.open_store(readonly=dry_run)
    try:
        report = _run(app, now, dry_run, store)
        feeds_done(report)
        if not dry_run:
            store.purge_pending((now - timedelta(hours=cfg.web.confirm_hours)).astimezone(UTC).isoformat())
            store.purge_web_state(now.astimezone(UTC).isoformat(), now.timestamp())
        if with_digest and cfg.digest.enabled:
            if not dry_run:
                report.earlier = resume_earlier(app, store, now, should_stop, holder)
            report.digest = scheduled_digest(app, store, now, dry_run, should_stop, holder)
        return report
    except OSError as exc:
        raise PublisherError(f"{exc.filename or cfg.feeds_dir}: {exc.strerror}",
                             "check that the feeds folder is writable") from None
    finally:
        if own_store:
            store.close()


def _snapshot(sources: list[SourceFile], signature: str, store: Store) -> str:
    """A digest of every post file's path, size and mtime, the settings and the feed slugs (a rename changes
    them): equal means nothing changed."""
    # marshal format 2: no back-references, so the bytes depend on the values only (format 3 and later mark
    # objects shared elsewhere in the process, which differ between the start and the end of a pass)
    digest = hashlib.blake2b(signature.encode(), digest_size=16)
    digest.update(marshal.dumps([tuple(s[:1]) + tuple(s[2:]) for s in sources], 2))
    digest.update(marshal.dumps(sorted((r.category, r.slug) for r in store.feed_slugs().values()), 2))
    digest.update(marshal.dumps(sorted((m.old_slug, m.category) for m in store.feed_moves().values()), 2))
    return digest.hexdigest()


def _quick_pass(app: App, store: Store, snapshot: str, now: datetime, report: PassReport) -> bool:
    """Answer a pass from the last one when no file, setting or feed changed and no held post came due."""
    last = store.get_meta("last_pass")
    if last is None:
        return False
    last = json.loads(last)
    if last["snapshot"] != snapshot or (last["next_due"] and now >= datetime.fromisoformat(last["next_due"])):
        return False
    intact, count = feeds_intact(app.cfg, store)
    if not intact:
        return False
    records = store.cached_records(last["held"] + last["rejected"])
    if len(records) != len(last["held"]) + len(last["rejected"]):
        return False
    for key in last["held"]:
        post = decode_record(records[key])
        assert isinstance(post, Post)
        report.held.append(Held(post, None if post.draft else post.date))
    report.rejected = [decode_record(records[key]) for key in last["rejected"]]  # type: ignore[misc]
    report.feeds.unchanged = count
    return True


def _remember_pass(store: Store, snapshot: str, report: PassReport, rejected_keys: list[str]) -> None:
    due = [h.due for h in report.held if h.due is not None]
    store.set_meta("last_pass", json.dumps({
        "snapshot": snapshot, "next_due": min(due).isoformat() if due else None,
        "held": [h.post.key for h in report.held], "rejected": rejected_keys}))


def _run(app: App, now: datetime, dry_run: bool, store: Store) -> PassReport:
    cfg = app.cfg
    started = datetime.now(cfg.tz)
    report = PassReport(now=now, dry_run=dry_run)
    reader_sig = reader_signature(cfg)
    signature = settings_signature(cfg, reader_sig)
    sources = site_posts(cfg)  # a missing posts folder is an error: a typo here must not empty every feed
    report.posts_read = len(sources)
    snapshot = _snapshot(sources, signature, store)
    if _quick_pass(app, store, snapshot, now, report):
        if not dry_run:
            store.record_run("publish", started, datetime.now(cfg.tz), report.summary())
        return report
    settings = ReaderSettings.from_config(cfg)
    loaded = load_posts(settings, store, sources, reader_sig)
    report.rejected = loaded.rejected
    if not dry_run and (loaded.fresh or loaded.gone or store.get_meta("reader_signature") != reader_sig):
        store.save_cache(loaded.fresh, loaded.gone)
        store.set_meta("reader_signature", reader_sig)
    published = store.published()
    selection = select_posts(loaded.posts, published, now)
    report.held = list(selection.held)
    report.changed = list(selection.changed)
    report.findings = [f for p in selection.new for f in p.findings if f.severity != "info"]
    ids = {key: rec.post_id for key, rec in published.items()}
    taken = set(ids.values())
    report.adopted_before = adoption_cutoff(app, now) if not published else None
    for post in selection.new:
        post_id = mint_post_id(post, cfg.site.base_url, taken)
        taken.add(post_id)
        ids[post.key] = post_id
        report.new.append((post, post_id))
        if report.adopted_before is not None and post.date < report.adopted_before:
            report.adopted.add(post.key)

    def render(posts: list[Post]):
        return render_posts(settings, str(cfg.posts_dir), posts, cfg.feeds.content == "full")

    slugs = _slugs(app, store, selection.live)
    edited = {key: datetime.fromisoformat(rec.edited) for key, rec in published.items() if rec.edited}
    edited.update((p.key, now.astimezone(UTC)) for p in report.changed)  # the pass that saw the change dates it
    entries = Entries(ids, edited)
    report.feeds = update_feeds(cfg, store, selection.live, entries, slugs, signature, render, dry_run)
    report.pings_queued = len(report.feeds.changed_urls) * len(cfg.feeds.websub_hubs)
    if dry_run:
        return report
    with store.transaction():
        store.record_slugs(slugs.new)
        store.record_published(NewPublished(p.key, pid, now, p.content_hash, p.title, p.url, p.categories,
                                            p.key in report.adopted) for p, pid in report.new)
        store.update_published(NewPublished(p.key, ids[p.key], now, p.content_hash, p.title, p.url, p.categories,
                                            edited=now) for p in report.changed)
    with store.transaction():  # the feeds written and the hubs to tell of them: recorded together
        store.save_feeds(report.feeds.records, report.feeds.removed_relpaths)
        store.drop_pings(cfg.feeds.websub_hubs)  # a hub taken out of the config hears nothing more
        if cfg.feeds.websub_hubs and report.feeds.changed_urls:
            from ..feeds.websub import queue_pings

            queue_pings(cfg, store, report.feeds.changed_urls)  # sent after the pass: see notify_hubs
    rejected_paths = {f.path for f in report.rejected}
    rejected_keys = [s.key for s in sources if s.path in rejected_paths]
    if slugs.new:  # the snapshot covers the slugs: take it as this pass leaves them
        snapshot = _snapshot(sources, signature, store)
    _remember_pass(store, snapshot, report, rejected_keys)
    store.record_run("publish", started, datetime.now(cfg.tz), report.summary())
    return report


def adoption_cutoff(app: App, now: datetime) -> datetime | None:
    """On the first pass over an empty state ([digest] adopt_existing): posts dated before the start of the
    next digest's period are a blog's back catalogue, published but not news for any digest."""
    if not app.cfg.digest.adopt_existing:
        return None
    from ..digest.schedule import next_slot, period_for

    return period_for(app.cfg, next_slot(app.cfg, now))[0]


def _slugs(app: App, store: Store, live: tuple[Post, ...]) -> SlugPlan:
    """Every category's feed slug: kept from the store, new ones assigned (recorded with the pass)."""
    stored = store.feed_slugs()
    # Category feeds written before slugs were kept: adopt the names they have, so their URLs stay.
    adopt = not stored and any(path.startswith("category/") for path in store.feed_files())
    now = app.now().astimezone(UTC).isoformat()
    return assign_slugs(categories_in_order(live), stored, store.feed_moves(), app.cfg.feeds.category_slugs, now,
                        adopt=adopt)


def notify_hubs(app: App, budget: float, stop: threading.Event | None = None) -> PingReport | None:
    """Send the WebSub pings the passes queued (and earlier failures now due) for at most `budget` seconds;
    None when no hub is configured. Undelivered pings stay in the store for the next call."""
    if not app.cfg.feeds.websub_hubs:
        return None
    from ..feeds.websub import deliver

    store = app.open_store()
    try:
        return deliver(app.cfg, store, budget=budget, stop=stop)
    finally:
        store.close()


def scheduled_digest(app: App, store: Store, now: datetime, dry_run: bool,
                     should_stop: Callable[[], bool] = lambda: False,
                     holder: Holder | None = None) -> ScheduledDigest | None:
    """The digest of the latest slot: resumed if started and not done (until [digest] give_up_hours), sent if
    it is due and found within the catch-up window, recorded as missed if found too late."""
    from ..digest.schedule import last_slot, late_by, period_for, utc_stamp

    cfg = app.cfg
    slot = last_slot(cfg, now)
    existing = store.digest_for(utc_stamp(period_for(cfg, slot)[1]))
    if existing and existing.status in ("done", "missed"):
        return None
    if not existing and not store.count_subscribers().get("active"):
        return None
    if existing and not dry_run:
        return _resume(app, store, existing, now, should_stop, holder)
    if not existing and late_by(now, slot) > timedelta(hours=cfg.digest.catch_up_hours):
        if not dry_run:
            start, end = period_for(cfg, slot)
            store.mark_missed(utc_stamp(start), utc_stamp(end), utc_stamp(now))
        return ScheduledDigest(slot, "missed")
    return _send(app, store, slot, now, dry_run, should_stop, holder)


def resume_earlier(app: App, store: Store, now: datetime, should_stop: Callable[[], bool],
                   holder: Holder | None) -> list[ScheduledDigest]:
    """Digests of earlier slots still unfinished (a send interrupted, an outage): resumed, or given up once
    [digest] give_up_hours have passed."""
    from ..digest.delivery import slot_of
    from ..digest.schedule import last_slot, period_for, utc_stamp

    latest = utc_stamp(period_for(app.cfg, last_slot(app.cfg, now))[1])
    return [_resume(app, store, digest, now, should_stop, holder)
            for digest in store.unfinished_digests() if digest.period_end != latest
            and slot_of(app.cfg, digest) < now]


def _resume(app: App, store: Store, digest: Digest, now: datetime, should_stop: Callable[[], bool],
            holder: Holder | None) -> ScheduledDigest:
    from ..digest.delivery import give_up_if_expired, slot_of

    slot = slot_of(app.cfg, digest)
    try:
        given_up = give_up_if_expired(app.cfg, store, digest, now)
    except PublisherError as exc:
        return ScheduledDigest(slot, "sent", error=str(exc), error_code=exc.exit_code)
    if given_up is not None:
        return ScheduledDigest(slot, "gave-up", counts=store.ledger_counts(digest.id), given_up=given_up)
    return _send(app, store, slot, now, False, should_stop, holder)


def _send(app: App, store: Store, slot: datetime, now: datetime, dry_run: bool, should_stop: Callable[[], bool],
          holder: Holder | None) -> ScheduledDigest:
    cfg = app.cfg
    # only when a digest is due: most passes never import the digest stage
    from ..digest.delivery import send_digest
    from ..digest.job import prepare_digest
    from ..digest.preview import dry_run_digest

    try:
        if dry_run:
            app.check_ready_to_send()  # what the real pass would refuse, the dry run refuses too
            dry = dry_run_digest(cfg, store, prepare_digest(cfg, store, slot), app.preview_secrets, now)
            return ScheduledDigest(slot, "would-send", recipients=dry.recipients, nothing_new=dry.nothing_new,
                                   posts=len(dry.job.posts))
        if holder is None:
            raise PublisherError("a digest is sent only under the lock", "take the lease first (a bug if seen)")
        started = datetime.now(UTC)
        result = send_digest(cfg, store, app.secrets, app.transport, now, slot, should_stop=should_stop,
                             holder=holder)
        store.record_run("digest", started, datetime.now(UTC), {"sent": result.sent_now, **result.counts})
    except PublisherError as exc:
        return ScheduledDigest(slot, "sent", error=str(exc), error_code=exc.exit_code)
    return ScheduledDigest(slot, "sent", result.sent_now, result.counts, posts=len(result.job.posts),
                           warnings=result.warnings, stopped=result.stopped, error=result.error)
