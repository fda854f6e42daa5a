"""A post file → `Post`: front matter, dates, categories, clean body facts; a bad file → `PostError`."""

from __future__ import annotations

import errno
import fnmatch
import hashlib
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple
from urllib.parse import quote
from zoneinfo import ZoneInfo

from ..config import CleanupConfig, Config, make_slug
from ..errors import ConfigError, Finding, PostError
from .cleanup import clean_body, guess_title, plain_text, strip_invisible

_DATE_RE = re.compile(
    r"^(\d{4})[-/](\d{1,2})[-/](\d{1,2})"
    r"(?:[T\s]+(\d{1,2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,6})\d*)?)?)?"
    r"\s*(Z|UTC|GMT|[+-]\d{2}(?::?\d{2})?)?$",
    re.IGNORECASE,
)
_CJK_RE = re.compile(r"[\u3000-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef]+")
_JAPANESE_RE = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f]")
_LANG_TAG_RE = re.compile(r"[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8})*")
_WORD_RE = re.compile(r"[A-Za-z0-9\u00c0-\u024f]+(?:['’-][A-Za-z0-9]+)*")
CJK_CHARS_PER_MINUTE = 500
WORDS_PER_MINUTE = 220
EXCERPT_CHARS = 160


@dataclass(frozen=True, slots=True)
class ReaderSettings:
    """What reading a post needs from the config; small and picklable for worker processes."""

    timezone: str
    base_url: str
    permalink: str
    cleanup: CleanupConfig
    check_body: bool = False  # run every body clean-up and report it, even when nothing is derived from the body

    @classmethod
    def from_config(cls, cfg: Config, check_body: bool = False) -> ReaderSettings:
        return cls(cfg.site.timezone, cfg.site.base_url, cfg.posts.permalink, cfg.cleanup, check_body)


@dataclass(slots=True)
class Post:
    """Everything about a post except its body, which is re-read only when rendered."""

    key: str  # path relative to the posts folder, with '/' separators; the post's identity
    title: str
    date: datetime  # aware
    updated: datetime | None
    categories: tuple[str, ...]
    tags: tuple[str, ...]
    author: str
    excerpt: str  # Markdown, from front matter or derived from the body
    excerpt_given: bool
    slug: str
    url: str
    draft: bool
    reading_time: int
    content_hash: str
    finding_rows: tuple[tuple, ...] = ()  # Finding fields; decoded only when asked for
    lang: str = ""  # front matter `lang`, else "ja" when the title or excerpt has Japanese script, else ""

    @property
    def findings(self) -> tuple[Finding, ...]:
        return tuple(Finding(*row) for row in self.finding_rows)

    def to_row(self) -> tuple:
        """Plain values in field order, for the parse cache (marshal-able, no pickle)."""
        return (self.key, self.title, self.date.isoformat(), self.updated.isoformat() if self.updated else None,
                self.categories, self.tags, self.author, self.excerpt, self.excerpt_given, self.slug, self.url,
                self.draft, self.reading_time, self.content_hash, self.finding_rows, self.lang)

    @classmethod
    def from_row(cls, row: tuple) -> Post:
        key, title, when, updated, *rest = row
        return cls(key, title, datetime.fromisoformat(when), datetime.fromisoformat(updated) if updated else None,
                   *rest)


class SourceFile(NamedTuple):
    """A post file found on disk, with the stat facts the parse cache is keyed by."""

    key: str
    path: str
    size: int
    mtime_ns: int


def site_posts(cfg: Config) -> list[SourceFile]:
    """The site's post files. A posts folder that is missing or unreadable is a config error: read as empty,
    it would empty every feed."""
    folder = cfg.posts_dir
    if not folder.is_dir():
        raise ConfigError(cfg.source, "posts.folder", f"{folder} is not a folder; create it or fix the path")
    if not os.access(folder, os.R_OK | os.X_OK):
        raise ConfigError(cfg.source, "posts.folder", f"{folder} cannot be read by this user; fix its permissions")
    return scan_posts(folder, cfg.posts.patterns)


UNRESOLVED = (errno.ENOENT, errno.ENOTDIR, errno.ELOOP)  # gone meanwhile, not a folder, a link going nowhere


