"""The weekly digest: its period, its posts, and its HTML and text rendered per category set."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

from ..config import Config
from ..message import PREFERENCES_MARK, UNSUBSCRIBE_MARK
from ..reading.cleanup import plain_text
from ..reading.html import excerpt_html
from ..reading.posts import Post
from ..text import one_line

LABELS = {
    "ja": {"other": "その他", "minutes": "分で読めます", "read": "続きを読む", "unsubscribe": "配信停止",
           "preferences": "配信設定の変更", "posts": "件の新着記事", "test": "[テスト] ",
           "more": "ほか {n} 件の新着記事はサイトでご覧いただけます:",
           "footer": "このメールは {site} の週刊ダイジェストに登録された方にお送りしています。",
           "view_online": "ブラウザで表示", "sender": "送信者", "postal": "所在地", "contact": "お問い合わせ",
           "optout": "今後の配信を希望されない場合は、こちらから配信を停止できます:",
           "archive_note": "メールで配信した {site} 週刊ダイジェストの控えです。",
           "subscribe": "ダイジェストを購読する"},
    "en": {"other": "Other", "minutes": "min read", "read": "Read more", "unsubscribe": "Unsubscribe",
           "preferences": "Change preferences", "posts": "new posts", "test": "[TEST] ",
           "more": "…and {n} more new posts on the site:",
           "footer": "You receive this because you subscribed to the {site} digest.",
           "view_online": "View in browser", "sender": "Sent by", "postal": "Postal address", "contact": "Contact",
           "optout": "To stop receiving these emails, unsubscribe here:",
           "archive_note": "An archived copy of the {site} digest sent by email.", "subscribe": "Subscribe"},
}


PREHEADER_PAD = "&#847;&zwnj;&nbsp;" * 90  # keeps the inbox preview from running on into the body


def labels(language: str) -> dict[str, str]:
    return LABELS.get(language.split("-")[0].lower(), LABELS["en"])


def archive_name(cfg: Config, end: datetime) -> str:
    """The archived copy's file name below the feeds folder's archive/: the digest's send date."""
    return f"{end.astimezone(cfg.tz):%Y-%m-%d}.html"


def archive_url(cfg: Config, end: datetime) -> str:
    """The public address of a digest's archived copy ("view in browser"), served with the feeds."""
    return f"{cfg.feeds_url}archive/{archive_name(cfg, end)}"


def sender_identity(cfg: Config) -> dict[str, str]:
    """Who sends the digest, where they are and how to reach them (CAN-SPAM, 特定電子メール法 第4条)."""
    from email.utils import parseaddr

    contact = parseaddr(cfg.digest.reply_to)[1] or parseaddr(cfg.digest.from_address)[1]
    return {"name": cfg.digest.sender_name or cfg.site.title, "postal_address": cfg.digest.postal_address,
            "contact": contact}


@dataclass(frozen=True, slots=True)
class DigestPost:
    key: str
    title: str
    url: str
    date: datetime
    excerpt_html: str
    excerpt_text: str
    reading_time: int
    categories: tuple[str, ...]

    @classmethod
    def from_post(cls, post: Post) -> DigestPost:
        html = excerpt_html(post.excerpt, post.excerpt_given, post.url)
        text = " ".join(plain_text(post.excerpt).split())
        return cls(post.key, post.title, post.url, post.date, html, text, post.reading_time, post.categories)


@dataclass(frozen=True, slots=True)
class Section:
    category: str
    posts: tuple[DigestPost, ...]


@dataclass(frozen=True, slots=True)
class RenderedDigest:
    """One category set's digest, with the per-subscriber URLs left as marks to fill in."""

    subject: str
    html: str
    text: str
    post_count: int
    more: int = 0  # posts beyond [digest] max_posts, mentioned as "and N more" with a link to the site


