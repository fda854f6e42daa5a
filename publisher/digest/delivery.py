"""Digest delivery: keep the send ledger, deliver each message exactly once or report it.

Each provider request is a batch frozen in the store before it is made (its members and idempotency key),
claimed by this sender with a fencing token. Only the messages of the request in flight are 'sending'; a
resumed send replays exactly that batch under the same key; every change is refused once another sender
holds the batch or the lease, and a refused sender stops before its next request.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from ..config import Config, require_sender
from ..errors import ClaimLost, Interrupted, PublisherError, TransportError
from ..message import Outgoing
from ..store.base import Claim, Digest, Holder, NewBatch, Outcome, Problem, Store
from ..tokens import Secrets
from ..transports.base import (
    FAILED,
    RETRY,
    SENT,
    UNKNOWN,
    RateLimiter,
    SendResult,
    Transport,
    interruptible_sleep,
)
from .job import DigestJob, MessageFactory, prepare_digest
from .schedule import last_slot, period_for, utc_stamp

PAGE = 200  # ledger rows read per query; messages are built a page at a time, so memory stays flat
REFUSAL_SPACING = timedelta(minutes=5)  # a recipient refused for now is tried again after 5, 10, 20 … minutes
STATES = {SENT: "sent", FAILED: "failed", UNKNOWN: "unknown", RETRY: "pending"}


@dataclass(slots=True)
class DigestReport:
    """What a send did: the job, how many went out now, the ledger's counts, problems and warnings. `error`
    says why it could not go on (provider down, credentials refused, lease lost, database unusable);
    `stopped` that a stop was asked for."""

    job: DigestJob
    digest_id: int = 0
    already_done: bool = False
    sent_now: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    stopped: bool = False
    error: str = ""

    @property
    def unfinished(self) -> int:
        """Messages still to send (pending, or in flight when the run ended)."""
        return self.counts.get("pending", 0) + self.counts.get("sending", 0)


def ensure_digest(job: DigestJob, store: Store, now: datetime) -> DigestJob:
    """The job with its digest row (created with its ledger if new; another process's if it won the race)."""
    if job.row is None:
        job.row = store.create_digest(utc_stamp(job.start), utc_stamp(job.end), job.subject, job.keys,
                                      utc_stamp(now))
    return job


def send_digest(cfg: Config, store: Store, secrets: Secrets, transport_factory: Callable[[], Transport],
                now: datetime, slot: datetime | None = None, progress: Callable[[int, int], None] | None = None,
                should_stop: Callable[[], bool] = lambda: False, by_hand: bool = False, *,
                holder: Holder) -> DigestReport:
    """Send (or resume) the digest for `slot` (default: the latest slot at or before `now`), acting under
    `holder`'s lease. By hand, a period the scheduler skipped as missed is sent all the same."""
    require_sender(cfg)
    slot = slot or last_slot(cfg, now)
    if by_hand:
        store.forget_missed(utc_stamp(period_for(cfg, slot)[1]))
    job = ensure_digest(prepare_digest(cfg, store, slot), store, now)
    assert job.row is not None
    report = DigestReport(job, job.row.id, job.done)
    if not report.already_done:
        report.warnings += archive_digest(cfg, job)
        factory = job.factory(cfg, secrets, now)
        _Delivery(cfg, store, transport_factory, factory, report, progress, should_stop, holder).run()
        report.warnings += factory.warnings
    fill_counts(store, report)
    return report


def archive_digest(cfg: Config, job: DigestJob) -> list[str]:
    """Write the "view in browser" copy before the first message links to it; a warning if it cannot be."""
    from .archive import archive_path, write_archive

    try:
        write_archive(cfg, job)
    except OSError as exc:
        return [f"{archive_path(cfg, job)}: the archived copy was not written ({exc.strerror or exc}); the "
                "digest's \"view in browser\" link will not work until it is"]
    return []


def slot_of(cfg: Config, digest: Digest) -> datetime:
    """The scheduled time a digest row was created for, in the site timezone."""
    return datetime.fromisoformat(digest.period_end).astimezone(cfg.tz)


def give_up_if_expired(cfg: Config, store: Store, digest: Digest, now: datetime) -> int | None:
    """Once [digest] give_up_hours have passed since a digest was created, what is still unsent is recorded
    as failed and the digest is done; the number of messages given up (None while there is time)."""
    if not digest.created or now - datetime.fromisoformat(digest.created) <= timedelta(hours=cfg.digest.give_up_hours):
        return None
    hours = f"{cfg.digest.give_up_hours:g}"
    return store.give_up(digest.id, f"not sent within [digest] give_up_hours ({hours} h) of the digest's start: "
                         "given up (--resend-failed sends it all the same)", datetime.now(UTC))


def fill_counts(store: Store, report: DigestReport) -> None:
    report.counts = store.ledger_counts(report.digest_id)
    report.skipped = store.skip_reasons(report.digest_id)
    report.problems = store.ledger_problems(report.digest_id)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _next_try(refused: str, attempts: int) -> datetime:
    """When a recipient refused `attempts` times for now may be tried again (spacing doubles each time)."""
    try:
        return datetime.fromisoformat(refused) + REFUSAL_SPACING * 2 ** (attempts - 1)
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)


