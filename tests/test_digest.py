"""The weekly digest end to end: rendering, headers, a real SMTP server, the ledger, the CLI."""

from __future__ import annotations

import base64
import os
import re
import sqlite3
from email import message_from_bytes, policy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from publisher.config import load_config
from publisher.store.sqlite import SQLiteStore as Store
from publisher.tokens import Secrets, read_token

from .conftest import DIGEST_NOW, GOLDEN, SECRET, use_smtp


def ledger(site):
    with sqlite3.connect(site.db) as conn:
        return dict(conn.execute("SELECT email, state FROM ledger").fetchall())


def test_digest_over_smtp(digest_site, smtp_server):
    use_smtp(digest_site, smtp_server.port)
    result = digest_site.run("--now", DIGEST_NOW, "digest", "--send")
    assert result.exit_code == 0, result.output
    assert "Sent 2 message(s) in this run." in result.output
    assert "skipped 1: nothing new in their categories" in result.output
    assert sorted(smtp_server.recorder.recipients()) == ["all@example.com", "chips@example.com"]
    by_to = {m["To"].addresses[0].addr_spec: m for m in smtp_server.recorder.parsed()}
    msg = by_to["all@example.com"]
    raw = next(c for _, r, c in smtp_server.recorder.messages if r == ["all@example.com"])
    # Structure: multipart/alternative, text first, HTML last, UTF-8 in base64.
    assert msg.get_content_type() == "multipart/alternative"
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert all(p["Content-Transfer-Encoding"] == "base64" and p.get_content_charset() == "utf-8" for p in parts)
    # Headers: encoded Japanese subject, ids, list headers.
    assert msg["Subject"] == "AI速報ラボ 週刊ダイジェスト 03/09〜03/16"
    assert b"Subject: =?utf-8?" in raw
    assert str(msg["To"]) == "山田 太郎 <all@example.com>"
    assert re.fullmatch(r"<[^<>@\s]+@news\.example\.jp>", msg["Message-ID"])
    assert msg["Date"] and msg["List-ID"].endswith("<digest.news.example.jp>")
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    unsubscribe = re.fullmatch(r"<(https://news\.example\.jp/unsubscribe/([A-Za-z0-9_.-]+))>", msg["List-Unsubscribe"])
    assert unsubscribe, msg["List-Unsubscribe"]
    assert re.search(rb"^List-Unsubscribe: <https://", raw, re.M), "the URL header is never RFC 2047-encoded"
    # The token is signed, bound to this subscriber and purpose.
    store = Store.open(digest_site.db, readonly=True)
    sid = store.subscriber("all@example.com").id
    got = read_token(Secrets(SECRET.encode()), unsubscribe.group(2), "unsubscribe",
                     lambda i: getattr(store.subscriber_by_id(i), "email", None))
    assert got == sid
    # Bodies: every post for the all-categories subscriber, the visible unsubscribe link in both parts.
    html = msg.get_body(("html",)).get_content()
    text = msg.get_body(("plain",)).get_content()
    assert unsubscribe.group(1) in html and unsubscribe.group(1) in text
    assert html.count('class="post-title"') == 10
    assert 'class="post-title" style="' in html, "CSS is inlined"
    assert re.search(r"<style>(.*?)</style>", html, re.S).group(1).strip().startswith("@media"), \
        "only the phone media query stays in <style>"
    assert "データセンターの電力問題" in text
    # Per-category content: the chips/Research subscriber gets only those categories.
    chips_html = by_to["chips@example.com"].get_body(("html",)).get_content()
    assert chips_html.count('class="post-title"') == 5
    assert "工場ロボット" not in chips_html and "Edge AI chips" in chips_html
    assert ledger(digest_site) == {"all@example.com": "sent", "chips@example.com": "sent",
                                   "none@example.com": "skipped"}


def test_digest_period_sent_once(digest_site, smtp_server):
    use_smtp(digest_site, smtp_server.port)
    digest_site.run("--now", DIGEST_NOW, "digest", "--send")
    again = digest_site.run("--now", "2026-03-17T10:00:00+09:00", "digest", "--send")
    assert "Already sent for this period" in again.output
    scheduled = digest_site.run("--now", "2026-03-16T12:00:00+09:00")
    assert "Digest of" not in scheduled.output
    assert len(smtp_server.recorder.messages) == 2


