"""Subscribers: address validation, add/remove, CSV import and export."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from email.errors import HeaderParseError
from email.headerregistry import Address
from pathlib import Path
from typing import TextIO

from .errors import PublisherError
from .state import Store

_ADDR_RE = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                      r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$")
CSV_FIELDS = ("email", "name", "categories", "status", "joined")


class SubscriberError(PublisherError):
    """A subscriber address or row that cannot be used."""


@dataclass(frozen=True, slots=True)
class Subscriber:
    id: int
    email: str
    name: str
    categories: tuple[str, ...]
    status: str
    joined: str

    @classmethod
    def from_row(cls, row: tuple) -> Subscriber:
        sid, email, name, categories, status, joined = row
        return cls(sid, email, name, tuple(json.loads(categories)), status, joined)


def normalize_email(text: str) -> str:
    """A plain address (local@domain), lower-cased so one person is one subscriber; raises SubscriberError."""
    text = text.strip()
    if not text:
        raise SubscriberError("the address is empty")
    if any(c in text for c in "\r\n<>,; \t\"") or len(text) > 254:
        raise SubscriberError(f"{text!r} is not a plain address like name@example.com")
    try:
        address = Address(addr_spec=text)
    except (HeaderParseError, ValueError, IndexError):
        raise SubscriberError(f"{text!r} is not a valid address") from None
    if not _ADDR_RE.match(address.addr_spec) or ".." in address.username:
        raise SubscriberError(f"{text!r} is not a valid address (expected name@domain.tld, ASCII)")
    return f"{address.username}@{address.domain}".lower()


def parse_categories(text: str | Iterable[str]) -> list[str]:
    """'a; b | c' or an iterable → unique, trimmed categories in order."""
    items = re.split(r"[;|]", text) if isinstance(text, str) else list(text)
    out: list[str] = []
    for item in items:
        item = item.strip()
        if item and item not in out:
            out.append(item)
    return out


def add_subscriber(store: Store, email: str, name: str, categories: list[str], now: str,
                   resubscribe: bool = False) -> str:
    """Add or update one subscriber; returns 'added', 'updated', 'unchanged' or 'unsubscribed' (left alone)."""
    address = normalize_email(email)
    with store.transaction() as conn:
        return _upsert(store, conn, address, name.strip(), categories, now, resubscribe)


def _upsert(store: Store, conn, address: str, name: str, categories: list[str], now: str, resubscribe: bool) -> str:
    row = store.subscriber(address)
    if row is None:
        store.insert_subscriber(conn, address, name, categories, "active", now)
        return "added"
    current = Subscriber.from_row(row)
    if current.status in ("unsubscribed", "bounced") and not resubscribe:
        return current.status  # an import never re-subscribes someone who left or bounced
    status = "active" if resubscribe else current.status
    if (current.name, list(current.categories), current.status) == (name, categories, status):
        return "unchanged"
    store.update_subscriber(conn, current.id, name, categories, status, now)
    return "updated"


def remove_subscriber(store: Store, email: str, now: str, purge: bool = False) -> bool:
    """Unsubscribe an address (kept, so no import brings it back) or, with purge, delete it; False if unknown."""
    row = store.subscriber(normalize_email(email))
    if row is None:
        return False
    if purge:
        store.delete_subscriber(row[0])
    else:
        store.set_subscriber_status(row[0], "unsubscribed", now)
    return True


@dataclass(slots=True)
class ImportReport:
    counts: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


def import_csv(store: Store, path: Path, now: str) -> ImportReport:
    """Import subscribers from CSV (header: email[,name][,categories]); bad rows are reported by line, good kept."""
    report = ImportReport()
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise SubscriberError(f"{path}: no such file") from None
    except UnicodeDecodeError:
        raise SubscriberError(f"{path}: not UTF-8; save the CSV as UTF-8") from None
    reader = csv.DictReader(text.splitlines())
    fields = [f.strip().lower() for f in reader.fieldnames or []]
    if "email" not in fields:
        raise SubscriberError(f"{path}:1: the header has no 'email' column; the first line must name the "
                              "columns, e.g. email,name,categories")
    reader.fieldnames = fields
    with store.transaction() as conn:
        for row in reader:
            line = reader.line_num
            try:
                address = normalize_email(row.get("email") or "")
            except SubscriberError as exc:
                report.errors.append(f"{path}:{line}: {exc} — fix or remove the row")
                continue
            categories = parse_categories(row.get("categories") or "")
            outcome = _upsert(store, conn, address, (row.get("name") or "").strip(), categories, now, False)
            report.counts[outcome] = report.counts.get(outcome, 0) + 1
    return report


def export_csv(store: Store, out: TextIO) -> int:
    """Write every subscriber as CSV (the import format plus status and joined); returns the count."""
    writer = csv.writer(out)
    writer.writerow(CSV_FIELDS)
    count = 0
    for row in store.subscribers():
        sub = Subscriber.from_row(row)
        writer.writerow([sub.email, sub.name, "; ".join(sub.categories), sub.status, sub.joined])
        count += 1
    return count
