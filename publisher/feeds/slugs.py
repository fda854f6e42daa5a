"""Feed slugs assigned once and kept, like entry ids: a category's feed URL never moves unless the operator
renames it, and a new category never takes an address another category's readers subscribed to.

Making a name into a slug is `reading.posts.slugify`'s job; `category_slug` adds what a feed address needs
(no invisible characters, a length every file system takes). This module decides which slug a category gets
and keeps that decision stable.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from ..config import SLUG_MAX_BYTES
from ..errors import Finding
from ..reading.cleanup import strip_invisible
from ..reading.posts import Post, slugify
from ..store.base import FeedMove, FeedSlug


def slug_key(slug: str) -> str:
    """What two slugs must not share: equal after Unicode normalisation, case folding and leaving out invisible
    characters, they would clash on a case-insensitive file system (macOS, Windows) or look the same to a reader."""
    visible = strip_invisible(slug)[0]
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", visible).casefold())


def name_key(name: str) -> str:
    """Category names that readers would take for one: same after NFKC, case folding and spacing."""
    return re.sub(r"[\s_\-‐-―・]+", "", slug_key(name))


def _cut(text: str, budget: int) -> str:
    """`text` shortened by whole characters to at most `budget` UTF-8 bytes, with no trailing '-' or '.'."""
    data = text.encode()
    if len(data) > budget:
        text = data[:budget].decode("utf-8", "ignore")
    return text.rstrip("-.")


def category_slug(name: str) -> str:
    """The slug a category name (or the slug the config maps it to) makes: `slugify` of the name without
    invisible and control characters, cut to SLUG_MAX_BYTES so that it always makes a valid file name."""
    return _cut(slugify(strip_invisible(name)[0]), SLUG_MAX_BYTES) or "untitled"


def with_suffix(base: str, n: int) -> str:
    """`base-n`, the base shortened (by whole characters) so the result fits SLUG_MAX_BYTES."""
    suffix = f"-{n}"
    return _cut(base, SLUG_MAX_BYTES - len(suffix)) + suffix


@dataclass(slots=True)
class SlugPlan:
    """Every category's slug for this pass: the stored ones, those assigned now, and moved (old) slugs."""

    slugs: dict[str, str] = field(default_factory=dict)  # category → slug
    new: list[FeedSlug] = field(default_factory=list)  # to record
    moves: dict[str, FeedMove] = field(default_factory=dict)  # old slug → move


def categories_in_order(live: Iterable[Post]) -> list[str]:
    """Categories ordered by their first post (oldest first), then by name: the order new slugs are handed out
    in, so the first category to be published keeps the plain slug."""
    first: dict[str, tuple[datetime, str]] = {}
    for post in live:
        for category in post.categories:
            seen = first.get(category)
            if seen is None or (post.date, post.key) < seen:
                first[category] = (post.date, post.key)
    return sorted(first, key=lambda c: (first[c], c))


def assign_slugs(categories: list[str], stored: Mapping[str, FeedSlug], moves: Mapping[str, FeedMove],
                 mapping: Mapping[str, str], now: str, adopt: bool = False) -> SlugPlan:
    """Slugs for `categories`: a stored one is kept whatever the config says now; a new category gets its mapped
    name or its own name made into a slug, with -2, -3 … when that clashes with any slug ever handed out, any
    moved slug, or a slug the config maps another category to.

    `adopt` (first run of a database made before slugs were stored) reproduces the old assignment, so the
    feeds already on disk keep their URLs: sorted by name, the mapping taken as written, exact clashes only."""
    plan = SlugPlan({c: rec.slug for c, rec in stored.items()}, [], dict(moves))
    if adopt:
        return _adopt(sorted(categories), mapping, plan, now)
    taken = {slug_key(s) for s in plan.slugs.values()} | {slug_key(s) for s in moves}
    reserved = {slug_key(category_slug(slug)): category for category, slug in mapping.items()}
    for category in categories:
        if category in plan.slugs:
            continue
        base = category_slug(mapping.get(category) or category)
        slug, n = base, 1
        while slug_key(slug) in taken or reserved.get(slug_key(slug), category) != category:
            n += 1
            slug = with_suffix(base, n)
        taken.add(slug_key(slug))
        plan.slugs[category] = slug
        plan.new.append(FeedSlug(category, slug, now))
    return plan


