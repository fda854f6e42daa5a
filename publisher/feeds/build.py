"""Posts → one Atom, RSS and JSON Feed file per scope (site-wide, each category); byte-stable.

Every date in a feed comes from the posts or from the store (first publication, last edit, a move), never
from the clock, so the same posts and the same store give the same bytes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from urllib.parse import quote, urlsplit

from ..config import Config
from ..reading.load import Rendered
from ..reading.posts import Post
from ..text import xml_safe
from .slugs import SlugPlan

FORMATS = ("atom", "rss", "json")
SUFFIXES = {"atom": ".atom.xml", "rss": ".rss.xml", "json": ".json"}
MEDIA_TYPES = {"atom": "application/atom+xml", "rss": "application/rss+xml", "json": "application/feed+json"}
FORMAT_NAMES = {"atom": "Atom", "rss": "RSS", "json": "JSON Feed"}
JSON_FEED_VERSION = "https://jsonfeed.org/version/1.1"
EMPTY_FEED_DATE = datetime(1970, 1, 1, tzinfo=UTC)  # a feed with no entries yet: fixed, so rebuilds match
GENERATOR_NAME = "publisher"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
ATOM_NS = "http://www.w3.org/2005/Atom"


@dataclass(frozen=True, slots=True)
class FeedPlan:
    """One feed file to produce: its scope, format, path below the feeds folder, URL and entries. A moved
    feed (`moved_to` set) holds one entry: a notice pointing to the feed's new address."""

    title: str
    description: str
    category: str | None
    fmt: str
    relpath: str
    url: str
    entries: tuple[Post, ...]
    moved_to: str = ""
    moved_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Entries:
    """What the store knows about each live post: its permanent id and the time of its last edit."""

    ids: Mapping[str, str]
    edited: Mapping[str, datetime] = field(default_factory=dict)

    def updated(self, post: Post) -> datetime:
        """The entry's `updated`: the newest of its date, its front matter `updated`, and its last edit."""
        return max(d for d in (post.date, post.updated, self.edited.get(post.key)) if d is not None)


def feed_url(cfg: Config, stem: str, fmt: str) -> str:
    return cfg.feeds_url + quote(stem + SUFFIXES[fmt])


def plan_feeds(live: tuple[Post, ...], cfg: Config, slugs: SlugPlan) -> list[FeedPlan]:
    """The feeds the live posts (newest first) call for: site-wide plus one per category in each configured
    format, then a notice feed at each moved slug of a category."""
    limit = cfg.feeds.entries
    description = cfg.site.description or cfg.site.title
    by_category: dict[str, list[Post]] = {}
    for post in live:
        for category in post.categories:
            by_category.setdefault(category, []).append(post)
    scopes = [(cfg.site.title, description, None, "all", tuple(live[:limit]))]
    for category in sorted(by_category):
        scopes.append((f"{cfg.site.title} — {category}", f"{description} — {category}", category,
                       f"category/{slugs.slugs[category]}", tuple(by_category[category][:limit])))
    plans = [FeedPlan(title, desc, category, fmt, stem + SUFFIXES[fmt], feed_url(cfg, stem, fmt), entries)
             for title, desc, category, stem, entries in scopes for fmt in cfg.feeds.formats]
    for old, move in sorted(slugs.moves.items()):
        new = slugs.slugs.get(move.category)
        if new is None or new == old:
            continue
        moved_at = datetime.fromisoformat(move.moved)
        plans += [FeedPlan(f"{cfg.site.title} — {move.category}", f"{description} — {move.category}",
                           move.category, fmt, f"category/{old}{SUFFIXES[fmt]}", feed_url(cfg, f"category/{old}", fmt),
                           (), feed_url(cfg, f"category/{new}", fmt), moved_at) for fmt in cfg.feeds.formats]
    return plans


def settings_signature(cfg: Config, reader_signature: str) -> str:
    """What, besides the posts, shapes a feed's bytes; a change here rebuilds every feed. (The generator
    element changes only with publisher's version, which the reader signature holds.)"""
    parts = [reader_signature, repr(cfg.feeds), cfg.feeds_url]
    return hashlib.blake2b("\n".join(parts).encode(), digest_size=16).hexdigest()


def fingerprint(plan: FeedPlan, entries: Entries, signature: str) -> str:
    """A digest of everything a feed file is built from, to skip rebuilding feeds that cannot have changed."""
    data = [signature, plan.relpath, plan.title, plan.description, plan.moved_to, str(plan.moved_at),
            [(entries.ids[p.key], p.content_hash, entries.updated(p).isoformat()) for p in plan.entries]]
    return hashlib.blake2b(json.dumps(data, ensure_ascii=False).encode(), digest_size=16).hexdigest()


