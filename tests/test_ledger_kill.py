"""A sender killed mid-run (SIGKILL) and started again delivers each message once, or reports it unknown."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from .conftest import DIGEST_NOW, SECRET, use_smtp

SUBSCRIBERS = 40


def publish(site, *args) -> subprocess.Popen:
    exe = Path(sys.executable).with_name("publish")
    env = dict(os.environ, PUBLISHER_TOKEN_SECRET=SECRET)
    return subprocess.Popen([str(exe), "--config", str(site.config), "--now", DIGEST_NOW, *args],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.parametrize("kill_after", [3, 17])
def test_sigkill_mid_send_then_restart(digest_site, smtp_server, kill_after):
    use_smtp(digest_site, smtp_server.port)
    csv = digest_site.root / "many.csv"
    csv.write_text("email,name\n" + "".join(f"reader{i:03d}@example.com,R{i}\n" for i in range(SUBSCRIBERS)))
    assert digest_site.run("subscribers", "import", str(csv)).exit_code == 0
    recorder = smtp_server.recorder
    recorder.delay = 0.03
    proc = publish(digest_site, "digest", "--send")
    recorder.wait_for(kill_after)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    delivered_before = len(recorder.messages)
    assert delivered_before < SUBSCRIBERS + 2, "the run was killed before it finished"
    recorder.delay = 0
    again = publish(digest_site, "digest", "--send")
    out, _ = again.communicate(timeout=60)
    with sqlite3.connect(digest_site.db) as conn:
        states = dict(conn.execute("SELECT email, state FROM ledger"))
    counts = Counter(recorder.recipients())
    expected = [e for e, s in states.items() if s != "skipped"]
    assert len(expected) == SUBSCRIBERS + 2
    for email in expected:
        if states[email] == "unknown":
            assert counts[email] <= 1, email
        else:
            assert states[email] == "sent", (email, states[email], out)
            assert counts[email] == 1, (email, counts[email])
    assert sum(1 for s in states.values() if s == "unknown") <= 1, "at most the message in flight is unknown"
    assert "never resent automatically" in out or "unknown" not in states.values()
