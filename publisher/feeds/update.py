"""Rebuild the feeds whose inputs changed, write them atomically, and remove feeds with no posts left."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..config import Config
from ..files import write_if_changed
from ..reading.load import Rendered
from ..reading.posts import Post
from ..store.base import FeedRecord, LocalStore
from .build import Entries, FeedPlan, build_feed, fingerprint, plan_feeds
from .index import all_index_names, build_indexes
from .slugs import SlugPlan


@dataclass(slots=True)
class FeedChanges:
    """What a pass did to the feeds folder (or, in a dry run, would do)."""

    written: list[tuple[str, int]] = field(default_factory=list)  # (path as configured, entries or feeds)
    removed: list[str] = field(default_factory=list)
    unchanged: int = 0
    records: list[FeedRecord] = field(default_factory=list)  # for the store: what was written
    removed_relpaths: list[str] = field(default_factory=list)
    changed_urls: list[str] = field(default_factory=list)  # public URLs of the feeds written: for WebSub


def file_matches(path: Path, record: FeedRecord) -> bool:
    """The feed file is still the one this publisher wrote (not deleted or edited since)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return False
    return st.st_size == record.size and st.st_mtime_ns == record.mtime_ns


def index_names(cfg: Config) -> list[str]:
    from .index import DISCOVERY_NAME, index_name

    return [index_name(fmt, cfg) for fmt in cfg.feeds.opml] + [DISCOVERY_NAME]


def feeds_intact(cfg: Config, store: LocalStore) -> tuple[bool, int]:
    """(every recorded feed file and the indexes are as written, how many feed files are recorded)."""
    feeds = store.feed_files()
    intact = all((cfg.feeds_dir / name).exists() for name in index_names(cfg)) and all(
        file_matches(cfg.feeds_dir / rec.path, rec) for rec in feeds.values())
    return intact, len(feeds)


def _is_current(cfg: Config, plan: FeedPlan, record: FeedRecord | None, fp: str) -> bool:
    return record is not None and record.fingerprint == fp and file_matches(cfg.feeds_dir / plan.relpath, record)


def _write(path: Path, data: bytes, dry_run: bool) -> bool:
    """Write unless this is a dry run; whether the file's bytes change."""
    if dry_run:
        return not (path.exists() and path.read_bytes() == data)
    return write_if_changed(path, data)


def update_feeds(cfg: Config, store: LocalStore, live: tuple[Post, ...], entries: Entries, slugs: SlugPlan,
                 signature: str, render: Callable[[list[Post]], dict[str, Rendered]], dry_run: bool) -> FeedChanges:
    """Rebuild the feeds whose inputs changed; write them unless this is a dry run."""
    out = FeedChanges()
    plans = plan_feeds(live, cfg, slugs)
    stored = store.feed_files()
    stale = []
    for plan in plans:
        fp = fingerprint(plan, entries, signature)
        if _is_current(cfg, plan, stored.get(plan.relpath), fp):
            out.unchanged += 1
        else:
            stale.append((plan, fp))
    needed = {post.key: post for plan, _ in stale for post in plan.entries}
    rendered = render(list(needed.values()))
    for plan, fp in stale:
        path = cfg.feeds_dir / plan.relpath
        data = build_feed(plan, cfg, entries, lambda post: rendered[post.key])
        record = stored.get(plan.relpath)
        # A file this store has no record of may have been written by a pass that stopped before recording
        # it (and before queuing its WebSub pings): announce it as changed even if its bytes are the same.
        unrecorded = record is None or not file_matches(path, record)
        if _write(path, data, dry_run):
            out.written.append((f"{cfg.feeds.folder}/{plan.relpath}", len(plan.entries) or int(bool(plan.moved_to))))
            out.changed_urls.append(plan.url)
        else:
            out.unchanged += 1
            if unrecorded:
                out.changed_urls.append(plan.url)
        if not dry_run:
            st = path.stat()
            out.records.append(FeedRecord(plan.relpath, fp, st.st_size, st.st_mtime_ns, len(plan.entries)))
    wanted = {plan.relpath for plan in plans}
    out.removed_relpaths = [relpath for relpath in stored if relpath not in wanted]
    for relpath in out.removed_relpaths:
        out.removed.append(f"{cfg.feeds.folder}/{relpath}")
        if not dry_run:
            (cfg.feeds_dir / relpath).unlink(missing_ok=True)
    _update_indexes(cfg, plans, bool(stale or out.removed_relpaths), dry_run, out)
    return out


def _update_indexes(cfg: Config, plans: list[FeedPlan], feeds_changed: bool, dry_run: bool, out: FeedChanges) -> None:
    """The OPML lists and discovery links, rewritten when the feeds changed or one is missing."""
    names = index_names(cfg)
    if not feeds_changed and all((cfg.feeds_dir / name).exists() for name in names):
        return  # they list the same feeds as when they were last written
    for name, (data, listed) in build_indexes(plans, cfg).items():
        if _write(cfg.feeds_dir / name, data, dry_run):
            out.written.append((f"{cfg.feeds.folder}/{name}", listed))
    for name in sorted(all_index_names() - set(names)):
        path = cfg.feeds_dir / name
        if path.exists():
            out.removed.append(f"{cfg.feeds.folder}/{name}")
            if not dry_run:
                path.unlink()