@lru_cache(maxsize=1)
def generator() -> tuple[str, str, str]:
    """(name, URL, version) of this program for the feeds' generator element: the URL is the project's own
    address from its package metadata (Project-URL Homepage), or none, never another project's."""
    from importlib.metadata import PackageNotFoundError, metadata

    from .. import __version__

    try:
        meta = metadata("publisher")
    except PackageNotFoundError:
        return GENERATOR_NAME, "", __version__
    for entry in meta.get_all("Project-URL") or []:
        label, _, url = entry.partition(",")
        if label.strip().lower() in ("homepage", "home", "source", "repository"):
            return GENERATOR_NAME, url.strip(), __version__
    return GENERATOR_NAME, "", __version__


def entry_language(post: Post, cfg: Config) -> str:
    """A post's language: its front matter `lang`, "ja" when it has Japanese script, else English on a Japanese
    site (the site's language on any other)."""
    if post.lang:
        return post.lang
    site = cfg.site.language
    return "en" if site.lower().split("-")[0] == "ja" else site


@dataclass(frozen=True, slots=True)
class Notice:
    """The single entry of a moved feed."""

    id: str
    title: str
    html: str
    link: str
    when: datetime
    lang: str


def moved_notice(plan: FeedPlan, cfg: Config) -> Notice:
    from html import escape

    when = plan.moved_at or EMPTY_FEED_DATE
    host = urlsplit(cfg.site.base_url).hostname or "localhost"
    entry_id = f"tag:{host},{when.date().isoformat()}:feed-moved/{quote(plan.relpath)}"
    url = escape(plan.moved_to)
    if cfg.site.language.lower().startswith("ja"):
        title = f"このフィードは移転しました: {plan.moved_to}"
        html = (f'<p>このフィードの配信先が <a href="{url}">{url}</a> に変わりました。'
                "お使いのリーダーで新しいアドレスを購読してください。</p>")
    else:
        title = f"This feed has moved to {plan.moved_to}"
        html = f'<p>This feed now lives at <a href="{url}">{url}</a>. Please subscribe to the new address.</p>'
    return Notice(entry_id, title, html, plan.moved_to, when, cfg.site.language)


def build_feed(plan: FeedPlan, cfg: Config, entries: Entries, render: Callable[[Post], Rendered]) -> bytes:
    """The feed's bytes in its format; every date is taken from the posts and the store."""
    if plan.fmt == "json":
        return build_json(plan, cfg, entries, render)
    return build_xml(plan, cfg, entries, render)


def _extensions():
    """feedgen extensions: WebSub hub links on the feed, xml:lang on each Atom entry (feedgen has neither)."""
    from feedgen.ext.base import BaseEntryExtension, BaseExtension
    from feedgen.util import xml_elem

    class HubLinks(BaseExtension):
        hubs: tuple[str, ...] = ()

        def extend_atom(self, feed):
            for hub in self.hubs:
                xml_elem("link", feed, href=hub, rel="hub")
            return feed

        def extend_rss(self, feed):
            channel = feed[0]
            for hub in self.hubs:
                xml_elem(f"{{{ATOM_NS}}}link", channel, href=hub, rel="hub")
            return feed

    class EntryLanguage(BaseEntryExtension):
        lang = ""

        def extend_atom(self, entry):
            if self.lang:
                entry.attrib[XML_LANG] = self.lang
            return entry

    return HubLinks, EntryLanguage


def build_xml(plan: FeedPlan, cfg: Config, entries: Entries, render: Callable[[Post], Rendered]) -> bytes:
    """Atom or RSS through feedgen."""
    from feedgen.feed import FeedGenerator  # imported here: runs with nothing to rebuild never load lxml

    fg = FeedGenerator()
    if plan.fmt == "rss":
        fg.load_extension("dc", atom=False, rss=True)
    hub_links, entry_language_ext = _extensions()
    fg.register_extension("publisher", hub_links, entry_language_ext, atom=True, rss=True)
    fg.publisher.hubs = cfg.feeds.websub_hubs
    fg.id(plan.url)
    fg.title(xml_safe(plan.title))
    fg.description(xml_safe(plan.description))  # also the Atom subtitle: set once
    fg.language(cfg.site.language)
    if cfg.site.author:
        fg.author(name=xml_safe(cfg.site.author))
    name, uri, _ = generator()
    fg.generator(name, uri=uri or None)
    # Self first, alternate last: feedgen's RSS <channel><link> is the last link added.
    fg.link(href=plan.url, rel="self", type=MEDIA_TYPES[plan.fmt])
    fg.link(href=cfg.site.base_url, rel="alternate", type="text/html")
    if plan.moved_to:
        _add_notice(fg, plan, moved_notice(plan, cfg))
    else:
        newest = max((entries.updated(p) for p in plan.entries), default=EMPTY_FEED_DATE)
        fg.updated(newest)
        fg.lastBuildDate(newest)
        for post in plan.entries:
            _add_entry(fg, plan, cfg, post, entries, render(post))
    if plan.fmt == "atom":
        return fg.atom_str(pretty=True, encoding="UTF-8", xml_declaration=True)
    return fg.rss_str(pretty=True, encoding="UTF-8", xml_declaration=True)