def sections_for(posts: Iterable[DigestPost], categories: frozenset[str], other: str,
                 limit: int | None = None) -> tuple[list[Section], int]:
    """The newest `limit` posts for a subscriber following `categories` (empty: all), grouped by category (each
    post once, under its first followed category), newest first; and how many more were left out."""
    chosen: list[tuple[str, DigestPost]] = []
    for post in sorted(posts, key=lambda p: (p.date, p.key), reverse=True):
        category = next((c for c in post.categories if not categories or c in categories), None)
        if category is None and not categories:
            category = other
        if category is not None:
            chosen.append((category, post))
    shown = chosen if limit is None else chosen[:limit]
    groups: dict[str, list[DigestPost]] = {}
    for category, post in shown:
        groups.setdefault(category, []).append(post)
    ordered = sorted(groups.items(), key=lambda item: (-max(p.date for p in item[1]).timestamp(), item[0]))
    return [Section(cat, tuple(ps)) for cat, ps in ordered], len(chosen) - len(shown)


def template_loader(folder: str):
    """The site's templates folder first, then the templates shipped inside the package."""
    from jinja2 import ChoiceLoader, FileSystemLoader, PackageLoader

    return ChoiceLoader([FileSystemLoader(folder), PackageLoader("publisher", "templates")])


@lru_cache(maxsize=4)
def _environment(folder: str):
    from jinja2 import Environment, StrictUndefined, select_autoescape

    return Environment(loader=template_loader(folder), autoescape=select_autoescape(["html", "html.j2"]),
                       undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)


@lru_cache(maxsize=8)
def _inliner():
    import css_inline

    return css_inline.CSSInliner(keep_style_tags=False, keep_at_rules=True, load_remote_stylesheets=False)


class DigestRenderer:
    """Renders the digest once per distinct category set; subscribers share those renders."""

    def __init__(self, cfg: Config, posts: list[DigestPost], start: datetime, end: datetime) -> None:
        self.cfg = cfg
        self.posts = sorted(posts, key=lambda p: (p.date, p.key), reverse=True)
        self.start, self.end = start, end
        self.labels = labels(cfg.site.language)
        self._cache: dict[frozenset[str], RenderedDigest | None] = {}

    def for_categories(self, categories: Iterable[str], test: bool = False) -> RenderedDigest | None:
        """The digest for subscribers following `categories` (empty: all), or None when nothing is new for them."""
        key = frozenset(categories)
        cache_key = key | {"\0test"} if test else key
        if cache_key not in self._cache:
            self._cache[cache_key] = self._render(key, test)
        return self._cache[cache_key]

    def archive_page(self) -> str | None:
        """The whole digest as a web page without personal links (None when it has no posts)."""
        rendered = self._render(frozenset(), test=False, archive=True)
        return rendered.html if rendered else None

    def _render(self, categories: frozenset[str], test: bool, archive: bool = False) -> RenderedDigest | None:
        sections, more = sections_for(self.posts, categories, self.labels["other"], self.cfg.digest.max_posts)
        count = sum(len(s.posts) for s in sections)
        if not count:
            return None
        cfg = self.cfg
        fields = {"site": cfg.site.title, "start": self.start, "end": self.end, "count": count}
        subject = one_line(cfg.digest.subject.format(**fields))
        if test:
            subject = self.labels["test"] + subject
        context = {
            "site": cfg.site, "sections": sections, "count": count, "start": self.start, "end": self.end,
            "subject": subject, "preheader": cfg.digest.preheader.format(**fields), "labels": self.labels,
            "footer": self.labels["footer"].format(site=cfg.site.title),
            "unsubscribe_url": UNSUBSCRIBE_MARK, "preferences_url": PREFERENCES_MARK,
            "sender": sender_identity(cfg), "archive": archive, "preheader_pad": PREHEADER_PAD,
            "archive_url": archive_url(cfg, self.end) if cfg.digest.archive else "",
            "archive_note": self.labels["archive_note"].format(site=cfg.site.title),
            "subscribe_url": cfg.site.base_url + "subscribe",
            "more": more, "more_text": self.labels["more"].format(n=more), "site_url": cfg.site.base_url,
        }
        env = _environment(str(cfg.root / cfg.digest.templates))
        html = _inliner().inline(env.get_template("digest.html.j2").render(context))
        text = env.get_template("digest.txt.j2").render(context)
        return RenderedDigest(subject, html, text, count, more)
