"""Shared fixtures: a site folder built from the shipped example, and a CLI runner."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from publisher.cli import main

REPO = Path(__file__).resolve().parent.parent
# The writing pipeline's real posts: beside the repo, or where PUBLISHER_SAMPLE_POSTS points (a worktree).
SAMPLE_POSTS = Path(os.environ.get("PUBLISHER_SAMPLE_POSTS") or REPO.parent / "shared" / "sample-posts")
GOLDEN = Path(__file__).resolve().parent / "golden"
FIXED_NOW = "2026-06-01T00:00:00+09:00"


@dataclass
class Site:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.toml"

    @property
    def posts(self) -> Path:
        return self.root / "posts"

    @property
    def feeds(self) -> Path:
        return self.root / "feeds"

    @property
    def db(self) -> Path:
        return self.root / "state" / "publisher.sqlite3"

    def run(self, *args: str) -> Result:
        """Run `publish --config <site>/config.toml ARGS…` in-process and return the result."""
        return CliRunner().invoke(main, ["--config", str(self.config), *args], catch_exceptions=False)

    def write_post(self, name: str, text: str | bytes) -> Path:
        path = self.posts / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8")
        return path

    def set_keys(self, **values: object) -> None:
        """Set config keys that appear once in config.toml (e.g. formats, websub_hubs) to values (as TOML)."""
        import json
        import re

        text = self.config.read_text(encoding="utf-8")
        for key, value in values.items():
            pattern = re.compile(rf"^{key} = .*$", re.MULTILINE)
            assert len(pattern.findall(text)) == 1, key
            text = pattern.sub(lambda m, k=key, v=value: f"{k} = {json.dumps(v, ensure_ascii=False)}", text)
        self.config.write_text(text, encoding="utf-8")

    def set_config(self, old: str, new: str) -> None:
        text = self.config.read_text(encoding="utf-8")
        assert old in text, old
        self.config.write_text(text.replace(old, new), encoding="utf-8")


@pytest.fixture
def site(tmp_path: Path) -> Site:
    """A copy of the shipped example (config.toml and posts/) in a temporary folder."""
    shutil.copy(REPO / "config.toml", tmp_path / "config.toml")
    shutil.copytree(REPO / "posts", tmp_path / "posts")
    return Site(tmp_path)


@pytest.fixture
def empty_site(site: Site) -> Site:
    """The example config with an empty posts folder."""
    shutil.rmtree(site.posts)
    site.posts.mkdir()
    return site


def post_text(title: str = "A post", date: str = "2026-01-01 10:00:00 +0900", body: str = "Body text.",
              **extra: str) -> str:
    lines = ["---", f'title: "{title}"', f"date: {date}"]
    lines += [f"{key}: {value}" for key, value in extra.items()]
    return "\n".join(lines) + "\n---\n\n" + body + "\n"


SECRET = "test-secret-0123456789abcdef"
DIGEST_NOW = "2026-03-16T09:00:00+09:00"  # Monday after the example posts were first published


@pytest.fixture
def smtp_server():
    from .servers import SMTPServer

    with SMTPServer() as server:
        yield server


@pytest.fixture
def digest_site(site: Site, monkeypatch) -> Site:
    """The example site with its posts published on 2026-03-12 (all of them news for the digest: no adoption of
    the back catalogue) and three subscribers."""
    monkeypatch.setenv("PUBLISHER_TOKEN_SECRET", SECRET)
    site.set_config("adopt_existing = true", "adopt_existing = false")
    result = site.run("--now", "2026-03-12T20:00:00+09:00")
    assert result.exit_code == 0, result.output
    site.run("subscribers", "add", "all@example.com", "--name", "山田 太郎")
    site.run("subscribers", "add", "chips@example.com", "--category", "半導体", "--category", "Research")
    site.run("subscribers", "add", "none@example.com", "--category", "存在しないカテゴリ", "--allow-new-category")
    return site


def use_smtp(site: Site, port: int) -> None:
    site.set_config('transport = "file"', 'transport = "smtp"')
    site.set_config("port = 587", f"port = {port}")
    site.set_config('security = "starttls"', 'security = "none"')
    site.set_config("retry_delay = 2.0", "retry_delay = 0.05")
