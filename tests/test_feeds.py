"""Feeds built from the example posts: golden bytes, feedparser, stable ids and dates, atomic rewrites."""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import quote

import feedparser
import pytest

from .conftest import FIXED_NOW, GOLDEN, post_text

SCOPES = ["all"] + [f"category/{slug}" for slug in ("chips", "investment", "research", "導入事例", "市場動向", "政策")]
FEED_FILES = [f"{scope}{suffix}" for scope in SCOPES for suffix in (".atom.xml", ".rss.xml", ".json")]
FEED_FILES += ["index.opml", "discovery.html"]


def written(feeds: Path) -> list[str]:
    return sorted(p.relative_to(feeds).as_posix() for p in feeds.rglob("*") if p.is_file())


def test_feeds_match_golden_files(site):
    result = site.run("--now", FIXED_NOW)
    assert result.exit_code == 0, result.output
    assert written(site.feeds) == sorted(FEED_FILES)
    if os.environ.get("UPDATE_GOLDEN"):
        for rel in FEED_FILES:
            (GOLDEN / rel).parent.mkdir(parents=True, exist_ok=True)
            (GOLDEN / rel).write_bytes((site.feeds / rel).read_bytes())
    for rel in FEED_FILES:
        assert (site.feeds / rel).read_bytes() == (GOLDEN / rel).read_bytes(), f"{rel} differs from tests/golden"


def test_feedparser_reads_every_feed(site):
    site.run("--now", FIXED_NOW)
    for rel in FEED_FILES:
        if not rel.endswith(".xml"):
            continue
        parsed = feedparser.parse((site.feeds / rel).read_bytes())
        assert parsed.bozo == 0, (rel, parsed.get("bozo_exception"))
        assert parsed.entries, rel
        for entry in parsed.entries:
            assert entry.id.startswith("tag:news.example.jp,")
            assert entry.link.startswith("https://news.example.jp/")
            assert entry.title and entry.summary
        dates = [e.published_parsed for e in parsed.entries]
        assert dates == sorted(dates, reverse=True), f"{rel} is not newest first"


def test_site_feed_entries_ids_dates(site):
    site.run("--now", FIXED_NOW)
    atom = feedparser.parse((site.feeds / "all.atom.xml").read_bytes())
    rss = feedparser.parse((site.feeds / "all.rss.xml").read_bytes())
    assert len(atom.entries) == len(rss.entries) == 10
    assert [e.id for e in atom.entries] == [e.id for e in rss.entries]
    first = atom.entries[0]
    assert first.title == "データセンターの電力問題、原子力との提携は広がるか"
    assert first.id == "tag:news.example.jp,2026-03-12:2026-03-12-datacenter-power"
    assert first.published == "2026-03-12T06:05:00+00:00"
    assert atom.feed.updated == first.updated
    assert [t.term for t in first.tags] == ["政策"]
    assert rss.entries[0].published == "Thu, 12 Mar 2026 06:05:00 +0000"
    titles = {e.title for e in atom.entries}
    assert "2030年のAIインフラ、編集部の予測" not in titles, "future posts are held"
    assert "Draft: notes on model distillation" not in titles, "drafts are held"


def test_feed_structure_rules(site):
    site.run("--now", FIXED_NOW)
    atom = (site.feeds / "all.atom.xml").read_text(encoding="utf-8")
    rss = (site.feeds / "all.rss.xml").read_text(encoding="utf-8")
    url = "https://news.example.jp/feeds/all"
    assert f'<link href="{url}.atom.xml" rel="self" type="application/atom+xml"/>' in atom
    assert f'<atom:link href="{url}.rss.xml" rel="self" type="application/rss+xml"/>' in rss
    assert "<link>https://news.example.jp/</link>" in rss, "channel link is the site, not the feed"
    assert "<lastBuildDate>Thu, 12 Mar 2026 06:05:00 +0000</lastBuildDate>" in rss
    assert 'isPermaLink="false"' in rss
    assert rss.index("<description>") < rss.index("<content:encoded>")
    assert 'type="CDATA"' not in atom and "CDATA" not in rss
    assert '<content type="html">' in atom and '<summary type="html">' in atom
    encoded = quote("導入事例")
    opml = (site.feeds / "index.opml").read_text(encoding="utf-8")
    assert f"https://news.example.jp/feeds/category/{encoded}.atom.xml" in opml
    category = (site.feeds / "category" / "導入事例.rss.xml").read_text(encoding="utf-8")
    assert f"https://news.example.jp/feeds/category/{encoded}.rss.xml" in category


