"""The `publish` command: summaries, dry runs that change nothing, bad posts that stop nothing else."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from datetime import datetime

import feedparser
import pytest
import yaml

from .conftest import FIXED_NOW, SAMPLE_POSTS, post_text


def snapshot(site):
    """Every file below the site folder with its bytes and mtime."""
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in site.root.rglob("*") if p.is_file()}


def test_dry_run_on_fresh_site_creates_nothing(site):
    before = snapshot(site)
    result = site.run("--dry-run", "--now", FIXED_NOW)
    assert result.exit_code == 0, result.output
    assert snapshot(site) == before
    assert not site.db.exists() and not site.feeds.exists()
    out = result.output
    assert "Would publish 10 new post(s):" in out
    assert "GPU不足はいつ終わるのか？" in out
    assert "> feeds/all.atom.xml (10 entries)" in out
    assert "> feeds/category/investment.rss.xml (2 entries)" in out
    assert "2030-01-06-future-roadmap.txt  due 2030-01-06T09:00+09:00" in out
    assert "2026-04-01-draft-notes.md  draft" in out
    assert "Dry run: nothing was written or recorded." in out


def test_dry_run_after_a_pass_changes_nothing(site):
    site.run("--now", FIXED_NOW)
    site.write_post("2026-05-01-new.md", post_text(title="Brand new", date="2026-05-01 09:00", categories="Research"))
    before = snapshot(site)
    result = site.run("--dry-run", "--now", FIXED_NOW)
    assert snapshot(site) == before
    assert "Would publish 1 new post(s):" in result.output and "Brand new" in result.output
    assert "> feeds/category/research.atom.xml (4 entries)" in result.output
    assert "feeds/category/chips.atom.xml" not in result.output, "unchanged feeds are not listed"
    real = site.run("--now", FIXED_NOW)
    assert "Published 1 new post(s):" in real.output
    assert "Wrote 6 feed file(s)" in real.output  # all and research, each in Atom, RSS and JSON Feed
    assert "Summary: 1 new" in real.output


def test_pass_records_published_posts(site):
    site.run("--now", FIXED_NOW)
    with sqlite3.connect(site.db) as conn:
        rows = conn.execute("SELECT key, post_id, first_published, content_hash FROM published ORDER BY key").fetchall()
    assert len(rows) == 10
    key, post_id, first, digest = rows[0]
    assert key == "2025-10-02-gpu-supply.txt"
    assert post_id == "tag:news.example.jp,2025-10-02:2025-10-02-gpu-supply"
    assert first == "2026-05-31T15:00:00+00:00"
    assert len(digest) == 32


def test_bad_post_is_reported_and_others_published(site):
    site.write_post("broken.md", b'---\ntitle: "x"\ndate: someday\n---\nbody\n')
    site.write_post("nofm.txt", "本文だけの投稿。\n")
    site.write_post("latin1.md", post_text(body="caf\xe9").encode("latin-1"))
    result = site.run("--now", FIXED_NOW)
    assert result.exit_code == 1
    out = result.output
    assert f"{site.posts / 'broken.md'}:3: error: the date 'someday' is not a date — write it as" in out
    assert f"{site.posts / 'nofm.txt'}:1: error: no front matter" in out
    assert f"{site.posts / 'latin1.md'}:6: error: not valid UTF-8" in out
    assert "Traceback" not in out
    assert "Published 10 new post(s)" in out
    assert len(feedparser.parse((site.feeds / "all.atom.xml").read_bytes()).entries) == 10
    # Still reported on the next (cached) pass, still not published.
    again = site.run("--now", FIXED_NOW)
    assert again.exit_code == 1 and "Rejected 3 post(s)" in again.output


def test_fixed_post_is_published_next_pass(site):
    path = site.write_post("later.md", b'---\ntitle: "Later"\n---\nbody\n')
    assert site.run("--now", FIXED_NOW).exit_code == 1
    path.write_text(post_text(title="Later", date="2026-05-30"), encoding="utf-8")
    result = site.run("--now", FIXED_NOW)
    assert result.exit_code == 0 and "Published 1 new post(s)" in result.output


def test_check_reports_every_finding(site):
    site.write_post("broken.md", b'---\ntitle: "x"\n---\nbody\n')
    result = site.run("check")
    assert result.exit_code == 1
    assert f"{site.posts / 'broken.md'}:1: error: no date" in result.output
    assert "2025-10-02-gpu-supply.txt:24: info: removed marker line '---END---'" in result.output
    assert "1 error(s)" in result.output


def test_check_json_and_strict(site):
    result = site.run("check", "--format", "json")
    data = json.loads(result.output)
    assert result.exit_code == 0 and data["ok"] is True
    assert data["posts"] == 12
    assert all({"path", "line", "severity", "what", "fix"} <= set(f) for f in data["findings"])
    site.write_post("cut.md", post_text(body="This sentence is cut off in the"))
    assert site.run("check").exit_code == 0, "warnings alone do not fail"
    strict = site.run("check", "--strict")
    assert strict.exit_code == 1
    assert "cut.md:6: warning: the body ends mid-sentence" in strict.output


def test_bad_now(site):
    result = site.run("--now", "next week")
    assert result.exit_code == 2 and "--now 'next week' is not an ISO time" in result.output


def test_unwritable_feeds_folder(site):
    site.feeds.write_text("a file where the folder should be")
    result = site.run("--now", FIXED_NOW)
    assert result.exit_code == 3
    assert "feeds" in result.output and "Traceback" not in result.output


def test_console_script_runs(site):
    exe = shutil.which("publish", path=str(__import__("pathlib").Path(sys.executable).parent))
    assert exe, "the publish console script is installed"
    proc = subprocess.run([exe, "--config", str(site.config), "--dry-run", "--now", FIXED_NOW],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "Would publish 10 new post(s)" in proc.stdout


def _expected_from(path):
    """Title, RFC 3339 date and categories read straight from a sample's front matter, or None without one."""
    text = path.read_text(encoding="utf-8")
    if not text.startswith("---"):
        return None
    meta = yaml.safe_load(text.split("---", 2)[1])
    when = datetime.strptime(str(meta["date"]), "%Y-%m-%d %H:%M:%S %z")
    cats = meta["categories"] if isinstance(meta["categories"], list) else [meta["categories"]]
    return meta["title"], when.isoformat(), cats


