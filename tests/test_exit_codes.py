"""One condition, one exit code, in every command: a table of conditions × commands, each cell run for real.

0 done; 1 done, needs a look; 2 usage, config or input error; 3 the run could not complete. A command the
condition does not touch exits 0; `web` is run only where it must refuse to start (it would serve forever)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from publisher.cli import main
from publisher.store.sqlite import SQLiteStore

from .conftest import DIGEST_NOW

COMMANDS = {
    "publish": [],
    "publish --dry-run": ["--dry-run"],
    "serve --once": ["serve", "--once"],
    "check": ["check"],
    "status": ["status"],
    "digest --dry-run": ["digest", "--dry-run"],
    "digest --preview": ["digest", "--preview", "{tmp}/preview"],
    "digest --test": ["digest", "--test", "editor@example.com"],
    "digest --status": ["digest", "--status"],
    "subscribers list": ["subscribers", "list"],
    "subscribers add": ["subscribers", "add", "new@example.com"],
    "digest --send": ["digest", "--send"],  # last: in the conditions where it works, it sends the digest
    "web": ["web"],
}

ALL_2 = dict.fromkeys(COMMANDS, 2)
OK = {**dict.fromkeys(COMMANDS, 0), "web": None}

# condition → {command: expected exit code (None: not run)}
TABLE = {
    "nothing wrong": OK,
    "signing secret not set (generated)": OK,
    "config file missing": ALL_2,
    "config is a folder": ALL_2,
    "config has an unknown key": ALL_2,
    "--now is not a time": ALL_2,
    "a post rejected": {**OK, "publish": 1, "publish --dry-run": 1, "serve --once": 1, "check": 1},
    "posts folder missing": {**OK, "publish": 2, "publish --dry-run": 2, "serve --once": 2, "check": 2},
    "signing secret too short": {**OK, "publish": 2, "publish --dry-run": 2, "serve --once": 2,
                                 "digest --dry-run": 2, "digest --preview": 2, "digest --test": 2,
                                 "digest --send": 2, "web": 2},
    "API key not set": {**OK, "publish": 2, "publish --dry-run": 2, "serve --once": 2, "digest --dry-run": 2,
                        "digest --test": 2, "digest --send": 2},
    "database locked": {**OK, "publish": 3, "serve --once": 3, "subscribers add": 3, "digest --send": 3},
    "lock held by another publisher": {**OK, "publish": 3, "serve --once": 3, "digest --send": 3},
}


def _arrange(condition: str, site, monkeypatch, cleanup: list) -> str | None:
    """Set the condition up on the site; returns the --config value to use (None: the site's own)."""
    if condition == "signing secret not set (generated)":
        monkeypatch.delenv("PUBLISHER_TOKEN_SECRET")
    elif condition == "config file missing":
        return str(site.root / "nowhere.toml")
    elif condition == "config is a folder":
        return str(site.root)
    elif condition == "config has an unknown key":
        site.set_config("[posts]", "[posts]\nfolderz = 1")
    elif condition == "a post rejected":
        site.write_post("broken.md", b'---\ntitle: "x"\ndate: someday\n---\nbody\n')
    elif condition == "posts folder missing":
        site.set_config('folder = "posts"', 'folder = "postz"')
    elif condition == "signing secret too short":
        monkeypatch.setenv("PUBLISHER_TOKEN_SECRET", "too-short")
    elif condition == "API key not set":
        site.set_config('transport = "file"', 'transport = "postmark"')
        site.set_config('api_url = ""', 'api_url = "http://127.0.0.1:9/"')
        monkeypatch.delenv("PUBLISHER_API_KEY", raising=False)
    elif condition == "database locked":
        holder = SQLiteStore.open(site.db)
        holder.conn.execute("BEGIN EXCLUSIVE")
        cleanup.append(holder.close)
    elif condition == "lock held by another publisher":
        holder = SQLiteStore.open(site.db)
        holder.take_lease("publisher", "publish serve pid 4242 on another-host", datetime.now(UTC), 3600)
        holder.close()
    return None


@pytest.mark.parametrize("condition", list(TABLE))
def test_exit_code_table(condition, digest_site, monkeypatch, tmp_path):
    site = digest_site
    site.set_config("busy_timeout = 30.0", "busy_timeout = 0.3")
    cleanup: list = []
    config = _arrange(condition, site, monkeypatch, cleanup) or str(site.config)
    now = "not-a-time" if condition == "--now is not a time" else DIGEST_NOW
    got, outputs = {}, {}
    try:
        for name, args in COMMANDS.items():
            if TABLE[condition][name] is None:
                continue
            args = [a.replace("{tmp}", str(tmp_path)) for a in args]
            result = CliRunner().invoke(main, ["--config", config, "--now", now, *args], catch_exceptions=False)
            got[name], outputs[name] = result.exit_code, result.output
            assert "Traceback" not in result.output and "internal error" not in result.output, result.output
            if result.exit_code >= 2:  # one clear line says why (a pass reports its digest in its summary)
                said = [line for line in result.output.splitlines()
                        if line.startswith(("Error: ", "Digest not sent: ", "Digest would not be sent: "))]
                assert len(said) == 1, f"{name}: {result.output!r}"
    finally:
        for close in cleanup:
            close()
    if condition == "a post rejected":  # every command that rejects it names it
        assert all("broken.md:3: error: the date 'someday' is not a date" in outputs[name]
                   for name, code in got.items() if code == 1), outputs
    expected = {k: v for k, v in TABLE[condition].items() if v is not None}
    wrong = {k: f"exit {got[k]} (expected {v}): {outputs[k].strip()[-300:]}" for k, v in expected.items()
             if got[k] != v}
    assert not wrong, "\n".join(f"{k}: {v}" for k, v in wrong.items())


def test_a_dry_run_says_the_real_pass_would_find_the_lock_held(digest_site):
    holder = SQLiteStore.open(digest_site.db)
    holder.take_lease("publisher", "publish serve pid 4242 on another-host", datetime.now(UTC), 3600)
    holder.close()
    dry = digest_site.run("--dry-run", "--now", DIGEST_NOW)
    assert dry.exit_code == 0
    assert "Note: publish serve pid 4242 on another-host holds the lock" in dry.output
    assert "the real pass would exit 3 until it is released" in dry.output
    assert digest_site.run("--now", DIGEST_NOW).exit_code == 3


def test_the_condition_names_itself(digest_site, monkeypatch):
    """The same condition gives the same message too, whichever command meets it."""
    monkeypatch.setenv("PUBLISHER_TOKEN_SECRET", "too-short")
    for args in (["digest", "--send"], ["digest", "--dry-run"], []):
        result = digest_site.run("--now", DIGEST_NOW, *args)
        assert "PUBLISHER_TOKEN_SECRET is too short (9 characters)" in result.output, result.output
    digest_site.set_config('folder = "posts"', 'folder = "postz"')
    for args in (["check"], [], ["serve", "--once"]):
        result = digest_site.run(*args)
        assert result.exit_code == 2 and "[posts.folder]" in result.output and "postz is not a folder" in \
            result.output, result.output


def test_global_options_after_the_command(digest_site):
    site = digest_site
    before = site.run("--now", DIGEST_NOW, "--dry-run", "digest")
    after = site.run("digest", "--now", DIGEST_NOW, "--dry-run")
    assert after.exit_code == before.exit_code == 0
    assert after.output == before.output and "Would send 2 message(s)" in after.output
    moved = Path(site.root / "elsewhere.toml")
    moved.write_text(site.config.read_text(encoding="utf-8"), encoding="utf-8")
    listed = CliRunner().invoke(main, ["subscribers", "list", "--config", str(moved)], catch_exceptions=False)
    assert listed.exit_code == 0 and "all@example.com" in listed.output
    refused = site.run("--dry-run", "subscribers", "add", "x@example.com")
    assert refused.exit_code == 2 and "has no dry run" in refused.output
    assert "x@example.com" not in site.run("subscribers", "list").output, "nothing was added"


def _every_command(group, path=()):
    import click

    for name, command in group.commands.items():
        yield (*path, name), command
        if isinstance(command, click.Group):
            yield from _every_command(command, (*path, name))


def test_every_help_page_has_an_example_and_the_exit_codes():
    pages = [()] + [path for path, _ in _every_command(main)]
    assert len(pages) >= 12
    for path in pages:
        result = CliRunner().invoke(main, [*path, "--help"], terminal_width=120)
        assert result.exit_code == 0, result.output
        text = result.output
        assert "Example:" in text and "\n      publish" in text, f"publish {' '.join(path)} --help has no example"
        assert "Exit codes:" in text and "3  the run could not complete" in text, path
        if path:
            assert "--now ISO-TIME" in text and "--config PATH" in text, f"{path}: global options after the command"


@pytest.mark.parametrize("now", ["9999-12-31T23:59", "0001-01-01T00:00", ""])
def test_a_now_no_schedule_can_use_is_a_usage_error(digest_site, now):
    """The ends of the calendar overflow the digest schedule, and an empty --now (a script's unset variable)
    must not quietly mean the real time: both are refused like any --now that is not a time."""
    for args in ([], ["--dry-run"], ["digest", "--dry-run"], ["status"], ["serve", "--once"]):
        result = digest_site.run("--now", now, *args)
        assert result.exit_code == 2, (args, result.output)
        assert "internal error" not in result.output and f"--now {now!r}" in result.output, result.output