class _Delivery:
    """Walks the ledger in subscriber order: claim a frozen batch or freeze the next ones, mark exactly its
    messages 'sending', make its one request, record the answer (all under the batch's fencing token)."""

    def __init__(self, cfg: Config, store: Store, transport_factory: Callable[[], Transport],
                 factory: MessageFactory, report: DigestReport, progress: Callable[[int, int], None] | None,
                 should_stop: Callable[[], bool], holder: Holder) -> None:
        self.cfg, self.store, self.factory, self.report, self.holder = cfg, store, factory, report, holder
        self.digest_id = report.digest_id
        self.progress, self.should_stop = progress, should_stop
        self.limiter = RateLimiter(cfg.digest.rate)
        self.sleep = interruptible_sleep(self.stopping)
        self.transports = [transport_factory() for _ in range(cfg.digest.concurrency)]
        for transport in self.transports:
            transport.sleep = self.sleep  # retry waits end as soon as a stop is asked for
        self.free = list(self.transports)
        self.planned: list[tuple[Claim, list[Outgoing], list[Outcome]]] = []  # claimed by us, not started
        self.in_flight: dict[Future, tuple[Transport, Claim, list[Outgoing], list[Outcome]]] = {}
        self.cursor, self.exhausted = 0, False
        self.done = 0
        self.total = sum(store.ledger_counts(self.digest_id).get(s, 0) for s in ("pending", "sending"))

    def stopping(self) -> bool:
        return bool(self.report.error) or self.should_stop()

    def run(self) -> None:
        first = self.transports[0]
        replay = getattr(first, "replay_hours", None)
        now = _utcnow()
        since = now - timedelta(hours=replay) if replay else None
        pool = ThreadPoolExecutor(max_workers=len(self.transports)) if len(self.transports) > 1 else None
        try:
            self.store.recover_batches(self.digest_id, self.holder, first.idempotent, since, now)
            self._loop(pool)
        except ClaimLost as exc:
            self.report.error = str(exc)
        finally:
            self._wind_down(pool)
        self.report.stopped = self.should_stop()
        counts = self.store.ledger_counts(self.digest_id)
        if not counts.get("pending") and not counts.get("sending") and not self.report.error:
            self.store.finish_digest(self.digest_id)

    def _loop(self, pool: ThreadPoolExecutor | None) -> None:
        while True:
            while self.free and not self.stopping():
                item = self._next()
                if item is None:
                    break
                claim, batch, dropped = item
                if not batch:  # nobody left to send it to
                    self.store.settle_batch(claim, dropped, _utcnow())
                    self._advance(len(dropped))
                    continue
                try:
                    self.limiter.wait(len(batch), self.sleep)
                except Interrupted:
                    self.planned.insert(0, item)
                    break
                transport = self.free.pop()
                self.store.start_batch(claim, self.holder, _utcnow())  # committed before the request
                if pool is None:
                    future: Future = Future()
                    self.in_flight[future] = (transport, claim, batch, dropped)
                    future.set_result(self._call(transport, batch, claim.key))
                else:
                    future = pool.submit(self._call, transport, batch, claim.key)
                    self.in_flight[future] = (transport, claim, batch, dropped)
            if not self.in_flight:
                return
            finished, _ = wait(self.in_flight, return_when=FIRST_COMPLETED)
            for future in finished:
                self._settle(*self.in_flight.pop(future), future.result())

    def _wind_down(self, pool: ThreadPoolExecutor | None) -> None:
        """Record what is still in flight and put back the batches claimed but not started."""
        if pool is not None:
            pool.shutdown(wait=True)
        try:
            for future, item in list(self.in_flight.items()):  # left by an exception while a request was out
                self._settle(*item, future.result() if future.done() else self._abandoned(*item[:3]))
            self.in_flight.clear()
            for claim, *_ in self.planned:
                self.store.settle_batch(claim, [], _utcnow(), reopen=True)
            self.planned.clear()
        except ClaimLost as exc:
            self.report.error = self.report.error or str(exc)
        except PublisherError:
            pass  # the store itself failed (the cause is already on its way up): claims expire with the lease
        finally:
            for transport in self.transports:
                transport.close()

    def _next(self) -> tuple[Claim, list[Outgoing], list[Outcome]] | None:
        """The next batch to send: one frozen earlier (resumed exactly), else the next freshly frozen ones."""
        if self.planned:
            return self.planned.pop(0)
        claim = self.store.claim_batch(self.digest_id, self.holder, _utcnow())
        if claim is not None:
            return self._rebuild(claim)
        while not self.exhausted and not self.planned and not self.stopping():
            self._plan_page()
        return self.planned.pop(0) if self.planned else None

    def _rebuild(self, claim: Claim) -> tuple[Claim, list[Outgoing], list[Outcome]]:
        """A frozen batch's messages, built again as of its freezing: the same request. A batch never sent
        drops members who unsubscribed since; one whose request went unanswered is replayed verbatim."""
        at = datetime.fromisoformat(claim.created).astimezone(self.cfg.tz)
        batch, dropped = [], []
        for entry in self.store.batch_members(claim.batch_id):
            sub = entry.subscriber
            if claim.maybe_sent is None and sub.status != "active":
                dropped.append(Outcome(sub.id, "skipped", "", f"subscriber is {sub.status}"))
                continue
            message = self.factory.build(sub, entry.message_id, at=at)
            if message is not None:
                batch.append(message)
            elif claim.maybe_sent is None:
                dropped.append(Outcome(sub.id, "skipped", "", "nothing new in their categories"))
            else:
                dropped.append(Outcome(sub.id, "unknown", "", "their categories changed after a request for it "
                                       "went unanswered; it may or may not have been delivered"))
        return claim, batch, dropped

    def _plan_page(self) -> None:
        """Read the next page of pending rows, settle the ones not to send, and freeze the rest into batches,
        one per request the transport will make, each with its own idempotency key."""
        entries = self.store.pending_entries(self.digest_id, self.cursor, max(self.transports[0].batch_size, PAGE))
        if not entries:
            self.exhausted = True
            return
        self.cursor = entries[-1].subscriber.id
        messages, settled = [], []
        now = _utcnow()
        for entry in entries:
            sub = entry.subscriber
            if sub.status != "active":  # re-checked at send time: an unsubscribe always wins
                settled.append(Outcome(sub.id, "skipped", "", f"subscriber is {sub.status}"))
            elif entry.attempts >= self.cfg.digest.max_attempts:
                settled.append(Outcome(sub.id, "failed", "", f"gave up after {entry.attempts} refusals"))
            elif entry.attempts and now < _next_try(entry.updated, entry.attempts):
                continue  # refused for now: left pending, a later run tries it again
            else:
                message = self.factory.build(sub, entry.message_id)
                if message is None:
                    settled.append(Outcome(sub.id, "skipped", "", "nothing new in their categories"))
                else:
                    messages.append(message)
        if settled:
            self.store.settle(self.digest_id, settled, self.holder, _utcnow())
            self._advance(len(settled))
        groups = self.transports[0].requests(messages)
        batches = [NewBatch(self._key(), tuple((m.key, m.message_id) for m in group)) for group in groups]
        if batches:
            claims = self.store.freeze_batches(self.digest_id, batches, self.holder, utc_stamp(self.factory.now),
                                               _utcnow())
            self.planned += [(claim, list(group), []) for claim, group in zip(claims, groups, strict=True)]

    def _key(self) -> str:
        """A new batch's idempotency key: stored with the batch, so every replay of it carries the same one."""
        return f"publisher-{self.digest_id}-{secrets.token_hex(12)}"

    def _call(self, transport: Transport, batch: list[Outgoing], key: str) -> list[SendResult] | TransportError:
        try:
            return transport.send(batch, key)
        except TransportError as exc:
            return exc
        except Exception as exc:  # a fault of ours or of a library: the request may have gone out
            return self._in_doubt(batch, f"unexpected {type(exc).__name__}: {exc}")

    def _abandoned(self, transport: Transport, claim: Claim, batch: list[Outgoing]) -> list[SendResult] | Interrupted:
        """A request left without its answer: replayed later under its key where that cannot duplicate."""
        if transport.idempotent:
            return Interrupted(maybe_sent=True)
        return self._in_doubt(batch, "the sender stopped while its request was in flight")

    def _in_doubt(self, batch: list[Outgoing], why: str) -> list[SendResult]:
        return [SendResult(m.key, UNKNOWN, error=f"{why}; it may or may not have been delivered") for m in batch]

    def _settle(self, transport: Transport, claim: Claim, batch: list[Outgoing], dropped: list[Outcome],
                outcome: list[SendResult] | TransportError) -> None:
        """Record a request's answer under the batch's fence. An outage or a stop puts the batch back whole:
        the same request is made again later, no recipient charged an attempt."""
        self.free.append(transport)
        results = outcome.results if isinstance(outcome, TransportError) else outcome
        rows = dropped + [Outcome(r.key, STATES[r.status], r.provider_id, r.error) for r in results]
        now = _utcnow()
        if isinstance(outcome, TransportError):
            self.store.settle_batch(claim, rows, now, reopen=True, maybe_sent=outcome.maybe_sent)
            if not isinstance(outcome, Interrupted):
                self.report.error = str(outcome)
        else:
            answered = {r.key for r in results}
            rows += [Outcome(m.key, "unknown", "", "the transport gave no result for this message")
                     for m in batch if m.key not in answered]
            self.store.settle_batch(claim, rows, now)
        self.report.sent_now += sum(r.status == SENT for r in results)
        self._advance(len(rows))

    def _advance(self, count: int) -> None:
        self.done += count
        if self.progress:
            self.progress(self.done, self.total)

