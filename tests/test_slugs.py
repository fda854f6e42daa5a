"""Feed slugs are assigned once and kept: a new category never takes an existing feed's address, and a feed
moves only when the operator renames it (leaving a notice at the old address)."""

from __future__ import annotations

import json
import sqlite3
from urllib.parse import quote

import feedparser
import pytest

from publisher.feeds.slugs import SLUG_MAX_BYTES, slug_key, with_suffix

from .conftest import FIXED_NOW, post_text

FEEDS = "https://news.example.jp/feeds/"


def feed(site, slug: str, fmt: str = "atom"):
    parsed = feedparser.parse((site.feeds / "category" / f"{slug}.{fmt}.xml").read_bytes())
    assert parsed.bozo == 0
    return parsed


def titles(site, slug: str) -> list[str]:
    return [e.title for e in feed(site, slug).entries]


def category_of(site, slug: str) -> str:
    return feed(site, slug).feed.title.split(" — ", 1)[1]


def test_research_then_Research_first_feed_keeps_its_url(empty_site):
    site = empty_site
    site.write_post("a.md", post_text(title="Lower", date="2026-01-05 10:00", categories="research"))
    site.run("--now", FIXED_NOW)
    before = (site.feeds / "category" / "research.atom.xml").read_bytes()
    # The second post is dated earlier, but it is published later: the first feed still keeps its address.
    site.write_post("b.md", post_text(title="Upper", date="2026-01-01 10:00", categories="Research"))
    result = site.run("--now", FIXED_NOW)
    assert result.exit_code == 0, result.output
    assert category_of(site, "research") == "research" and titles(site, "research") == ["Lower"]
    assert category_of(site, "research-2") == "Research" and titles(site, "research-2") == ["Upper"]
    assert (site.feeds / "category" / "research.atom.xml").read_bytes() == before, "the first feed is untouched"
    assert "category/research.atom.xml" not in result.output
    opml = (site.feeds / "index.opml").read_text(encoding="utf-8")
    assert f"{FEEDS}category/research.atom.xml" in opml and f"{FEEDS}category/research-2.atom.xml" in opml


def test_fresh_store_gives_the_plain_slug_to_the_oldest_category(empty_site):
    site = empty_site
    site.write_post("a.md", post_text(title="Lower", date="2026-01-05 10:00", categories="research"))
    site.write_post("b.md", post_text(title="Upper", date="2026-01-01 10:00", categories="Research"))
    site.run("--now", FIXED_NOW)
    assert category_of(site, "research") == "Research" and category_of(site, "research-2") == "research"
    first = {p.name: p.read_bytes() for p in (site.feeds / "category").iterdir()}
    site.db.unlink()
    for path in (site.feeds / "category").iterdir():
        path.unlink()
    site.run("--now", FIXED_NOW)
    assert {p.name: p.read_bytes() for p in (site.feeds / "category").iterdir()} == first


def test_category_never_takes_the_slug_the_config_maps_another_to(site):
    """`investment` is what the operator mapped 投資分析 to; a post using `investment` itself gets another slug,
    even when it is published before any 投資分析 post."""
    for path in site.posts.iterdir():
        if "投資分析" in path.read_text(encoding="utf-8"):
            path.rename(site.root / path.name)  # hold the 投資分析 posts back
    site.write_post("inv.md", post_text(title="English investment note", date="2026-01-02", categories="investment"))
    site.run("--now", FIXED_NOW)
    assert category_of(site, "investment-2") == "investment"
    assert not (site.feeds / "category" / "investment.atom.xml").exists()
    for path in site.root.glob("*.txt"):
        path.rename(site.posts / path.name)
    site.run("--now", FIXED_NOW)
    assert category_of(site, "investment") == "投資分析"
    assert category_of(site, "investment-2") == "investment"
    check = site.run("check")
    assert "inv.md:" in check.output
    assert "category 'investment' has the slug that [feeds.category_slugs] gives '投資分析'" in check.output


