"""What readers and sites get besides the entries: URLs from configuration, OPML lists that import cleanly and
pass the W3C validator's rules, discovery links, JSON Feed 1.1, per-entry language, and `updated` on edits."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from datetime import datetime
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote, unquote
from xml.etree import ElementTree as ET

import feedparser
import pytest

from .conftest import FIXED_NOW, post_text

FEEDS = "https://news.example.jp/feeds/"
ATOM = "{http://www.w3.org/2005/Atom}"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"


def local_path(site, url: str, base: str = FEEDS) -> Path:
    assert url.startswith(base), url
    return site.feeds / unquote(url[len(base):])


# -- URLs come from configuration only ---------------------------------------------------------------------

@pytest.mark.parametrize("folder", ["absolute", "../www/feeds"])
def test_feeds_folder_outside_the_site_keeps_the_configured_urls(site, tmp_path, folder):
    target = tmp_path / "elsewhere" / "feeds" if folder == "absolute" else (site.root / folder)
    site.set_config('folder = "feeds"', f'folder = "{target if folder == "absolute" else folder}"')
    result = site.run("--now", FIXED_NOW)
    assert result.exit_code == 0, result.output
    target = target.resolve()
    assert not site.feeds.exists()
    for path in target.rglob("*.xml"):
        parsed = feedparser.parse(path.read_bytes())
        self_link = next(link.href for link in parsed.feed.links if link.rel == "self")
        assert self_link == FEEDS + quote(path.relative_to(target).as_posix()), self_link
    assert json.loads((target / "all.json").read_bytes())["feed_url"] == FEEDS + "all.json"
    opml = (target / "index.opml").read_text(encoding="utf-8")
    assert "/tmp/" not in opml and ".." not in opml and str(target) not in opml


def test_url_path_and_base_url_set_the_address(site):
    site.set_keys(url_path="/syndication/")
    site.run("--now", FIXED_NOW)
    assert 'href="https://news.example.jp/syndication/all.atom.xml" rel="self"' in \
        (site.feeds / "all.atom.xml").read_text(encoding="utf-8")
    site.set_config('base_url = ""\n', 'base_url = "https://cdn.example.net/f"\n')
    site.run("--now", FIXED_NOW)
    assert 'href="https://cdn.example.net/f/all.atom.xml" rel="self"' in \
        (site.feeds / "all.atom.xml").read_text(encoding="utf-8")


@pytest.mark.parametrize(("key", "value", "message"), [
    ("url_path", "../feeds", "[feeds.url_path] must be a path below site.base_url"),
    ("url_path", "https://cdn.example.net/", "[feeds.url_path] must be a path below site.base_url"),
    ("formats", ["atom", "xml"], "[feeds.formats] must list distinct formats out of atom, rss, json"),
    ("formats", [], "[feeds.formats] must list distinct formats"),
    ("opml", ["rss"], "[feeds.opml] lists 'rss', which is not in feeds.formats"),
    ("websub_hubs", ["ftp://hub"], "[feeds.websub_hubs[0]] must be an absolute http(s) URL"),
    ("websub_wait", -1, "[feeds.websub_wait] must be 0"),
])
def test_bad_feed_settings_name_their_key(site, key, value, message):
    if key == "opml":
        site.set_keys(formats=["atom"])
    site.set_keys(**{key: value})
    result = site.run("--dry-run")
    assert result.exit_code == 2, result.output
    assert message in result.output


@pytest.mark.parametrize(("old", "new", "message"), [
    ('base_url = ""\n', 'base_url = "https://cdn.example.net/f/?v=1"\n', "[feeds.base_url] must be"),
    ('base_url = ""\n', 'base_url = "https://cdn.example.net/f#top"\n', "[feeds.base_url] must be"),
    ('base_url = ""\n', 'base_url = "https://cdn.example.net/a b/"\n', "[feeds.base_url] must be"),
    ('base_url = ""\n', 'base_url = "https://cdn.example.net/f/../g/"\n', "[feeds.base_url] must be"),
    ('base_url = ""\n', 'base_url = "https://[::1/"\n', "[feeds.base_url] must be"),
    ('base_url = ""\n', 'base_url = "https://cdn.example.net/\\u0007/"\n', "[feeds.base_url] must be"),
    ('url_path = "feeds/"', 'url_path = "feeds\\u0000/"', "[feeds.url_path] must be a path below site.base_url"),
    ('base_url = "https://news.example.jp/"', 'base_url = "https://news.example.jp/\\u0007/"', "[site.base_url] must"),
])
def test_feed_addresses_that_cannot_be_urls_are_config_errors(site, old, new, message):
    """A query, a fragment, spaces, dot segments or control characters would make every feed URL wrong (or
    one URL for every feed): refused with the key named, never an internal error."""
    site.set_config(old, new)
    result = site.run("--dry-run")
    assert result.exit_code == 2, result.output
    assert message in result.output and "internal error" not in result.output


@pytest.mark.parametrize(("old", "new", "base"), [
    ('url_path = "feeds/"', 'url_path = "フィード/"', "https://news.example.jp/%E3%83%95%E3%82%A3%E3%83%BC%E3%83%89/"),
    ('url_path = "feeds/"', 'url_path = "%E3%83%95/"', "https://news.example.jp/%E3%83%95/"),
    ('base_url = ""\n', 'base_url = "https://cdn.example.net/配信/"\n', "https://cdn.example.net/%E9%85%8D%E4%BF%A1/"),
])
def test_non_ascii_feed_paths_are_percent_encoded_like_slugs(site, old, new, base):
    """Feed ids and self links are URIs (the W3C validator: 'IRI found where URL expected'): a Japanese path in
    the configuration is percent-encoded like a Japanese slug, and one already encoded is kept as it is."""
    site.set_config(old, new)
    result = site.run("--now", FIXED_NOW)
    assert result.exit_code == 0, result.output
    atom = ET.parse(site.feeds / "all.atom.xml").getroot()
    assert atom.find(f"{ATOM}id").text == base + "all.atom.xml"
    assert atom.find(f"{ATOM}link[@rel='self']").get("href") == base + "all.atom.xml"
    assert json.loads((site.feeds / "all.json").read_bytes())["feed_url"] == base + "all.json"
    urls = [o.get("xmlUrl") for o in ET.parse(site.feeds / "index.opml").getroot().iter("outline")]
    assert urls[0] == base + "all.atom.xml" and all(url.isascii() and url.startswith(base) for url in urls)
    assert f"{base}category/{quote('政策')}.atom.xml" in urls


# -- OPML and discovery links ------------------------------------------------------------------------------

def validator_rules(data: bytes, fmt: str) -> list[str]:
    """The W3C feed validator's OPML rules (src/feedvalidator/opml.py), as problems found."""
    problems = []
    root = ET.fromstring(data)
    if root.tag != "opml" or root.get("version") not in ("1.0", "1.1", "2.0"):
        problems.append("opml version")
    if root.find("head") is None or root.find("body") is None or root.find("body/outline") is None:
        problems.append("head, body and an outline are required")
    known = {"category", "created", "description", "htmlUrl", "isBreakpoint", "isComment", "language", "text",
             "title", "type", "url", "version", "xmlUrl"}
    for outline in root.iter("outline"):
        attrs = outline.attrib
        problems += [f"unknown attribute {name}" for name in set(attrs) - known]
        if "text" not in attrs:
            problems.append("outline without text")
        if attrs.get("type", "").lower() == "rss" and not {"xmlUrl", "title"} <= set(attrs):
            problems.append("rss outline without xmlUrl or title")
        if "version" in attrs and attrs["version"] not in ("RSS", "RSS1", "RSS2", "scriptingNews"):
            problems.append(f"InvalidOutlineVersion {attrs['version']}")
        if fmt == "rss" and attrs.get("version") != "RSS2":
            problems.append("an RSS 2.0 feed is version RSS2")
        if not re.fullmatch(r"https?://[!#$&-;=?-\[\]_a-z~%]+", attrs.get("htmlUrl", "")):
            problems.append("htmlUrl is not a URI")
    return problems


