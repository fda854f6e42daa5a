"""An operator's first hour: adopting an existing blog without flooding the first digest, a digest that says
what it left out, and previews of the digest that goes out next."""

from __future__ import annotations

import re
import shutil
from email import message_from_bytes, policy
from pathlib import Path

import pytest

from .conftest import DIGEST_NOW, SECRET, Site, post_text, use_smtp

FIRST_PASS = "2026-03-12T20:00:00+09:00"  # a Thursday; the next digest goes out Monday 2026-03-16 08:00


@pytest.fixture
def blog(site, monkeypatch) -> Site:
    monkeypatch.setenv("PUBLISHER_TOKEN_SECRET", SECRET)
    return site


def outbox(site: Site) -> dict[str, object]:
    mails = [message_from_bytes(p.read_bytes(), policy=policy.default) for p in (site.root / "outbox").glob("*.eml")]
    return {m["To"].addresses[0].addr_spec: m for m in mails}


def titles(message) -> list[str]:
    html = message.get_body(("html",)).get_content()
    return re.findall(r'class="post-title"[^>]*><a [^>]*>([^<]+)</a>', html)


def test_first_pass_adopts_the_back_catalogue(blog):
    dry = blog.run("--dry-run", "--now", FIRST_PASS)
    assert dry.exit_code == 0
    assert "9 of them would be adopted as the blog's back catalogue: dated before the next digest's period " \
           "(2026-03-09T08:00+09:00)" in dry.output
    adopted_lines = [line for line in dry.output.splitlines() if line.endswith("(adopted)")]
    assert len(adopted_lines) == 9 and not any("電力問題" in line for line in adopted_lines)
    real = blog.run("--now", FIRST_PASS)
    assert "Published 10 new post(s)" in real.output and "9 of them were adopted" in real.output
    blog.run("subscribers", "add", "all@example.com")
    sent = blog.run("--now", DIGEST_NOW, "digest", "--send")
    assert sent.exit_code == 0 and "1 post(s)" in sent.output and "Sent 1 message(s)" in sent.output
    assert titles(outbox(blog)["all@example.com"]) == ["データセンターの電力問題、原子力との提携は広がるか"]

    # Not the first pass any more: an old-dated post added now is news for the next digest.
    blog.write_post("2025-01-01-found.md", post_text(title="Found in a drawer", date="2025-01-01 09:00",
                                                     categories="Research"))
    later = blog.run("--now", "2026-03-18T10:00:00+09:00")
    assert "Found in a drawer" in later.output and "adopted" not in later.output
    preview = blog.run("--now", "2026-03-18T10:00:00+09:00", "digest", "--dry-run")
    assert "Next digest, sent 2026-03-23T08:00+09:00" in preview.output and "1 so far" in preview.output


def test_adoption_keeps_feeds_and_ids(blog, tmp_path):
    other = Site(tmp_path / "other")
    other.root.mkdir()
    shutil.copy(blog.config, other.config)
    shutil.copytree(blog.posts, other.posts)
    other.set_config("adopt_existing = true", "adopt_existing = false")
    for s in (blog, other):
        assert s.run("--now", FIRST_PASS).exit_code == 0
    feeds = sorted(p.relative_to(blog.feeds) for p in blog.feeds.rglob("*") if p.is_file())
    assert len(feeds) == 23  # 7 scopes × Atom, RSS, JSON Feed; index.opml; discovery.html
    assert all((blog.feeds / p).read_bytes() == (other.feeds / p).read_bytes() for p in feeds)


def test_without_adoption_everything_is_news(blog):
    blog.set_config("adopt_existing = true", "adopt_existing = false")
    blog.run("--now", FIRST_PASS)
    blog.run("subscribers", "add", "all@example.com")
    blog.run("--now", DIGEST_NOW, "digest", "--send")
    assert len(titles(outbox(blog)["all@example.com"])) == 10


def test_a_pass_before_the_send_time_keeps_the_week_as_news(blog):
    result = blog.run("--now", "2026-03-16T07:00:00+09:00")  # Monday, an hour before the digest
    assert "9 of them were adopted" in result.output and "(2026-03-09T08:00+09:00)" in result.output


