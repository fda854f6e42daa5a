"""The one orchestrator: read → select → feeds → record. The CLI and the scheduler both call `run_pass`."""

from __future__ import annotations

import hashlib
import json
import marshal
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import repeat
from pathlib import Path

from .config import Config
from .errors import ConfigError, Finding, PublisherError
from .feeds import (
    INDEX_NAME,
    FeedPlan,
    Rendered,
    build_feed,
    build_index,
    fingerprint,
    plan_feeds,
    settings_signature,
    write_if_changed,
)
from .posts import Post, ReaderSettings, SourceFile, read_body, read_many, scan_posts
from .render import excerpt_html, markdown_html
from .selection import Held, mint_post_id, select_posts
from .state import FeedRecord, Store

PARALLEL_MIN_FILES = 400  # below this, starting worker processes costs more than it saves
CHUNK_FILES = 200
RENDER_PARALLEL_MIN = 120
RENDER_CHUNK = 20


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
    feeds_written: list[tuple[str, int]] = field(default_factory=list)
    feeds_removed: list[str] = field(default_factory=list)
    feeds_unchanged: int = 0
    digest: list[str] = field(default_factory=list)  # what the scheduled digest did, one line each
    digest_error: str = ""

    def summary(self) -> dict[str, int]:
        return {"new": len(self.new), "changed": len(self.changed), "feeds_written": len(self.feeds_written),
                "feeds_removed": len(self.feeds_removed), "feeds_unchanged": self.feeds_unchanged,
                "held": len(self.held), "rejected": len(self.rejected), "posts": self.posts_read}


def _record_of(result: Post | Finding) -> bytes:
    """A parse result as a cache record: marshal is fast and, unlike pickle, cannot run code on load."""
    if isinstance(result, Post):
        return marshal.dumps((1, result.to_row()))
    return marshal.dumps((0, result.as_tuple()))


def _read_chunk(chunk: list[SourceFile], settings: ReaderSettings) -> list[tuple[str, int, int, bytes]]:
    return [(s.key, s.size, s.mtime_ns, _record_of(result)) for s, result in read_many(chunk, settings)]


def _in_parallel(func: Callable[..., list], items: list, chunk: int, min_items: int, *args: object) -> Iterator:
    """func(items[i:i+chunk], *args) over every chunk, on every core when there are enough items; in order."""
    workers = min(os.cpu_count() or 1, 8)
    chunks = [items[i:i + chunk] for i in range(0, len(items), chunk)]
    if len(items) < min_items or workers < 2:
        for part in chunks:
            yield from func(part, *args)
        return
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=workers) as pool:
        for rows in pool.map(func, chunks, *(repeat(a) for a in args)):
            yield from rows


def load_posts(cfg: Config, store: Store, sources: list[SourceFile]
               ) -> tuple[list[Post], list[Finding], list[tuple], list[str]]:
    """Every post file → Post or error, reusing cached parses keyed by path, size and mtime."""
    settings = ReaderSettings.from_config(cfg)
    signature = settings_signature(cfg)
    cached = store.cached_posts() if store.get_meta("reader_signature") == signature else {}
    records: dict[str, bytes] = {}
    misses = []
    for source in sources:
        hit = cached.get(source.key)
        if hit and hit[0] == source.size and hit[1] == source.mtime_ns:
            records[source.key] = hit[2]
        else:
            misses.append(source)
    fresh = list(_in_parallel(_read_chunk, misses, CHUNK_FILES, PARALLEL_MIN_FILES, settings))
    records.update((key, record) for key, _, _, record in fresh)
    present = {s.key for s in sources}
    gone = [key for key in cached if key not in present]
    posts, rejected = [], []
    for source in sources:
        try:
            is_post, row = marshal.loads(records[source.key])
            result: Post | Finding = Post.from_row(row) if is_post else Finding(*row)
        except (TypeError, ValueError, EOFError):  # an unreadable cache record: parse the file again
            source_result = _read_chunk([source], settings)[0]
            fresh.append(source_result)
            is_post, row = marshal.loads(source_result[3])
            result = Post.from_row(row) if is_post else Finding(*row)
        if isinstance(result, Post):
            posts.append(result)
        else:
            rejected.append(result)
    return posts, rejected, fresh, gone