@pytest.mark.parametrize("second", ["Ｒｅｓｅａｒｃｈ", "RESEARCH", "re\u0073earch "])
def test_unicode_width_and_case_variants_get_their_own_slug(empty_site, second):
    site = empty_site
    site.write_post("a.md", post_text(title="First", date="2026-01-01", categories="research"))
    site.run("--now", FIXED_NOW)
    site.write_post("b.md", post_text(title="Second", date="2026-01-02", categories=json.dumps([second])))
    site.run("--now", FIXED_NOW)
    names = sorted(p.name for p in (site.feeds / "category").glob("*.atom.xml"))
    if second.strip() == "research":  # the same category after trimming: one feed
        assert names == ["research.atom.xml"]
        return
    assert names == ["research-2.atom.xml", "research.atom.xml"]
    assert titles(site, "research") == ["First"]


def test_decomposed_and_composed_unicode_never_share_a_file(empty_site):
    """`café` typed two ways (NFC and NFD) are two categories: on macOS they would be one file name."""
    site = empty_site
    site.write_post("a.md", post_text(title="Composed", date="2026-01-01", categories="caf\u00e9"))
    site.write_post("b.md", post_text(title="Decomposed", date="2026-01-02", categories="cafe\u0301"))
    site.run("--now", FIXED_NOW)
    names = sorted(p.name for p in (site.feeds / "category").glob("*.atom.xml"))
    assert names == ["café-2.atom.xml", "café.atom.xml"]
    assert titles(site, "café") == ["Composed"]


def test_names_that_make_the_same_slug(empty_site):
    site = empty_site
    site.write_post("a.md", post_text(title="Slash", date="2026-01-01", categories='"AI/ML"'))
    site.write_post("b.md", post_text(title="Space", date="2026-01-02", categories='"AI ML"'))
    site.run("--now", FIXED_NOW)
    assert titles(site, "ai-ml") == ["Slash"] and titles(site, "ai-ml-2") == ["Space"]


def test_suffix_keeps_long_slugs_within_the_byte_limit():
    base = "長" * 100  # 300 bytes
    slug = with_suffix(base, 12)
    assert slug.endswith("-12") and len(slug.encode()) <= SLUG_MAX_BYTES
    assert slug_key("Ｒｅｓｅａｒｃｈ") == slug_key("research") == slug_key("RESEARCH")


def test_config_change_never_moves_a_feed(site):
    site.run("--now", FIXED_NOW)
    site.set_config('"投資分析" = "investment"', '"投資分析" = "invest"')
    result = site.run("--now", FIXED_NOW)
    assert result.exit_code == 0
    assert category_of(site, "investment") == "投資分析"
    assert not (site.feeds / "category" / "invest.atom.xml").exists()
    check = site.run("check")
    assert check.exit_code == 0
    line = next(i for i, text in enumerate(site.config.read_text(encoding="utf-8").splitlines(), 1)
                if text.startswith('"投資分析"'))
    assert (f"config.toml:{line}: warning: [feeds.category_slugs] maps '投資分析' to 'invest', but its feed has been "
            "at 'investment'") in check.output
    assert "run `publish feeds rename-slug investment invest`" in check.output
    listing = site.run("feeds", "list").output
    assert "`publish feeds rename-slug investment invest` moves it" in listing


def test_rename_moves_the_feed_and_leaves_a_notice(site):
    site.run("--now", FIXED_NOW)
    dry = site.run("--dry-run", "--now", "2026-06-02T09:00", "feeds", "rename-slug", "research", "research-notes")
    assert "Would move the feeds of 'Research'" in dry.output
    assert not (site.feeds / "category" / "research-notes.atom.xml").exists()
    result = site.run("--now", "2026-06-02T09:00", "feeds", "rename-slug", "research", "research-notes")
    assert result.exit_code == 0, result.output
    assert "Moved the feeds of 'Research' from category/research.* to category/research-notes.*" in result.output
    assert 'Set [feeds.category_slugs] "Research" = "research-notes"' in result.output
    assert len(titles(site, "research-notes")) == 3
    new_url = f"{FEEDS}category/research-notes.atom.xml"
    for fmt, new in (("atom", new_url), ("rss", new_url.replace(".atom.xml", ".rss.xml"))):
        old = feed(site, "research", fmt)
        assert len(old.entries) == 1, "the old address holds one entry: the notice"
        assert old.entries[0].link == new and new in old.entries[0].title
        assert old.entries[0].published_parsed[:4] == (2026, 6, 2, 0), "dated by the rename"
    old_json = json.loads((site.feeds / "category" / "research.json").read_bytes())
    assert old_json["expired"] is True and old_json["items"][0]["url"] == f"{FEEDS}category/research-notes.json"
    opml = (site.feeds / "index.opml").read_text(encoding="utf-8")
    assert new_url in opml and f"{FEEDS}category/research.atom.xml" not in opml
    again = site.run("--now", "2026-06-03T09:00")
    assert "0 feed file(s) written" in again.output, "the notice is stable: its date is the rename's"


