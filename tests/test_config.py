from __future__ import annotations

import pytest

from publisher.config import load_config
from publisher.errors import ConfigError


def test_shipped_config_loads(site):
    cfg = load_config(site.config)
    assert cfg.site.timezone == "Asia/Tokyo"
    assert cfg.feeds.category_slugs["投資分析"] == "investment"
    assert cfg.feeds_url == "https://news.example.jp/feeds/"
    assert cfg.posts.patterns == ("*.md", "*.markdown", "*.txt")


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ('title = "AI速報ラボ"\n', "", "site.title"),
        ("entries = 20", 'entries = "twenty"', "feeds.entries"),
        ("entries = 20", "entries = 0", "feeds.entries"),
        ('timezone = "Asia/Tokyo"', 'timezone = "Mars/Olympus"', "site.timezone"),
        ('base_url = "https://news.example.jp/"', 'base_url = "news.example.jp"', "site.base_url"),
        ('content = "full"', 'content = "everything"', "feeds.content"),
        ("[state]", "[state]\ndatabse = 'x.db'", "state.databse"),
        ("marker_patterns = ['^-{3,}", "marker_patterns = ['(unclosed', '^-{3,}", "cleanup.marker_patterns[0]"),
        ('patterns = ["*.md", "*.markdown", "*.txt"]', 'patterns = "*.md"', "posts.patterns"),
        ("[site]", "[sight]\n[site]", "sight"),
        ("sentence_near_ratio = 0.2", "sentence_near_ratio = 0.9", "cleanup.sentence_near_ratio"),
        ("sentence_near_ratio = 0.2", 'sentence_near_ratio = "some"', "cleanup.sentence_near_ratio"),
        ("sentence_min_chars = 20", "sentence_min_chars = 0", "cleanup.sentence_min_chars"),
        ("repeated_sentences = true", "repeated_sentences = 1", "cleanup.repeated_sentences"),
    ],
)
def test_bad_config_names_the_key(site, old, new, key):
    site.set_config(old, new)
    with pytest.raises(ConfigError) as info:
        load_config(site.config)
    assert f"[{key}]" in str(info.value)
    assert str(site.config) in str(info.value)


def test_cli_reports_config_error_without_traceback(site):
    site.set_config("entries = 20", "entries = -1")
    result = site.run("--dry-run")
    assert result.exit_code == 2
    assert "[feeds.entries] must be at least 1" in result.output
    assert "Traceback" not in result.output


def test_missing_config_file(tmp_path):
    from click.testing import CliRunner

    from publisher.cli import main

    result = CliRunner().invoke(main, ["--config", str(tmp_path / "nope.toml")])
    assert result.exit_code == 2
    assert "nope.toml" in result.output and "file not found" in result.output


def test_invalid_toml(site):
    site.config.write_text("[site\ntitle = 1\n", encoding="utf-8")
    result = site.run()
    assert result.exit_code == 2
    assert "not valid TOML" in result.output


def test_web_trusted_proxies_are_checked_and_the_old_key_is_read(site):
    from publisher.config import load_config
    from publisher.errors import ConfigError

    site.set_config("trusted_proxies = []", 'trusted_proxies = ["127.0.0.1", "10.0.0.0/8", "proxy.local"]')
    with pytest.raises(ConfigError) as err:
        load_config(site.config)
    assert "[web.trusted_proxies[2]]" in str(err.value) and "proxy.local" in str(err.value)
    site.set_config('"proxy.local"', '"fd00::/8"')
    assert load_config(site.config).web.proxies == ("127.0.0.1", "10.0.0.0/8", "fd00::/8")
    site.set_config('trusted_proxies = ["127.0.0.1", "10.0.0.0/8", "fd00::/8"]', "trust_forwarded = true")
    web = load_config(site.config).web
    assert web.proxies == ("127.0.0.1", "::1")
    assert "deprecated" in web.deprecations("config.toml")[0]
    site.set_config("max_body = 16384", "max_body = 10")
    with pytest.raises(ConfigError, match="web.max_body"):
        load_config(site.config)


def test_a_config_saved_with_a_byte_order_mark_is_read(site):
    """Editors on Windows save UTF-8 with a BOM; the file is otherwise fine and must be read as it is."""
    site.config.write_bytes(b"\xef\xbb\xbf" + site.config.read_bytes())
    result = site.run("--dry-run")
    assert result.exit_code == 0, result.output
    assert "Would publish 10 new post(s)" in result.output


@pytest.mark.parametrize(("old", "new", "key"), [
    ("busy_timeout = 30.0", "busy_timeout = inf", "state.busy_timeout"),
    ("busy_timeout = 30.0", "busy_timeout = nan", "state.busy_timeout"),
    ("scan_interval = 60.0", "scan_interval = nan", "serve.scan_interval"),
    ("period_days = 7", "period_days = 1000000", "digest.period_days"),
    ("catch_up_hours = 48", "catch_up_hours = 1000000000000", "digest.catch_up_hours"),
    ("confirm_hours = 48", "confirm_hours = 1000000000000", "web.confirm_hours"),
    ("preferences_days = 90", "preferences_days = 100000000000", "web.preferences_days"),
    ("websub_give_up_hours = 24.0", "websub_give_up_hours = inf", "feeds.websub_give_up_hours"),
    ("port = 8080", "port = 99999", "web.port"),
    ("port = 587", "port = 70000", "smtp.port"),
])
def test_values_out_of_any_sensible_range_are_named_not_internal_errors(site, old, new, key):
    site.set_config(old, new)
    for args in (["--dry-run", "--now", "2026-03-16T09:00"], ["digest", "--dry-run"], ["status"]):
        result = site.run(*args)
        assert result.exit_code == 2 and f"[{key}]" in result.output, (args, result.output)


def test_web_port_on_the_command_line_is_checked(site):
    result = site.run("web", "--port", "99999")
    assert result.exit_code == 2 and "99999" in result.output and "internal error" not in result.output