@pytest.mark.parametrize("fmt", ["atom", "rss", "json"])
def test_opml_lists_each_feed_once_and_follows_the_validator_rules(site, fmt):
    site.set_keys(opml=["atom", "rss", "json"])
    site.run("--now", FIXED_NOW)
    name = "index.opml" if fmt == "atom" else f"index-{fmt}.opml"
    data = (site.feeds / name).read_bytes()
    assert validator_rules(data, fmt) == []
    outlines = list(ET.fromstring(data).iter("outline"))
    assert len(outlines) == 7, "one outline per feed: the site and each category"
    suffix = {"atom": ".atom.xml", "rss": ".rss.xml", "json": ".json"}[fmt]
    for outline in outlines:
        url = outline.get("xmlUrl")
        assert url.endswith(suffix), "one format per list: a reader never gets an entry twice"
        path = local_path(site, url)
        if fmt == "json":
            title = json.loads(path.read_bytes())["title"]
        else:
            parsed = feedparser.parse(path.read_bytes())
            assert parsed.bozo == 0
            title = parsed.feed.title
        assert title == outline.get("title") == outline.get("text")
    assert [o.get("title") for o in outlines][:2] == ["AI速報ラボ", "AI速報ラボ — Research"]


def test_only_the_configured_lists_are_written(site):
    site.set_keys(opml=["atom", "rss"])
    site.run("--now", FIXED_NOW)
    assert (site.feeds / "index-rss.opml").exists()
    site.set_keys(opml=["atom"])
    result = site.run("--now", FIXED_NOW)
    assert "feeds/index-rss.opml" in result.output
    assert not (site.feeds / "index-rss.opml").exists()