def test_relative_urls_in_content_become_absolute(site):
    site.run("--now", FIXED_NOW)
    parsed = feedparser.parse((site.feeds / "category" / "research.atom.xml").read_bytes())
    meetup = next(e for e in parsed.entries if "meetup" in e.link)
    html = meetup.content[0].value
    assert 'href="https://news.example.jp/2025/11/30/2025-11-30-agents/"' in html
    assert 'src="https://news.example.jp/2025/12/08/2025-12-08-tokyo-meetup/images/eval-slide.png"' in html


def test_second_build_changes_no_byte_and_no_mtime(site):
    site.run("--now", FIXED_NOW)
    before = {rel: ((site.feeds / rel).read_bytes(), (site.feeds / rel).stat().st_mtime_ns) for rel in FEED_FILES}
    result = site.run("--now", FIXED_NOW)
    assert "0 feed file(s) written" in result.output
    after = {rel: ((site.feeds / rel).read_bytes(), (site.feeds / rel).stat().st_mtime_ns) for rel in FEED_FILES}
    assert before == after


def test_rebuild_from_fresh_state_is_byte_identical(site, tmp_path):
    site.run("--now", FIXED_NOW)
    first = {rel: (site.feeds / rel).read_bytes() for rel in FEED_FILES}
    site.db.unlink()
    for rel in FEED_FILES:
        (site.feeds / rel).unlink()
    site.run("--now", FIXED_NOW)
    assert first == {rel: (site.feeds / rel).read_bytes() for rel in FEED_FILES}


def test_feed_edited_by_hand_is_restored(site):
    site.run("--now", FIXED_NOW)
    target = site.feeds / "all.rss.xml"
    good = target.read_bytes()
    target.write_bytes(b"broken")
    result = site.run("--now", FIXED_NOW)
    assert "feeds/all.rss.xml" in result.output
    assert target.read_bytes() == good


def test_future_post_appears_once_due_and_keeps_its_id(site):
    site.run("--now", FIXED_NOW)
    future = "2030年のAIインフラ、編集部の予測"
    before = site.run("--now", "2030-01-06T08:59:59+09:00", "--dry-run")
    assert "due 2030-01-06T09:00+09:00" in before.output
    assert "Would publish" not in before.output
    result = site.run("--now", "2030-01-06T09:00:00+09:00")
    assert "Published 1 new post(s)" in result.output and future in result.output
    atom = feedparser.parse((site.feeds / "all.atom.xml").read_bytes())
    assert atom.entries[0].title == future
    first_id = atom.entries[0].id
    # Editing the post later (even its date) never changes its id.
    path = site.posts / "2030-01-06-future-roadmap.txt"
    path.write_text(path.read_text(encoding="utf-8").replace("2030-01-06 09:00:00", "2030-01-07 10:00:00")
                    .replace("予約投稿です。", "予約投稿でした。"), encoding="utf-8")
    result = site.run("--now", "2030-01-08T00:00:00+09:00")
    assert "Updated 1 changed post(s)" in result.output
    atom = feedparser.parse((site.feeds / "all.atom.xml").read_bytes())
    assert atom.entries[0].id == first_id
    assert "予約投稿でした" in atom.entries[0].content[0].value


