"""The digest a mailbox trusts: sender identity in the footer, the archived "view in browser" copy, a padded
preheader, a dark-mode stylesheet that really applies, and `publish digest --lint`."""

from __future__ import annotations

import re
import shutil
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from publisher.config import load_config
from publisher.digest.lint import lint_message

from .conftest import DIGEST_NOW

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ADDRESS = "〒100-0001 東京都千代田区千代田0-0 例示ビル"


def trusted(site) -> None:
    site.set_config('sender_name = ""', 'sender_name = "AI速報ラボ編集部"')
    site.set_config('postal_address = ""', f'postal_address = "{ADDRESS}"')
    site.set_config('signing_domain = ""', 'signing_domain = "news.example.jp"')


def sent_messages(site) -> list[EmailMessage]:
    return [message_from_bytes(p.read_bytes(), policy=policy.default) for p in sorted((site.root / "outbox").glob("*.eml"))]


def test_footer_names_sender_address_and_contact(digest_site):
    trusted(digest_site)
    assert digest_site.run("--now", DIGEST_NOW, "digest", "--send").exit_code == 0
    for msg in sent_messages(digest_site):
        html = msg.get_body(("html",)).get_content()
        text = msg.get_body(("plain",)).get_content()
        for body in (html, text):
            assert "AI速報ラボ編集部" in body and ADDRESS in body and "digest@news.example.jp" in body
        # 特定電子メール法: the opt-out notice right before the unsubscribe address, in both parts.
        assert re.search(r"配信を停止できます:\s*<a href=\"https://news\.example\.jp/unsubscribe/", html)
        assert re.search(r"配信を停止できます:\r?\n配信停止: https://news\.example\.jp/unsubscribe/", text)


