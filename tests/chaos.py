"""Fault injection against the real `publish` console script: kills, pauses, a stalled database.

Shared by the test suite (a small run) and `benchmarks/chaos.py` (the full one). Senders are real processes;
providers are the fakes in `tests/fakes.py` or aiosmtpd, all on 127.0.0.1. Every figure is counted at the
receiving server and compared with what `publish digest --status --format json` reports.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from .fakes import DOMAIN, FakeProvider

REPO = Path(__file__).resolve().parent.parent
PUBLISHED = "2026-03-12T20:00:00+09:00"
DIGEST_NOW = "2026-03-16T09:00:00+09:00"
SECRET = "chaos-secret-0123456789abcdef"
TOKYO = ZoneInfo("Asia/Tokyo")  # the example site's timezone
MIXES = ([], ["半導体", "Research"], ["市場動向", "政策"])  # three renders: three template groups


def exe() -> str:
    return str(Path(sys.executable).with_name("publish"))


@dataclass
class ChaosSite:
    """A site folder with N subscribers, its digest sent through one transport."""

    root: Path
    transport: str
    live: bool = False  # commands run at the real time (for `publish serve`), not at DIGEST_NOW

    @property
    def config(self) -> Path:
        return self.root / "config.toml"

    @property
    def db(self) -> Path:
        return self.root / "state" / "publisher.sqlite3"

    def start(self, *args: str, now: str | None = DIGEST_NOW) -> subprocess.Popen:
        env = dict(os.environ, PUBLISHER_TOKEN_SECRET=SECRET, PUBLISHER_API_KEY="chaos-key")
        clock = ["--now", now] if now and not self.live else []
        return subprocess.Popen([exe(), "--config", str(self.config), *clock, *args], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def run(self, *args: str, timeout: float = 120, now: str | None = DIGEST_NOW) -> tuple[int, str]:
        proc = self.start(*args, now=now)
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
            raise AssertionError(f"publish {' '.join(args)} did not finish in {timeout} s:\n{out}") from None
        return proc.returncode, out

    def send_to_end(self, runs: int = 10) -> str:
        """`digest --send` until nothing is pending (an outage or a lost lock may need a few runs)."""
        out = ""
        for _ in range(runs):
            code, out = self.run("digest", "--send")
            if code in (0, 1):
                return out
            time.sleep(0.5)
        raise AssertionError(f"the digest did not complete in {runs} runs:\n{out}")

    def status(self) -> dict:
        code, out = self.run("digest", "--status", "--format", "json")
        return json.loads(out)

    def ledger(self) -> dict[str, str]:
        with sqlite3.connect(self.db) as conn:
            return dict(conn.execute("SELECT email, state FROM ledger"))


def make_site(root: Path, transport: str, subscribers: int, url: str = "", smtp_port: int = 0,
              batch_size: int = 20, lease_seconds: float = 60.0, busy_timeout: float = 30.0,
              timeout: float = 2.0, live: bool = False, changes: dict[str, str] | None = None) -> ChaosSite:
    """A copy of the shipped example sending through `transport`, its posts published in the digest's period.
    `live`: the digest was due a minute ago by the real clock, for `publish serve`. `changes`: more
    replacements in config.toml (old text → new text)."""
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    shutil.copy(REPO / "config.toml", root / "config.toml")
    shutil.copytree(REPO / "posts", root / "posts")
    site = ChaosSite(root, transport, live)
    published = PUBLISHED
    changes = dict(changes or {})
    if live:
        due = datetime.now(TOKYO) - timedelta(minutes=1)
        changes['day = "mon"'] = f'day = "{due.strftime("%a").lower()}"'
        changes['time = "08:00"'] = f'time = "{due.strftime("%H:%M")}"'
        published = (due - timedelta(days=1)).isoformat()
    text = site.config.read_text(encoding="utf-8")
    settings = {'transport = "file"': f'transport = "{transport}"', 'api_url = ""': f'api_url = "{url}"',
                '\ndomain = ""': f'\ndomain = "{DOMAIN}"', "retry_delay = 1.0": "retry_delay = 0.05",
                "retry_delay = 2.0": "retry_delay = 0.05",
                "timeout = 30.0\n# Retries": f"timeout = {timeout}\n# Retries",
                "batch_size = 0": f"batch_size = {batch_size}", "lease_seconds = 60.0": f"lease_seconds = {lease_seconds}",
                "busy_timeout = 30.0": f"busy_timeout = {busy_timeout}", "port = 587": f"port = {smtp_port or 587}",
                'security = "starttls"': 'security = "none"',
                "adopt_existing = true": "adopt_existing = false",  # every example post is news for the digest
                **changes}
    for old, new in settings.items():
        assert old in text, old
        text = text.replace(old, new, 1)
    site.config.write_text(text, encoding="utf-8")
    site.live = False
    code, out = site.run(now=published)  # the example posts, first published in the digest's period
    site.live = live
    assert code == 0, out
    with sqlite3.connect(site.db) as conn:
        conn.executemany(
            "INSERT INTO subscribers (email, name, categories, status, joined, updated) VALUES (?, ?, ?, 'active', ?, ?)",
            ((f"reader{i:05d}@example.com", f"読者 {i}", json.dumps(MIXES[i % 3], ensure_ascii=False),
              "2026-01-01T00:00:00+00:00", "2026-01-01T00:00:00+00:00") for i in range(subscribers)))
    return site


@dataclass
class Outcome:
    """What the receiving server saw against what publisher reports."""

    transport: str
    recipients: int
    crashes: int = 0
    duplicates: int = 0
    lost: int = 0  # neither received nor reported failed/unknown
    unknown: int = 0
    unknown_after_reconcile: int = 0
    failed: int = 0
    false_sent: int = 0  # recorded sent, never accepted by the server
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def row(self) -> str:
        return (f"| {self.transport} | {self.recipients:,} | {self.crashes} | {self.duplicates} | {self.lost} | "
                f"{self.unknown} | {self.unknown_after_reconcile} | {self.false_sent} | {self.seconds:.0f} |")


def judge(site: ChaosSite, received: Counter, outcome: Outcome, status: dict) -> Outcome:
    """Compare the server's record with the ledger and the status report."""
    ledger = site.ledger()
    expected = {email for email, state in ledger.items() if state != "skipped"}
    reported = {p["email"]: p["state"] for p in status["problems"] if p["state"] in ("failed", "unknown")}
    outcome.duplicates = sum(n - 1 for n in received.values() if n > 1)
    outcome.lost = sum(1 for e in expected if received[e] == 0 and e not in reported)
    outcome.false_sent = sum(1 for e, s in ledger.items() if s == "sent" and received[e] == 0)
    outcome.unknown_after_reconcile = status["counts"].get("unknown", 0)
    outcome.failed = status["counts"].get("failed", 0)
    return outcome


