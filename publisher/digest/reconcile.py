"""Messages of unknown fate: ask the provider what it accepted, or let the operator decide to send again."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from ..store.base import Outcome, Store
from ..transports.base import RETRY, SENT, Lookup, Transport

CHUNK = 100  # answers recorded after every this many lookups, so an interrupted reconcile keeps its progress


@dataclass(slots=True)
class Reconciled:
    """What the provider said: accepted (now 'sent'), never accepted (pending again: the next send sends
    them), or still unknown, each with the reason."""

    asked: int = 0
    sent: int = 0
    pending: int = 0
    unknown: list[tuple[str, str]] = field(default_factory=list)  # (email, why it is still unknown)
    can_ask: bool = True


def reconcile(store: Store, transport: Transport, digest_id: int) -> Reconciled:
    """Ask the provider about every 'unknown' message of a digest and record what it answers."""
    rows = store.in_doubt(digest_id)
    lookup = getattr(transport, "lookup", None)
    result = Reconciled(asked=len(rows), can_ask=lookup is not None)
    if lookup is None:
        result.unknown = [(r.email, "this transport cannot be asked what it accepted") for r in rows]
        return result
    emails = {r.subscriber_id: r.email for r in rows}
    for start in range(0, len(rows), CHUNK):
        chunk = rows[start:start + CHUNK]
        answers = lookup([Lookup(r.subscriber_id, r.email, r.message_id, r.provider_id, r.batch_key, r.tried)
                          for r in chunk])
        outcomes = []
        for answer in answers:
            if answer.status == SENT:
                outcomes.append(Outcome(answer.key, "sent", answer.provider_id, ""))
                result.sent += 1
            elif answer.status == RETRY:
                outcomes.append(Outcome(answer.key, "pending", "", ""))
                result.pending += 1
            else:
                result.unknown.append((emails[answer.key], answer.error))
        store.resolve(digest_id, outcomes, datetime.now(UTC).isoformat())
    return result