def test_scheduled_pass_sends_when_due(digest_site, smtp_server):
    use_smtp(digest_site, smtp_server.port)
    before = digest_site.run("--now", "2026-03-16T07:59:00+09:00")
    assert "Digest of 2026-03-09T08:00+09:00 was missed" in before.output, "last week's is reported as missed"
    assert not smtp_server.recorder.messages
    assert "missed" not in digest_site.run("--now", "2026-03-16T07:59:30+09:00").output, "reported once"
    due = digest_site.run("--now", "2026-03-16T08:00:30+09:00")
    assert "Digest of 2026-03-16T08:00+09:00: 2 sent now" in due.output
    assert len(smtp_server.recorder.messages) == 2


def test_missed_digest_older_than_catch_up_is_skipped(digest_site, smtp_server):
    use_smtp(digest_site, smtp_server.port)
    late = digest_site.run("--now", "2026-03-19T09:00:00+09:00")
    assert "was missed and is older than [digest] catch_up_hours (48 h): skipped" in late.output
    assert not smtp_server.recorder.messages
    by_hand = digest_site.run("--now", "2026-03-19T09:00:00+09:00", "digest", "--send")
    assert "Sent 2 message(s)" in by_hand.output, "the operator can still send a skipped digest by hand"


def test_temporary_and_permanent_smtp_failures(digest_site, smtp_server):
    use_smtp(digest_site, smtp_server.port)
    recorder = smtp_server.recorder
    recorder.rcpt_codes["all@example.com"] = ["451 4.3.0 try again later"]
    recorder.rcpt_codes["chips@example.com"] = ["550 5.1.1 no such user"]
    result = digest_site.run("--now", DIGEST_NOW, "digest", "--send")
    assert result.exit_code == 1
    assert recorder.recipients() == ["all@example.com"], "a 4xx is retried with backoff"
    assert "chips@example.com: failed after 1 attempt(s): refused by the server: 550 5.1.1 no such user" in result.output
    assert ledger(digest_site)["chips@example.com"] == "failed"