def kill_loop(site: ChaosSite, cycles: int, progress, rng: random.Random, span: float = 1.5,
              first_wait: float = 30.0) -> int:
    """Start `digest --send`, and SIGKILL it at a random moment after its first request arrives; `progress()`
    counts requests (or messages) seen by the server. The number of kills that landed mid-send."""
    crashes = 0
    for _ in range(cycles):
        before = progress()
        proc = site.start("digest", "--send")
        deadline = time.monotonic() + first_wait
        while progress() == before and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        if proc.poll() is not None:  # finished before a kill could land: nothing left to send
            proc.communicate()
            break
        time.sleep(rng.uniform(0, span))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            crashes += 1
        proc.communicate()
    return crashes


def http_chaos(root: Path, kind: str, subscribers: int, cycles: int, seed: int = 1, batch_size: int = 20,
               latency: float = 0.05, search_wait: float = 0.0) -> Outcome:
    """Kill the sender at random moments against a fake provider, finish the send, reconcile, and judge."""
    rng = random.Random(seed)
    provider = FakeProvider(kind, latency=latency).start()
    try:
        site = make_site(root, kind, subscribers, url=provider.url, batch_size=batch_size)
        started = time.monotonic()
        outcome = Outcome(kind, subscribers)
        outcome.crashes = kill_loop(site, cycles, lambda: provider.sends, rng, span=latency * 8)
        return finish(site, provider, outcome, started, search_wait)
    finally:
        provider.stop()


def smtp_chaos(root: Path, subscribers: int, cycles: int, seed: int = 1, delay: float = 0.01) -> Outcome:
    from .servers import SMTPServer

    rng = random.Random(seed)
    with SMTPServer() as server:
        server.recorder.delay = delay
        site = make_site(root, "smtp", subscribers, smtp_port=server.port)
        started = time.monotonic()
        outcome = Outcome("smtp", subscribers)
        outcome.crashes = kill_loop(site, cycles, lambda: len(server.recorder.messages), rng, span=delay * 40)
        server.recorder.delay = 0
        site.send_to_end()
        status = site.status()
        outcome.unknown = status["counts"].get("unknown", 0)
        outcome.seconds = time.monotonic() - started
        return judge(site, Counter(server.recorder.recipients()), outcome, status)


def wait_until(check, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.01)
    return False


