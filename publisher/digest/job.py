"""The digest as one stage: `prepare_digest` builds a `DigestJob` once, and send, dry run, preview and test
all use it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from ..config import Config
from ..config import require_sender as require_sender  # re-exported: delivery, preview and lint use it
from ..message import GMAIL_CLIP_BYTES, PREFERENCES_MARK, UNSUBSCRIBE_MARK, Outgoing, Skeleton, list_headers, message_id
from ..reading.load import load_posts, reader_signature
from ..reading.posts import ReaderSettings, scan_posts
from ..store.base import Digest, Store, Subscriber
from ..text import one_line
from ..tokens import Secrets, make_token
from .render import DigestPost, DigestRenderer, RenderedDigest
from .schedule import last_slot, late_by, next_slot, period_for, utc_stamp


@dataclass(slots=True)
class DigestJob:
    """The digest of one scheduled slot: its period, its posts (fixed once the digest row exists), the row
    if there is one, and the renderer its messages share."""

    slot: datetime
    start: datetime
    end: datetime
    posts: list[DigestPost]
    row: Digest | None
    renderer: DigestRenderer
    subject: str

    @property
    def keys(self) -> list[str]:
        return [p.key for p in self.posts]

    @property
    def done(self) -> bool:
        return self.row is not None and self.row.status == "done"

    def factory(self, cfg: Config, secrets: Secrets, now: datetime, test: bool = False) -> MessageFactory:
        return MessageFactory(cfg, self.renderer, secrets, self.row.id if self.row else 0, now, test)


def _digest_posts(cfg: Config, store: Store, keys: list[str]) -> list[DigestPost]:
    """DigestPosts for the given keys, from the posts (cached parses) or, for deleted files, the store."""
    wanted = set(keys)
    posts: dict[str, DigestPost] = {}
    if wanted:
        sources = [s for s in scan_posts(cfg.posts_dir, cfg.posts.patterns) if s.key in wanted]
        loaded = load_posts(ReaderSettings.from_config(cfg), store, sources, reader_signature(cfg))
        posts = {p.key: DigestPost.from_post(p) for p in loaded.posts}
    missing = [k for k in keys if k not in posts]
    for key, row in store.published_posts(missing).items():
        posts[key] = DigestPost(key, row.title, row.url, row.first_published, "", "", 1, row.categories)
    return [posts[k] for k in keys if k in posts]


def prepare_digest(cfg: Config, store: Store, slot: datetime) -> DigestJob:
    """The digest for `slot`: its posts are fixed when the digest is first created and reused after that.
    A slot still to come holds the posts first published so far. Each message lists at most [digest]
    max_posts of them (the renderer mentions the rest)."""
    start, end = period_for(cfg, slot)
    row = store.digest_for(utc_stamp(end))
    if row is not None and row.status != "missed":
        keys = list(row.posts)
    else:
        keys = [p.key for p in store.published_between(start, end)]
    posts = _digest_posts(cfg, store, keys)
    subject = one_line(cfg.digest.subject.format(site=cfg.site.title, start=start, end=end, count=len(posts)))
    return DigestJob(slot, start, end, posts, row, DigestRenderer(cfg, posts, start, end), subject)


def upcoming_slot(cfg: Config, store: Store, now: datetime) -> datetime:
    """The send time of the digest that goes out next: the latest scheduled one while a pass would still send
    it (not sent yet, within [digest] catch_up_hours), else the next one."""
    slot = last_slot(cfg, now)
    row = store.digest_for(utc_stamp(slot))
    unsent = row.status == "sending" if row else bool(store.count_subscribers().get("active"))
    if cfg.digest.enabled and unsent and late_by(now, slot) <= timedelta(hours=cfg.digest.catch_up_hours):
        return slot
    return next_slot(cfg, now)


class MessageFactory:
    """Builds each subscriber's message from the render their category set shares."""

    def __init__(self, cfg: Config, renderer: DigestRenderer, secrets: Secrets, digest_id: int, now: datetime,
                 test: bool = False) -> None:
        self.cfg, self.renderer, self.secrets = cfg, renderer, secrets
        self.digest_id, self.now, self.test = digest_id, now, test
        self.warned: set[frozenset[str]] = set()
        self.skeletons: dict[int, Skeleton] = {}  # per render (the renderer keeps each render alive)
        self.warnings: list[str] = []

    def build(self, sub: Subscriber, mid: str | None = None, at: datetime | None = None) -> Outgoing | None:
        """The subscriber's message (None if nothing is new for them), as of `at` (default: the factory's time):
        built again as of the same time, with the same Message-ID, it is the same message."""
        rendered = self.renderer.for_categories(sub.categories, test=self.test)
        if rendered is None:
            return None
        cfg = self.cfg
        at = at or self.now
        issued = int(at.timestamp())
        unsubscribe = cfg.unsubscribe_url.format(
            token=make_token(self.secrets, sub.id, sub.email, "unsubscribe", issued))
        preferences = cfg.preferences_url.format(
            token=make_token(self.secrets, sub.id, sub.email, "preferences", issued))
        out = Outgoing(
            key=sub.id, to=sub.email, to_name=sub.name, sender=cfg.digest.from_address, subject=rendered.subject,
            html_body=None, text_body=None,
            message_id=mid or message_id(cfg.digest.from_address, self.digest_id, sub.id),
            headers=list_headers(cfg.list_id, cfg.site.title, unsubscribe, at, cfg.digest.reply_to),
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
        if size > GMAIL_CLIP_BYTES:
            which = ", ".join(sorted(key)) or "all categories"
            self.warnings.append(f"the digest for {which} is {size // 1024} KB; Gmail clips messages over 102 KB "
                                 f"— lower [digest] max_posts or shorten excerpts")
