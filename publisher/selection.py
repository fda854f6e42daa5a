"""Pure selection: which posts are live, newly due, changed, or held at a given moment."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote, urlsplit

from .reading.posts import Post
from .store.base import Published


@dataclass(frozen=True, slots=True)
class Held:
    """A post not published yet: a draft (due is None) or one dated in the future."""

    post: Post
    due: datetime | None


@dataclass(frozen=True, slots=True)
class Selection:
    live: tuple[Post, ...]  # everything that belongs in the feeds, newest first
    new: tuple[Post, ...]  # live posts never published before, oldest first
    changed: tuple[Post, ...]  # published posts whose file changed since it was recorded
    held: tuple[Held, ...]  # drafts and future posts, soonest first (drafts last)


def newest_first(posts: Iterable[Post]) -> list[Post]:
    return sorted(posts, key=lambda p: (p.date, p.key), reverse=True)


def select_posts(posts: Iterable[Post], published: Mapping[str, Published], now: datetime) -> Selection:
    """Split posts by state at `now`; a post once published stays live unless it becomes a draft."""
    live, held = [], []
    for post in posts:
        if post.draft:
            held.append(Held(post, None))
        elif post.date <= now or post.key in published:
            live.append(post)
        else:
            held.append(Held(post, post.date))
    live = newest_first(live)
    new = [p for p in reversed(live) if p.key not in published]
    changed = [p for p in live if p.key in published and published[p.key].content_hash != p.content_hash]
    held.sort(key=lambda h: (h.due is None, h.due or now, h.post.key))
    return Selection(tuple(live), tuple(new), tuple(changed), tuple(held))


def mint_post_id(post: Post, base_url: str, taken: set[str]) -> str:
    """A permanent tag: URI for a post's first publication (RFC 4151); unique among `taken`."""
    host = urlsplit(base_url).hostname or "localhost"
    stem = post.key.rsplit(".", 1)[0] if "." in post.key.rsplit("/", 1)[-1] else post.key
    base = f"tag:{host},{post.date.date().isoformat()}:{quote(stem, safe='/')}"
    candidate, n = base, 1
    while candidate in taken:
        n += 1
        candidate = f"{base}-{n}"
    return candidate