def _render_chunk(posts: list[Post], posts_dir: str, settings: ReaderSettings, full: bool) -> list[Rendered]:
    """Feed HTML for each post: its sanitized excerpt and, with full content, its whole body."""
    out = []
    for post in posts:
        summary = excerpt_html(post.excerpt, post.excerpt_given, post.url)
        content = None
        if full:
            body = read_body(os.path.join(posts_dir, post.key), post.title, settings)
            content = markdown_html(body, post.url)
        out.append(Rendered(content, summary))
    return out


def render_posts(cfg: Config, posts: list[Post]) -> dict[str, Rendered]:
    """Render every post once per pass, however many feeds it appears in; on every core when many."""
    settings = ReaderSettings.from_config(cfg)
    full = cfg.feeds.content == "full"
    rendered = _in_parallel(_render_chunk, posts, RENDER_CHUNK, RENDER_PARALLEL_MIN, str(cfg.posts_dir),
                            settings, full)
    return {post.key: html for post, html in zip(posts, rendered, strict=True)}


def _file_matches(path: Path, record: FeedRecord) -> bool:
    """The feed file is still the one this publisher wrote (not deleted or edited since)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return False
    return st.st_size == record.size and st.st_mtime_ns == record.mtime_ns


def _feed_is_current(cfg: Config, plan: FeedPlan, record: FeedRecord | None, fp: str) -> bool:
    return record is not None and record.fingerprint == fp and _file_matches(cfg.feeds_dir / plan.relpath, record)


def update_feeds(cfg: Config, store: Store, live: tuple[Post, ...], ids: dict[str, str],
                 report: PassReport) -> tuple[list[FeedRecord], list[str]]:
    """Rebuild the feeds whose inputs changed; write them unless this is a dry run."""
    plans = plan_feeds(live, cfg)
    stored = store.feed_files()
    signature = settings_signature(cfg)
    records: list[FeedRecord] = []
    stale = []
    for plan in plans:
        fp = fingerprint(plan, ids, signature)
        if _feed_is_current(cfg, plan, stored.get(plan.relpath), fp):
            report.feeds_unchanged += 1
        else:
            stale.append((plan, fp))
    needed = {post.key: post for plan, _ in stale for post in plan.entries}
    rendered = render_posts(cfg, list(needed.values()))
    for plan, fp in stale:
        path = cfg.feeds_dir / plan.relpath
        data = build_feed(plan, cfg, ids, lambda post: rendered[post.key])
        if report.dry_run:
            unchanged = path.exists() and path.read_bytes() == data
        else:
            unchanged = not write_if_changed(path, data)
        if unchanged:
            report.feeds_unchanged += 1
        else:
            report.feeds_written.append((f"{cfg.feeds.folder}/{plan.relpath}", len(plan.entries)))
        if not report.dry_run:
            st = path.stat()
            records.append(FeedRecord(plan.relpath, fp, st.st_size, st.st_mtime_ns, len(plan.entries)))
    wanted = {plan.relpath for plan in plans}
    removed = [relpath for relpath in stored if relpath not in wanted]
    for relpath in removed:
        report.feeds_removed.append(f"{cfg.feeds.folder}/{relpath}")
        if not report.dry_run:
            (cfg.feeds_dir / relpath).unlink(missing_ok=True)
    index_path = cfg.feeds_dir / INDEX_NAME
    if not stale and not removed and index_path.exists():
        return records, removed  # the index lists the same feeds as when it was last written
    index = build_index(plans, cfg)
    if report.dry_run:
        if not (index_path.exists() and index_path.read_bytes() == index):
            report.feeds_written.append((f"{cfg.feeds.folder}/{INDEX_NAME}", len(plans)))
    elif write_if_changed(index_path, index):
        report.feeds_written.append((f"{cfg.feeds.folder}/{INDEX_NAME}", len(plans)))
    return records, removed


def run_pass(cfg: Config, now: datetime, dry_run: bool = False, store: Store | None = None,
             with_digest: bool = True, should_stop: Callable[[], bool] = lambda: False) -> PassReport:
    """One publishing pass at `now`: publish what came due, rebuild changed feeds, record it, and send the
    weekly digest when its time has come."""
    own_store = store is None
    if store is None:
        store = Store.open(cfg.database_path, readonly=dry_run)
    try:
        report = _run(cfg, now, dry_run, store)
        if not dry_run:
            store.purge_pending((now - timedelta(hours=cfg.web.confirm_hours)).astimezone(UTC).isoformat())
        if with_digest and cfg.digest.enabled:
            scheduled_digest(cfg, store, now, report, should_stop)
        return report
    except OSError as exc:
        raise PublisherError(f"{exc.filename or cfg.feeds_dir}: {exc.strerror}; "
                             "check that the feeds folder is writable") from None
    finally:
        if own_store:
            store.close()


def _snapshot(sources: list[SourceFile], signature: str) -> str:
    """A digest of every post file's path, size and mtime plus the settings: equal means nothing changed."""
    digest = hashlib.blake2b(signature.encode(), digest_size=16)
    digest.update(marshal.dumps([tuple(s[:1]) + tuple(s[2:]) for s in sources]))
    return digest.hexdigest()


