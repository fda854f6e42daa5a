"""`publish serve` as a real process: due posts on time, missed digests once, clean SIGTERM, DST, the lock."""

from __future__ import annotations

import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import feedparser
import pytest

from publisher.config import load_config
from publisher.digest.schedule import last_slot
from publisher.service.scheduler import digest_trigger

from .conftest import SECRET, post_text, use_smtp

TOKYO = ZoneInfo("Asia/Tokyo")


def start_serve(site, *args: str) -> subprocess.Popen:
    exe = Path(sys.executable).with_name("publish")
    env = dict(os.environ, PUBLISHER_TOKEN_SECRET=SECRET)
    return subprocess.Popen([str(exe), "--config", str(site.config), "serve", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def stop(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise AssertionError(f"serve did not stop within 30 s after SIGTERM:\n{out}") from None
    assert proc.returncode == 0, out
    return out


def wait_until(check, timeout: float = 20.0, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(step)
    return False


def titles(site) -> list[str]:
    path = site.feeds / "all.atom.xml"
    return [e.title for e in feedparser.parse(path.read_bytes()).entries] if path.exists() else []


def test_future_post_published_within_two_seconds_of_due(site):
    due = datetime.now(TOKYO).replace(microsecond=0) + timedelta(seconds=5)
    site.write_post("soon.md", post_text(title="Due soon", date=due.strftime("%Y-%m-%d %H:%M:%S %z")))
    proc = start_serve(site, "--scan-interval", "3600")  # only the due-time job can publish it
    try:
        assert wait_until(lambda: "GPU不足はいつ終わるのか？データセンター各社の調達戦略を比べる" in titles(site))
        assert "Due soon" not in titles(site)
        assert wait_until(lambda: "Due soon" in titles(site), timeout=15, step=0.02)
        seen = datetime.now(TOKYO)
        assert seen - due < timedelta(seconds=2), seen - due
    finally:
        out = stop(proc)
    assert "post due: pass: 1 new" in out


def _digest_just_missed(site) -> None:
    """Configure the weekly digest for a minute ago, so a starting service finds it due and unsent."""
    when = datetime.now(TOKYO) - timedelta(minutes=1)
    site.set_config('day = "mon"', f'day = "{when.strftime("%a").lower()}"')
    site.set_config('time = "08:00"', f'time = "{when.strftime("%H:%M")}"')
    site.set_config("adopt_existing = true", "adopt_existing = false")  # every example post is news
    site.run("--now", (when - timedelta(days=1)).isoformat())  # the example posts, published yesterday


def _subscribe(site, count: int) -> None:
    csv = site.root / "subs.csv"
    csv.write_text("email\n" + "".join(f"r{i:03d}@example.com\n" for i in range(count)))
    site.run("subscribers", "import", str(csv))


def test_missed_digest_sent_once_on_start_even_with_two_services(site, smtp_server, monkeypatch):
    monkeypatch.setenv("PUBLISHER_TOKEN_SECRET", SECRET)
    use_smtp(site, smtp_server.port)
    _subscribe(site, 20)
    _digest_just_missed(site)
    first, second = start_serve(site), start_serve(site)
    try:
        assert wait_until(lambda: len(smtp_server.recorder.messages) >= 20)
        time.sleep(1.5)
    finally:
        outs = [stop(first), stop(second)]
    counts = Counter(smtp_server.recorder.recipients())
    assert len(counts) == 20 and set(counts.values()) == {1}, counts
    assert any("holds the lock" in out for out in outs), "the second service says who holds the lock"
    again = start_serve(site)
    time.sleep(2)
    stop(again)
    assert len(smtp_server.recorder.messages) == 20, "a restart never sends the period again"


def test_sigterm_mid_send_parks_and_next_start_completes(site, smtp_server, monkeypatch):
    monkeypatch.setenv("PUBLISHER_TOKEN_SECRET", SECRET)
    use_smtp(site, smtp_server.port)
    _subscribe(site, 40)
    _digest_just_missed(site)
    smtp_server.recorder.delay = 0.05
    proc = start_serve(site)
    assert wait_until(lambda: len(smtp_server.recorder.messages) >= 5)
    out = stop(proc)
    assert "SIGTERM received" in out and "stopped before the end" in out
    with sqlite3.connect(site.db) as conn:
        states = Counter(state for (state,) in conn.execute("SELECT state FROM ledger"))
    assert states["sending"] == 0 and states["unknown"] == 0, "the message in flight was finished, not abandoned"
    assert states["pending"] > 0
    smtp_server.recorder.delay = 0
    proc = start_serve(site)
    assert wait_until(lambda: len(smtp_server.recorder.messages) >= 40)
    time.sleep(1)
    stop(proc)
    counts = Counter(smtp_server.recorder.recipients())
    assert len(counts) == 40 and set(counts.values()) == {1}


def test_manual_publish_refused_while_serve_holds_the_lock(site):
    proc = start_serve(site, "--scan-interval", "3600")
    try:
        assert wait_until(lambda: (site.feeds / "all.atom.xml").exists())
        result = site.run()
        assert result.exit_code == 3
        assert "another publisher holds the lock: publish serve pid" in result.output
        assert wait_until(lambda: "next scan:" in site.run("status").output, timeout=10)
        assert "Running: publish serve pid" in site.run("status").output
    finally:
        stop(proc)
    assert site.run().exit_code == 0, "the lock is released on exit"


def test_failing_job_is_logged_and_service_keeps_running(site):
    proc = start_serve(site, "--scan-interval", "1")
    category = site.feeds / "category"
    try:
        assert wait_until(lambda: (site.feeds / "index.opml").exists())  # written last: the first pass is done
        time.sleep(0.3)
        aside = site.root / "category-aside"
        category.rename(aside)  # atomic: a scan running meanwhile cannot refill the folder being deleted
        category.write_text("a file where the feeds' folder should be")  # the next pass cannot write
        shutil.rmtree(aside)
        site.write_post("new.md", post_text(title="Arrives later", date="2026-01-02", categories="Research"))
        time.sleep(2.5)
        category.unlink()
        assert wait_until(lambda: (category / "research.rss.xml").exists(), timeout=10)
        assert "Arrives later" in titles(site)
    finally:
        out = stop(proc)
    assert "scan failed:" in out and "check that the feeds folder is writable" in out


def test_serve_once(site):
    proc = start_serve(site, "--once")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "Summary: 10 new, 23 feed file(s) written" in out


@pytest.mark.parametrize(("after", "expected", "offset_changed"), [
    # Europe/Berlin leaves winter time on 2026-03-29 and returns to it on 2026-10-25.
    ("2026-03-24T12:00:00+01:00", "2026-03-30T08:00:00+02:00", True),
    ("2026-03-30T08:00:01+02:00", "2026-04-06T08:00:00+02:00", False),
    ("2026-10-20T12:00:00+02:00", "2026-10-26T08:00:00+01:00", True),
])
def test_digest_schedule_across_dst(site, after, expected, offset_changed):
    site.set_config('timezone = "Asia/Tokyo"', 'timezone = "Europe/Berlin"')
    cfg = load_config(site.config)
    fire = digest_trigger(cfg).get_next_fire_time(None, datetime.fromisoformat(after))
    assert fire.isoformat() == expected
    assert last_slot(cfg, fire + timedelta(minutes=1)) == fire
    before = last_slot(cfg, fire - timedelta(minutes=1))
    assert (before.hour, before.minute) == (8, 0), "08:00 local on both sides of the change"
    assert fire.date() - before.date() == timedelta(days=7)
    assert (before.utcoffset() != fire.utcoffset()) is offset_changed


def test_status_without_service(site):
    site.run("--now", "2026-06-01T00:00")
    out = site.run("--now", "2026-06-01T00:00", "status").output
    assert "Running: no publisher holds the lock now" in out
    assert "Next digest time: 2026-06-01T08:00+09:00" in out
    assert "Last publish run:" in out and "new 10" in out
    assert "2030-01-06-future-roadmap.txt  due 2030-01-06T09:00+09:00" in out
    assert "No digest has been sent yet." in out
    assert datetime.now(UTC)  # the clock is real in serve; --now applies to status and passes


def test_watch_publishes_a_saved_post_without_waiting_for_a_scan(site):
    pytest.importorskip("watchfiles")
    site.set_config("watch = false", "watch = true")
    proc = start_serve(site, "--scan-interval", "3600")
    try:
        assert wait_until(lambda: len(titles(site)) == 10)
        time.sleep(0.5)
        site.write_post("saved-now.md", post_text(title="Saved just now", date="2026-01-03"))
        assert wait_until(lambda: "Saved just now" in titles(site), timeout=10)
    finally:
        out = stop(proc)
    assert "file saved: pass: 1 new" in out


def test_one_log_line_per_job_stamped_in_the_site_timezone(site):
    site.write_post("broken.md", b'---\ntitle: "x"\n---\nbody\n')
    proc = start_serve(site, "--scan-interval", "1")
    try:
        assert wait_until(lambda: (site.feeds / "index.opml").exists())
        time.sleep(3.5)
    finally:
        out = stop(proc)
    lines = out.splitlines()
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+09:00 (INFO|WARNING|ERROR) "
    assert all(re.match(stamp, line) for line in lines), out
    scans = [line for line in lines if " scan: " in line]
    assert len(scans) >= 3, out
    assert all(re.search(r"scan: pass: \d+ new, .* 1 rejected", line) for line in scans), scans
    assert len(lines) == len(scans) + 3, "besides one line per scan: serving…, SIGTERM received, stopped"
    assert "Running job" not in out and "executed successfully" not in out


def test_a_generated_secret_is_logged_like_every_other_line(site, smtp_server):
    use_smtp(site, smtp_server.port)
    _subscribe(site, 2)
    _digest_just_missed(site)
    env = {k: v for k, v in os.environ.items() if k != "PUBLISHER_TOKEN_SECRET"}
    proc = subprocess.Popen([str(Path(sys.executable).with_name("publish")), "--config", str(site.config), "serve"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert wait_until(lambda: len(smtp_server.recorder.messages) >= 2)
    finally:
        out = stop(proc)
    said = [line for line in out.splitlines() if "Generated the secret" in line]
    assert len(said) == 1 and re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+09:00 WARNING ", said[0]), out


def test_the_log_names_the_posts_it_rejects(site):
    """`publish` prints `path:line: error: what — how to fix` for a bad post; the service's log must too, or an
    operator reading the journal learns only that something, somewhere, was rejected."""
    site.write_post("broken.md", b'---\ntitle: "x"\ndate: someday\n---\nbody\n')
    proc = start_serve(site, "--scan-interval", "3600")
    try:
        assert wait_until(lambda: (site.feeds / "index.opml").exists())
    finally:
        out = stop(proc)
    scan = [line for line in out.splitlines() if " scan: " in line]
    assert len(scan) == 1 and "1 rejected" in scan[0], out
    assert f"{site.posts / 'broken.md'}:3: error: the date 'someday' is not a date" in scan[0], scan[0]
