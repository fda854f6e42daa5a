"""Postmark webhooks: Bounce, SpamComplaint, SubscriptionChange and Delivery, authenticated by HTTP basic auth.

Postmark signs nothing; the webhook URL carries a user name and password (`https://user:pass@host/…`), which
Postmark sends as `Authorization: Basic …`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

from .model import (
    COMPLAINT,
    DELIVERED,
    HARD_BOUNCE,
    SOFT_BOUNCE,
    UNSUBSCRIBE,
    Event,
    Received,
    WebhookRequest,
    address,
    bad_request,
    bracketed,
    json_body,
    parse_time,
    string_map,
    text,
    unauthorized,
)

# Bounce types by name (the numeric TypeCode is not reliable: the docs' complaint example says 512).
HARD_TYPES = {"HardBounce", "BadEmailAddress", "SpamComplaint", "ManuallyDeactivated", "Blocked", "DMARCPolicy"}
SOFT_TYPES = {"Transient", "DnsError", "SoftBounce"}
SUPPRESSION_KINDS = {"HardBounce": HARD_BOUNCE, "SpamComplaint": COMPLAINT, "ManualSuppression": UNSUBSCRIBE}


class PostmarkReceiver:
    name = "postmark"

    def __init__(self, username: str, password: str) -> None:
        self.expected = f"{username}:{password}".encode()

    def receive(self, request: WebhookRequest) -> Received:
        self.authenticate(request.header("authorization"))
        payload = json_body(request)
        if not isinstance(payload, dict):
            raise bad_request("a Postmark webhook body is one JSON object")
        event = parse(payload, request.received)
        return Received([event] if event else [])

    def authenticate(self, header: str) -> None:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic" or not value:
            raise unauthorized("Postmark webhooks must carry basic auth (user:password in the webhook URL)")
        try:
            given = base64.b64decode(value.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise unauthorized("the basic auth header is not valid base64") from None
        if not hmac.compare_digest(given, self.expected):
            raise unauthorized("wrong user name or password for the Postmark webhook")


def _kind(payload: dict) -> str | None:
    record = payload.get("RecordType")
    if record == "Delivery":
        return DELIVERED
    if record == "SpamComplaint":
        return COMPLAINT
    if record == "Bounce":
        kind = payload.get("Type")
        if kind == "SpamComplaint":
            return COMPLAINT
        if kind in HARD_TYPES or payload.get("Inactive") is True:
            return HARD_BOUNCE  # Postmark deactivated the address: it will not send to it again
        return SOFT_BOUNCE if kind in SOFT_TYPES else None
    if record == "SubscriptionChange" and payload.get("SuppressSending") is True:
        return SUPPRESSION_KINDS.get(str(payload.get("SuppressionReason")), UNSUBSCRIBE)
    return None  # opens, clicks, reactivations, informational bounces


def _event_id(payload: dict) -> str:
    """Bounces and complaints have Postmark's own ID; other records get a digest of what identifies them."""
    record = text(payload.get("RecordType"))
    if payload.get("ID") not in (None, "") and record in ("Bounce", "SpamComplaint"):
        return f"{record}:{text(payload.get('ID'))}"
    parts = [record, text(payload.get("MessageID")), text(payload.get("Recipient") or payload.get("Email")),
             text(payload.get("DeliveredAt") or payload.get("ChangedAt") or payload.get("BouncedAt")),
             text(payload.get("SuppressSending"))]
    return f"{record}:" + hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


def parse(payload: dict, received: float) -> Event | None:
    """One Postmark record → an Event, or None for records publisher does not act on."""
    kind = _kind(payload)
    if kind is None:
        return None
    who = address(payload.get("Email") or payload.get("Recipient"))
    if not who:
        raise bad_request("the Postmark record names no Email or Recipient")
    when = payload.get("BouncedAt") or payload.get("DeliveredAt") or payload.get("ChangedAt")
    detail = " ".join(filter(None, (text(payload.get("Type")), text(payload.get("SuppressionReason")),
                                    text(payload.get("Details"), 400))))
    headers = {h.get("Name", "").lower(): h.get("Value") for h in payload.get("Headers") or []
               if isinstance(h, dict)}
    return Event("postmark", _event_id(payload), kind, who, parse_time(when, received),
                 provider_message_id=text(payload.get("MessageID")), message_id=bracketed(headers.get("message-id")),
                 detail=detail, metadata=string_map(payload.get("Metadata")))