def _add_entry(fg, plan: FeedPlan, cfg: Config, post: Post, entries: Entries, rendered: Rendered) -> None:
    fe = fg.add_entry(order="append")
    post_id = entries.ids[post.key]
    fe.id(post_id)
    fe.guid(post_id, permalink=False)
    fe.title(xml_safe(post.title))
    fe.link(href=post.url, rel="alternate", type="text/html")
    fe.published(post.date)
    fe.updated(entries.updated(post))
    lang = entry_language(post, cfg)
    fe.publisher.lang = lang
    author = post.author or cfg.site.author
    if author:
        fe.author(name=xml_safe(author))
    if plan.fmt == "rss":
        if author:
            fe.dc.dc_creator(xml_safe(author))
        fe.dc.dc_language(lang)
    for category in post.categories:
        fe.category(term=xml_safe(category))
    fe.summary(rendered.summary, type="html")
    if rendered.content is not None:
        fe.content(rendered.content, type="html")


def _add_notice(fg, plan: FeedPlan, notice: Notice) -> None:
    fg.updated(notice.when)
    fg.lastBuildDate(notice.when)
    fe = fg.add_entry(order="append")
    fe.id(notice.id)
    fe.guid(notice.id, permalink=False)
    fe.title(notice.title)
    fe.link(href=notice.link, rel="alternate", type=MEDIA_TYPES[plan.fmt])
    fe.published(notice.when)
    fe.updated(notice.when)
    fe.publisher.lang = notice.lang
    if plan.fmt == "rss":
        fe.dc.dc_language(notice.lang)
    fe.summary(notice.html, type="html")


def _plain(html: str) -> str:
    """Sanitized HTML → one line of plain text (JSON Feed's summary is text)."""
    import re
    from html import unescape

    return " ".join(unescape(re.sub(r"<[^>]*>", "", html)).split())


def build_json(plan: FeedPlan, cfg: Config, entries: Entries, render: Callable[[Post], Rendered]) -> bytes:
    """JSON Feed 1.1 (https://jsonfeed.org/version/1.1); keys in a fixed order, so the bytes are stable."""
    feed: dict[str, object] = {"version": JSON_FEED_VERSION, "title": xml_safe(plan.title),
                               "home_page_url": cfg.site.base_url, "feed_url": plan.url,
                               "description": xml_safe(plan.description), "language": cfg.site.language}
    if cfg.site.author:
        feed["authors"] = [{"name": xml_safe(cfg.site.author)}]
    if cfg.feeds.websub_hubs:
        feed["hubs"] = [{"type": "WebSub", "url": hub} for hub in cfg.feeds.websub_hubs]
    if plan.moved_to:
        notice = moved_notice(plan, cfg)
        feed["expired"] = True
        when = notice.when.isoformat()
        feed["items"] = [{"id": notice.id, "url": notice.link, "title": notice.title, "content_html": notice.html,
                          "summary": _plain(notice.html), "date_published": when, "date_modified": when,
                          "language": notice.lang}]
    else:
        feed["items"] = [_json_item(post, cfg, entries, render(post)) for post in plan.entries]
    return (json.dumps(feed, ensure_ascii=False, indent=2) + "\n").encode("utf-8")


def _json_item(post: Post, cfg: Config, entries: Entries, rendered: Rendered) -> dict[str, object]:
    item: dict[str, object] = {
        "id": entries.ids[post.key], "url": post.url, "title": xml_safe(post.title),
        "content_html": rendered.content if rendered.content is not None else rendered.summary,
        "summary": _plain(rendered.summary), "date_published": post.date.isoformat(),
        "date_modified": entries.updated(post).isoformat(),
    }
    if post.categories:
        item["tags"] = [xml_safe(c) for c in post.categories]
    item["language"] = entry_language(post, cfg)
    author = post.author or cfg.site.author
    if author:
        item["authors"] = [{"name": xml_safe(author)}]
    return item