def test_digest_says_what_it_left_out(digest_site):
    site = digest_site
    site.set_config("max_posts = 30", "max_posts = 3")
    dry = site.run("--now", DIGEST_NOW, "digest", "--dry-run", "--period", "last")
    assert "1 subscriber(s) following (all): 3 post(s) (and 7 more, over [digest] max_posts)" in dry.output
    assert "1 subscriber(s) following Research, 半導体: 3 post(s) (and 2 more, over [digest] max_posts)" in dry.output
    assert site.run("--now", DIGEST_NOW, "digest", "--send").exit_code == 0
    mails = outbox(site)
    for address, shown, more in (("all@example.com", 3, 7), ("chips@example.com", 3, 2)):
        message = mails[address]
        assert len(titles(message)) == shown
        html = message.get_body(("html",)).get_content()
        text = message.get_body(("plain",)).get_content().replace("\r\n", "\n")
        assert re.search(rf'ほか {more} 件の新着記事はサイトでご覧いただけます: <a href="https://news\.example\.jp/"', html)
        assert f"ほか {more} 件の新着記事はサイトでご覧いただけます:\nhttps://news.example.jp/\n" in text
    newest = ["データセンターの電力問題、原子力との提携は広がるか", "Edge AI chips: why on-device inference is back",
              "2026年のAI市場、注目すべき五つのテーマ"]
    assert sorted(titles(mails["all@example.com"])) == sorted(newest), "the newest are kept"


def test_no_more_line_when_nothing_is_left_out(digest_site):
    digest_site.run("--now", DIGEST_NOW, "digest", "--send")
    html = outbox(digest_site)["all@example.com"].get_body(("html",)).get_content()
    assert "件の新着記事はサイトでご覧いただけます" not in html


def test_previews_show_the_digest_that_goes_out_next(digest_site, smtp_server, tmp_path):
    site = digest_site
    use_smtp(site, smtp_server.port)
    assert site.run("--now", DIGEST_NOW, "digest", "--send").exit_code == 0  # Monday's digest went out
    site.write_post("2026-03-17-new-fab.md", post_text(title="新工場の稼働", date="2026-03-17 10:00:00 +0900",
                                                      categories="半導体"))
    assert "Published 1 new post(s)" in site.run("--now", "2026-03-17T12:00:00+09:00").output
    wednesday = "2026-03-18T10:00:00+09:00"
    heading = ("Next digest, sent 2026-03-23T08:00+09:00: posts first published 2026-03-16T08:00+09:00 – "
               "2026-03-23T08:00+09:00; 1 so far")

    preview = site.run("--now", wednesday, "digest", "--preview", str(tmp_path / "next"))
    assert preview.exit_code == 0 and heading in preview.output
    html = (tmp_path / "next" / "digest.html").read_text(encoding="utf-8")
    assert "新工場の稼働" in html and "電力問題" not in html
    dry = site.run("digest", "--dry-run", "--now", wednesday)
    assert heading in dry.output and "Would send 2 message(s)" in dry.output
    smtp_server.recorder.messages.clear()
    test = site.run("--now", wednesday, "digest", "--test", "editor@example.com")
    assert heading in test.output and "Test message sent to editor@example.com" in test.output
    assert smtp_server.recorder.parsed()[0]["Subject"] == "[テスト] AI速報ラボ 週刊ダイジェスト 03/16〜03/23"

    last = site.run("--now", wednesday, "digest", "--preview", str(tmp_path / "last"), "--period", "last")
    assert "Digest of 2026-03-16T08:00+09:00 (sent): posts first published 2026-03-09T08:00+09:00 – " \
           "2026-03-16T08:00+09:00; 10" in last.output
    assert (tmp_path / "last" / "digest.html").read_text(encoding="utf-8").count('class="post-title"') == 10
    again = site.run("--now", wednesday, "digest", "--send")
    assert "Already sent for this period" in again.output and len(smtp_server.recorder.messages) == 1
    refused = site.run("--now", wednesday, "digest", "--send", "--period", "next")
    assert refused.exit_code == 2 and "--period is for --dry-run, --preview, --test and --lint" in refused.output


