"""Text hygiene shared by every output: XML-safe text and header-safe single lines."""

from __future__ import annotations

import re

_XML_FORBIDDEN_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def xml_safe(text: str) -> str:
    """Drop characters XML 1.0 forbids (C0 controls other than tab, CR, LF; U+FFFE, U+FFFF)."""
    return _XML_FORBIDDEN_RE.sub("", text)


def one_line(text: str) -> str:
    """Header-safe text: no CR, LF or other control characters can start a new header."""
    if text.isprintable():
        return " ".join(text.split())
    return " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