def _quick_pass(cfg: Config, store: Store, snapshot: str, now: datetime, report: PassReport) -> bool:
    """Answer a pass from the last one when no file, setting or feed changed and no held post came due."""
    last = store.get_meta("last_pass")
    if last is None:
        return False
    last = json.loads(last)
    if last["snapshot"] != snapshot or (last["next_due"] and now >= datetime.fromisoformat(last["next_due"])):
        return False
    feeds = store.feed_files()
    if not (cfg.feeds_dir / INDEX_NAME).exists() or not all(
            _file_matches(cfg.feeds_dir / rec.path, rec) for rec in feeds.values()):
        return False
    rows = store.cached_rows(last["held"] + last["rejected"])
    if len(rows) != len(last["held"]) + len(last["rejected"]):
        return False
    for key in last["held"]:
        post = Post.from_row(marshal.loads(rows[key])[1])
        report.held.append(Held(post, None if post.draft else post.date))
    report.rejected = [Finding(*marshal.loads(rows[key])[1]) for key in last["rejected"]]
    report.feeds_unchanged = len(feeds)
    return True


def _remember_pass(store: Store, snapshot: str, report: PassReport, rejected_keys: list[str]) -> None:
    due = [h.due for h in report.held if h.due is not None]
    store.set_meta("last_pass", json.dumps({
        "snapshot": snapshot, "next_due": min(due).isoformat() if due else None,
        "held": [h.post.key for h in report.held], "rejected": rejected_keys}))