def _adopt(categories: list[str], mapping: Mapping[str, str], plan: SlugPlan, now: str) -> SlugPlan:
    used: set[str] = set()
    for category in categories:
        base = mapping.get(category) or slugify(category)
        slug, n = base, 1
        while slug in used:
            n += 1
            slug = f"{base}-{n}"
        used.add(slug)
        plan.slugs[category] = slug
        plan.new.append(FeedSlug(category, slug, now))
    return plan


def near_duplicates(names: Iterable[str]) -> list[list[str]]:
    """Groups of distinct category names that differ only by case, width, Unicode form or spacing."""
    groups: dict[str, list[str]] = {}
    for name in names:
        group = groups.setdefault(name_key(name), [])
        if name not in group:
            group.append(name)
    return [sorted(group) for group in groups.values() if len(group) > 1]


def slug_clash(new: str, category: str, stored: Mapping[str, FeedSlug], moves: Mapping[str, FeedMove]) -> str:
    """The category whose current or former slug `new` would clash with ('' when it is free for `category`)."""
    key = slug_key(new)
    for other, rec in stored.items():
        if other != category and slug_key(rec.slug) == key:
            return other
    for old, move in moves.items():
        if move.category != category and slug_key(old) == key:
            return move.category
    return ""


def mapping_differences(stored: Mapping[str, FeedSlug], mapping: Mapping[str, str]) -> list[tuple[str, str, str]]:
    """(category, slug in use, slug the config now maps it to) for every mapped category whose feed is elsewhere."""
    out = []
    for category, wanted in sorted(mapping.items()):
        rec = stored.get(category)
        if rec is not None and category_slug(wanted) != rec.slug and wanted != rec.slug:
            out.append((category, rec.slug, category_slug(wanted)))
    return out


def _line_of(path: str, pattern: str) -> int:
    """The first line of a file matching `pattern` (1 when none does or the file cannot be read)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for number, line in enumerate(fh, start=1):
                if re.search(pattern, line):
                    return number
    except OSError:
        pass
    return 1


def category_findings(posts: Iterable[tuple[str, Post]], mapping: Mapping[str, str], stored: Mapping[str, FeedSlug],
                      config_path: str) -> list[Finding]:
    """`publish check` warnings about categories: names readers would take for one (case, width, Unicode form,
    spacing), a name that takes the slug the config maps another category to, and mapped slugs that differ
    from the slug a feed already has."""
    first: dict[str, tuple[datetime, str, str]] = {}  # category → (date, key, path) of its first post
    for path, post in posts:
        for category in post.categories:
            if category not in first or (post.date, post.key) < first[category][:2]:
                first[category] = (post.date, post.key, path)
    out: list[Finding] = []
    categories_line = r"^\s*categor(y|ies)\s*:"
    for group in near_duplicates(first):
        keeper = min(group, key=lambda c: first[c][:2])
        for other in sorted(set(group) - {keeper}):
            path = first[other][2]
            out.append(Finding(path, _line_of(path, categories_line), "warning",
                               f"category {other!r} differs from {keeper!r} only in case, width or spacing: "
                               "readers get two separate feeds", f"write it {keeper!r}, as the other posts do"))
    mapped = {slug_key(category_slug(slug)): category for category, slug in mapping.items()}
    for category in sorted(first):
        owner = mapped.get(slug_key(category_slug(category)))
        if category not in mapping and owner not in (None, category):
            path = first[category][2]
            out.append(Finding(path, _line_of(path, categories_line), "warning",
                               f"category {category!r} has the slug that [feeds.category_slugs] gives {owner!r}, "
                               "so its feed gets another address", f"use the category {owner!r}, or map "
                               f"{category!r} to a slug of its own in [feeds.category_slugs]"))
    for category, used, wanted in mapping_differences(stored, mapping):
        out.append(Finding(config_path, _line_of(config_path, rf"^\s*\"?{re.escape(category)}\"?\s*="), "warning",
                           f"[feeds.category_slugs] maps {category!r} to {wanted!r}, but its feed has been at "
                           f"{used!r} since it was first published (a slug never changes by itself)",
                           f"run `publish feeds rename-slug {used} {wanted}` to move it, or map it to {used!r}"))
    return out