@pytest.mark.skipif(not SAMPLE_POSTS.is_dir(), reason="../shared/sample-posts is not beside the repo")
def test_sample_posts(empty_site):
    expected, no_front_matter = {}, []
    for path in sorted(SAMPLE_POSTS.iterdir()):
        shutil.copy(path, empty_site.posts / path.name)
        facts = _expected_from(path)
        if facts:
            expected[facts[0]] = facts[1:]
        else:
            no_front_matter.append(path.name)
    result = empty_site.run("--now", "2100-01-01T00:00")
    assert result.exit_code == (1 if no_front_matter else 0)
    for name in no_front_matter:
        assert f"{name}:1: error: no front matter" in result.output
    assert f"Published {len(expected)} new post(s)" in result.output
    atom = feedparser.parse((empty_site.feeds / "all.atom.xml").read_bytes())
    assert atom.bozo == 0
    got = {e.title: (e.published, [t.term for t in e.tags]) for e in atom.entries}
    assert got == {title: (when, cats) for title, (when, cats) in expected.items()}
    for entry in atom.entries:
        html = entry.content[0].value
        assert "---END---" not in html
        assert not html.startswith(f"<p>{entry.title}"), "the repeated title line is gone"
        assert "**" not in entry.summary, "Markdown in excerpts is rendered"
    check = empty_site.run("check")
    assert check.output.count("    title: ") == len(no_front_matter), "each post without front matter gets a block"


