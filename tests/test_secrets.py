"""Secrets out of the box: generated once in the state folder (0600, atomically, one winner when processes race),
overridden by the environment; previews and tests are signed with it, so their links work in `publish web`."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
import time
from email import message_from_bytes, policy
from pathlib import Path

import httpx
import pytest

from publisher.app import App
from publisher.config import load_config
from publisher.store.sqlite import SQLiteStore
from publisher.tokens import Secrets, TokenError, read_token

from .conftest import DIGEST_NOW, SECRET, use_smtp
from .servers import PublishWeb, free_port


@pytest.fixture
def no_secret(digest_site, monkeypatch):
    """The digest site with no signing secret in the environment."""
    monkeypatch.delenv("PUBLISHER_TOKEN_SECRET")
    return digest_site


def secret_file(site) -> Path:
    return site.db.parent / "token-secret"


def unsubscribe_token(eml: bytes) -> str:
    message = message_from_bytes(eml, policy=policy.default)
    return re.fullmatch(r"<https://news\.example\.jp/unsubscribe/([\w.-]+)>", message["List-Unsubscribe"]).group(1)


def verifies(site, secrets: Secrets, token: str, email: str) -> bool:
    store = SQLiteStore.open(site.db, readonly=True)
    try:
        sid = store.subscriber(email).id
        return read_token(secrets, token, "unsubscribe", lambda i: email if i == sid else None) == sid
    except TokenError:
        return False
    finally:
        store.close()


def test_generated_once_private_and_said_once(no_secret, smtp_server):
    site = no_secret
    use_smtp(site, smtp_server.port)
    assert not secret_file(site).exists()
    first = site.run("--now", DIGEST_NOW, "digest", "--send")
    assert first.exit_code == 0, first.output
    assert "Generated the secret that signs subscriber links" in first.stderr and str(secret_file(site)) in first.stderr
    path = secret_file(site)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    value = path.read_text().strip()
    assert len(value) >= 40 and re.fullmatch(r"[A-Za-z0-9_-]+", value), "32 random bytes, URL-safe"
    again = site.run("--now", DIGEST_NOW, "digest", "--test", "editor@example.com")
    assert again.exit_code == 0 and "Generated" not in again.stderr, "said once"
    assert path.read_text().strip() == value, "kept, not regenerated"
    sent = {r[0]: c for _, r, c in smtp_server.recorder.messages}
    secrets = Secrets(value.encode())
    assert verifies(site, secrets, unsubscribe_token(sent["all@example.com"]), "all@example.com")


def test_environment_overrides_the_kept_secret(no_secret, smtp_server, monkeypatch):
    site = no_secret
    use_smtp(site, smtp_server.port)
    site.run("--now", DIGEST_NOW, "digest", "--test", "all@example.com")
    kept = Secrets(secret_file(site).read_text().strip().encode())
    monkeypatch.setenv("PUBLISHER_TOKEN_SECRET", SECRET)
    site.run("--now", DIGEST_NOW, "digest", "--send")
    tokens = [unsubscribe_token(c) for _, r, c in smtp_server.recorder.messages if r == ["all@example.com"]]
    assert verifies(site, kept, tokens[0], "all@example.com") and not verifies(site, Secrets(SECRET.encode()),
                                                                               tokens[0], "all@example.com")
    assert verifies(site, Secrets(SECRET.encode()), tokens[1], "all@example.com")
    assert not verifies(site, kept, tokens[1], "all@example.com"), "the variable, when set, is the secret"


def test_env_set_means_no_file(digest_site, smtp_server):
    use_smtp(digest_site, smtp_server.port)
    assert digest_site.run("--now", DIGEST_NOW, "digest", "--send").exit_code == 0
    assert not secret_file(digest_site).exists()


def test_dry_runs_write_no_secret(no_secret):
    site = no_secret
    for args in (["--dry-run"], ["digest", "--dry-run"], ["--dry-run", "digest", "--send"]):
        result = site.run("--now", DIGEST_NOW, *args)
        assert result.exit_code == 0, result.output
        assert "Would send" in result.output
    assert not secret_file(site).exists()
    assert site.run("--now", DIGEST_NOW, "digest", "--send").exit_code == 0, "and the real send does it"


def test_damaged_secret_file_is_named(no_secret):
    secret_file(no_secret).write_text("short\n")
    result = no_secret.run("--now", DIGEST_NOW, "digest", "--send")
    assert result.exit_code == 2
    assert f"{secret_file(no_secret)}: holds no usable signing secret" in result.output
    assert "delete the file to generate a new one" in result.output


RACER = """
import sys, time
from pathlib import Path
from publisher.app import App
from publisher.config import load_config
app = App(load_config(sys.argv[1]), notify=lambda text: print("GENERATED"))
go = Path(sys.argv[2])
while not go.exists():
    time.sleep(0.001)