def scan_posts(folder: Path, patterns: tuple[str, ...]) -> list[SourceFile]:
    """Every post file below `folder` matching a pattern, hidden files and folders skipped, sorted by key.
    Linked folders are followed, except one that leads back to a folder the walk is already inside (a loop)."""
    matches = re.compile("|".join(fnmatch.translate(p) for p in patterns)).match
    found: list[SourceFile] = []
    pending: list[tuple[str, str, frozenset[tuple[int, int]]]] = [("", str(folder), frozenset())]
    while pending:
        prefix, directory, above = pending.pop()
        try:
            st = os.stat(directory)
            entries = os.scandir(directory)
        except OSError as exc:
            if exc.errno in UNRESOLVED:
                continue
            raise  # unreadable: better no pass than feeds emptied of that folder's posts
        here = above | {(st.st_dev, st.st_ino)}
        if len(here) == len(above):
            entries.close()
            continue  # a link back up the tree: walked already
        with entries:
            for entry in entries:
                name = entry.name
                if name[0] == ".":
                    continue
                try:
                    if matches(name) and entry.is_file():
                        st = entry.stat()
                        found.append(SourceFile(prefix + name, entry.path, st.st_size, st.st_mtime_ns))
                    elif name[0] != "_" and entry.is_dir():
                        pending.append((f"{prefix}{name}/", entry.path, here))
                except OSError as exc:
                    if exc.errno not in UNRESOLVED:
                        raise
    found.sort()
    return found


def parse_date(value: object, tz: ZoneInfo) -> datetime:
    """A front-matter date in any form YAML gives it → an aware datetime; naive ones are in `tz`. Dates the
    calendar would overflow on (in UTC, or a week on for the digest) are refused."""
    when = _parse_date(value, tz)
    try:
        in_range = 1900 <= when.astimezone(UTC).year <= 9998
    except OverflowError:
        in_range = False
    if not in_range:
        raise ValueError(f"{value!s} is outside the years 1900 to 9998")
    return when


def _parse_date(value: object, tz: ZoneInfo) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=tz)
    if isinstance(value, date):
        return datetime.combine(value, time(), tz)
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a date")
    m = _DATE_RE.match(value.strip())
    if not m:
        raise ValueError(f"{value!r} is not a date")
    y, mo, d, h, mi, s, frac, zone = m.groups()
    micro = int((frac or "0").ljust(6, "0"))
    naive = datetime(int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(s or 0), micro)
    if not zone:
        return naive.replace(tzinfo=tz)
    if zone.upper() in ("Z", "UTC", "GMT"):
        zone = "+00:00"
    digits = zone[1:].replace(":", "").ljust(4, "0")
    return datetime.fromisoformat(f"{naive.isoformat()}{zone[0]}{digits[:2]}:{digits[2:]}")


def reading_minutes(text: str) -> int:
    """Minutes to read `text`: Japanese counted by characters, other languages by words."""
    runs = _CJK_RE.findall(text)
    cjk = sum(map(len, runs))
    words = len(_WORD_RE.findall(_CJK_RE.sub(" ", text))) if len(runs) else len(_WORD_RE.findall(text))
    return max(1, math.ceil(cjk / CJK_CHARS_PER_MINUTE + words / WORDS_PER_MINUTE))


def slugify(text: str) -> str:
    """A URL- and file-safe slug that keeps Unicode (Japanese stays Japanese; URLs percent-encode it)."""
    return make_slug(text)


def post_language(meta: dict, title: str, excerpt: str) -> tuple[str, bool]:
    """(language tag, whether the front matter's `lang` was usable): the given tag, else "ja" when the title or
    excerpt holds Japanese script, else "" (the feed's non-Japanese default)."""
    given = meta.get("lang") or meta.get("language")
    if isinstance(given, str) and _LANG_TAG_RE.fullmatch(given.strip()):
        primary, *rest = given.strip().split("-")
        return "-".join([primary.lower(), *rest]), True
    return ("ja" if _JAPANESE_RE.search(title) or _JAPANESE_RE.search(excerpt) else ""), given is None


def permalink(settings: ReaderSettings, when: datetime, slug: str) -> str:
    local = when.astimezone(ZoneInfo(settings.timezone))
    path = settings.permalink.format(
        year=f"{local.year:04d}", month=f"{local.month:02d}", day=f"{local.day:02d}", slug=quote(slug, safe="")
    )
    return settings.base_url + path.lstrip("/")


def content_hash(raw: bytes) -> str:
    return hashlib.blake2b(raw, digest_size=16).hexdigest()


def _key_line(fm_text: str, key: str, first_line: int) -> int:
    """The file line on which a front-matter key stands (or the front matter's first line)."""
    m = re.search(rf"^{re.escape(key)}\s*:", fm_text, re.MULTILINE)
    return first_line + fm_text.count("\n", 0, m.start()) if m else first_line


