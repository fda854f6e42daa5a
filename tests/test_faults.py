"""Delivery under faults, tried from outside: real sender processes killed, paused and stalled; fake providers
and aiosmtpd on 127.0.0.1. Every promise is checked at the receiving server: nothing twice, nothing lost
without being reported, nothing recorded as sent that the server did not accept."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import time

import pytest

from .chaos import (
    Outcome,
    http_chaos,
    judge,
    lock_database,
    make_site,
    paused_holder,
    smtp_chaos,
    stalled_database,
    wait_until,
)
from .fakes import FakeProvider

TRANSPORTS = ["smtp", "postmark", "sendgrid", "mailgun", "resend"]


@pytest.fixture
def provider(request):
    fake = FakeProvider(request.param, latency=0.1).start()
    yield fake
    fake.stop()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_random_kills_never_duplicate_nor_lose(tmp_path, transport):
    if transport == "smtp":
        outcome, per_request = smtp_chaos(tmp_path / "site", 120, 3, seed=3), 1
    else:
        outcome, per_request = http_chaos(tmp_path / "site", transport, 150, 3, seed=3, batch_size=20), 20
    assert outcome.crashes >= 1, outcome
    assert outcome.duplicates == 0, outcome
    assert outcome.lost == 0, outcome
    assert outcome.false_sent == 0, outcome
    assert outcome.unknown <= outcome.crashes * per_request, "at most the request in flight per crash is unknown"
    if transport == "resend":
        assert outcome.unknown == 0, "an unanswered Resend request is replayed under its key, never unknown"
    if transport in ("postmark", "mailgun", "resend"):
        assert outcome.unknown_after_reconcile <= outcome.unknown


@pytest.mark.parametrize("kind", ["postmark", "resend"])
def test_paused_lease_holder_sends_nothing_after_resuming(tmp_path, kind):
    outcome = paused_holder(tmp_path / "site", kind, 150)
    code, out, after = outcome.notes
    assert code == "exit 3", out
    assert "stopped sending" in out and "another publisher took over" in out
    assert after in ("requests after resuming: 0", "requests after resuming: 1"), \
        "after resuming, at most the request already written goes out"
    assert (outcome.duplicates, outcome.lost, outcome.false_sent) == (0, 0, 0), outcome
    assert outcome.unknown <= 10, "at most the request in flight when it was paused"


def test_database_locked_longer_than_the_busy_timeout(tmp_path):
    outcome = stalled_database(tmp_path / "site", "postmark", 150)
    code, out = outcome.notes
    assert code == "exit 3", out
    assert "the state database is locked by another process" in out
    assert "internal error" not in out and "Traceback" not in out
    assert (outcome.duplicates, outcome.lost, outcome.false_sent) == (0, 0, 0), outcome


def _stop_serve(proc: subprocess.Popen, timeout: float = 30) -> tuple[str, float]:
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise AssertionError(f"serve did not stop within {timeout} s of SIGTERM:\n{out}") from None
    assert proc.returncode == 0, out
    return out, time.monotonic() - started


@pytest.mark.parametrize("provider", ["postmark"], indirect=True)
def test_two_services_and_a_stalled_database_send_each_message_once(tmp_path, provider):
    site = make_site(tmp_path / "site", "postmark", 150, url=provider.url, batch_size=10, lease_seconds=5,
                     busy_timeout=1, live=True, changes={"scan_interval = 60.0": "scan_interval = 1.0"})
    provider.latency = 0.2
    first = site.start("serve")
    try:
        assert wait_until(lambda: provider.sends >= 2)
        locker = lock_database(site.db, 8)  # longer than the busy timeout and than the lease
        second = site.start("serve")
        locker.wait(timeout=30)
        assert wait_until(lambda: len(provider.recipients()) >= 140, timeout=60)
        time.sleep(2)
    finally:
        outs = [_stop_serve(first)[0]]
        if "second" in locals():
            outs.append(_stop_serve(second)[0])
    assert all("Traceback" not in out for out in outs), outs
    assert provider.duplicates() == 0, outs
    site.run("digest", "--reconcile")
    site.send_to_end()
    outcome = judge(site, provider.recipients(), Outcome("postmark", 150), site.status())
    assert (outcome.duplicates, outcome.lost, outcome.false_sent) == (0, 0, 0), outcome


@pytest.mark.parametrize("provider", ["postmark"], indirect=True)
def test_sigterm_ends_a_retry_wait_under_serve(tmp_path, provider):
    site = make_site(tmp_path / "site", "postmark", 30, url=provider.url, live=True,
                     changes={"retry_delay = 1.0": "retry_delay = 50.0"})
    provider.always = "503"
    proc = site.start("serve")
    assert wait_until(lambda: provider.sends >= 1)
    time.sleep(0.5)  # now waiting 50 s before the next try
    out, took = _stop_serve(proc)
    assert took < 5, f"stopped {took:.1f} s after SIGTERM\n{out}"
    with sqlite3.connect(site.db) as conn:
        assert set(conn.execute("SELECT state, attempts FROM ledger WHERE state != 'skipped'")) == {("pending", 0)}


@pytest.mark.parametrize("provider", ["postmark"], indirect=True)
def test_ctrl_c_on_digest_send_during_a_retry_wait(tmp_path, provider):
    site = make_site(tmp_path / "site", "postmark", 30, url=provider.url,
                     changes={"retry_delay = 1.0": "retry_delay = 50.0"})
    provider.always = "429"
    proc = site.start("digest", "--send")
    assert wait_until(lambda: provider.sends >= 1)
    time.sleep(0.5)
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    assert time.monotonic() - started < 5, out
    assert proc.returncode == 130, out
    assert "Stopped by SIGINT" in out and "Traceback" not in out
    provider.always = ""
    site.send_to_end()
    assert provider.duplicates() == 0 and len(provider.recipients()) == 30