def test_dry_run_preview_and_test_record_nothing(digest_site, smtp_server, tmp_path):
    use_smtp(digest_site, smtp_server.port)
    dry = digest_site.run("--now", DIGEST_NOW, "digest", "--dry-run")
    assert "1 subscriber(s) following (all): 10 post(s)" in dry.output
    assert "1 subscriber(s) following Research, 半導体: 5 post(s)" in dry.output
    assert "Would send 2 message(s); 1 subscriber(s) have nothing new" in dry.output
    preview = digest_site.run("--now", DIGEST_NOW, "digest", "--preview", str(tmp_path / "prev"))
    assert preview.exit_code == 0
    emls = sorted((tmp_path / "prev").glob("*.eml"))
    assert len(emls) == 2 and (tmp_path / "prev" / "digest.html").exists()
    test = digest_site.run("--now", DIGEST_NOW, "digest", "--test", "editor@example.com")
    assert "Test message sent to editor@example.com" in test.output
    msg = smtp_server.recorder.parsed()[0]
    assert msg["Subject"].startswith("[テスト] ")
    with sqlite3.connect(digest_site.db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM digests").fetchone()[0] == 0, "nothing recorded"
    status = digest_site.run("digest", "--status")
    assert "No digest has been sent yet." in status.output


def test_unsubscribed_between_runs_gets_nothing(digest_site, smtp_server):
    use_smtp(digest_site, smtp_server.port)
    smtp_server.stop()  # first run: the server is down, nothing is sent, the ledger stays pending
    first = digest_site.run("--now", DIGEST_NOW, "digest", "--send")
    assert first.exit_code == 3 and "cannot connect" in first.output
    assert set(ledger(digest_site).values()) <= {"pending", "skipped"}
    digest_site.run("subscribers", "remove", "chips@example.com")
    smtp_server.restart()
    second = digest_site.run("--now", DIGEST_NOW, "digest", "--send")
    assert second.exit_code == 0, second.output
    assert smtp_server.recorder.recipients() == ["all@example.com"]
    assert ledger(digest_site)["chips@example.com"] == "skipped"
    assert "skipped 1: subscriber is unsubscribed" in second.output


def test_refusal_after_data_is_retried(digest_site, smtp_server):
    use_smtp(digest_site, smtp_server.port)
    smtp_server.recorder.data_codes["all@example.com"] = ["421 4.4.2 closing connection"]
    result = digest_site.run("--now", DIGEST_NOW, "digest", "--send")
    # 421 after DATA is a refusal (not delivered): retried, then delivered; nothing duplicated.
    assert sorted(smtp_server.recorder.recipients()) == ["all@example.com", "chips@example.com"]
    assert result.exit_code == 0, result.output


def test_golden_digest(digest_site, tmp_path):
    out = tmp_path / "prev"
    digest_site.run("--now", DIGEST_NOW, "digest", "--preview", str(out))
    for name in ("digest.html", "digest.txt"):
        got = (out / name).read_bytes()
        if os.environ.get("UPDATE_GOLDEN"):
            (GOLDEN / name).write_bytes(got)
        assert got == (GOLDEN / name).read_bytes(), f"{name} differs from tests/golden"


def test_gmail_clip_warning(digest_site, smtp_server):
    use_smtp(digest_site, smtp_server.port)
    long = "長い抜粋" * 3000
    digest_site.write_post("2026-03-12-huge.md", "---\ntitle: 大きな記事\ndate: 2026-03-12 10:00:00 +0900\n"
                           f"categories: [政策]\nexcerpt: \"{long}\"\n---\n\n本文。\n")
    digest_site.run("--now", "2026-03-13T00:00:00+09:00")
    dry = digest_site.run("--now", DIGEST_NOW, "digest", "--dry-run")
    assert "over Gmail's ~102 KB clipping size" in dry.output
    result = digest_site.run("--now", DIGEST_NOW, "digest", "--send")
    assert "Gmail clips messages over 102 KB" in result.output
    assert "Last digest run:" in digest_site.run("status").output and "sent 2" in digest_site.run("status").output


def test_title_newline_never_becomes_a_header(digest_site, smtp_server):
    use_smtp(digest_site, smtp_server.port)
    digest_site.set_config('subject = "{site} 週刊ダイジェスト {start:%m/%d}〜{end:%m/%d}"',
                           'subject = "{site}\\r\\nBcc: victim@example.com"')
    digest_site.run("--now", DIGEST_NOW, "digest", "--send")
    raw = smtp_server.recorder.messages[0][2]
    assert b"\nBcc:" not in raw and b"\r\nBcc:" not in raw
    msg = message_from_bytes(raw, policy=policy.default)
    assert "victim" in msg["Subject"] and msg["Bcc"] is None


def test_token_rejects_forgery_and_other_purpose():
    from publisher.tokens import TokenError, make_token

    secrets = Secrets(b"x" * 32)
    token = make_token(secrets, 7, "a@example.com", "unsubscribe")
    assert read_token(secrets, token, "unsubscribe", lambda i: "a@example.com") == 7
    for bad, purpose in [(token[:-2], "unsubscribe"), (token, "preferences"), ("garbage", "unsubscribe"),
                         (make_token(Secrets(b"y" * 32), 7, "a@example.com", "unsubscribe"), "unsubscribe")]:
        with pytest.raises(TokenError):
            read_token(secrets, bad, purpose, lambda i: "a@example.com")
    with pytest.raises(TokenError):
        read_token(secrets, token, "unsubscribe", lambda i: "someone-else@example.com")
    rotated = Secrets(b"z" * 32, (b"x" * 32,))
    assert read_token(rotated, token, "unsubscribe", lambda i: "a@example.com") == 7
    old = make_token(secrets, 7, "a@example.com", "preferences", issued=1000)
    with pytest.raises(TokenError):
        read_token(secrets, old, "preferences", lambda i: "a@example.com", max_age=3600, now=10_000)
    assert "." not in token and len(token) == 56 and b"a@example.com" not in base64.urlsafe_b64decode(token)


def test_unusable_secret_is_a_clear_error(digest_site, smtp_server, monkeypatch):
    use_smtp(digest_site, smtp_server.port)
    monkeypatch.setenv("PUBLISHER_TOKEN_SECRET", "short")
    result = digest_site.run("--now", DIGEST_NOW, "digest", "--send")
    assert result.exit_code == 2 and "PUBLISHER_TOKEN_SECRET is too short" in result.output
    assert not smtp_server.recorder.messages


def test_config_from_address_required(digest_site, smtp_server):
    use_smtp(digest_site, smtp_server.port)
    digest_site.set_config('from_address = "AI速報ラボ <digest@news.example.jp>"', 'from_address = ""')
    result = digest_site.run("--now", DIGEST_NOW, "digest", "--send")
    assert "[digest.from_address] is needed to send" in result.output


def test_config_loads_digest_sections(site):
    cfg = load_config(site.config)
    assert cfg.digest.transport == "file" and cfg.smtp.port == 587 and cfg.list_id == "digest.news.example.jp"
    assert cfg.unsubscribe_url == "https://news.example.jp/unsubscribe/{token}"


def test_concurrency_and_rate(digest_site, smtp_server):
    use_smtp(digest_site, smtp_server.port)
    csv = digest_site.root / "subs.csv"
    csv.write_text("email\n" + "".join(f"c{i:02d}@example.com\n" for i in range(30)))
    digest_site.run("subscribers", "import", str(csv))
    digest_site.set_config("concurrency = 1", "concurrency = 3")
    digest_site.set_config("rate = 0", "rate = 40")
    import time

    started = time.monotonic()
    result = digest_site.run("--now", DIGEST_NOW, "digest", "--send")
    elapsed = time.monotonic() - started
    assert result.exit_code == 0, result.output
    counts = {}
    for rcpt in smtp_server.recorder.recipients():
        counts[rcpt] = counts.get(rcpt, 0) + 1
    assert len(counts) == 32 and set(counts.values()) == {1}, "three connections, each message once"
    assert elapsed >= 31 / 40 * 0.9, "no more than 40 messages per second"


def test_dry_run_pass_says_what_the_digest_would_do(digest_site, smtp_server):
    use_smtp(digest_site, smtp_server.port)
    before = sqlite3.connect(digest_site.db).execute("SELECT COUNT(*) FROM digests").fetchone()[0]
    result = digest_site.run("--dry-run", "--now", "2026-03-16T08:30:00+09:00")
    assert "Would send the digest of 2026-03-16T08:00+09:00 (10 posts) to 2 subscriber(s); 1 with nothing new" \
        in result.output
    assert not smtp_server.recorder.messages
    assert sqlite3.connect(digest_site.db).execute("SELECT COUNT(*) FROM digests").fetchone()[0] == before


def test_connection_lost_after_data_is_unknown_and_never_resent(digest_site, smtp_server):
    use_smtp(digest_site, smtp_server.port)
    smtp_server.recorder.drop_after_data.add("all@example.com")
    first = digest_site.run("--now", DIGEST_NOW, "digest", "--send")
    assert first.exit_code == 1
    assert "all@example.com: unknown after 1 attempt(s): connection lost during DATA" in first.output
    assert ledger(digest_site) == {"all@example.com": "unknown", "chips@example.com": "sent",
                                   "none@example.com": "skipped"}
    digest_site.run("--now", DIGEST_NOW, "digest", "--send")
    assert sorted(smtp_server.recorder.recipients()) == ["all@example.com", "chips@example.com"], \
        "the message the server may have accepted is reported, not sent again"


@given(st.text(max_size=200) | st.binary(max_size=60).map(lambda b: base64.urlsafe_b64encode(b).decode()))
@settings(max_examples=400, deadline=None)
def test_any_text_is_a_token_error_never_a_crash(text):
    from publisher.tokens import TokenError, read_confirm_token

    secrets = Secrets(b"x" * 32)
    for read in (lambda t: read_token(secrets, t, "unsubscribe", lambda i: "a@example.com"),
                 lambda t: read_confirm_token(secrets, t, 3600)):
        with pytest.raises(TokenError) as err:
            read(text)
        assert err.value.status in (400, 403)


@given(st.integers(min_value=0, max_value=55), st.sampled_from("AQgw_-="), st.integers(min_value=1, max_value=2**63 - 1))
@settings(max_examples=300, deadline=None)
def test_every_changed_character_is_refused(position, char, subscriber_id):
    from publisher.tokens import TokenError, make_token

    secrets = Secrets(b"x" * 32)
    token = make_token(secrets, subscriber_id, "a@example.com", "unsubscribe")
    assert read_token(secrets, token, "unsubscribe", lambda i: "a@example.com") == subscriber_id
    changed = token[:position] + char + token[position + 1:]
    if changed != token:
        with pytest.raises(TokenError):
            read_token(secrets, changed, "unsubscribe", lambda i: "a@example.com")