def test_an_unsent_digest_is_the_next_one_while_a_pass_would_send_it(digest_site):
    tuesday = digest_site.run("--now", "2026-03-17T10:00:00+09:00", "digest", "--dry-run")
    assert "Digest of 2026-03-16T08:00+09:00 (not sent yet)" in tuesday.output
    assert "Would send 2 message(s)" in tuesday.output
    late = digest_site.run("--now", "2026-03-18T09:00:00+09:00", "digest", "--dry-run")  # past catch_up_hours
    assert "Next digest, sent 2026-03-23T08:00+09:00" in late.output and "0 so far" in late.output


def test_preview_of_nothing_yet_says_so(digest_site, tmp_path):
    result = digest_site.run("--now", "2026-03-18T09:00:00+09:00", "digest", "--preview", str(tmp_path / "p"))
    assert result.exit_code == 0 and "No posts in this digest yet: nothing to preview." in result.output
    assert not Path(tmp_path / "p").exists()


def test_a_preview_folder_that_cannot_be_one_is_a_usage_error(digest_site):
    taken = digest_site.root / "taken"
    taken.write_text("a file")
    result = digest_site.run("--now", DIGEST_NOW, "digest", "--preview", str(taken), "--period", "last")
    assert result.exit_code == 2 and f"{taken}: cannot write the preview there (Not a directory)" in result.output


def test_an_outbox_that_cannot_take_files_stops_the_send_and_keeps_it_pending(digest_site):
    (digest_site.root / "outbox").write_text("a file where the outbox folder should be")
    result = digest_site.run("--now", DIGEST_NOW, "digest", "--send")
    assert result.exit_code == 3 and "cannot write .eml files there" in result.output
    assert "internal error" not in result.output and "2 pending" in result.output
    (digest_site.root / "outbox").unlink()
    again = digest_site.run("--now", DIGEST_NOW, "digest", "--send")
    assert again.exit_code == 0 and "Sent 2 message(s)" in again.output


@pytest.fixture
def night_digest(digest_site) -> Site:
    """Europe/Berlin with the digest at Sunday 02:30: on 2026-03-29 that hour is skipped (02:00 → 03:00), on
    2026-10-25 it comes twice (03:00 → 02:00). The service's cron fires at 01:30 UTC and 00:30 UTC."""
    digest_site.set_config('timezone = "Asia/Tokyo"', 'timezone = "Europe/Berlin"')
    digest_site.set_config('day = "mon"', 'day = "sun"')
    digest_site.set_config('time = "08:00"', 'time = "02:30"')
    return digest_site


def test_a_send_time_the_clocks_skip_goes_out_when_the_service_sends_it(night_digest):
    site = night_digest
    site.write_post("2026-03-25-spring.md", post_text(title="Spring", date="2026-03-25 10:00:00 +0100"))
    assert "Published 1 new post(s)" in site.run("--now", "2026-03-25T12:00:00+01:00").output
    early = site.run("--now", "2026-03-29T01:15:00+00:00", "digest", "--dry-run")  # 03:15 summer time
    assert "Next digest, sent 2026-03-29T03:30+02:00" in early.output, early.output
    assert "Digest of 2026-03-29" not in site.run("--now", "2026-03-29T01:15:00+00:00").output
    assert not list((site.root / "outbox").glob("*.eml")), "not sent before its time"
    sent = site.run("--now", "2026-03-29T01:31:00+00:00")
    assert "Digest of 2026-03-29T03:30+02:00: 1 sent now" in sent.output, sent.output


def test_a_send_time_the_clocks_repeat_is_past_after_its_first_occurrence(night_digest):
    site = night_digest
    site.run("--now", "2026-10-20T12:00:00+02:00")  # the week's posts: none; the subscribers stay
    site.write_post("2026-10-22-autumn.md", post_text(title="Autumn", date="2026-10-22 10:00:00 +0200"))
    assert "Published 1 new post(s)" in site.run("--now", "2026-10-22T12:00:00+02:00").output
    repeat = "2026-10-25T01:29:00+00:00"  # 02:29 winter time, an hour after the first 02:30 (00:30 UTC)
    dry = site.run("--now", repeat, "digest", "--dry-run")
    assert "Digest of 2026-10-25T02:30+02:00 (not sent yet)" in dry.output, dry.output
    sent = site.run("--now", repeat)
    assert "Digest of 2026-10-25T02:30+02:00: 1 sent now" in sent.output, sent.output