print(app.secrets.current.decode())
"""


def test_processes_starting_together_share_one_secret(no_secret, tmp_path):
    site = no_secret
    env = {k: v for k, v in os.environ.items() if k != "PUBLISHER_TOKEN_SECRET"}
    for round_ in range(4):
        go = tmp_path / f"go{round_}"
        if secret_file(site).exists():
            secret_file(site).unlink()
        procs = [subprocess.Popen([sys.executable, "-c", RACER, str(site.config), str(go)], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(6)]
        time.sleep(1.0)  # let every process import and wait at the line
        go.touch()
        outs = [p.communicate(timeout=60) for p in procs]
        assert all(p.returncode == 0 for p in procs), [err for _, err in outs]
        secrets = {out.split()[-1] for out, _ in outs}
        announced = sum("GENERATED" in out for out, _ in outs)
        assert len(secrets) == 1 and announced == 1, (round_, outs)
        assert secret_file(site).read_text().strip() == secrets.pop()
        assert stat.S_IMODE(secret_file(site).stat().st_mode) == 0o600
        assert not [p for p in secret_file(site).parent.iterdir() if p.name.startswith(".token-secret")], \
            "no temporary files left behind"


def test_preview_and_test_links_work_in_publish_web(no_secret, smtp_server, tmp_path):
    site = no_secret
    use_smtp(site, smtp_server.port)
    preview = site.run("--now", DIGEST_NOW, "digest", "--preview", str(tmp_path / "prev"), "--period", "last")
    assert preview.exit_code == 0, preview.output
    emls = {message_from_bytes(p.read_bytes(), policy=policy.default)["To"].addresses[0].addr_spec: p.read_bytes()
            for p in (tmp_path / "prev").glob("*.eml")}
    assert "all@example.com" in emls
    assert site.run("--now", DIGEST_NOW, "digest", "--test", "chips@example.com").exit_code == 0
    test_mail = smtp_server.recorder.messages[-1][2]

    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "PUBLISHER_TOKEN_SECRET"}
    web = subprocess.Popen([str(Path(sys.executable).with_name("publish")), "--config", str(site.config), "web",
                            "--port", str(port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(base + "subscribe", timeout=2)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline and web.poll() is None, "publish web did not start"
                time.sleep(0.1)
        page = httpx.get(f"{base}unsubscribe/{unsubscribe_token(emls['all@example.com'])}")
        assert page.status_code == 200 and 'id="unsubscribe"' in page.text, page.text[:300]
        done = httpx.post(f"{base}unsubscribe/{unsubscribe_token(test_mail)}", content="List-Unsubscribe=One-Click",
                          headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert done.status_code == 200
    finally:
        web.terminate()
        web.communicate(timeout=20)
    store = SQLiteStore.open(site.db, readonly=True)
    assert store.subscriber("chips@example.com").status == "unsubscribed", "the test mail's one-click link worked"
    assert store.subscriber("all@example.com").status == "active", "a GET only asks"
    store.close()


def test_app_hands_out_one_secret(no_secret):
    app = App(load_config(no_secret.config), notify=lambda text: None)
    assert app.preview_secrets.source == "", "before any secret exists a dry run gets a throwaway one"
    assert app.secrets.source == str(secret_file(no_secret))
    assert App(load_config(no_secret.config)).preview_secrets == app.secrets



def test_setting_the_variable_later_keeps_links_already_mailed_working(no_secret, smtp_server):
    """The notice says "set PUBLISHER_TOKEN_SECRET to use your own instead": doing so must not turn every
    unsubscribe link already mailed (signed with the kept secret) into a 403."""
    site = no_secret
    use_smtp(site, smtp_server.port)
    assert site.run("--now", DIGEST_NOW, "digest", "--send").exit_code == 0
    mailed = {r[0]: unsubscribe_token(c) for _, r, c in smtp_server.recorder.messages}
    web = PublishWeb(site.config, site.root / "web.log", {"PUBLISHER_TOKEN_SECRET": SECRET}).start()
    try:
        page = httpx.get(f"{web.base}unsubscribe/{mailed['all@example.com']}")
        assert page.status_code == 200 and 'id="unsubscribe"' in page.text, page.text[:300]
        done = httpx.post(f"{web.base}unsubscribe/{mailed['chips@example.com']}",
                          content="List-Unsubscribe=One-Click",
                          headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert done.status_code == 200, done.text[:300]
    finally:
        web.stop()
    store = SQLiteStore.open(site.db, readonly=True)
    assert store.subscriber("chips@example.com").status == "unsubscribed"
    store.close()


def test_a_secret_file_that_is_not_text_is_unusable_not_unreadable(no_secret):
    """Edited in an editor that adds a byte order mark (or holding binary junk): the file is there and readable,
    its content unusable — exit 2 like a short secret, and no advice about permissions."""
    secret_file(no_secret).parent.mkdir(parents=True, exist_ok=True)
    secret_file(no_secret).write_bytes(b"\xef\xbb\xbf" + b"x" * 40 + b"\n")
    result = no_secret.run("--now", DIGEST_NOW, "digest", "--send")
    assert result.exit_code == 2, result.output
    assert f"{secret_file(no_secret)}: holds no usable signing secret" in result.output
    assert "readable" not in result.output
