"""Text hygiene shared by every output: XML-safe text and header-safe single lines."""

from __future__ import annotations

import re
from datetime import UTC, datetime, tzinfo

_XML_FORBIDDEN_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def xml_safe(text: str) -> str:
    """Drop characters XML 1.0 forbids (C0 controls other than tab, CR, LF; U+FFFE, U+FFFF)."""
    return _XML_FORBIDDEN_RE.sub("", text)


def one_line(text: str) -> str:
    """Header-safe text: no CR, LF or other control characters can start a new header."""
    if text.isprintable():
        return " ".join(text.split())
    return " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())


def local_time(when: datetime | str, tz: tzinfo, seconds: bool = False) -> str:
    """The one way times are shown: ISO 8601 in the site timezone with its offset (2026-01-05T09:00+09:00).
    Accepts a stored ISO string too."""
    if isinstance(when, str):
        when = datetime.fromisoformat(when)
    # through UTC: a time already in `tz` is normalised too (a wall time the clocks skip gets its real offset)
    local = when.astimezone(UTC).astimezone(tz)
    return local.replace(microsecond=0).isoformat(timespec="seconds" if seconds else "minutes")
