"""A rendered digest and one subscriber → an outgoing message with every header a bulk sender needs."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from email.headerregistry import Address, HeaderRegistry, UnstructuredHeader
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid, parseaddr

from .digest import GMAIL_CLIP_BYTES, one_line


class _VerbatimHeader(UnstructuredHeader):
    """An ASCII URL header kept on one line: folding a long URL would RFC 2047-encode it and break it."""

    def fold(self, *, policy) -> str:  # type: ignore[override]
        return f"{self.name}: {self}{policy.linesep}"


_HEADERS = HeaderRegistry()
_HEADERS.map_to_type("list-unsubscribe", _VerbatimHeader)
POLICY = SMTP.clone(header_factory=_HEADERS)


@dataclass(slots=True)
class Outgoing:
    """One message to one recipient, in the form every transport can take (fields, or a MIME message)."""

    key: int  # the ledger's subscriber id (or 0 for a test message)
    to: str
    to_name: str
    sender: str
    subject: str
    html: str
    text: str
    message_id: str
    headers: dict[str, str] = field(default_factory=dict)  # List-*, Reply-To, Date
    template: tuple[str, str] | None = None  # (html, text) with link marks, shared by a category set
    links: dict[str, str] = field(default_factory=dict)  # mark → this recipient's URL
    _mime: EmailMessage | None = None

    def mime(self) -> EmailMessage:
        """multipart/alternative, text first and HTML last, UTF-8 in base64; subject RFC 2047-encoded."""
        if self._mime is None:
            msg = EmailMessage(policy=POLICY)
            name, addr = parseaddr(self.sender)
            user, _, domain = addr.partition("@")
            msg["From"] = Address(display_name=one_line(name), username=user, domain=domain)
            ruser, _, rdomain = self.to.partition("@")
            msg["To"] = Address(display_name=one_line(self.to_name), username=ruser, domain=rdomain)
            msg["Subject"] = one_line(self.subject)
            msg["Message-ID"] = self.message_id
            msg["MIME-Version"] = "1.0"
            for name, value in self.headers.items():
                msg[name] = one_line(value)
            msg.set_content(self.text, subtype="plain", charset="utf-8", cte="base64")
            msg.add_alternative(self.html, subtype="html", charset="utf-8", cte="base64")
            self._mime = msg
        return self._mime

    def as_bytes(self) -> bytes:
        return self.mime().as_bytes()

    def too_large(self) -> bool:
        """True when Gmail would clip the message (about 102 KB of raw source)."""
        return len(self.as_bytes()) > GMAIL_CLIP_BYTES


def message_id(sender: str, digest_id: int, subscriber_id: int) -> str:
    """A Message-ID unique per (digest, subscriber); random part so retries of a new digest never collide."""
    domain = parseaddr(sender)[1].partition("@")[2] or "localhost"
    return make_msgid(idstring=f"d{digest_id}.s{subscriber_id}", domain=domain)


def list_headers(list_id: str, site_title: str, unsubscribe_url: str, when: datetime,
                 reply_to: str = "") -> dict[str, str]:
    """Date, List-ID, one-click List-Unsubscribe (RFC 2369, RFC 8058) and optional Reply-To."""
    headers = {
        "Date": format_datetime(when),
        "List-ID": f"{one_line(site_title)} <{list_id}>",
        "List-Unsubscribe": f"<{unsubscribe_url}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        "Precedence": "bulk",
        "Auto-Submitted": "auto-generated",
    }
    if reply_to:
        headers["Reply-To"] = reply_to
    return headers
