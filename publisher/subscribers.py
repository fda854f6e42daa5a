"""Subscribers: address validation, add/remove, CSV import and export."""

from __future__ import annotations

import csv
import difflib
import io
import re
import unicodedata
from collections.abc import Callable, Iterable
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
STATUSES = ("active", "pending", "unsubscribed", "bounced")
LEFT = ("unsubscribed", "bounced")  # an address that left: never sent to, never re-subscribed by an import


class SubscriberError(UsageError):
    """A subscriber address or row that cannot be used."""


def normalize_email(text: str) -> str:
    """A plain address (local@domain), lower-cased so one person is one subscriber; raises SubscriberError."""
    text = text.strip()
    if not text:
        raise SubscriberError("the address is empty")
    if any(c in text for c in "\r\n<>,; \t\"") or len(text) > 254:
        raise SubscriberError(f"{text!r} is not a plain address like name@example.com")
    if not _ADDR_RE.match(text):  # first: the stdlib parser raises odd errors on some junk (e.g. "a@[")
        raise SubscriberError(f"{text!r} is not a valid address (expected name@domain.tld, ASCII)")
    try:
        address = Address(addr_spec=text)
    except (HeaderParseError, ValueError, IndexError):
        raise SubscriberError(f"{text!r} is not a valid address") from None
    if not _ADDR_RE.match(address.addr_spec) or ".." in address.username:
        raise SubscriberError(f"{text!r} is not a valid address (expected name@domain.tld, ASCII)")
    return f"{address.username}@{address.domain}".lower()


def clean_name(text: str) -> str:
    """A display name on one line: control characters (line breaks, tabs, NUL) are refused, not guessed at."""
    name = text.strip()
    bad = next((c for c in name if unicodedata.category(c) in ("Cc", "Zl", "Zp")), None)
    if bad is not None:
        raise SubscriberError(f"the name {name!r} holds a control character ({bad!r})",
                              "write it on one line, without tabs or line breaks")
    return name


def parse_categories(text: str | Iterable[str]) -> list[str]:
    """'a; b | c' or an iterable → unique, trimmed categories in order."""
    items = re.split(r"[;|]", text) if isinstance(text, str) else list(text)
    out: list[str] = []
    for item in items:
        item = item.strip()
        if item and item not in out:
            out.append(item)
    return out


def check_categories(categories: Iterable[str], known: Iterable[str], allow_new: bool = False,
                     following: Iterable[str] = ()) -> None:
    """Refuse a category no post uses (a typo follows nothing), naming the known ones; `allow_new` lets
    through categories that no post uses yet. Categories the subscriber already follows stay allowed."""
    known = sorted(set(known))
    unknown = [c for c in categories if c not in known and c not in following]
    if not unknown or allow_new:
        return
    close = difflib.get_close_matches(unknown[0], known, n=1, cutoff=0.6)
    maybe = f" (did you mean {close[0]!r}?)" if close else ""
    listed = ", ".join(known) if known else "none yet: no post has been published"
    raise SubscriberError(f"unknown category {unknown[0]!r}{maybe}; known categories: {listed}",
                          "use one of those, or --allow-new-category for a category no post uses yet")


def add_subscriber(store: SharedStore, email: str, name: str | None, categories: list[str] | None, now: str,
                   resubscribe: bool = False, allow_new_category: bool = False) -> str:
    """Add a subscriber, or change only what is given (None: keep the name or categories; [] follows every
    category); returns 'added', 'updated', 'unchanged', or 'unsubscribed'/'bounced' (left alone)."""
    address = normalize_email(email)
    if categories:
        current = store.subscriber(address)
        check_categories(categories, store.known_categories(), allow_new_category,
                         current.categories if current else ())
    name = clean_name(name) if name is not None else None
    with store.transaction():
        return _upsert(store, address, name, categories, now, resubscribe)


def _upsert(store: SharedStore, address: str, name: str | None, categories: list[str] | None, now: str,
            resubscribe: bool, status: str = "") -> str:
    """`status`: an import's status column (empty: none); an address it says left is recorded as left."""
    current = store.subscriber(address)
    if current is None:
        store.insert_subscriber(address, name or "", categories or [], status or "active", now)
        return f"added as {status}" if status in LEFT else "added"
    if current.status in LEFT and not resubscribe:
        return current.status  # an import never re-subscribes someone who left or bounced
    if status in LEFT:
        store.set_subscriber_status(current.id, status, now)
        return f"now {status}"
    status = "active" if resubscribe else current.status
    name = current.name if name is None else name
    categories = list(current.categories) if categories is None else categories
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