def test_archive_copy_is_written_without_personal_links(digest_site, tmp_path, monkeypatch):
    assert digest_site.run("--now", DIGEST_NOW, "digest", "--send").exit_code == 0
    page_path = digest_site.feeds / "archive" / "2026-03-16.html"
    page = page_path.read_text(encoding="utf-8")
    messages = sent_messages(digest_site)
    assert len(messages) == 2
    for msg in messages:
        html = msg.get_body(("html",)).get_content()
        link = re.search(r'<a href="([^"]+)"[^>]*>ブラウザで表示</a>', html).group(1)
        assert link == "https://news.example.jp/feeds/archive/2026-03-16.html"
        assert f"ブラウザで表示: {link}" in msg.get_body(("plain",)).get_content()
    for title in ("GPU不足", "Edge AI chips", "工場ロボット"):
        assert title in page
    assert "/unsubscribe/" not in page and "/preferences/" not in page
    assert "@example.com" not in page and "ブラウザで表示" not in page and 'class="preheader"' not in page
    assert "https://news.example.jp/subscribe" in page
    # Deterministic: a second site with another signing secret and other subscribers gets the same bytes.
    other = tmp_path / "other"
    shutil.copytree(digest_site.root, other, ignore=shutil.ignore_patterns("state", "feeds", "outbox"))
    from .conftest import Site

    twin = Site(other)
    monkeypatch.setenv("PUBLISHER_TOKEN_SECRET", "another-secret-0123456789abcdef")
    assert twin.run("--now", "2026-03-12T20:00:00+09:00").exit_code == 0
    twin.run("subscribers", "add", "someone@example.org")
    assert twin.run("--now", DIGEST_NOW, "digest", "--send").exit_code == 0
    assert (twin.feeds / "archive" / "2026-03-16.html").read_bytes() == page_path.read_bytes()
    mtime = page_path.stat().st_mtime_ns
    assert digest_site.run("--now", DIGEST_NOW, "digest", "--send").exit_code == 0
    assert page_path.stat().st_mtime_ns == mtime, "written only when it changes"
    leftovers = [p.name for p in page_path.parent.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


def test_archive_switched_off_means_no_link(digest_site):
    digest_site.set_config("archive = true", "archive = false")
    assert digest_site.run("--now", DIGEST_NOW, "digest", "--send").exit_code == 0
    assert not (digest_site.feeds / "archive").exists()
    for msg in sent_messages(digest_site):
        assert "ブラウザで表示" not in msg.get_body(("html",)).get_content()


def test_archive_that_cannot_be_written_is_a_warning_not_a_lost_send(digest_site):
    (digest_site.feeds / "archive").parent.mkdir(parents=True, exist_ok=True)
    (digest_site.feeds / "archive").write_text("a file where the folder should be")
    result = digest_site.run("--now", DIGEST_NOW, "digest", "--send")
    assert result.exit_code == 0, result.output
    assert "the archived copy was not written" in result.output
    assert len(sent_messages(digest_site)) == 2


def test_preheader_is_padded(digest_site, tmp_path):
    digest_site.run("--now", DIGEST_NOW, "digest", "--preview", str(tmp_path / "p"))
    html = (tmp_path / "p" / "digest.html").read_text(encoding="utf-8")
    preheader = re.search(r'<div class="preheader"[^>]*>(.*?)</div>', html, re.S).group(1)
    assert preheader.startswith("今週の新着記事 10 件をお届けします")
    assert preheader.count("\u034f\u200c&nbsp;") >= 80, "the preview text is followed by invisible padding"


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")
def test_dark_mode_stylesheet_applies_in_chromium(digest_site, tmp_path):
    from playwright.sync_api import sync_playwright

    digest_site.run("--now", DIGEST_NOW, "digest", "--preview", str(tmp_path / "p"))
    url = (tmp_path / "p" / "digest.html").as_uri()
    colours = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"])
        try:
            for scheme in ("light", "dark"):
                page = browser.new_page(color_scheme=scheme)
                page.goto(url)
                colours[scheme] = page.evaluate(
                    "() => [getComputedStyle(document.querySelector('.container')).backgroundColor,"
                    " getComputedStyle(document.querySelector('.post-title a')).color,"
                    " getComputedStyle(document.querySelector('.preheader')).display]")
                page.close()
        finally:
            browser.close()
    assert colours["light"][:2] == ["rgb(255, 255, 255)", "rgb(11, 79, 138)"]
    assert colours["dark"][:2] == ["rgb(34, 35, 38)", "rgb(140, 196, 245)"]
    assert colours["dark"][2] == colours["light"][2] == "none"


# -- the lint ------------------------------------------------------------------------------------------------------

def test_lint_of_the_shipped_example_names_what_is_missing(digest_site):
    result = digest_site.run("--now", DIGEST_NOW, "digest", "--lint")
    assert result.exit_code == 1
    failed = [line for line in result.output.splitlines() if line.startswith("FAIL")]
    assert len(failed) == 2, result.output
    assert "signing_domain" in failed[0] and "postal_address" in failed[1]
    assert "ok    one-click unsubscribe" in result.output and "ok    text part first" in result.output


def test_lint_passes_a_configured_digest(digest_site):
    trusted(digest_site)
    result = digest_site.run("--now", DIGEST_NOW, "digest", "--lint")
    assert result.exit_code == 0, result.output
    assert "All 11 checks passed." in result.output


def test_lint_catches_template_faults(digest_site):
    trusted(digest_site)
    templates = digest_site.root / "templates"
    templates.mkdir()
    source = (Path(__file__).resolve().parent.parent / "publisher" / "templates" / "digest.html.j2").read_text()
    source = source.replace('<h1 class="masthead">', '<img src="https://news.example.jp/logo.png">'
                            '<a href="http://news.example.jp/old">old</a><a href=" JaVa&#x09;script:alert(1)">x</a>'
                            '<h1 class="masthead">')
    (templates / "digest.html.j2").write_text(source, encoding="utf-8")
    result = digest_site.run("--now", DIGEST_NOW, "digest", "--lint")
    assert result.exit_code == 1
    failed = {line.split(":")[0] for line in result.output.splitlines() if line.startswith("FAIL")}
    assert failed == {"FAIL  https links only", "FAIL  alt text on images", "FAIL  no javascript"}, result.output
    assert "http://news.example.jp/old" in result.output and "logo.png" in result.output


def test_lint_checks_headers_order_size_and_alignment(digest_site):
    trusted(digest_site)
    cfg = load_config(digest_site.config)
    bad = EmailMessage()
    bad["From"] = "Someone <news@elsewhere.example>"
    bad["To"] = "a@example.com"
    bad["Subject"] = "x"
    bad["List-Unsubscribe"] = "<http://news.example.jp/u/1>"
    bad.set_content("<p>" + "x" * 120_000 + "</p>", subtype="html")
    bad.add_alternative("plain text", subtype="plain")
    checks = {c.rule: c for c in lint_message(bad.as_bytes(), cfg)}
    failing = {rule for rule, c in checks.items() if not c.ok}
    assert failing >= {"one-click unsubscribe", "message-id", "date", "list-id", "from aligned with DKIM/SPF",
                       "text part first", "size under 102 KB"}
    assert "elsewhere.example" in checks["from aligned with DKIM/SPF"].detail
    assert checks["text part first"].detail == "multipart/alternative: text/html, text/plain"
