"""The subscription pages, in process: every route, forged and expired tokens, repeats, CSRF, headers."""

from __future__ import annotations

import re
import sqlite3
import time

import pytest
from starlette.testclient import TestClient

from publisher.app import App
from publisher.config import load_config
from publisher.store.sqlite import SQLiteStore as Store
from publisher.tokens import Secrets, make_confirm_token, make_token
from publisher.web import create_app

from .conftest import SECRET, use_smtp


@pytest.fixture
def web(digest_site, smtp_server):
    use_smtp(digest_site, smtp_server.port)
    cfg = load_config(digest_site.config)
    client = TestClient(create_app(App(cfg)), base_url="https://testserver", follow_redirects=False)
    client.site, client.smtp = digest_site, smtp_server.recorder
    return client


def token_for(site, email: str, purpose: str, issued: int | None = None) -> str:
    store = Store.open(site.db, readonly=True)
    sid = store.subscriber(email).id
    return make_token(Secrets(SECRET.encode()), sid, email, purpose, issued)


def status_of(site, email: str) -> str:
    with sqlite3.connect(site.db) as conn:
        row = conn.execute("SELECT status FROM subscribers WHERE email = ?", (email,)).fetchone()
    return row[0] if row else "absent"


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def test_one_click_post_without_cookies(web):
    token = token_for(web.site, "all@example.com", "unsubscribe")
    response = web.post(f"/unsubscribe/{token}", content=b"List-Unsubscribe=One-Click",
                        headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 200
    assert "set-cookie" not in response.headers and "location" not in response.headers
    assert status_of(web.site, "all@example.com") == "unsubscribed"
    again = web.post(f"/unsubscribe/{token}", content=b"List-Unsubscribe=One-Click")
    assert again.status_code == 200, "a second unsubscribe is a calm 200"


def test_get_only_asks(web):
    token = token_for(web.site, "all@example.com", "unsubscribe")
    page = web.get(f"/unsubscribe/{token}")
    assert page.status_code == 200 and 'id="unsubscribe"' in page.text
    assert "a***@example.com" in page.text and "all@example.com" not in page.text
    assert status_of(web.site, "all@example.com") == "active", "a prefetching link scanner unsubscribes no one"
    assert page.headers["content-security-policy"].startswith("default-src 'none'")
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["x-frame-options"] == "DENY" and page.headers["cache-control"] == "no-store"
    assert '<html lang="ja">' in page.text and "配信を停止しますか" in page.text


@pytest.mark.parametrize("mangle", [
    lambda t: t[:-3],                       # truncated
    lambda t: t[:10],                       # cut short
    lambda t: "x" + t[1:],                  # forged payload
    lambda t: t[:-1] + ("B" if t[-1] == "A" else "A"),  # garbled signature
    lambda t: t + "A",                      # trailing junk
    lambda t: t + "==",                     # padding: not the one canonical spelling
    lambda t: "%3Cscript%3E",               # not a token at all
])
def test_forged_and_truncated_tokens(web, mangle):
    token = mangle(token_for(web.site, "all@example.com", "unsubscribe"))
    for method in ("get", "post"):
        response = getattr(web, method)(f"/unsubscribe/{token}")
        assert response.status_code in (400, 403)
        assert "<script>" not in response.text and "Traceback" not in response.text
    assert status_of(web.site, "all@example.com") == "active"


def test_token_for_another_purpose_or_secret(web):
    prefs = token_for(web.site, "all@example.com", "preferences")
    assert web.post(f"/unsubscribe/{prefs}").status_code == 400
    other = make_token(Secrets(b"another-secret-value-xyz"), 1, "all@example.com", "unsubscribe")
    assert web.post(f"/unsubscribe/{other}").status_code == 403
    assert status_of(web.site, "all@example.com") == "active"


def test_expired_preferences_and_confirm_links(web):
    old = int(time.time()) - 100 * 86400
    token = token_for(web.site, "all@example.com", "preferences", issued=old)
    response = web.get(f"/preferences/{token}")
    assert response.status_code == 403 and "expired" in response.text
    confirm = make_confirm_token(Secrets(SECRET.encode()), b"n" * 16, issued=old)
    response = web.get(f"/confirm/{confirm}")
    assert response.status_code == 403 and "expired" in response.text


def test_signup_double_opt_in(web):
    form = web.get("/subscribe")
    assert form.status_code == 200 and "半導体" in form.text
    csrf = csrf_of(form.text)
    response = web.post("/subscribe", data={"csrf": csrf, "email": "New.Reader@Example.com",
                                            "category": ["半導体", "not-a-category"]})
    assert response.status_code == 200 and "確認メールを送りました" in response.text
    assert status_of(web.site, "new.reader@example.com") == "absent", "nothing is subscribed before the link"
    mail = web.smtp.parsed()[-1]
    link = re.search(r"https://news\.example\.jp/confirm/(\S+)", mail.get_body(("plain",)).get_content()).group(1)
    assert web.get(f"/confirm/{link}").status_code == 200
    assert status_of(web.site, "new.reader@example.com") == "absent", "GET only asks"
    done = web.post(f"/confirm/{link}")
    assert done.status_code == 200 and "登録が完了しました" in done.text
    assert status_of(web.site, "new.reader@example.com") == "active"
    with sqlite3.connect(web.site.db) as conn:
        cats = conn.execute("SELECT categories FROM subscribers WHERE email = 'new.reader@example.com'").fetchone()
    assert cats[0] == '["半導体"]', "unknown categories are dropped"


def test_signup_reveals_nothing_and_is_rate_limited(web):
    csrf = csrf_of(web.get("/subscribe").text)
    existing = web.post("/subscribe", data={"csrf": csrf, "email": "all@example.com"})
    fresh = web.post("/subscribe", data={"csrf": csrf, "email": "someone@example.com"})
    assert existing.status_code == fresh.status_code == 200
    assert existing.text == fresh.text, "the answer is the same for subscribed and new addresses"
    to_existing = [m for m in web.smtp.parsed() if m["To"].addresses[0].addr_spec == "all@example.com"]
    assert "https://news.example.jp/preferences/" in to_existing[-1].get_body(("plain",)).get_content(), \
        "an address already subscribed is sent its preferences link, not a confirmation"
    assert status_of(web.site, "all@example.com") == "active"
    sent_before = len(web.smtp.messages)
    for _ in range(5):
        web.post("/subscribe", data={"csrf": csrf, "email": "victim@example.com"})
    to_victim = [r for _, rcpts, _ in web.smtp.messages[sent_before:] for r in rcpts if r == "victim@example.com"]
    assert len(to_victim) == 3, "at most 3 confirmation mails per address per day"
    for _ in range(5):
        last = web.post("/subscribe", data={"csrf": csrf, "email": "x@example.com"})
    assert last.status_code == 429, "and at most 10 sign-up requests per client per hour"


def test_signup_needs_csrf_and_a_valid_address(web):
    no_cookie = TestClient(web.app, base_url="https://testserver")
    assert no_cookie.post("/subscribe", data={"csrf": "x", "email": "a@example.com"}).status_code == 403
    csrf = csrf_of(web.get("/subscribe").text)
    assert web.post("/subscribe", data={"csrf": csrf + "0", "email": "a@example.com"}).status_code == 403
    bad = web.post("/subscribe", data={"csrf": csrf, "email": "<script>alert(1)</script>"})
    assert bad.status_code == 400 and "&lt;script&gt;" in bad.text and "<script>alert" not in bad.text
    assert status_of(web.site, "a@example.com") == "absent"
    cookie = web.cookies.get("__Host-publisher_csrf")
    assert cookie, "the CSRF cookie is set"


def test_preferences_change_and_unsubscribe(web):
    token = token_for(web.site, "chips@example.com", "preferences")
    page = web.get(f"/preferences/{token}")
    assert page.status_code == 200 and "checked" in page.text
    csrf = csrf_of(page.text)
    saved = web.post(f"/preferences/{token}", data={"csrf": csrf, "action": "save", "category": ["政策"]})
    assert saved.status_code == 200 and 'id="saved"' in saved.text
    with sqlite3.connect(web.site.db) as conn:
        assert conn.execute("SELECT categories FROM subscribers WHERE email = 'chips@example.com'").fetchone()[0] \
            == '["政策"]'
    forged = web.post(f"/preferences/{token}", data={"csrf": "nope", "action": "unsubscribe"})
    assert forged.status_code == 403 and status_of(web.site, "chips@example.com") == "active"
    gone = web.post(f"/preferences/{token}", data={"csrf": csrf, "action": "unsubscribe"})
    assert gone.status_code == 200 and status_of(web.site, "chips@example.com") == "unsubscribed"


def test_unsubscribe_is_honoured_by_the_next_send(web):
    token = token_for(web.site, "all@example.com", "unsubscribe")
    web.post(f"/unsubscribe/{token}", content=b"List-Unsubscribe=One-Click")
    result = web.site.run("--now", "2026-03-16T09:00:00+09:00", "digest", "--send")
    assert web.smtp.recipients() == ["chips@example.com"], result.output


def test_unknown_page_and_method(web):
    assert web.get("/nowhere").status_code == 404
    assert web.put("/subscribe").status_code == 405
    assert "Traceback" not in web.get("/nowhere").text


def pending_for(site, email: str) -> int:
    with sqlite3.connect(site.db) as conn:
        return conn.execute("SELECT COUNT(*) FROM pending_confirmations WHERE email = ?", (email,)).fetchone()[0]


def test_unconfirmed_signups_are_forgotten_after_the_link_expires(web):
    csrf = csrf_of(web.get("/subscribe").text)
    web.post("/subscribe", data={"csrf": csrf, "email": "never.confirms@example.com"})
    assert pending_for(web.site, "never.confirms@example.com") == 1
    assert status_of(web.site, "never.confirms@example.com") == "absent"
    from datetime import UTC, datetime, timedelta

    soon = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    web.site.run("--now", soon)
    assert pending_for(web.site, "never.confirms@example.com") == 1, "still within the link's 48 hours"
    later = (datetime.now(UTC) + timedelta(hours=49)).isoformat()
    web.site.run("--now", later)
    assert pending_for(web.site, "never.confirms@example.com") == 0
    with sqlite3.connect(web.site.db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM rate_buckets").fetchone()[0] == 0, "refilled limits are dropped"
    assert status_of(web.site, "all@example.com") == "active"


def test_links_of_the_first_format_still_unsubscribe(web):
    import base64
    import hashlib
    import hmac

    store = Store.open(web.site.db, readonly=True)
    sid = store.subscriber("all@example.com").id
    payload = f"{sid}.u.{int(time.time()):x}"
    mac = hmac.new(SECRET.encode(), f"{payload}\0all@example.com".encode(), hashlib.sha256).digest()[:18]
    b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()  # noqa: E731
    old = f"{b64(payload.encode())}.{b64(mac)}"
    assert web.post(f"/unsubscribe/{old}x").status_code == 400, "strict: no trailing junk"
    assert web.get(f"/preferences/{old}").status_code == 400, "bound to its purpose"
    assert web.post(f"/unsubscribe/{old}").status_code == 200, "a link in a digest sent before the upgrade works"
    assert status_of(web.site, "all@example.com") == "unsubscribed"


def test_plain_http_base_url_uses_a_plain_cookie_and_no_hsts(digest_site, smtp_server):
    use_smtp(digest_site, smtp_server.port)
    digest_site.set_config('base_url = "https://news.example.jp/"', 'base_url = "http://localhost:8080/"')
    digest_site.set_config('unsubscribe_url = ""', 'unsubscribe_url = "https://news.example.jp/unsubscribe/{token}"')
    digest_site.set_config('preferences_url = ""', 'preferences_url = "https://news.example.jp/preferences/{token}"')
    client = TestClient(create_app(App(load_config(digest_site.config))), base_url="http://localhost:8080")
    page = client.get("/subscribe")
    cookie = page.headers["set-cookie"]
    assert cookie.startswith("publisher_csrf=") and "secure" not in cookie.lower()
    assert "strict-transport-security" not in page.headers
    assert page.headers["x-frame-options"] == "DENY"


def test_signup_for_another_subscriber_changes_nothing_in_process(web):
    csrf = csrf_of(web.get("/subscribe").text)
    for email in ("chips@example.com", "none@example.com"):
        before = sqlite3.connect(web.site.db).execute(
            "SELECT status, categories, updated FROM subscribers WHERE email = ?", (email,)).fetchone()
        assert web.post("/subscribe", data={"csrf": csrf, "email": email, "category": ["政策"]}).status_code == 200
        after = sqlite3.connect(web.site.db).execute(
            "SELECT status, categories, updated FROM subscribers WHERE email = ?", (email,)).fetchone()
        assert before == after
