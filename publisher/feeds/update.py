"""Rebuild the feeds whose inputs changed, write them atomically, and remove feeds with no posts left."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..config import Config
from ..files import write_if_changed
from ..reading.load import Rendered
from ..reading.posts import Post
from ..store.base import FeedRecord, LocalStore
from .build import INDEX_NAME, FeedPlan, build_feed, build_index, fingerprint, plan_feeds


@dataclass(slots=True)
class FeedChanges:
    """What a pass did to the feeds folder (or, in a dry run, would do)."""

    written: list[tuple[str, int]] = field(default_factory=list)  # (path as configured, entries or feeds)
    removed: list[str] = field(default_factory=list)
    unchanged: int = 0
    records: list[FeedRecord] = field(default_factory=list)  # for the store: what was written
    removed_relpaths: list[str] = field(default_factory=list)


def file_matches(path: Path, record: FeedRecord) -> bool:
    """The feed file is still the one this publisher wrote (not deleted or edited since)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return False
    return st.st_size == record.size and st.st_mtime_ns == record.mtime_ns


def feeds_intact(cfg: Config, store: LocalStore) -> tuple[bool, int]:
    """(every recorded feed file and the index are as written, how many feed files are recorded)."""
    feeds = store.feed_files()
    intact = (cfg.feeds_dir / INDEX_NAME).exists() and all(
        file_matches(cfg.feeds_dir / rec.path, rec) for rec in feeds.values())
    return intact, len(feeds)


def _is_current(cfg: Config, plan: FeedPlan, record: FeedRecord | None, fp: str) -> bool:
    return record is not None and record.fingerprint == fp and file_matches(cfg.feeds_dir / plan.relpath, record)


def update_feeds(cfg: Config, store: LocalStore, live: tuple[Post, ...], ids: Mapping[str, str], signature: str,
                 render: Callable[[list[Post]], dict[str, Rendered]], dry_run: bool) -> FeedChanges:
    """Rebuild the feeds whose inputs changed; write them unless this is a dry run."""
    out = FeedChanges()
    plans = plan_feeds(live, cfg)
    stored = store.feed_files()
    stale = []
    for plan in plans:
        fp = fingerprint(plan, ids, signature)
        if _is_current(cfg, plan, stored.get(plan.relpath), fp):
            out.unchanged += 1
        else:
            stale.append((plan, fp))
    needed = {post.key: post for plan, _ in stale for post in plan.entries}
    rendered = render(list(needed.values()))
    for plan, fp in stale:
        path = cfg.feeds_dir / plan.relpath
        data = build_feed(plan, cfg, ids, lambda post: rendered[post.key])
        if dry_run:
            unchanged = path.exists() and path.read_bytes() == data
        else:
            unchanged = not write_if_changed(path, data)
        if unchanged:
            out.unchanged += 1
        else:
            out.written.append((f"{cfg.feeds.folder}/{plan.relpath}", len(plan.entries)))
        if not dry_run:
            st = path.stat()
            out.records.append(FeedRecord(plan.relpath, fp, st.st_size, st.st_mtime_ns, len(plan.entries)))
    wanted = {plan.relpath for plan in plans}
    out.removed_relpaths = [relpath for relpath in stored if relpath not in wanted]
    for relpath in out.removed_relpaths:
        out.removed.append(f"{cfg.feeds.folder}/{relpath}")
        if not dry_run:
            (cfg.feeds_dir / relpath).unlink(missing_ok=True)
    index_path = cfg.feeds_dir / INDEX_NAME
    if not stale and not out.removed_relpaths and index_path.exists():
        return out  # the index lists the same feeds as when it was last written
    index = build_index(plans, cfg)
    if dry_run:
        changed = not (index_path.exists() and index_path.read_bytes() == index)
    else:
        changed = write_if_changed(index_path, index)
    if changed:
        out.written.append((f"{cfg.feeds.folder}/{INDEX_NAME}", len(plans)))
    return out