def test_moved_slug_stays_reserved_and_can_be_taken_back_only_by_its_category(site):
    site.run("--now", FIXED_NOW)
    site.run("--now", FIXED_NOW, "feeds", "rename-slug", "research", "research-notes")
    site.write_post("new.md", post_text(title="Shouting", date="2026-01-02", categories="RESEARCH"))
    site.run("--now", FIXED_NOW)
    assert category_of(site, "research-2") == "RESEARCH", "the old address is never handed to another category"
    taken = site.run("--now", FIXED_NOW, "feeds", "rename-slug", "research-2", "research")
    assert taken.exit_code == 2 and "'research' is (or was) the slug of 'Research'" in taken.output
    back = site.run("--now", FIXED_NOW, "feeds", "rename-slug", "research-notes", "research")
    assert back.exit_code == 0, back.output
    assert len(titles(site, "research")) == 3
    assert len(feed(site, "research-notes").entries) == 1, "now the other address carries the notice"


@pytest.mark.parametrize(("old", "new", "message"), [
    ("nope", "other", "no category's feed is at 'nope'"),
    ("research", "Research Notes", "'Research Notes' is not a slug; use 'research-notes'"),
    ("research", "chips", "'chips' is (or was) the slug of '半導体'"),
    ("research", "CHIPS", "'CHIPS' is not a slug"),
    ("research", "長" * 70, "is too long for a file name"),
])
def test_rename_refuses_bad_requests(site, old, new, message):
    site.run("--now", FIXED_NOW)
    result = site.run("feeds", "rename-slug", old, new)
    assert result.exit_code == 2 and message in result.output
    assert "Traceback" not in result.output


def test_database_from_before_slugs_were_kept_keeps_the_urls_on_disk(empty_site):
    """An upgraded install adopts the slugs its feeds already have (the old rule: sorted by name), so no
    subscriber's address changes on upgrade."""
    site = empty_site
    site.write_post("a.md", post_text(title="Lower, older", date="2026-01-01", categories="research"))
    site.write_post("b.md", post_text(title="Upper, newer", date="2026-01-05", categories="Research"))
    site.run("--now", FIXED_NOW)
    with sqlite3.connect(site.db) as conn:  # the older schema had no slug table: empty it to play that database
        conn.execute("DELETE FROM feed_slugs")
    (site.feeds / "category" / "research.atom.xml").rename(site.root / "old-research.atom.xml")
    (site.feeds / "category" / "research-2.atom.xml").rename(site.root / "old-research-2.atom.xml")
    # Written by the old code: "Research" sorts first, so it had research.*; "research" had research-2.*.
    site.run("--now", FIXED_NOW)
    assert category_of(site, "research") == "Research" and category_of(site, "research-2") == "research"
    assert site.run("feeds", "list").output.count("research") >= 2


def test_check_warns_about_near_duplicate_category_names(empty_site):
    site = empty_site
    site.write_post("a.md", post_text(title="A", date="2026-01-01", categories='["Research", "生成AI"]'))
    site.write_post("b.md", post_text(title="B", date="2026-01-02", categories='["research"]'))
    site.write_post("c.md", post_text(title="C", date="2026-01-03", categories='["生成ＡＩ"]'))
    site.write_post("d.md", post_text(title="D", date="2026-01-04", categories='["生成 AI"]'))
    result = site.run("check")
    out = result.output
    assert "b.md:4: warning: category 'research' differs from 'Research' only in case, width or spacing" in out
    assert "c.md:4: warning: category '生成ＡＩ' differs from '生成AI'" in out
    assert "d.md:4: warning: category '生成 AI' differs from '生成AI'" in out
    assert "write it 'Research', as the other posts do" in out
    assert result.exit_code == 0 and site.run("check", "--strict").exit_code == 1
    assert not [line for line in out.splitlines() if line.startswith(str(site.posts / "a.md"))], \
        "the first spelling is not blamed"


def test_percent_encoded_slug_urls_stay_stable(site):
    site.run("--now", FIXED_NOW)
    parsed = feed(site, "導入事例")
    assert parsed.feed.links[0].href == f"{FEEDS}category/{quote('導入事例')}.atom.xml"


