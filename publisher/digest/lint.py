"""`publish digest --lint`: a rendered message checked against the bulk-sender rules of Gmail and Yahoo, RFC 8058,
CAN-SPAM and 特定電子メール法, one finding per rule."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import parseaddr, parsedate_to_datetime
from html import unescape
from html.parser import HTMLParser

from ..config import Config
from ..message import GMAIL_CLIP_BYTES
from ..store.base import Subscriber
from ..tokens import Secrets
from .job import DigestJob, require_sender
from .render import sender_identity


@dataclass(frozen=True, slots=True)
class Check:
    rule: str
    ok: bool
    detail: str


class _Links(HTMLParser):
    """Every link target and image of an HTML part, as the browser would read the attributes."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.urls: list[str] = []
        self.images: list[dict[str, str | None]] = []
        self.handlers: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for name, value in attrs:
            if name in ("href", "src", "action", "background", "poster", "formaction") and value is not None:
                self.urls.append(value.strip())
            if name.startswith("on"):
                self.handlers.append(f"<{tag} {name}>")
        if tag == "img":
            self.images.append(values)


def _parts(msg: EmailMessage) -> list[str]:
    return [part.get_content_type() for part in msg.iter_parts()] if msg.is_multipart() else []


def _aligned(from_domain: str, signing: str) -> bool:
    """Relaxed DMARC alignment, approximated: the same domain, or one a subdomain of the other."""
    a, b = from_domain.lower().rstrip("."), signing.lower().rstrip(".")
    return bool(a and b) and (a == b or a.endswith("." + b) or b.endswith("." + a))


def _header_checks(msg: EmailMessage, cfg: Config) -> list[Check]:
    unsub, post = str(msg.get("List-Unsubscribe", "")), str(msg.get("List-Unsubscribe-Post", ""))
    unsub_ok = bool(re.search(r"<https://[^>\s]+>", unsub)) and post == "List-Unsubscribe=One-Click"
    mid = str(msg.get("Message-ID", ""))
    try:
        date_ok = parsedate_to_datetime(str(msg.get("Date", ""))) is not None
    except (TypeError, ValueError):
        date_ok = False
    from_domain = parseaddr(str(msg.get("From", "")))[1].rpartition("@")[2]
    signing = cfg.digest.signing_domain
    aligned = _aligned(from_domain, signing)
    return [
        Check("one-click unsubscribe", unsub_ok,
              "List-Unsubscribe <https://…> and List-Unsubscribe-Post: List-Unsubscribe=One-Click (RFC 8058)"
              if unsub_ok else f"List-Unsubscribe {unsub or '(missing)'!r}, "
              f"List-Unsubscribe-Post {post or '(missing)'!r}"),
        Check("message-id", bool(re.fullmatch(r"<[^<>@\s]+@[^<>@\s]+>", mid)), mid or "(missing)"),
        Check("date", date_ok, str(msg.get("Date", "(missing)"))),
        Check("list-id", bool(msg.get("List-ID")), str(msg.get("List-ID", "(missing)"))),
        Check("from aligned with DKIM/SPF", aligned,
              f"From domain {from_domain} aligns with {signing}" if aligned else
              (f"From domain {from_domain!r} does not align with [digest] signing_domain {signing!r}" if signing else
               "set [digest] signing_domain to the domain that signs DKIM (d=) or passes SPF for this sender")),
    ]


def _body_checks(raw: bytes, msg: EmailMessage, cfg: Config) -> list[Check]:
    parts = _parts(msg)
    text_first = msg.get_content_type() == "multipart/alternative" and parts == ["text/plain", "text/html"]
    html_part, text_part = msg.get_body(("html",)), msg.get_body(("plain",))
    html = html_part.get_content() if html_part is not None else ""
    text = text_part.get_content() if text_part is not None else ""
    links = _Links()
    links.feed(html)
    urls = [u for u in links.urls if u and not u.startswith(("mailto:", "#", "cid:"))]
    urls += re.findall(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s<>\"')]+", text)
    insecure = sorted({u for u in urls if not u.lower().startswith("https://")})
    scripts = [u for u in links.urls if re.sub(r"[\s\x00-\x1f]", "", unescape(u)).lower().startswith("javascript:")]
    scripts += links.handlers + (["<script>"] if re.search(r"<script\b", html, re.I) else [])
    no_alt = [str(img.get("src", ""))[:80] for img in links.images if not img.get("alt") and img.get("alt") != ""]
    who = sender_identity(cfg)
    missing = [label for label, value in (("[digest] sender_name", who["name"]),
                                          ("[digest] postal_address", who["postal_address"])) if not value]
    missing += [f"{value!r} in the {name} part" for value in (who["name"], who["postal_address"]) if value
                for name, body in (("HTML", unescape(html)), ("text", text)) if value not in body]
    return [
        Check("text part first", text_first, "multipart/alternative: text/plain, then text/html" if text_first else
              f"{msg.get_content_type()}: {', '.join(parts) or 'no parts'}"),
        Check("size under 102 KB", len(raw) <= GMAIL_CLIP_BYTES,
              f"{len(raw) / 1024:.1f} KB (Gmail clips messages over {GMAIL_CLIP_BYTES // 1024} KB)"),
        Check("https links only", not insecure, f"{len(urls)} links" if not insecure else
              "not https: " + ", ".join(insecure[:5])),
        Check("alt text on images", not no_alt, f"{len(links.images)} image(s)" if not no_alt else
              "no alt: " + ", ".join(no_alt[:5])),
        Check("no javascript", not scripts, "none" if not scripts else ", ".join(scripts[:5])),
        Check("sender identity and postal address", not missing,
              f"{who['name']} · {who['postal_address']}" if not missing else "missing: " + ", ".join(missing)),
    ]


def lint_message(raw: bytes, cfg: Config) -> list[Check]:
    """Every rule checked against the message's raw bytes, as a transport would send them."""
    msg = message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return _header_checks(msg, cfg) + _body_checks(raw, msg, cfg)


def lint_digest(cfg: Config, job: DigestJob, secrets: Secrets, now: datetime) -> list[Check] | None:
    """The checks for the digest's largest message (all categories); None when the period has no posts."""
    require_sender(cfg)
    sample = Subscriber(0, "lint@example.com", "", (), "active", "")
    message = job.factory(cfg, secrets, now).build(sample)
    return None if message is None else lint_message(message.as_bytes(), cfg)
