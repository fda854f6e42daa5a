"""Reading many posts: the parse cache keyed by path, size and mtime, and rendering on every core."""

from __future__ import annotations

import hashlib
import marshal
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import repeat

from .. import __version__
from ..config import Config
from ..errors import Finding
from ..store.base import LocalStore
from .html import excerpt_html, markdown_html
from .posts import Post, ReaderSettings, SourceFile, read_body, read_many

PARALLEL_MIN_FILES = 400  # below this, starting worker processes costs more than it saves
CHUNK_FILES = 200
RENDER_PARALLEL_MIN = 120
RENDER_CHUNK = 20
CACHE_FORMAT = "4"  # bump when the parse cache's record layout changes


@dataclass(frozen=True, slots=True)
class Rendered:
    """A post's HTML: the full content (or None when only the summary is wanted) and the summary."""

    content: str | None
    summary: str


@dataclass(frozen=True, slots=True)
class Loaded:
    """Every post file read: the posts, the rejected files, and the cache rows to save."""

    posts: list[Post]
    rejected: list[Finding]
    fresh: list[tuple[str, int, int, bytes]]
    gone: list[str]


def reader_signature(cfg: Config) -> str:
    """What, besides a file's bytes, shapes what is read from it; a change here re-reads every post."""
    parts = [__version__, CACHE_FORMAT, repr(cfg.site), repr(cfg.cleanup), cfg.posts.permalink]
    return hashlib.blake2b("\n".join(parts).encode(), digest_size=16).hexdigest()


def _record_of(result: Post | Finding) -> bytes:
    """A parse result as a cache record: marshal is fast and, unlike pickle, cannot run code on load."""
    if isinstance(result, Post):
        return marshal.dumps((1, result.to_row()))
    return marshal.dumps((0, result.as_tuple()))


def decode_record(record: bytes) -> Post | Finding:
    is_post, row = marshal.loads(record)
    return Post.from_row(row) if is_post else Finding(*row)


def _read_chunk(chunk: list[SourceFile], settings: ReaderSettings) -> list[tuple[str, int, int, bytes]]:
    return [(s.key, s.size, s.mtime_ns, _record_of(result)) for s, result in read_many(chunk, settings)]


def in_parallel(func: Callable[..., list], items: list, chunk: int, min_items: int, *args: object) -> Iterator:
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


def load_posts(settings: ReaderSettings, store: LocalStore, sources: list[SourceFile], signature: str) -> Loaded:
    """Every post file → Post or error, reusing cached parses keyed by path, size and mtime."""
    cached = store.cached_posts() if store.get_meta("reader_signature") == signature else {}
    records: dict[str, bytes] = {}
    misses = []
    for source in sources:
        hit = cached.get(source.key)
        if hit and hit[0] == source.size and hit[1] == source.mtime_ns:
            records[source.key] = hit[2]
        else:
            misses.append(source)
    fresh = list(in_parallel(_read_chunk, misses, CHUNK_FILES, PARALLEL_MIN_FILES, settings))
    records.update((key, record) for key, _, _, record in fresh)
    present = {s.key for s in sources}
    gone = [key for key in cached if key not in present]
    posts, rejected = [], []
    for source in sources:
        try:
            result = decode_record(records[source.key])
        except (TypeError, ValueError, EOFError):  # an unreadable cache record: parse the file again
            source_result = _read_chunk([source], settings)[0]
            fresh.append(source_result)
            result = decode_record(source_result[3])
        if isinstance(result, Post):
            posts.append(result)
        else:
            rejected.append(result)
    return Loaded(posts, rejected, fresh, gone)


def _render_chunk(posts: list[Post], posts_dir: str, settings: ReaderSettings, full: bool) -> list[Rendered]:
    """HTML for each post: its sanitized excerpt and, with full content, its whole body."""
    out = []
    for post in posts:
        summary = excerpt_html(post.excerpt, post.excerpt_given, post.url)
        content = None
        if full:
            body = read_body(os.path.join(posts_dir, post.key), post.title, settings)
            content = markdown_html(body, post.url)
        out.append(Rendered(content, summary))
    return out


def render_posts(settings: ReaderSettings, posts_dir: str, posts: list[Post], full: bool) -> dict[str, Rendered]:
    """Render every post once per pass, however many feeds it appears in; on every core when many."""
    rendered = in_parallel(_render_chunk, posts, RENDER_CHUNK, RENDER_PARALLEL_MIN, posts_dir, settings, full)
    return {post.key: html for post, html in zip(posts, rendered, strict=True)}