def lock_database(db: Path, seconds: float) -> subprocess.Popen:
    """Another process holding the database's write lock for `seconds`."""
    code = (f"import sqlite3, time; c = sqlite3.connect({str(db)!r}, isolation_level=None); "
            f"c.execute('BEGIN IMMEDIATE'); print('locked', flush=True); time.sleep({seconds})")
    locker = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert locker.stdout is not None and locker.stdout.readline().strip() == "locked"
    return locker


def finish(site: ChaosSite, provider: FakeProvider, outcome: Outcome, started: float,
           search_wait: float = 0.0) -> Outcome:
    """Complete the send, reconcile what can be asked (again after `search_wait` seconds, once the provider's
    search may be trusted to list everything it accepted), and judge."""
    site.send_to_end()
    outcome.unknown = site.status()["counts"].get("unknown", 0)
    outcome.seconds = time.monotonic() - started
    if outcome.unknown and provider.kind in ("postmark", "mailgun", "resend"):
        site.run("digest", "--reconcile")
        site.send_to_end()
        if search_wait and site.status()["counts"].get("unknown", 0):
            time.sleep(search_wait)
            site.run("digest", "--reconcile")
            site.send_to_end()
    return judge(site, provider.recipients(), outcome, site.status())


def paused_holder(root: Path, kind: str, subscribers: int, pause: float = 6.5, lease: float = 5.0) -> Outcome:
    """A sender paused with SIGSTOP past its lease while a second one sends; then resumed. The first must
    stop before its next request (`notes` holds its output and the requests it made after resuming)."""
    provider = FakeProvider(kind, latency=0.1).start()
    try:
        site = make_site(root, kind, subscribers, url=provider.url, batch_size=10, lease_seconds=lease)
        started = time.monotonic()
        outcome = Outcome(kind, subscribers, crashes=1)
        first = site.start("digest", "--send")
        assert wait_until(lambda: provider.sends >= 3)
        first.send_signal(signal.SIGSTOP)
        try:
            time.sleep(pause)
            code, out = site.run("digest", "--send")
            assert code in (0, 1), out
            sends = provider.sends
        finally:
            first.send_signal(signal.SIGCONT)
        out_first, _ = first.communicate(timeout=60)
        outcome.notes = [f"exit {first.returncode}", out_first, f"requests after resuming: {provider.sends - sends}"]
        return finish(site, provider, outcome, started)
    finally:
        provider.stop()


def stalled_database(root: Path, kind: str, subscribers: int, hold: float = 4.0) -> Outcome:
    """The database held locked (longer than [state] busy_timeout) while a sender runs; then the send is
    completed. `notes` holds the stalled sender's exit code and output."""
    provider = FakeProvider(kind, latency=0.1).start()
    try:
        site = make_site(root, kind, subscribers, url=provider.url, batch_size=10, busy_timeout=1)
        started = time.monotonic()
        outcome = Outcome(kind, subscribers, crashes=1)
        sender = site.start("digest", "--send")
        assert wait_until(lambda: provider.sends >= 2)
        locker = lock_database(site.db, hold)
        out, _ = sender.communicate(timeout=120)
        locker.wait(timeout=60)
        outcome.notes = [f"exit {sender.returncode}", out]
        return finish(site, provider, outcome, started)
    finally:
        provider.stop()


def outage(root: Path, kind: str, subscribers: int, hours: int = 6) -> Outcome:
    """The provider answering 503 for `hours` while scheduled passes run through it every hour (`publish
    --now`, as `publish serve` would), then back: nothing may be lost, failed or charged an attempt.
    `notes`: the exit codes of the passes and the attempts recorded during the outage."""
    provider = FakeProvider(kind).start()
    try:
        site = make_site(root, kind, subscribers, url=provider.url)
        started = time.monotonic()
        provider.always = "503"
        slot = datetime.fromisoformat(DIGEST_NOW).replace(hour=8, minute=0)
        codes = [site.run(now=(slot + timedelta(hours=h)).isoformat())[0] for h in range(1, hours + 1)]
        with sqlite3.connect(site.db) as conn:
            attempts = conn.execute("SELECT COALESCE(SUM(attempts), 0) FROM ledger").fetchone()[0]
        provider.always = ""
        codes.append(site.run(now=(slot + timedelta(hours=hours, minutes=30)).isoformat())[0])
        outcome = Outcome(kind, subscribers, notes=[f"exit codes {codes}", f"attempts during the outage {attempts}"])
        outcome.seconds = time.monotonic() - started
        status = site.status()
        outcome.unknown = status["counts"].get("unknown", 0)
        return judge(site, provider.recipients(), outcome, status)
    finally:
        provider.stop()
