"""A person in headless Chromium: sign up, confirm from the mail, change categories, unsubscribe."""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import SECRET, use_smtp
from .servers import free_port

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")


@pytest.fixture
def web_server(digest_site, smtp_server):
    use_smtp(digest_site, smtp_server.port)
    port = free_port()
    exe = Path(sys.executable).with_name("publish")
    env = dict(os.environ, PUBLISHER_TOKEN_SECRET=SECRET)
    proc = subprocess.Popen([str(exe), "--config", str(digest_site.config), "web", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 20
    import httpx

    while time.monotonic() < deadline:
        try:
            httpx.get(base + "subscribe", timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.1)
    yield base, digest_site, smtp_server.recorder
    proc.terminate()
    proc.communicate(timeout=20)


def local(url: str, base: str) -> str:
    """A link from a mail or page, pointed at the local server instead of the public site."""
    return url.replace("https://news.example.jp/", base)


def row(site, email):
    with sqlite3.connect(site.db) as conn:
        return conn.execute("SELECT status, categories FROM subscribers WHERE email = ?", (email,)).fetchone()


def test_signup_confirm_preferences_unsubscribe_in_chromium(web_server, tmp_path):
    from playwright.sync_api import sync_playwright

    base, site, recorder = web_server
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        page = browser.new_page()
        page.goto(base + "subscribe")
        page.fill("#email", "browser.user@example.com")
        page.check("input[value='半導体']")
        page.check("input[value='政策']")
        page.click("#subscribe")
        assert "確認メールを送りました" in page.inner_text("#message")
        assert row(site, "browser.user@example.com") is None, "nothing is subscribed before the link is used"
        cookies = {c["name"]: c for c in page.context.cookies()}
        assert cookies["__Host-publisher_csrf"]["secure"], "base_url is https: the CSRF cookie is Secure"

        recorder.wait_for(1)
        mail = recorder.parsed()[-1]
        assert mail["To"].addresses[0].addr_spec == "browser.user@example.com"
        confirm = re.search(r"https://\S+/confirm/\S+", mail.get_body(("plain",)).get_content()).group(0)
        page.goto(local(confirm, base))
        page.click("#confirm")
        assert "登録が完了しました" in page.inner_text("#message")
        assert row(site, "browser.user@example.com") == ("active", '["半導体", "政策"]')

        prefs = page.get_attribute("a", "href")
        page.goto(local(prefs, base))
        page.uncheck("input[value='政策']")
        page.check("input[value='Research']")
        page.click("#save")
        assert page.is_visible("#saved")
        assert row(site, "browser.user@example.com") == ("active", '["Research", "半導体"]')
        page.screenshot(path=str(tmp_path / "preferences.png"))

        page.click("#unsubscribe")
        assert "配信を停止しました" in page.inner_text("#message")
        assert row(site, "browser.user@example.com")[0] == "unsubscribed"
        browser.close()


def test_curl_one_click_post(web_server):
    import httpx

    from publisher.store.sqlite import SQLiteStore as Store
    from publisher.tokens import Secrets, make_token

    base, site, _ = web_server
    store = Store.open(site.db, readonly=True)
    sid = store.subscriber("all@example.com").id
    token = make_token(Secrets(SECRET.encode()), sid, "all@example.com", "unsubscribe")
    response = httpx.post(f"{base}unsubscribe/{token}", content="List-Unsubscribe=One-Click",
                          headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 200 and not response.cookies
    assert row(site, "all@example.com")[0] == "unsubscribed"
