"""Posts → one Atom and one RSS feed per scope (site-wide, each category); byte-stable, atomic writes."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote

from ..config import Config
from ..reading.load import Rendered
from ..reading.posts import Post, slugify
from ..text import xml_safe

FORMATS = ("atom", "rss")
EMPTY_FEED_DATE = datetime(1970, 1, 1, tzinfo=UTC)  # a feed with no entries yet: fixed, so rebuilds match
INDEX_NAME = "index.opml"


@dataclass(frozen=True, slots=True)
class FeedPlan:
    """One feed file to produce: its scope, format, path below the feeds folder, URL and entries."""

    title: str
    category: str | None
    fmt: str
    relpath: str
    url: str
    entries: tuple[Post, ...]


def category_slugs(categories: set[str], mapping: Mapping[str, str]) -> dict[str, str]:
    """Category → file slug: the operator's map first, else the category itself made path-safe; unique."""
    slugs: dict[str, str] = {}
    used: set[str] = set()
    for category in sorted(categories):
        base = mapping.get(category) or slugify(category)
        slug, n = base, 1
        while slug in used:
            n += 1
            slug = f"{base}-{n}"
        used.add(slug)
        slugs[category] = slug
    return slugs


def plan_feeds(live: tuple[Post, ...], cfg: Config) -> list[FeedPlan]:
    """The feeds the live posts (newest first) call for: site-wide plus one per category, each format."""
    limit = cfg.feeds.entries
    by_category: dict[str, list[Post]] = {}
    for post in live:
        for category in post.categories:
            by_category.setdefault(category, []).append(post)
    slugs = category_slugs(set(by_category), cfg.feeds.category_slugs)
    scopes = [(cfg.site.title, None, "all", tuple(live[:limit]))]
    for category in sorted(by_category):
        title = f"{cfg.site.title} — {category}"
        scopes.append((title, category, f"category/{slugs[category]}", tuple(by_category[category][:limit])))
    return [
        FeedPlan(title, category, fmt, f"{stem}.{fmt}.xml", cfg.feeds_url + quote(f"{stem}.{fmt}.xml"), entries)
        for title, category, stem, entries in scopes
        for fmt in FORMATS
    ]


def settings_signature(cfg: Config, reader_signature: str) -> str:
    """What, besides the posts, shapes a feed's bytes; a change here rebuilds every feed."""
    parts = [reader_signature, repr(cfg.feeds), cfg.feeds_url]
    return hashlib.blake2b("\n".join(parts).encode(), digest_size=16).hexdigest()


def fingerprint(plan: FeedPlan, ids: Mapping[str, str], signature: str) -> str:
    """A digest of everything a feed file is built from, to skip rebuilding feeds that cannot have changed."""
    data = [signature, plan.relpath, plan.title, [(ids[p.key], p.content_hash) for p in plan.entries]]
    return hashlib.blake2b(json.dumps(data, ensure_ascii=False).encode(), digest_size=16).hexdigest()


def _entry_updated(post: Post) -> datetime:
    return max(post.updated, post.date) if post.updated else post.date


def build_feed(plan: FeedPlan, cfg: Config, ids: Mapping[str, str], render: Callable[[Post], Rendered]) -> bytes:
    """The feed's XML bytes; every date is taken from the posts, so the same posts give the same bytes."""
    from feedgen.feed import FeedGenerator  # imported here: runs with nothing to rebuild never load lxml

    fg = FeedGenerator()
    if plan.fmt == "rss":
        fg.load_extension("dc", atom=False, rss=True)
    fg.id(plan.url)
    fg.title(xml_safe(plan.title))
    description = cfg.site.description or cfg.site.title
    fg.description(xml_safe(f"{description} — {plan.category}" if plan.category else description))
    fg.subtitle(xml_safe(plan.category or description))
    fg.language(cfg.site.language)
    if cfg.site.author:
        fg.author(name=xml_safe(cfg.site.author))
    fg.generator("publisher", uri="https://pypi.org/project/publisher/")
    # Self first, alternate last: feedgen's RSS <channel><link> is the last link added.
    fg.link(href=plan.url, rel="self", type=f"application/{plan.fmt}+xml")
    fg.link(href=cfg.site.base_url, rel="alternate", type="text/html")
    newest = max((_entry_updated(p) for p in plan.entries), default=EMPTY_FEED_DATE)
    fg.updated(newest)
    fg.lastBuildDate(newest)
    for post in plan.entries:
        rendered = render(post)
        fe = fg.add_entry(order="append")
        fe.id(ids[post.key])
        fe.guid(ids[post.key], permalink=False)
        fe.title(xml_safe(post.title))
        fe.link(href=post.url, rel="alternate", type="text/html")
        fe.published(post.date)
        fe.updated(_entry_updated(post))
        author = post.author or cfg.site.author
        if author:
            fe.author(name=xml_safe(author))
            if plan.fmt == "rss":
                fe.dc.dc_creator(xml_safe(author))
        for category in post.categories:
            fe.category(term=xml_safe(category))
        fe.summary(rendered.summary, type="html")
        if rendered.content is not None:
            fe.content(rendered.content, type="html")
    if plan.fmt == "atom":
        return fg.atom_str(pretty=True, encoding="UTF-8", xml_declaration=True)
    return fg.rss_str(pretty=True, encoding="UTF-8", xml_declaration=True)


def build_index(plans: list[FeedPlan], cfg: Config) -> bytes:
    """An OPML 2.0 list of every feed, for the operator to link to; ordered as the plans are."""
    from xml.etree import ElementTree as ET
    opml = ET.Element("opml", version="2.0")
    head = ET.SubElement(opml, "head")
    ET.SubElement(head, "title").text = xml_safe(f"{cfg.site.title} — feeds")
    body = ET.SubElement(opml, "body")
    for plan in plans:
        kind = "Atom" if plan.fmt == "atom" else "RSS"
        ET.SubElement(body, "outline", type="rss", version=kind.upper(), text=xml_safe(f"{plan.title} ({kind})"),
                      title=xml_safe(f"{plan.title} ({kind})"), xmlUrl=plan.url, htmlUrl=cfg.site.base_url)
    ET.indent(opml)
    return ET.tostring(opml, encoding="UTF-8", xml_declaration=True) + b"\n"
