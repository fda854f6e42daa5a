"""A rendered digest and one subscriber → an outgoing message with every header a bulk sender needs."""

from __future__ import annotations

import binascii
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from email.header import Header
from email.headerregistry import Address, HeaderRegistry, UnstructuredHeader
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid, parseaddr
from functools import lru_cache
from html import escape

from .text import one_line

UNSUBSCRIBE_MARK = "%%UNSUBSCRIBE_URL%%"  # per-recipient links, filled into a shared render
PREFERENCES_MARK = "%%PREFERENCES_URL%%"
GMAIL_CLIP_BYTES = 102 * 1024


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
    html_body: str | None  # None: filled in from `template` and `links` when first needed
    text_body: str | None
    message_id: str
    headers: dict[str, str] = field(default_factory=dict)  # List-*, Reply-To, Date
    template: tuple[str, str] | None = None  # (html, text) with link marks, shared by a category set
    links: dict[str, str] = field(default_factory=dict)  # mark → this recipient's URL
    skeleton: Skeleton | None = None  # the shared MIME structure, when many messages share one render
    _mime: EmailMessage | None = None

    def _fill(self) -> None:
        assert self.template is not None
        html, text = self.template
        for mark, url in self.links.items():
            html, text = html.replace(mark, escape(url)), text.replace(mark, url)
        self.html_body, self.text_body = html, text

    @property
    def html(self) -> str:
        if self.html_body is None:
            self._fill()
        return self.html_body  # type: ignore[return-value]

    @property
    def text(self) -> str:
        if self.text_body is None:
            self._fill()
        return self.text_body  # type: ignore[return-value]

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
        if self.skeleton is not None:
            return self.skeleton.fill(self)
        return self.mime().as_bytes()

    def too_large(self) -> bool:
        """True when Gmail would clip the message (about 102 KB of raw source)."""
        return len(self.as_bytes()) > GMAIL_CLIP_BYTES


@lru_cache(maxsize=16)
def sender_domain(sender: str) -> str:
    return parseaddr(sender)[1].partition("@")[2] or "localhost"


def message_id(sender: str, digest_id: int, subscriber_id: int) -> str:
    """A Message-ID unique per (digest, subscriber); random part so retries of a new digest never collide."""
    return make_msgid(idstring=f"d{digest_id}.s{subscriber_id}", domain=sender_domain(sender))


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


_PLAIN_NAME = re.compile(r"[A-Za-z0-9 !#$%&'*+/=?^_`{|}~-]*")


def quote_phrase(name: str) -> str:
    """An ASCII display name as an RFC 5322 quoted string."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _to_header(message: Outgoing) -> str:
    """The folded To header; plain ASCII names directly, others through the email package's folding."""
    name = one_line(message.to_name)
    if _PLAIN_NAME.fullmatch(name) and len(name) + len(message.to) < 60:
        return f"To: {name} <{message.to}>" if name else f"To: {message.to}"
    if name.isascii():
        return f"To: {quote_phrase(name)} <{message.to}>"
    encoded = Header(name, "utf-8", header_name="To").encode(linesep="\r\n")  # RFC 2047 words, folded
    return f"To: {encoded} <{message.to}>"


def _base64_text(text: str) -> bytes:
    """A text part's body as the email package encodes it (CRLF lines, base64 in 76-character lines)."""
    data = b"\r\n".join(text.encode("utf-8").splitlines()) + b"\r\n"
    encoded = binascii.b2a_base64(data, newline=False)
    return b"\r\n".join([encoded[i:i + 76] for i in range(0, len(encoded), 76)]) + b"\r\n"


class Skeleton:
    """One message built by the email package with placeholders, filled in per recipient.

    Folding and encoding the shared headers and MIME structure is most of the cost of a message; recipients
    of the same render share it, and only To, Message-ID, Date, List-Unsubscribe and the base64 bodies
    (their links differ) are made per recipient.
    """

    PER_RECIPIENT = ("To", "Message-ID", "Date", "List-Unsubscribe")

    def __init__(self, sample: Outgoing) -> None:
        marker = secrets.token_hex(8)
        text_mark, html_mark = f"TEXT{marker}", f"HTML{marker}"
        headers = {k: v for k, v in sample.headers.items() if k not in self.PER_RECIPIENT}
        shared = Outgoing(0, "x@example.invalid", "", sample.sender, sample.subject, html_mark, text_mark,
                          "<x@example.invalid>", headers)
        msg = shared.mime()
        for name in ("To", "Message-ID"):
            del msg[name]
        raw = msg.as_bytes()
        head, _, body = raw.partition(b"\r\n\r\n")
        self.head = head + b"\r\n"
        self.text_b64 = _base64_text(text_mark)
        self.html_b64 = _base64_text(html_mark)
        self.body = body
        if self.body.count(self.text_b64) != 1 or self.body.count(self.html_b64) != 1:
            raise AssertionError("the MIME skeleton's body placeholders were not found exactly once")

    def fill(self, message: Outgoing) -> bytes:
        lines = [_to_header(message).rstrip("\r\n"), f"Message-ID: {message.message_id}"]
        lines += [f"{name}: {one_line(message.headers[name])}" for name in ("Date", "List-Unsubscribe")
                  if name in message.headers]
        body = self.body.replace(self.text_b64, _base64_text(message.text)).replace(
            self.html_b64, _base64_text(message.html))
        return self.head + "\r\n".join(lines).encode("ascii") + b"\r\n\r\n" + body
