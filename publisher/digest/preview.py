"""Looking at a digest without sending it: the dry run, a preview folder, and one test message."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from ..config import Config, require_sender
from ..errors import UsageError
from ..files import PRIVATE_FILE, write_if_changed
from ..store.base import Store, Subscriber
from ..tokens import Secrets
from ..transports.base import SendResult, Transport
from ..transports.file import FileTransport
from .job import DigestJob

PREVIEW_ADDRESS = "preview@example.com"


def _sample(address: str = PREVIEW_ADDRESS, name: str = "", categories: tuple[str, ...] = ()) -> Subscriber:
    return Subscriber(0, address, name, categories, "active", "")


@dataclass(frozen=True, slots=True)
class CategoryGroup:
    """Subscribers who follow the same categories, and what their message would be."""

    categories: tuple[str, ...]
    subscribers: int
    posts: int
    size: int  # bytes of one message
    more: int = 0  # posts left out over [digest] max_posts


@dataclass(slots=True)
class DryRun:
    job: DigestJob
    recipients: int = 0
    nothing_new: int = 0
    groups: list[CategoryGroup] = field(default_factory=list)

    @property
    def already_done(self) -> bool:
        return self.job.done


def dry_run_digest(cfg: Config, store: Store, job: DigestJob, secrets: Secrets, now: datetime) -> DryRun:
    """Who would get what: recipients, post counts and message sizes; nothing sent or recorded."""
    result = DryRun(job)
    factory = job.factory(cfg, secrets, now)
    groups: Counter[frozenset[str]] = Counter()
    for sub in store.subscribers("active"):
        groups[frozenset(sub.categories)] += 1
    for categories, count in sorted(groups.items(), key=lambda kv: sorted(kv[0])):
        rendered = job.renderer.for_categories(categories)
        if rendered is None:
            result.nothing_new += count
            continue
        result.recipients += count
        message = factory.build(_sample(categories=tuple(sorted(categories)))) if cfg.digest.from_address else None
        size = len(message.as_bytes()) if message else len(rendered.html.encode()) + len(rendered.text.encode())
        result.groups.append(CategoryGroup(tuple(sorted(categories)), count, rendered.post_count, size,
                                           rendered.more))
    return result


def _sample_subscribers(cfg: Config, store: Store) -> list[Subscriber]:
    subs = [store.subscriber(address) or _sample(address) for address in cfg.digest.sample_recipients]
    if not subs:
        for sub in store.subscribers("active"):
            subs.append(sub)
            if len(subs) == 3:
                break
    return subs or [_sample(name="Preview")]


def preview_digest(cfg: Config, store: Store, job: DigestJob, secrets: Secrets, now: datetime,
                   folder: Path) -> list[Path]:
    """Write the digest's HTML and text, and one .eml per sample recipient, into `folder`."""
    factory = job.factory(cfg, secrets, now)
    written: list[Path] = []
    first = factory.build(_sample(name="Preview"))
    if first is None:
        return written
    written += [folder / "digest.html", folder / "digest.txt"]
    try:
        write_if_changed(written[0], first.html.encode(), PRIVATE_FILE)
        write_if_changed(written[1], first.text.encode(), PRIVATE_FILE)
    except OSError as exc:
        raise UsageError(f"{folder}: cannot write the preview there ({exc.strerror})",
                         "name a folder this user can create or write to") from None
    outbox = FileTransport(folder)
    for sub in _sample_subscribers(cfg, store):
        message = factory.build(sub)
        if message is not None:
            outbox.send([message])
            written.append(outbox.path_for(message))
    return written


def send_test(cfg: Config, store: Store, job: DigestJob, secrets: Secrets, transport: Transport, now: datetime,
              address: str) -> SendResult | None:
    """One message to one address, subject marked as a test; not recorded in the ledger."""
    require_sender(cfg)
    factory = job.factory(cfg, secrets, now, test=True)
    known = store.subscriber(address)
    sub = Subscriber(known.id, address, known.name, known.categories, "active", known.joined) if known else \
        _sample(address)
    message = factory.build(sub)
    if message is None:
        return None
    try:
        return transport.send([message])[0]
    finally:
        transport.close()
