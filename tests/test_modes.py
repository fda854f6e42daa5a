"""File modes whatever the umask: the state folder, database, signing secret and outbox are private to the
user (0700/0600); feeds are world-readable (0755/0644), since a web server serves them."""

from __future__ import annotations

import os
import stat

import pytest

from publisher.app import App
from publisher.config import load_config

from .conftest import DIGEST_NOW


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(params=[0o022, 0o077, 0o000], ids=["umask022", "umask077", "umask000"])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def test_private_state_public_feeds(site, umask, monkeypatch, tmp_path):
    monkeypatch.delenv("PUBLISHER_TOKEN_SECRET", raising=False)
    site.set_config("adopt_existing = true", "adopt_existing = false")
    assert site.run("--now", "2026-03-12T20:00:00+09:00").exit_code == 0
    assert site.run("subscribers", "add", "reader@example.com").exit_code == 0
    sent = site.run("--now", DIGEST_NOW, "digest", "--send")
    assert sent.exit_code == 0 and "Sent 1 message(s)" in sent.output, sent.output
    preview = tmp_path / "preview" / "inner"
    assert site.run("--now", DIGEST_NOW, "digest", "--preview", str(preview), "--period", "last").exit_code == 0

    state = site.db.parent
    private = {state: 0o700, site.db: 0o600, state / "token-secret": 0o600, site.root / "outbox": 0o700,
               preview: 0o700, preview.parent: 0o700, preview / "digest.html": 0o600}
    private.update({p: 0o600 for p in (site.root / "outbox").glob("*.eml")})
    private.update({p: 0o600 for p in preview.glob("*.eml")})
    assert len(private) == 9
    public = {site.feeds: 0o755, site.feeds / "category": 0o755}
    public.update({p: 0o644 for p in site.feeds.rglob("*.xml")})
    public[site.feeds / "index.opml"] = 0o644
    assert len(public) > 10
    wrong = {str(p): f"{mode(p):o} (want {want:o})" for p, want in {**private, **public}.items() if mode(p) != want}
    assert not wrong, wrong

    app = App(load_config(site.config))
    store = app.open_store()
    try:
        store.set_meta("probe", "1")
        journal = [site.db.with_name(site.db.name + suffix) for suffix in ("-wal", "-shm")]
        assert all(p.exists() for p in journal)
        assert {str(p): mode(p) for p in journal} == {str(p): 0o600 for p in journal}
    finally:
        store.close()


def test_an_existing_state_folder_keeps_its_mode(site, umask):
    """publisher creates private folders; one the operator made stays as they made it."""
    state = site.db.parent
    state.mkdir()
    os.chmod(state, 0o750)
    assert site.run("--now", "2026-03-12T20:00:00+09:00").exit_code == 0
    assert mode(state) == 0o750 and mode(site.db) == 0o600