def _run(cfg: Config, now: datetime, dry_run: bool, store: Store) -> PassReport:
    started = datetime.now(now.tzinfo)
    report = PassReport(now=now, dry_run=dry_run)
    signature = settings_signature(cfg)
    if not cfg.posts_dir.is_dir():  # a typo here must not empty every feed
        raise ConfigError(cfg.source, "posts.folder", f"{cfg.posts_dir} is not a folder; create it or fix the path")
    sources = scan_posts(cfg.posts_dir, cfg.posts.patterns)
    report.posts_read = len(sources)
    snapshot = _snapshot(sources, signature)
    if _quick_pass(cfg, store, snapshot, now, report):
        if not dry_run:
            store.record_run("publish", started, datetime.now(now.tzinfo), report.summary())
        return report
    posts, report.rejected, fresh, gone = load_posts(cfg, store, sources)
    if not dry_run and (fresh or gone or store.get_meta("reader_signature") != signature):
        store.save_cache(fresh, gone)
        store.set_meta("reader_signature", signature)
    published = store.published()
    selection = select_posts(posts, published, now)
    report.held = list(selection.held)
    report.changed = list(selection.changed)
    report.findings = [f for p in selection.new for f in p.findings if f.severity != "info"]
    ids = {key: rec.post_id for key, rec in published.items()}
    taken = set(ids.values())
    for post in selection.new:
        post_id = mint_post_id(post, cfg.site.base_url, taken)
        taken.add(post_id)
        ids[post.key] = post_id
        report.new.append((post, post_id))
    records, removed = update_feeds(cfg, store, selection.live, ids, report)
    if dry_run:
        return report
    stamp = now.astimezone(UTC).isoformat()
    store.record_published(
        (p.key, pid, stamp, p.content_hash, p.title, p.url, list(p.categories)) for p, pid in report.new)
    store.update_published((p.content_hash, p.title, p.url, list(p.categories), p.key) for p in report.changed)
    store.save_feeds(records, removed)
    rejected_paths = {f.path for f in report.rejected}
    rejected_keys = [s.key for s in sources if s.path in rejected_paths]
    _remember_pass(store, snapshot, report, rejected_keys)
    store.record_run("publish", started, datetime.now(now.tzinfo), report.summary())
    return report


def scheduled_digest(cfg: Config, store: Store, now: datetime, report: PassReport,
                     should_stop: Callable[[], bool] = lambda: False) -> None:
    """Send the digest of the latest slot if it is due, not yet done, and within the catch-up window."""
    from .digest import last_slot, period_for, utc_stamp

    slot = last_slot(cfg, now)
    existing = store.digest_for(utc_stamp(period_for(cfg, slot)[1]))
    when = slot.strftime("%Y-%m-%d %H:%M %Z")
    if existing and existing[5] in ("done", "missed"):
        return
    if not existing and not store.count_subscribers().get("active"):
        return
    if now - slot > timedelta(hours=cfg.digest.catch_up_hours):
        if not existing:
            report.digest.append(f"Digest of {when} was missed and is older than [digest] catch_up_hours "
                                 f"({cfg.digest.catch_up_hours} h): skipped")
            if not report.dry_run:
                start, end = period_for(cfg, slot)
                store.mark_missed(utc_stamp(start), utc_stamp(end), utc_stamp(now))
        else:
            report.digest.append(f"Digest of {when} was interrupted and is older than the catch-up window: "
                                 "left as it is (see `publish digest --status`)")
        return
    from .sending import dry_run_digest, send_digest  # only when a digest is due: most passes skip this
    from .transports import make_transport

    try:
        if report.dry_run:
            dry = dry_run_digest(cfg, store, now, slot)
            report.digest.append(f"Would send the digest of {when} ({len(dry.plan.posts)} posts) to "
                                 f"{dry.recipients} subscriber(s); {dry.nothing_new} with nothing new")
            return
        started = datetime.now(UTC)
        result = send_digest(cfg, store, lambda: make_transport(cfg), now, slot, should_stop=should_stop)
        store.record_run("digest", started, datetime.now(UTC), {"sent": result.sent_now, **result.counts})
    except PublisherError as exc:
        report.digest_error = str(exc)
        return
    counts = ", ".join(f"{n} {state}" for state, n in sorted(result.counts.items()))
    report.digest.append(f"Digest of {when}: {result.sent_now} sent now ({counts or 'no recipients'})")
    report.digest += [f"  {w}" for w in result.warnings]
    if result.stopped:
        report.digest.append("  stopped before the end: the next start resumes it")
    if result.error:
        report.digest_error = result.error