def test_unchanged_pass_reports_the_same_as_a_full_one(site):
    site.write_post("broken.md", b'---\ntitle: "x"\n---\nbody\n')
    first = site.run("--now", FIXED_NOW)
    second = site.run("--now", FIXED_NOW)
    assert "Summary: 0 new, 0 feed file(s) written, 21 unchanged, 0 removed, 2 held, 1 rejected" in second.output

    def tail(out):
        return [line for line in out.splitlines() if line.startswith(("  ·", "  !"))]

    assert tail(first.output) == tail(second.output)
    # Once the held post's due time passes, the pass does the full work again.
    third = site.run("--now", "2030-01-06T09:00:00+09:00")
    assert "Published 1 new post(s)" in third.output


def test_missing_posts_folder_is_an_error_not_empty_feeds(site):
    site.run("--now", FIXED_NOW)
    before = (site.feeds / "all.atom.xml").read_bytes()
    site.set_config('folder = "posts"', 'folder = "postz"')
    result = site.run("--now", FIXED_NOW)
    assert result.exit_code == 2 and "[posts.folder]" in result.output and "postz is not a folder" in result.output
    assert (site.feeds / "all.atom.xml").read_bytes() == before
    assert (site.feeds / "category" / "chips.atom.xml").exists()


@pytest.mark.parametrize("date", ["0001-01-01", "0001-01-01 00:00 +1400", "9999-12-31 23:59 -1200",
                                  "9999-12-31 23:59"])
def test_a_date_at_the_end_of_the_calendar_rejects_that_post_only(site, date):
    """A bad post never stops the others: a date the calendar overflows on (in UTC, or a week from it) is that
    post's error, named by file and line, and every other post is published."""
    site.write_post("edge.md", post_text(title="Edge", date=date))
    for args in (["check"], ["--now", "2026-06-01T00:00"]):
        result = site.run(*args)
        assert result.exit_code == 1, (args, result.output)
        assert "internal error" not in result.output
        assert re.search(r"edge\.md:3: error: the date .* is outside the years 1900 to 9998", result.output), \
            result.output
    assert len(feedparser.parse((site.feeds / "all.atom.xml").read_bytes()).entries) == 10, "the others published"


def test_a_symlink_loop_in_the_posts_folder_is_walked_once(site):
    """`ln -s .. posts/up` (or a link to the folder itself) must not send the scan round until the system gives
    up with "too many levels of symbolic links"; a link to another folder is still followed."""
    (site.posts / "again").symlink_to(".")
    (site.posts / "sub").mkdir()
    (site.posts / "sub" / "up").symlink_to("..")
    (site.posts / "broken.md").symlink_to(site.root / "nowhere.md")
    check = site.run("check")
    assert check.exit_code == 0 and "12 post(s) checked" in check.output, check.output
    result = site.run("--now", "2026-06-01T00:00")
    assert result.exit_code == 0 and "Published 10 new post(s)" in result.output, result.output


OPENER = """
import sys, time
from pathlib import Path
from publisher.app import App
from publisher.config import load_config
from publisher.errors import PublisherError
app = App(load_config(sys.argv[1]))
go = Path(sys.argv[2])
while not go.exists():
    time.sleep(0.001)
try:
    app.open_store().close()
except PublisherError as exc:
    sys.exit(f"{exc}")
"""


def test_processes_creating_the_state_database_together_all_get_it(site, tmp_path):
    """`publish serve` and `publish web` started together on a new install (systemd at boot) both create the
    schema: the one that comes second must find it made, not fail with 'table meta already exists'."""
    for round_ in range(4):
        shutil.rmtree(site.db.parent, ignore_errors=True)
        go = tmp_path / f"go{round_}"
        procs = [subprocess.Popen([sys.executable, "-c", OPENER, str(site.config), str(go)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(6)]
        time.sleep(1.0)  # every process imported and waiting at the line
        go.touch()
        outs = [p.communicate(timeout=60) for p in procs]
        assert all(p.returncode == 0 for p in procs), (round_, [err for _, err in outs if err])
    listed = site.run("subscribers", "list")
    assert listed.exit_code == 0