def test_category_feed_removed_when_no_posts_left(site):
    site.run("--now", FIXED_NOW)
    assert (site.feeds / "category" / "導入事例.atom.xml").exists()
    (site.posts / "2025-12-15-robotics.txt").unlink()
    dry = site.run("--now", FIXED_NOW, "--dry-run")
    assert "Would remove 3 feed file(s)" in dry.output
    assert (site.feeds / "category" / "導入事例.atom.xml").exists()
    result = site.run("--now", FIXED_NOW)
    assert "Removed 3 feed file(s)" in result.output
    for suffix in (".atom.xml", ".rss.xml", ".json"):
        assert not (site.feeds / "category" / f"導入事例{suffix}").exists()
    assert "導入事例" not in (site.feeds / "index.opml").read_text(encoding="utf-8")
    assert "導入事例" not in (site.feeds / "discovery.html").read_text(encoding="utf-8")


def test_entry_limit(site):
    site.set_config("entries = 20", "entries = 3")
    site.run("--now", FIXED_NOW)
    for fmt in ("atom", "rss"):
        parsed = feedparser.parse((site.feeds / f"all.{fmt}.xml").read_bytes())
        assert len(parsed.entries) == 3


def test_summary_mode_has_no_content(site):
    site.set_config('content = "full"', 'content = "summary"')
    site.run("--now", FIXED_NOW)
    atom = (site.feeds / "all.atom.xml").read_text(encoding="utf-8")
    assert "<content" not in atom and "<summary" in atom


def test_hostile_content_and_control_characters(empty_site):
    body = ('Hello <script>alert(1)</script>\x07 <iframe src="https://evil.example/"></iframe>\n\n'
            '<a href="javascript:alert(1)" onclick="steal()">click</a> <img src="x.png" onerror="boom()">\n\n'
            "End of post.")
    empty_site.write_post("hostile.md", post_text(title="Bad\x0b <b>title</b>", body=body,
                                                  excerpt='"<script>x()</script>safe"'))
    result = empty_site.run("--now", FIXED_NOW)
    assert result.exit_code == 0, result.output
    for rel in ("all.atom.xml", "all.rss.xml"):
        raw = (empty_site.feeds / rel).read_text(encoding="utf-8")
        parsed = feedparser.parse(raw.encode())
        assert parsed.bozo == 0
        entry = parsed.entries[0]
        html = entry.content[0].value if rel.endswith("atom.xml") else raw
        for bad in ("<script", "&lt;script", "<iframe", "&lt;iframe", "onclick", "onerror", "javascript:", "\x07"):
            assert bad not in html, (rel, bad)
        assert entry.title == "Bad <b>title</b>", "titles are text, escaped by the XML writer"
        assert re.search(r"<title>Bad &lt;b&gt;title&lt;/b&gt;</title>", raw)


def test_japanese_slug_percent_encoded_in_urls(empty_site):
    empty_site.write_post("p.md", post_text(categories='["生成AI"]', slug="新モデル"))
    empty_site.run("--now", FIXED_NOW)
    feed = empty_site.feeds / "category" / "生成ai.atom.xml"
    parsed = feedparser.parse(feed.read_bytes())
    assert parsed.bozo == 0
    assert parsed.feed.links[0].href == "https://news.example.jp/feeds/category/" + quote("生成ai") + ".atom.xml"
    assert parsed.entries[0].link == "https://news.example.jp/2026/01/01/" + quote("新モデル") + "/"


@pytest.mark.parametrize("fmt", ["atom", "rss"])
def test_empty_site_feed_is_valid_and_stable(empty_site, fmt):
    empty_site.run("--now", FIXED_NOW)
    data = (empty_site.feeds / f"all.{fmt}.xml").read_bytes()
    assert feedparser.parse(data).bozo == 0
    empty_site.db.unlink()
    empty_site.run("--now", "2027-01-01T00:00")
    assert (empty_site.feeds / f"all.{fmt}.xml").read_bytes() == data