def _strings(value: object, path: str, line: int, key: str) -> tuple[str, ...]:
    """A front-matter list-or-string value → a tuple of unique non-empty strings, in order."""
    if value is None:
        return ()
    items = value if isinstance(value, list) else [value]
    out: list[str] = []
    for item in items:
        if isinstance(item, dict | list):
            raise PostError(path, line, f"'{key}' holds a nested {type(item).__name__}",
                            f"write {key}: [\"one\", \"two\"] or {key}: one")
        text = str(item).strip()
        if text and text not in out:
            out.append(text)
    return tuple(out)


@lru_cache(maxsize=1)
def _yaml_handler():
    """python-frontmatter's YAML handler, imported on first use: cached runs never parse YAML."""
    from frontmatter.default_handlers import YAMLHandler

    return YAMLHandler()


def split_front_matter(text: str) -> tuple[str, str, int, int] | None:
    """(front matter, body, line of the opening '---', first line of body), or None without front matter."""
    lead = len(text) - len(text.lstrip("\n"))
    handler = _yaml_handler()
    if not handler.detect(text[lead:]):
        return None
    matches = handler.FM_BOUNDARY.finditer(text, lead)
    opening = next(matches)
    closing = next(matches, None)
    if closing is None:
        return None
    fm = text[opening.end():closing.start()]
    body_start = closing.end()
    if text.startswith("\n", body_start):
        body_start += 1
    return fm, text[body_start:], lead + 1, text.count("\n", 0, body_start) + 1


