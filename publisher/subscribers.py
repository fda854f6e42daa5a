"""Subscribers: address validation, add/remove, CSV import and export."""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from email.errors import HeaderParseError
from email.headerregistry import Address
from pathlib import Path
from typing import TextIO

from .errors import UsageError
from .store.base import SharedStore

_ADDR_RE = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                      r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$")
CSV_FIELDS = ("email", "name", "categories", "status", "joined")


class SubscriberError(UsageError):
    """A subscriber address or row that cannot be used."""


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


def add_subscriber(store: SharedStore, email: str, name: str, categories: list[str], now: str,
                   resubscribe: bool = False) -> str:
    """Add or update one subscriber; returns 'added', 'updated', 'unchanged' or 'unsubscribed' (left alone)."""
    address = normalize_email(email)
    with store.transaction():
        return _upsert(store, address, name.strip(), categories, now, resubscribe)


def _upsert(store: SharedStore, address: str, name: str, categories: list[str], now: str, resubscribe: bool) -> str:
    current = store.subscriber(address)
    if current is None:
        store.insert_subscriber(address, name, categories, "active", now)
        return "added"
    if current.status in ("unsubscribed", "bounced") and not resubscribe:
        return current.status  # an import never re-subscribes someone who left or bounced
    status = "active" if resubscribe else current.status
    if (current.name, list(current.categories), current.status) == (name, categories, status):
        return "unchanged"
    store.update_subscriber(current.id, name, categories, status, now)
    return "updated"


def remove_subscriber(store: SharedStore, email: str, now: str, purge: bool = False) -> bool:
    """Unsubscribe an address (kept, so no import brings it back) or, with purge, delete it; False if unknown."""
    sub = store.subscriber(normalize_email(email))
    if sub is None:
        return False
    if purge:
        store.delete_subscriber(sub.id)
    else:
        store.set_subscriber_status(sub.id, "unsubscribed", now)
    return True


@dataclass(slots=True)
class ImportReport:
    counts: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


def import_csv(store: SharedStore, path: Path, now: str) -> ImportReport:
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
    with store.transaction():
        for row in reader:
            line = reader.line_num
            try:
                address = normalize_email(row.get("email") or "")
            except SubscriberError as exc:
                report.errors.append(f"{path}:{line}: {exc} — fix or remove the row")
                continue
            categories = parse_categories(row.get("categories") or "")
            outcome = _upsert(store, address, (row.get("name") or "").strip(), categories, now, False)
            report.counts[outcome] = report.counts.get(outcome, 0) + 1
    return report


def export_csv(store: SharedStore, out: TextIO) -> int:
    """Write every subscriber as CSV (the import format plus status and joined); returns the count."""
    writer = csv.writer(out)
    writer.writerow(CSV_FIELDS)
    count = 0
    for sub in store.subscribers():
        writer.writerow([sub.email, sub.name, "; ".join(sub.categories), sub.status, sub.joined])
        count += 1
    return count