def test_pass_after_slugs_were_handed_out_answers_from_the_last_one(site, monkeypatch):
    """The slugs are part of what a quick pass compares: the pass after the one that handed them out must
    still find nothing changed and read no post."""
    site.run("--now", FIXED_NOW)

    def no_reading(*args, **kwargs):
        raise AssertionError("a pass with nothing new read the posts")

    monkeypatch.setattr("publisher.service.pipeline.load_posts", no_reading)
    result = site.run("--now", FIXED_NOW)
    assert result.exit_code == 0, result.output
    assert "0 feed file(s) written, 21 unchanged" in result.output


def test_a_category_name_too_long_for_a_file_name_gets_a_shortened_slug(empty_site):
    """A name longer than a file name may be is cut to SLUG_MAX_BYTES (whole characters); two names that share
    that much get -2. The pass never fails over it, and the other feeds are written."""
    site = empty_site
    long = "長" * 100  # 300 bytes: with .atom.xml, over the 255-byte limit of a file name
    site.write_post("a.md", post_text(title="Long A", date="2026-01-01", categories=json.dumps([long + "A"])))
    site.write_post("b.md", post_text(title="Long B", date="2026-01-02", categories=json.dumps([long + "B"])))
    site.write_post("c.md", post_text(title="Short", date="2026-01-03", categories="short"))
    result = site.run("--now", FIXED_NOW)
    assert result.exit_code == 0, result.output
    cut = "長" * (SLUG_MAX_BYTES // 3)
    names = sorted(p.name for p in (site.feeds / "category").glob("*.atom.xml"))
    assert names == sorted([f"{cut}.atom.xml", f"{with_suffix(cut, 2)}.atom.xml", "short.atom.xml"])
    assert category_of(site, cut) == long + "A" and category_of(site, with_suffix(cut, 2)) == long + "B"
    assert titles(site, "short") == ["Short"]
    assert [e.title for e in feedparser.parse((site.feeds / "all.atom.xml").read_bytes()).entries] == \
        ["Short", "Long B", "Long A"]


def test_invisible_characters_never_reach_a_feed_address(empty_site):
    """A zero-width space, a byte order mark or a soft hyphen in a category name would make an address that
    looks like another feed's: they are left out of slugs, so the variant gets -2, and `publish check` names it."""
    site = empty_site
    site.write_post("a.md", post_text(title="First", date="2026-01-01", categories="research"))
    variants = ["research\u200b", "\ufeffresearch", "re\u00adsearch", "research\u2060"]
    for i, name in enumerate(variants):
        site.write_post(f"b{i}.md", post_text(title=f"Variant {i}", date=f"2026-01-0{i + 2}",
                                              categories=json.dumps([name])))
    result = site.run("--now", FIXED_NOW)
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in (site.feeds / "category").iterdir())
    assert all(name.isascii() and name.isprintable() for name in names), names
    assert sorted(p.name for p in (site.feeds / "category").glob("*.atom.xml")) == \
        ["research-2.atom.xml", "research-3.atom.xml", "research-4.atom.xml", "research-5.atom.xml",
         "research.atom.xml"]
    assert titles(site, "research") == ["First"]
    check = site.run("check").output
    for i in range(len(variants)):
        assert f"b{i}.md:4: warning: category " in check and "differs from 'research'" in check, check


def test_rename_with_the_posts_folder_missing_changes_nothing_and_says_why(site):
    """The rename rewrites the feeds from the posts: without them it must refuse before recording anything, not
    report a move it has not made."""
    site.run("--now", FIXED_NOW)
    site.posts.rename(site.root / "posts-away")
    result = site.run("--now", "2026-06-02T09:00", "feeds", "rename-slug", "research", "research-notes")
    assert result.exit_code == 2 and "[posts.folder]" in result.output, result.output
    assert "Moved" not in result.output
    assert "research-notes" not in site.run("feeds", "list").output, "nothing recorded"
    assert not (site.feeds / "category" / "research-notes.atom.xml").exists()
    (site.root / "posts-away").rename(site.posts)
    done = site.run("--now", "2026-06-02T09:00", "feeds", "rename-slug", "research", "research-notes")
    assert done.exit_code == 0 and "Moved the feeds of 'Research'" in done.output, done.output
    assert len(titles(site, "research-notes")) == 3
