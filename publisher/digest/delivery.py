"""Digest delivery: keep the send ledger, deliver each message exactly once or report it."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ..config import Config, require_sender
from ..errors import TransportError
from ..message import Outgoing
from ..store.base import Outcome, Problem, Store
from ..tokens import Secrets
from ..transports.base import FAILED, RETRY, SENT, UNKNOWN, RateLimiter, SendResult, Transport
from .job import DigestJob, MessageFactory, prepare_digest
from .schedule import last_slot, period_for, utc_stamp

PAGE = 200  # ledger rows read per query; messages are built a page at a time, so memory stays flat


@dataclass(slots=True)
class DigestReport:
    """What a send did: the job, how many went out now, the ledger's counts, problems and warnings."""

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


def ensure_digest(job: DigestJob, store: Store, now: datetime) -> DigestJob:
    """The job with its digest row (created with its ledger if new; another process's if it won the race)."""
    if job.row is None:
        job.row = store.create_digest(utc_stamp(job.start), utc_stamp(job.end), job.subject, job.keys,
                                      utc_stamp(now))
    return job


def send_digest(cfg: Config, store: Store, secrets: Secrets, transport_factory: Callable[[], Transport],
                now: datetime, slot: datetime | None = None, progress: Callable[[int, int], None] | None = None,
                should_stop: Callable[[], bool] = lambda: False, by_hand: bool = False) -> DigestReport:
    """Send (or resume) the digest for `slot` (default: the latest slot at or before `now`). By hand, a
    period the scheduler skipped as missed is sent all the same."""
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
        _Delivery(cfg, store, transport_factory, factory, report, progress, should_stop).run()
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


def fill_counts(store: Store, report: DigestReport) -> None:
    report.counts = store.ledger_counts(report.digest_id)
    report.skipped = store.skip_reasons(report.digest_id)
    report.problems = store.ledger_problems(report.digest_id)


class _Delivery:
    """Walks the ledger in subscriber order: skip, build, commit 'sending', send, record the outcome."""

    def __init__(self, cfg: Config, store: Store, transport_factory: Callable[[], Transport],
                 factory: MessageFactory, report: DigestReport, progress: Callable[[int, int], None] | None,
                 should_stop: Callable[[], bool]) -> None:
        self.cfg, self.store, self.factory, self.report = cfg, store, factory, report
        self.digest_id = report.digest_id
        self.progress, self.should_stop = progress, should_stop
        self.limiter = RateLimiter(cfg.digest.rate)
        workers = cfg.digest.concurrency
        self.transports = [transport_factory() for _ in range(workers)]
        self.free = list(self.transports)
        self.done = 0
        self.total = sum(store.ledger_counts(self.digest_id).get(s, 0) for s in ("pending", "sending"))

    def now(self) -> str:
        return datetime.now(UTC).isoformat()

    def run(self) -> None:
        idempotent = self.transports[0].idempotent
        self.store.recover_sending(self.digest_id, idempotent, self.now())
        size = self.transports[0].batch_size
        cursor = 0
        queue: list[Outgoing] = []
        exhausted = False
        in_flight: dict[Future, tuple[Transport, list[Outgoing]]] = {}
        pool = ThreadPoolExecutor(max_workers=len(self.transports)) if len(self.transports) > 1 else None
        try:
            while True:
                while self.free and not self.should_stop() and not self.report.error:
                    if not queue and not exhausted:
                        queue, cursor, exhausted = self._next_page(cursor, max(size, PAGE))
                        continue
                    if not queue:
                        break
                    batch, queue = queue[:size], queue[size:]
                    transport = self.free.pop()
                    self._mark_sending(batch)
                    self.limiter.wait(len(batch))
                    if pool is None:
                        self._settle(transport, batch, self._call(transport, batch))
                    else:
                        in_flight[pool.submit(self._call, transport, batch)] = (transport, batch)
                if not in_flight:
                    break
                finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in finished:
                    transport, batch = in_flight.pop(future)
                    self._settle(transport, batch, future.result())
        finally:
            if pool is not None:
                pool.shutdown(wait=True)
            for transport in self.transports:
                transport.close()
        self.report.stopped = self.should_stop()
        counts = self.store.ledger_counts(self.digest_id)
        if not counts.get("pending") and not counts.get("sending") and not self.report.error:
            self.store.finish_digest(self.digest_id)

    def _next_page(self, cursor: int, size: int) -> tuple[list[Outgoing], int, bool]:
        """Messages for the next pending rows after subscriber id `cursor`; (messages, cursor, no more rows)."""
        entries = self.store.pending_entries(self.digest_id, cursor, size)
        if not entries:
            return [], cursor, True
        batch, settled = [], []
        for entry in entries:
            sub = entry.subscriber
            if sub.status != "active":  # re-checked at send time: an unsubscribe always wins
                settled.append(Outcome(sub.id, "skipped", "", f"subscriber is {sub.status}"))
            elif entry.attempts >= self.cfg.digest.max_attempts:
                settled.append(Outcome(sub.id, "failed", "", f"gave up after {entry.attempts} attempts"))
            else:
                message = self.factory.build(sub, entry.message_id)
                if message is None:
                    settled.append(Outcome(sub.id, "skipped", "", "nothing new in their categories"))
                else:
                    batch.append(message)
        if settled:
            self.store.settle(self.digest_id, settled, self.now())
            self._advance(len(settled))
        return batch, entries[-1].subscriber.id, len(entries) < size

    def _mark_sending(self, batch: list[Outgoing]) -> None:
        key = batch[0].message_id
        self.store.mark_sending(self.digest_id, [(m.key, m.message_id, key) for m in batch], self.now())

    def _call(self, transport: Transport, batch: list[Outgoing]) -> list[SendResult] | TransportError:
        try:
            return transport.send(batch)
        except TransportError as exc:
            return exc

    def _settle(self, transport: Transport, batch: list[Outgoing], outcome: list[SendResult] | TransportError) -> None:
        self.free.append(transport)
        results = outcome.results if isinstance(outcome, TransportError) else outcome
        by_key = {r.key: r for r in results}
        rows = []
        for message in batch:
            result = by_key.get(message.key)
            if result is None:  # never attempted: the transport stopped before it
                rows.append(Outcome(message.key, "pending", "", str(outcome) if isinstance(outcome, Exception) else ""))
                continue
            state = {SENT: "sent", FAILED: "failed", UNKNOWN: "unknown", RETRY: "pending"}[result.status]
            rows.append(Outcome(message.key, state, result.provider_id, result.error))
            self.report.sent_now += result.status == SENT
        self.store.settle(self.digest_id, rows, self.now())
        self._advance(len(results))
        if isinstance(outcome, TransportError):
            self.report.error = str(outcome)

    def _advance(self, count: int) -> None:
        self.done += count
        if self.progress:
            self.progress(self.done, self.total)