# Spreadsheets run a cell starting with one of these as a formula (OWASP "CSV Injection"); full-width forms too,
# which Japanese spreadsheet software may read as their ASCII twins.
FORMULA_START = tuple("=+-@\t\r") + tuple("＝＋－＠")


def escape_cell(text: str) -> str:
    """A cell a spreadsheet shows as text: one leading apostrophe before a formula start (and before an
    apostrophe that leads to one, so `unescape_cell` gives every value back exactly)."""
    return "'" + text if text.lstrip("'").startswith(FORMULA_START) else text


def unescape_cell(text: str) -> str:
    """The value `escape_cell` was given."""
    return text[1:] if text.startswith("'") and text.lstrip("'").startswith(FORMULA_START) else text


def _read_rows(path: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """The header's column names and each row with its line number (quoted line breaks kept in one row)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise SubscriberError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise SubscriberError(f"{path}: is a folder, not a CSV file") from None
    except UnicodeDecodeError:
        raise SubscriberError(f"{path}: not UTF-8", "save the CSV as UTF-8") from None
    except OSError as exc:
        raise SubscriberError(f"{path}: cannot be read ({exc.strerror})") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [unescape_cell(f).strip().lower() for f in next(reader, [])]
        rows = []
        line = reader.line_num + 1
        for cells in reader:
            if any(c.strip() for c in cells):
                rows.append((line, dict(zip(header, (unescape_cell(c) for c in cells), strict=False))))
            line = reader.line_num + 1
    except csv.Error as exc:
        raise SubscriberError(f"{path}:{reader.line_num}: not valid CSV ({exc})") from None
    if "email" not in header:
        raise SubscriberError(f"{path}:1: the header has no 'email' column",
                              "the first line must name the columns, e.g. email,name,categories")
    twice = next((name for i, name in enumerate(header) if name and name in header[:i]), None)
    if twice is not None:
        raise SubscriberError(f"{path}:1: the header names {twice!r} twice", "keep one column of each name")
    return header, rows


def import_csv(store: SharedStore, path: Path, now: str, allow_new_category: bool = False) -> ImportReport:
    """Import subscribers from CSV (header: email[,name][,categories][,status]): a column that is absent leaves
    that field as it is; a status saying the address unsubscribed or bounced is kept. Bad rows (an invalid
    address, an unknown category or status, an address already on an earlier line) are reported by line and
    skipped; good rows are kept."""
    report = ImportReport()
    header, rows = _read_rows(path)
    known = store.known_categories()
    seen: dict[str, int] = {}
    with store.transaction():
        for line, row in rows:
            try:
                address = normalize_email(row.get("email") or "")
                if address in seen:
                    report.errors.append(f"{path}:{line}: {address} is already on line {seen[address]}; this row "
                                         "is skipped — remove one of them")
                    continue
                seen[address] = line
                name = clean_name(row.get("name") or "") if "name" in header else None
                categories = parse_categories(row.get("categories") or "") if "categories" in header else None
                status = (row.get("status") or "").strip().lower() if "status" in header else ""
                if status and status not in STATUSES:
                    raise SubscriberError(f"unknown status {status!r}; write one of {', '.join(STATUSES)} "
                                          "(or leave it empty)")
                if categories:
                    current = store.subscriber(address)
                    check_categories(categories, known, allow_new_category, current.categories if current else ())
            except SubscriberError as exc:
                report.errors.append(f"{path}:{line}: {exc} — fix or remove the row")
                continue
            outcome = _upsert(store, address, name, categories, now, False, status)
            report.counts[outcome] = report.counts.get(outcome, 0) + 1
    return report


def export_csv(store: SharedStore, out: TextIO, joined: Callable[[str], str] = str) -> int:
    """Write every subscriber as CSV (the import format plus status and joined, shown by `joined`), every
    cell safe to open in a spreadsheet; returns the count."""
    writer = csv.writer(out)
    writer.writerow(CSV_FIELDS)
    count = 0
    for sub in store.subscribers():
        row = [sub.email, sub.name, "; ".join(sub.categories), sub.status, joined(sub.joined) if sub.joined else ""]
        writer.writerow([escape_cell(cell) for cell in row])
        count += 1
    return count