class LinkTags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[dict[str, str]] = []

    def handle_starttag(self, tag, attrs) -> None:
        if tag == "link":
            self.links.append(dict(attrs))


def test_discovery_links_name_every_feed_with_its_type(site):
    site.run("--now", FIXED_NOW)
    parser = LinkTags()
    parser.feed((site.feeds / "discovery.html").read_text(encoding="utf-8"))
    types = {".atom.xml": "application/atom+xml", ".rss.xml": "application/rss+xml", ".json": "application/feed+json"}
    written = {FEEDS + quote(p.relative_to(site.feeds).as_posix()) for p in site.feeds.rglob("*")
               if p.name.endswith(tuple(types))}
    assert {link["href"] for link in parser.links} == written
    for link in parser.links:
        assert link["rel"] == "alternate" and link["title"]
        assert link["type"] == next(t for s, t in types.items() if link["href"].endswith(s))
    assert site.run("feeds", "links").output == (site.feeds / "discovery.html").read_text(encoding="utf-8")


VALIDATOR = os.environ.get("FEEDVALIDATOR_PYTHON")  # a Python that can import the W3C feedvalidator


@pytest.mark.skipif(not VALIDATOR, reason="set FEEDVALIDATOR_PYTHON to run the W3C feed validator")
def test_w3c_feed_validator_finds_nothing(site):
    site.set_keys(opml=["atom", "rss", "json"], websub_hubs=["https://hub.example.net/"])
    site.run("--now", FIXED_NOW)
    site.run("--now", FIXED_NOW, "feeds", "rename-slug", "research", "research-notes")
    script = (
        "import sys, feedvalidator\nfrom urllib.parse import quote\nfrom feedvalidator import compatibility\n"
        "from feedvalidator.formatter.text_plain import Formatter\nbad = []\n"
        "for path in sys.argv[2:]:\n"
        "    events = feedvalidator.validateString(open(path, 'rb').read(), firstOccurrenceOnly=1,\n"
        "        base=sys.argv[1] + quote(path))['loggedEvents']\n"
        "    bad += [path + ': ' + line for line in Formatter(compatibility.AA(events))]\n"
        "print('\\n'.join(bad)); sys.exit(1 if bad else 0)\n")
    files = sorted(p.relative_to(site.feeds).as_posix() for p in site.feeds.rglob("*")
                   if p.name.endswith((".xml", ".opml")))
    done = subprocess.run([VALIDATOR, "-c", script, FEEDS, *files], cwd=site.feeds, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


# -- Entries: language and `updated` -------------------------------------------------------------------------

def entry_langs(site, rel: str = "all") -> dict[str, str]:
    root = ET.parse(site.feeds / f"{rel}.atom.xml").getroot()
    return {e.find(f"{ATOM}title").text: e.get(XML_LANG) for e in root.iter(f"{ATOM}entry")}


def test_each_entry_carries_its_own_language(empty_site):
    site = empty_site
    site.write_post("en.md", post_text(title="Plain English", date="2026-01-01", excerpt="An English post."))
    site.write_post("ja.md", post_text(title="日本語の記事", date="2026-01-02"))
    site.write_post("mixed.md", post_text(title="GPU 不足", date="2026-01-03", excerpt="Mostly English."))
    site.write_post("fr.md", post_text(title="Un article", date="2026-01-04", lang="fr"))
    site.write_post("us.md", post_text(title="Color", date="2026-01-05", language="EN-US"))
    result = site.run("--now", FIXED_NOW)
    assert result.exit_code == 0, result.output
    expected = {"Plain English": "en", "日本語の記事": "ja", "GPU 不足": "ja", "Un article": "fr", "Color": "en-US"}
    assert entry_langs(site) == expected
    assert ET.parse(site.feeds / "all.atom.xml").getroot().get(XML_LANG) == "ja", "the feed keeps the site's"
    rss = ET.parse(site.feeds / "all.rss.xml").getroot()
    dc = "{http://purl.org/dc/elements/1.1/}language"
    assert {i.findtext("title"): i.findtext(dc) for i in rss.iter("item")} == expected
    items = json.loads((site.feeds / "all.json").read_bytes())["items"]
    assert {i["title"]: i["language"] for i in items} == expected
    parsed = feedparser.parse((site.feeds / "all.atom.xml").read_bytes())
    assert parsed.bozo == 0
    assert {e.title: e.title_detail.language for e in parsed.entries} == expected


def test_language_on_an_english_site_and_a_bad_tag(empty_site):
    site = empty_site
    site.set_config('language = "ja"', 'language = "de"')
    site.write_post("de.md", post_text(title="Ein Artikel", date="2026-01-01"))
    site.write_post("bad.md", post_text(title="Bad tag", date="2026-01-02", lang='"english!"'))
    site.run("--now", FIXED_NOW)
    assert entry_langs(site) == {"Ein Artikel": "de", "Bad tag": "de"}
    check = site.run("check").output
    assert "bad.md:4: warning: lang 'english!' is not a language tag — write one like en, ja or en-US" in check


def entry(site, title: str, rel: str = "all"):
    parsed = feedparser.parse((site.feeds / f"{rel}.atom.xml").read_bytes())
    return next(e for e in parsed.entries if e.title == title), parsed


def test_an_edit_moves_updated_to_the_pass_that_saw_it_and_rebuilds_stay_identical(site):
    site.run("--now", FIXED_NOW)
    path = site.posts / "2026-02-03-edge-ai.md"
    before, _ = entry(site, "Edge AI chips: why on-device inference is back")
    assert before.updated == before.published == "2026-02-03T14:20:00+00:00"
    path.write_text(path.read_text(encoding="utf-8").replace("practical again", "practical once more"),
                    encoding="utf-8")
    result = site.run("--now", "2026-06-10T12:00:00+09:00")
    assert "Updated 1 changed post(s)" in result.output
    after, feed = entry(site, "Edge AI chips: why on-device inference is back")
    assert after.updated == "2026-06-10T03:00:00+00:00" and after.published == before.published
    assert after.id == before.id
    assert feed.feed.updated == "2026-06-10T03:00:00+00:00", "the feed's updated is its newest entry's"
    item = next(i for i in json.loads((site.feeds / "all.json").read_bytes())["items"] if i["id"] == after.id)
    assert item["date_modified"] == "2026-06-10T03:00:00+00:00"
    assert item["date_published"] == "2026-02-03T14:20:00+00:00"
    rss = (site.feeds / "all.rss.xml").read_text(encoding="utf-8")
    assert "<lastBuildDate>Wed, 10 Jun 2026 03:00:00 +0000</lastBuildDate>" in rss
    written = {p: p.read_bytes() for p in site.feeds.rglob("*") if p.is_file()}
    # Later passes, and a rebuild of every file from the same store, give the same bytes.
    assert "0 feed file(s) written" in site.run("--now", "2026-06-20T00:00").output
    shutil.rmtree(site.feeds)
    site.run("--now", "2026-06-21T00:00")
    assert {p: p.read_bytes() for p in site.feeds.rglob("*") if p.is_file()} == written
    # A second edit moves it again.
    path.write_text(path.read_text(encoding="utf-8") + "\nOne more line.\n", encoding="utf-8")
    site.run("--now", "2026-07-01T09:00:00+09:00")
    again, _ = entry(site, "Edge AI chips: why on-device inference is back")
    assert again.updated == "2026-07-01T00:00:00+00:00"


def test_fresh_store_after_an_edit_is_deterministic(site):
    path = site.posts / "2026-02-03-edge-ai.md"
    path.write_text(path.read_text(encoding="utf-8") + "\nEdited.\n", encoding="utf-8")
    site.run("--now", FIXED_NOW)
    first = {p: p.read_bytes() for p in site.feeds.rglob("*") if p.is_file()}
    edge, _ = entry(site, "Edge AI chips: why on-device inference is back")
    assert edge.updated == edge.published, "with no recorded edit, the post's own dates"
    site.db.unlink()
    shutil.rmtree(site.feeds)
    site.run("--now", "2026-12-01T00:00")
    assert {p: p.read_bytes() for p in site.feeds.rglob("*") if p.is_file()} == first


def test_front_matter_updated_still_counts(empty_site):
    site = empty_site
    site.write_post("p.md", post_text(title="Dated", date="2026-01-01 09:00 +0900", updated="2026-01-03 09:00 +0900"))
    site.run("--now", FIXED_NOW)
    e, _ = entry(site, "Dated")
    assert e.updated == "2026-01-03T09:00:00+09:00"


def test_category_feeds_keep_their_description_and_name_this_program(site):
    site.run("--now", FIXED_NOW)
    rss = ET.parse(site.feeds / "category" / "chips.rss.xml").getroot()
    assert rss.findtext("channel/description") == "AIと半導体のニュースを毎日解説 — 半導体"
    atom = ET.parse(site.feeds / "category" / "chips.atom.xml").getroot()
    assert atom.findtext(f"{ATOM}subtitle") == "AIと半導体のニュースを毎日解説 — 半導体"
    generator = atom.find(f"{ATOM}generator")
    assert generator.text == "publisher"
    assert "pypi.org" not in (generator.get("uri") or ""), "never another project's page"
    assert json.loads((site.feeds / "category" / "chips.json").read_bytes())["description"] == \
        "AIと半導体のニュースを毎日解説 — 半導体"


# -- JSON Feed 1.1 ---------------------------------------------------------------------------------------------

TOP_KEYS = {"version": str, "title": str, "home_page_url": str, "feed_url": str, "description": str,
            "user_comment": str, "next_url": str, "icon": str, "favicon": str, "authors": list, "language": str,
            "expired": bool, "hubs": list, "items": list}
ITEM_KEYS = {"id": str, "url": str, "external_url": str, "title": str, "content_html": str, "content_text": str,
             "summary": str, "image": str, "banner_image": str, "date_published": str, "date_modified": str,
             "authors": list, "tags": list, "language": str, "attachments": list}


def json_feed_problems(feed: dict) -> list[str]:
    """Problems against https://jsonfeed.org/version/1.1: required fields, types, RFC 3339 dates."""
    problems = []
    for key, value in feed.items():
        if not key.startswith("_") and (key not in TOP_KEYS or not isinstance(value, TOP_KEYS[key])):
            problems.append(f"top-level {key}")
    if feed.get("version") != "https://jsonfeed.org/version/1.1" or not feed.get("title"):
        problems.append("version and title are required")
    if not isinstance(feed.get("items"), list):
        problems.append("items is required")
    for author in feed.get("authors", []):
        if not isinstance(author, dict) or not isinstance(author.get("name"), str):
            problems.append("author without a name")
    for hub in feed.get("hubs", []):
        if set(hub) != {"type", "url"} or not all(isinstance(v, str) for v in hub.values()):
            problems.append("hub needs type and url")
    ids = [item.get("id") for item in feed.get("items", [])]
    if len(set(ids)) != len(ids):
        problems.append("duplicate item ids")
    for item in feed.get("items", []):
        for key, value in item.items():
            if not key.startswith("_") and (key not in ITEM_KEYS or not isinstance(value, ITEM_KEYS[key])):
                problems.append(f"item {key}")
        if not isinstance(item.get("id"), str) or not item["id"]:
            problems.append("item id is required (a string)")
        if "content_html" not in item and "content_text" not in item:
            problems.append("item needs content_html or content_text")
        for key in ("date_published", "date_modified"):
            if key in item and not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?([+-]\d\d:\d\d|Z)", item[key]):
                problems.append(f"{key} is not RFC 3339")
        if not all(isinstance(tag, str) for tag in item.get("tags", [])):
            problems.append("tags are strings")
    return problems


@pytest.mark.parametrize("content", ["full", "summary"])
def test_json_feed_follows_the_spec_beside_atom(site, content):
    site.set_keys(content=content, websub_hubs=["https://hub.example.net/"])
    site.run("--now", FIXED_NOW)
    for path in site.feeds.rglob("*.json"):
        feed = json.loads(path.read_bytes())
        assert json_feed_problems(feed) == [], path
        assert feed["feed_url"] == FEEDS + quote(path.relative_to(site.feeds).as_posix())
        atom = feedparser.parse(path.with_name(path.name.replace(".json", ".atom.xml")).read_bytes())
        assert [i["id"] for i in feed["items"]] == [e.id for e in atom.entries], "same entries, same order"
        assert [i["title"] for i in feed["items"]] == [e.title for e in atom.entries]
        for item, e in zip(feed["items"], atom.entries, strict=True):
            assert datetime.fromisoformat(item["date_published"]) == datetime.fromisoformat(e.published)
            assert datetime.fromisoformat(item["date_modified"]) == datetime.fromisoformat(e.updated)
            assert "<" not in item["summary"], "summary is plain text"
            if content == "summary":
                assert item["content_html"] == e.summary


def test_json_feed_bytes_are_stable(site):
    site.run("--now", FIXED_NOW)
    first = (site.feeds / "all.json").read_bytes()
    assert first.endswith(b"}\n") and "データセンター".encode() in first, "UTF-8, not \\u escapes"
    site.db.unlink()
    shutil.rmtree(site.feeds)
    site.run("--now", "2027-01-01T00:00")
    assert (site.feeds / "all.json").read_bytes() == first


def test_only_configured_formats_are_written(site):
    site.set_keys(formats=["atom"])
    site.run("--now", FIXED_NOW)
    assert not list(site.feeds.rglob("*.rss.xml")) and not list(site.feeds.rglob("*.json"))
    assert len(list(site.feeds.rglob("*.atom.xml"))) == 7


def test_empty_url_path_serves_feeds_from_the_site_root(site):
    site.set_keys(url_path="")
    site.run("--now", FIXED_NOW)
    assert 'href="https://news.example.jp/all.atom.xml" rel="self"' in \
        (site.feeds / "all.atom.xml").read_text(encoding="utf-8")


def test_two_categories_mapped_to_one_slug_is_a_config_error(site):
    site.set_config('"半導体" = "chips"', '"半導体" = "chips"\n"Chips" = "CHIPS"')
    result = site.run("--dry-run")
    assert result.exit_code == 2
    assert "[feeds.category_slugs.Chips] 'CHIPS' is also the slug of '半導体'" in result.output


@pytest.mark.parametrize(("entry", "message"), [
    ('"Semis" = "Chips?"', "[feeds.category_slugs.Semis] 'Chips?' is also the slug of '半導体'"),
    ('"Semis" = ".chips."', "[feeds.category_slugs.Semis] '.chips.' is also the slug of '半導体'"),
    ('"AI News" = "AI News"\n"ML" = "ai-news"', "[feeds.category_slugs.ML] 'ai-news' is also the slug of 'AI News'"),
    ('"Long" = "' + "x" * 201 + '"', "[feeds.category_slugs.Long] is too long for a file name"),
])
def test_mapped_values_that_make_one_slug_are_a_config_error(site, entry, message):
    """Two values that differ only in what a slug leaves out (case, '?', spaces, leading dots) are one feed
    address: refused up front, not settled by which category is published first."""
    site.set_config('"半導体" = "chips"', '"半導体" = "chips"\n' + entry)
    result = site.run("--dry-run")
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_json_only_site(site):
    site.set_keys(formats=["json"], opml=["json"])
    result = site.run("--now", FIXED_NOW)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in site.feeds.iterdir() if p.is_file()) == ["all.json", "discovery.html",
                                                                           "index.opml"]
    assert validator_rules((site.feeds / "index.opml").read_bytes(), "json") == []