def decode(raw: bytes, path: str) -> str:
    """UTF-8 bytes → text (BOM dropped); a bad byte is reported with its line."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise PostError(path, line, f"not valid UTF-8 (byte 0x{raw[exc.start]:02x})",
                        "re-save the file as UTF-8") from None
    return text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")


def _front_matter_block(title: str, tz: ZoneInfo) -> str:
    now = datetime.now(tz).replace(microsecond=0)
    safe_title = title.replace("\\", "\\\\").replace('"', '\\"')
    return (f'---\ntitle: "{safe_title}"\ndate: {now.strftime("%Y-%m-%d %H:%M:%S %z")}\n'
            f'categories: ["…"]\nexcerpt: ""\n---\n')


def read_post(source: SourceFile, settings: ReaderSettings, raw: bytes | None = None) -> Post:
    """Read and check one post file; raises PostError naming the file and line on anything wrong."""
    path = source.path
    tz = ZoneInfo(settings.timezone)
    if raw is None:
        try:
            with open(path, "rb") as fh:
                raw = fh.read()
        except OSError as exc:
            raise PostError(path, 1, f"cannot be read ({exc.strerror})", "check the file's permissions") from None
    if not raw.strip():
        raise PostError(path, 1, "the file is empty", "write front matter and a body, or delete the file")
    text = decode(raw, path)
    parts = split_front_matter(text)
    if parts is None:
        guessed = guess_title(text)
        raise PostError(path, 1, "no front matter",
                        "add a block between '---' lines at the top with at least title and date",
                        detail=_front_matter_block(guessed, tz))
    fm_text, body, fm_line, body_line = parts
    fm_findings = []
    if settings.cleanup.invisible_chars:
        cleaned, count = strip_invisible(fm_text)
        if count:
            line = fm_line + next(i for i, (a, b) in enumerate(zip(fm_text.split("\n"), cleaned.split("\n"),
                                                                   strict=True)) if a != b)
            fm_findings.append(Finding(path, line, "info", f"removed {count} invisible or control character(s) "
                                       "from the front matter", "remove them from the source text"))
            fm_text = cleaned
    import yaml

    try:
        meta = _yaml_handler().load(fm_text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        if isinstance(exc, yaml.reader.ReaderError):
            line = fm_line + fm_text.count("\n", 0, exc.position)
        else:
            line = fm_line + (mark.line if mark else 0)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise PostError(path, line, f"front matter is not valid YAML ({problem})",
                        "fix the YAML; quote titles that contain ':' or '#'") from None
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise PostError(path, fm_line, "front matter is not a set of 'key: value' lines",
                        "write one 'key: value' per line, e.g. title: \"…\"")
    post = _build_post(source, settings, tz, meta, fm_text, fm_line, body, body_line, raw)
    if fm_findings:
        return replace(post, finding_rows=tuple(f.as_tuple() for f in fm_findings) + post.finding_rows)
    return post


def _build_post(source: SourceFile, settings: ReaderSettings, tz: ZoneInfo, meta: dict, fm_text: str,
                fm_line: int, body: str, body_line: int, raw: bytes) -> Post:
    path = source.path
    title = meta.get("title")
    if isinstance(title, dict | list):
        raise PostError(path, _key_line(fm_text, "title", fm_line), f"the title is a {type(title).__name__}, not text",
                        'write it as title: "…" (quote titles that contain ":" or "#")')
    if title is None or not str(title).strip():
        raise PostError(path, _key_line(fm_text, "title", fm_line), "no title",
                        'add a line title: "…" to the front matter')
    title = " ".join(str(title).split())
    if "date" not in meta or meta["date"] in (None, ""):
        raise PostError(path, fm_line, "no date", "add a line date: 2025-11-29 20:40:29 +0900 to the front matter")
    try:
        when = parse_date(meta["date"], tz)
    except (ValueError, OverflowError) as exc:
        raise PostError(path, _key_line(fm_text, "date", fm_line), f"the date {exc.args[0] if exc.args else ''}",
                        "write it as 2025-11-29 20:40:29 +0900, 2025-11-29T20:40:29Z or 2025-11-29") from None
    updated = None
    for key in ("updated", "last_modified_at", "lastmod"):
        if meta.get(key):
            try:
                updated = parse_date(meta[key], tz)
            except ValueError:
                raise PostError(path, _key_line(fm_text, key, fm_line), f"'{key}' {meta[key]!r} is not a date",
                                "write it like the date, or remove it") from None
            break
    categories = _strings(meta.get("categories", meta.get("category")), path,
                          _key_line(fm_text, "categories", fm_line), "categories")
    tags = _strings(meta.get("tags"), path, _key_line(fm_text, "tags", fm_line), "tags")
    draft = meta.get("draft") is True or meta.get("published") is False
    slug = slugify(str(meta.get("slug") or Path(source.key).stem))
    findings: list[Finding] = []
    reading = meta.get("reading_time")
    reading_given = not isinstance(reading, bool) and isinstance(reading, int) and reading >= 1
    if reading is not None and not reading_given:
        findings.append(Finding(path, _key_line(fm_text, "reading_time", fm_line), "warning",
                                f"reading_time {reading!r} is not a whole number of minutes",
                                "write a number like 5, or remove it to have it computed"))
    excerpt = meta.get("excerpt") or meta.get("description") or meta.get("summary")
    excerpt_given = bool(excerpt and str(excerpt).strip())
    excerpt = " ".join(str(excerpt).split()) if excerpt_given else ""
    # The body is cleaned here only when something is derived from it, or for `publish check`;
    # feed rendering cleans it again for the few posts that land in a feed.
    if settings.check_body or not (reading_given and excerpt_given):
        cleaned = clean_body(body, title, settings.cleanup, path, body_line)
        findings[:0] = cleaned.findings
        if not reading_given:
            reading = reading_minutes(plain_text(cleaned.text))
        if not excerpt_given:
            excerpt = _derived_excerpt(cleaned.text)
    author = str(meta.get("author") or "").strip()
    lang, lang_ok = post_language(meta, title, excerpt)
    if not lang_ok:
        key = "lang" if meta.get("lang") else "language"
        findings.append(Finding(path, _key_line(fm_text, key, fm_line), "warning",
                                f"{key} {meta[key]!r} is not a language tag", "write one like en, ja or en-US"))
    return Post(
        key=source.key, title=title, date=when, updated=updated, categories=categories, tags=tags,
        author=author, excerpt=excerpt, excerpt_given=excerpt_given, slug=slug,
        url=permalink(settings, when, slug), draft=draft, reading_time=reading,
        content_hash=content_hash(raw), finding_rows=tuple(f.as_tuple() for f in findings), lang=lang,
    )


def _derived_excerpt(body: str) -> str:
    """The first paragraph of plain text, shortened to about EXCERPT_CHARS characters."""
    for block in re.split(r"\n\s*\n", body):
        text = " ".join(plain_text(block).split())
        if text:
            return text if len(text) <= EXCERPT_CHARS else text[:EXCERPT_CHARS].rstrip() + "…"
    return ""


def read_body(source_path: str, title: str, settings: ReaderSettings) -> str:
    """The cleaned Markdown body of an already-validated post."""
    with open(source_path, "rb") as fh:
        text = decode(fh.read(), source_path)
    parts = split_front_matter(text)
    body, body_line = (parts[1], parts[3]) if parts else (text, 1)
    return clean_body(body, title, settings.cleanup, source_path, body_line).text


def read_many(sources: list[SourceFile], settings: ReaderSettings) -> Iterator[tuple[SourceFile, Post | Finding]]:
    """Read posts in this process; yields each source with its Post or its error Finding."""
    for source in sources:
        try:
            yield source, read_post(source, settings)
        except PostError as exc:
            yield source, exc.finding
