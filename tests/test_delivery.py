"""The send ledger's promises, one fault at a time: outages that charge nobody, a week that is never lost,
answers that cannot be read, reconciling unknowns, the operator's resend, the status a script reads, and
the store's fencing tokens."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta

import pytest

from publisher.errors import ClaimLost, StoreError
from publisher.store.base import Holder, NewBatch
from publisher.store.sqlite import SQLiteStore

from .conftest import DIGEST_NOW, use_smtp
from .fakes import DOMAIN, FakeProvider

SLOT = datetime.fromisoformat("2026-03-16T08:00:00+09:00")


@pytest.fixture
def fake(request):
    provider = FakeProvider(getattr(request, "param", "postmark")).start()
    yield provider
    provider.stop()


def use_fake(site, fake, monkeypatch, retries: int = 1) -> None:
    monkeypatch.setenv("PUBLISHER_API_KEY", "test-key")
    site.set_config('transport = "file"', f'transport = "{fake.kind}"')
    site.set_config('api_url = ""', f'api_url = "{fake.url}"')
    site.set_config('\ndomain = ""', f'\ndomain = "{DOMAIN}"')
    site.set_config("retry_delay = 1.0", "retry_delay = 0.01")
    site.set_config("retries = 4", f"retries = {retries}")


def rows(site) -> dict[str, tuple[str, int]]:
    with sqlite3.connect(site.db) as conn:
        return {e: (s, a) for e, s, a in conn.execute(
            "SELECT email, state, attempts FROM ledger WHERE state != 'skipped'")}


def at(hours: float) -> str:
    return (SLOT + timedelta(hours=hours)).isoformat()


def status_json(site) -> dict:
    result = site.run("digest", "--status", "--format", "json")
    return json.loads(result.output)


def test_a_six_hour_outage_loses_nothing_and_charges_no_attempt(digest_site, fake, monkeypatch):
    use_fake(digest_site, fake, monkeypatch)
    fake.always = "503"
    for hours in (1, 2, 4, 6):  # scheduled passes, as `publish serve` makes them, through the outage
        result = digest_site.run("--now", at(hours))
        assert result.exit_code == 3, result.output
        assert "Postmark is not accepting messages: HTTP 503" in result.output
        assert "nothing was lost" in result.output
        assert rows(digest_site) == {"all@example.com": ("pending", 0), "chips@example.com": ("pending", 0)}
    assert not fake.accepted
    fake.always = ""
    result = digest_site.run("--now", at(6.5))
    assert result.exit_code == 0, result.output
    assert "2 sent now" in result.output
    assert fake.recipients() == {"all@example.com": 1, "chips@example.com": 1}
    assert "Digest of" not in digest_site.run("--now", at(7)).output, "done: the next pass leaves it alone"


def test_a_digest_gives_up_only_after_give_up_hours(digest_site, fake, monkeypatch):
    use_fake(digest_site, fake, monkeypatch)
    fake.always = "401"
    first = digest_site.run("--now", at(1))
    assert first.exit_code == 3 and "Postmark refused the API key" in first.output
    assert "$PUBLISHER_API_KEY" in first.output
    assert digest_site.run("--now", at(60)).exit_code == 3, "still retried 59 hours later (past catch_up_hours)"
    assert rows(digest_site) == {"all@example.com": ("pending", 0), "chips@example.com": ("pending", 0)}
    late = digest_site.run("--now", at(74))
    assert "gave up on 2 message(s) still unsent after [digest] give_up_hours (72 h)" in late.output
    status = status_json(digest_site)
    assert status["counts"] == {"failed": 2, "skipped": 1} and not status["ok"]
    assert {p["email"] for p in status["problems"]} == {"all@example.com", "chips@example.com"}
    assert all("give_up_hours" in p["reason"] for p in status["problems"])
    assert not fake.accepted


def test_an_unfinished_digest_is_resumed_after_the_next_week_begins(digest_site, fake, monkeypatch):
    use_fake(digest_site, fake, monkeypatch)
    digest_site.set_config("give_up_hours = 72", "give_up_hours = 400")
    fake.always = "503"
    assert digest_site.run("--now", at(1)).exit_code == 3
    fake.always = ""
    result = digest_site.run("--now", at(7 * 24 + 1))  # the next week's slot has come
    assert "Digest of 2026-03-16T08:00+09:00: 2 sent now" in result.output, result.output
    assert fake.recipients() == {"all@example.com": 1, "chips@example.com": 1}


def test_a_malformed_answer_is_unknown_then_reconciled(digest_site, fake, monkeypatch):
    use_fake(digest_site, fake, monkeypatch)
    fake.faults = ["malformed"]
    result = digest_site.run("--now", DIGEST_NOW, "digest", "--send")
    assert result.exit_code == 1, result.output
    assert "Postmark answered HTTP 200 with a body that is not JSON" in result.output
    assert "--reconcile" in result.output
    assert {s for s, _ in rows(digest_site).values()} == {"unknown"}
    again = digest_site.run("--now", DIGEST_NOW, "digest", "--send")
    assert "Sent 0 message(s)" in again.output and fake.sends == 1, "unknown messages are never resent on their own"
    reconciled = digest_site.run("--now", DIGEST_NOW, "digest", "--reconcile")
    assert "2 accepted (now sent)" in reconciled.output and reconciled.exit_code == 0, reconciled.output
    assert {s for s, _ in rows(digest_site).values()} == {"sent"}
    assert fake.recipients() == {"all@example.com": 1, "chips@example.com": 1}


def test_a_partial_batch_reconciled_sends_only_what_was_not_accepted(digest_site, fake, monkeypatch):
    use_fake(digest_site, fake, monkeypatch)
    fake.faults = ["partial"]
    result = digest_site.run("--now", DIGEST_NOW, "digest", "--send")
    assert "Postmark gave no result for this message" in result.output
    assert sorted(s for s, _ in rows(digest_site).values()) == ["sent", "unknown"]
    soon = digest_site.run("--now", DIGEST_NOW, "digest", "--reconcile")
    assert "1 still unknown" in soon.output and "may not list it yet" in soon.output
    with sqlite3.connect(digest_site.db) as conn:  # as if the search had had its two minutes
        conn.execute("UPDATE batches SET tried = ?", ((datetime.now(UTC) - timedelta(minutes=5)).isoformat(),))
    later = digest_site.run("--now", DIGEST_NOW, "digest", "--reconcile")
    assert "1 never accepted (pending: the next run sends them)" in later.output, later.output
    done = digest_site.run("--now", DIGEST_NOW, "digest", "--send")
    assert done.exit_code == 0, done.output
    assert fake.recipients() == {"all@example.com": 1, "chips@example.com": 1}


@pytest.mark.parametrize("fake", ["mailgun"], indirect=True)
def test_mailgun_unknowns_found_in_the_events_log(digest_site, fake, monkeypatch):
    use_fake(digest_site, fake, monkeypatch)
    digest_site.set_config("timeout = 30.0\n# Retries", "timeout = 0.3\n# Retries")
    fake.faults, fake.hang_seconds = ["timeout", "timeout"], 1.0
    result = digest_site.run("--now", DIGEST_NOW, "digest", "--send")
    assert {s for s, _ in rows(digest_site).values()} == {"unknown"}, result.output
    reconciled = digest_site.run("--now", DIGEST_NOW, "digest", "--reconcile")
    assert "2 accepted (now sent)" in reconciled.output, reconciled.output
    assert fake.lookups >= 2 and fake.recipients() == {"all@example.com": 1, "chips@example.com": 1}


@pytest.mark.parametrize("fake", ["resend"], indirect=True)
def test_resend_replays_a_dropped_request_under_its_key(digest_site, fake, monkeypatch):
    use_fake(digest_site, fake, monkeypatch, retries=2)
    fake.faults = ["drop"]  # accepted, then the connection closes before the answer
    result = digest_site.run("--now", DIGEST_NOW, "digest", "--send")
    assert result.exit_code == 0, result.output
    assert fake.sends == 2 and fake.recipients() == {"all@example.com": 1, "chips@example.com": 1}
    with sqlite3.connect(digest_site.db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM ledger WHERE provider_id IS NULL AND state = 'sent'").fetchone() == (0,)


@pytest.mark.parametrize("fake", ["sendgrid"], indirect=True)
def test_sendgrid_unknowns_are_the_operators_call(digest_site, fake, monkeypatch):
    use_fake(digest_site, fake, monkeypatch)
    digest_site.set_config("timeout = 30.0\n# Retries", "timeout = 0.3\n# Retries")
    fake.faults, fake.hang_seconds = ["timeout", "timeout"], 1.0
    digest_site.run("--now", DIGEST_NOW, "digest", "--send")
    asked = digest_site.run("--now", DIGEST_NOW, "digest", "--reconcile")
    assert "SendGrid tells what it accepted only through its paid Email Activity add-on" in asked.output
    scripted = digest_site.run("--now", DIGEST_NOW, "digest", "--resend-unknown")
    assert scripted.exit_code == 2 and "add --yes to confirm from a script" in scripted.output
    assert "Send 2 unknown message(s)" in scripted.output and "may already have been delivered" in scripted.output
    confirmed = digest_site.run("--now", DIGEST_NOW, "digest", "--resend-unknown", "--yes")
    assert confirmed.exit_code == 0, confirmed.output
    assert "2 unknown message(s) are pending again" in confirmed.output
    assert fake.recipients() == {"all@example.com": 2, "chips@example.com": 2}, "the operator chose to resend"


def test_status_json_lists_every_failed_and_unknown_recipient(digest_site, smtp_server):
    use_smtp(digest_site, smtp_server.port)
    smtp_server.recorder.rcpt_codes["chips@example.com"] = ["550 5.1.1 no such user"]
    smtp_server.recorder.drop_after_data.add("all@example.com")
    digest_site.run("--now", DIGEST_NOW, "digest", "--send")
    result = digest_site.run("digest", "--status", "--format", "json")
    assert result.exit_code == 1
    status = json.loads(result.output)
    assert status["counts"] == {"failed": 1, "skipped": 1, "unknown": 1}
    assert status["complete"] and not status["ok"]
    problems = {p["email"]: p for p in status["problems"]}
    assert problems["chips@example.com"]["state"] == "failed"
    assert "550 5.1.1 no such user" in problems["chips@example.com"]["reason"]
    assert problems["all@example.com"]["state"] == "unknown"
    assert "connection lost during DATA" in problems["all@example.com"]["reason"]
    assert status["digest"]["period_end"].startswith("2026-03-15T23:00")
    failed_again = digest_site.run("--now", DIGEST_NOW, "digest", "--resend-failed", "--yes")
    assert "1 failed message(s) are pending again" in failed_again.output
    assert smtp_server.recorder.recipients().count("chips@example.com") == 1


def test_smtp_outage_and_temporary_refusals(digest_site, smtp_server):
    use_smtp(digest_site, smtp_server.port)
    smtp_server.stop()
    down = digest_site.run("--now", DIGEST_NOW, "digest", "--send")
    assert down.exit_code == 3 and "cannot connect to SMTP server" in down.output
    assert rows(digest_site) == {"all@example.com": ("pending", 0), "chips@example.com": ("pending", 0)}, \
        "a server that is down charges nobody"
    smtp_server.restart()
    smtp_server.recorder.rcpt_codes["all@example.com"] = ["452 4.2.2 mailbox full"] * 4
    refused = digest_site.run("--now", DIGEST_NOW, "digest", "--send")
    assert refused.exit_code == 3, refused.output
    assert "1 message(s) not sent yet (refused for now: each is tried again 5, 10, 20" in refused.output
    assert rows(digest_site)["all@example.com"] == ("pending", 1), "a refusal of this recipient is an attempt"
    soon = digest_site.run("--now", DIGEST_NOW, "digest", "--send")
    assert soon.exit_code == 3 and rows(digest_site)["all@example.com"] == ("pending", 1), "not tried again yet"
    with sqlite3.connect(digest_site.db) as conn:  # as if its five minutes had passed
        conn.execute("UPDATE ledger SET updated = ?", ((datetime.now(UTC) - timedelta(minutes=6)).isoformat(),))
    later = digest_site.run("--now", DIGEST_NOW, "digest", "--send")
    assert later.exit_code == 0, later.output
    assert sorted(smtp_server.recorder.recipients()) == ["all@example.com", "chips@example.com"]


# -- the store's fencing tokens ---------------------------------------------------------------------------
def _store_with_digest(tmp_path) -> tuple[SQLiteStore, int]:
    store = SQLiteStore.open(tmp_path / "state.sqlite3")
    for i in range(4):
        store.insert_subscriber(f"s{i}@example.com", "", [], "active", "2026-01-01T00:00:00+00:00")
    digest = store.create_digest("2026-03-09", "2026-03-16", "subject", [], "2026-03-16T00:00:00+00:00")
    return store, digest.id


def _holder(store, owner: str, now: datetime, seconds: float = 10) -> Holder:
    grant = store.take_lease("publisher", owner, now, seconds)
    assert grant.taken, grant
    return Holder("publisher", owner, grant.fence)


def test_fencing_tokens_refuse_a_sender_that_lost_its_lease(tmp_path):
    store, digest_id = _store_with_digest(tmp_path)
    now = datetime.now(UTC)
    a = _holder(store, "a", now)
    members = tuple((e.subscriber.id, f"<m{e.subscriber.id}@x>") for e in store.pending_entries(digest_id, 0, 10))
    claim_a, claim_a2 = store.freeze_batches(digest_id, [NewBatch("k1", members[:2]), NewBatch("k2", members[2:])],
                                             a, "2026-03-16T00:00:00+00:00", now)
    store.start_batch(claim_a, a, now)
    assert store.ledger_counts(digest_id) == {"pending": 2, "sending": 2}, "only the request in flight is sending"
    assert not store.take_lease("publisher", "b", now + timedelta(seconds=5), 10).taken, "a held lease is refused"
    later = now + timedelta(seconds=11)  # a's lease (and its claims) ran out: a was paused
    b = _holder(store, "b", later)
    assert b.fence == a.fence + 1, "the token grows when the lease changes hands"
    with pytest.raises(ClaimLost):
        store.start_batch(claim_a2, a, later)
    with pytest.raises(ClaimLost):
        store.claim_batch(digest_id, a, later)
    assert store.recover_batches(digest_id, b, False, None, later) == 1
    with pytest.raises(ClaimLost):  # a wakes up and reports its request: refused, b has recorded it unknown
        store.settle_batch(claim_a, [], later)
    claim_b = store.claim_batch(digest_id, b, later)
    assert claim_b is not None and claim_b.key == "k2" and claim_b.fence > claim_a2.fence
    again = store.claim_batch(digest_id, b, later)  # b's own leftover claim, taken afresh: the old one is void
    assert again is not None and again.fence == claim_b.fence + 1
    with pytest.raises(ClaimLost):
        store.start_batch(claim_b, b, later)
    store.start_batch(again, b, later)
    assert store.claim_batch(digest_id, b, later) is None, "nothing left to claim"
    assert store.ledger_counts(digest_id) == {"sending": 2, "unknown": 2}
    with pytest.raises(ClaimLost):
        store.freeze_batches(digest_id, [NewBatch("k3", members[:1])], b, "", later), "already in a batch"


def test_a_renewal_keeps_the_token_and_a_release_lets_it_grow(tmp_path):
    store, _ = _store_with_digest(tmp_path)
    now = datetime.now(UTC)
    first = store.take_lease("publisher", "a", now, 10)
    assert store.take_lease("publisher", "a", now + timedelta(seconds=3), 10).fence == first.fence
    store.drop_lease("publisher", "a", now + timedelta(seconds=4))
    assert store.take_lease("publisher", "b", now + timedelta(seconds=5), 10).fence == first.fence + 1


@pytest.mark.parametrize(("pragma", "expected"), [
    ("PRAGMA query_only = 1", "the state database is read-only"),
    ("PRAGMA max_page_count = 1", "the disk holding the state database is full"),
])
def test_sqlite_conditions_are_named_with_their_fix(tmp_path, pragma, expected):
    store, digest_id = _store_with_digest(tmp_path)
    if "max_page_count" in pragma:
        count = store.conn.execute("PRAGMA page_count").fetchone()[0]
        pragma = f"PRAGMA max_page_count = {count}"
    store.conn.execute(pragma)
    now = datetime.now(UTC)
    with pytest.raises(StoreError) as caught:
        holder = _holder(store, "a", now)
        many = tuple((i, f"<{'x' * 2000}{i}@x>") for i in range(1, 5))
        store.freeze_batches(digest_id, [NewBatch("k" * 3000, many)], holder, "", now)
    assert expected in str(caught.value) and ";" in str(caught.value), "the condition, then what to do"


def test_an_unanswered_request_is_replayed_only_while_the_key_is_remembered(tmp_path):
    store, digest_id = _store_with_digest(tmp_path)
    now = datetime.now(UTC)
    a = _holder(store, "a", now, seconds=3600 * 30)
    members = tuple((e.subscriber.id, f"<m{e.subscriber.id}@x>") for e in store.pending_entries(digest_id, 0, 10))
    first, second = store.freeze_batches(digest_id, [NewBatch("k1", members[:2]), NewBatch("k2", members[2:])],
                                         a, "", now)
    for claim in (first, second):
        store.start_batch(claim, a, now)
        store.settle_batch(claim, [], now, reopen=True, maybe_sent=True)  # no answer: replay under the same key
    soon = now + timedelta(hours=1)
    assert store.recover_batches(digest_id, a, True, soon - timedelta(hours=23), soon) == 0
    replay = store.claim_batch(digest_id, a, soon)
    assert replay is not None and replay.key == "k1" and replay.maybe_sent
    store.settle_batch(replay, [], soon, reopen=True)
    late = now + timedelta(hours=24)
    assert store.recover_batches(digest_id, a, True, late - timedelta(hours=23), late) == 2
    assert store.ledger_counts(digest_id) == {"unknown": 4}, "past the provider's memory: reported, not resent"
    assert store.claim_batch(digest_id, a, late) is None
