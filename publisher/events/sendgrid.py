"""SendGrid's signed Event Webhook: ECDSA P-256 / SHA-256 over the timestamp header followed by the raw body.

The public key is the one SendGrid shows for the webhook (base64 of a DER SubjectPublicKeyInfo); the signature
is base64 of a DER ECDSA signature. The body is a JSON array of events.
"""

from __future__ import annotations

import base64
import binascii

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key, load_pem_public_key

from ..errors import ConfigError
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
    forbidden,
    json_body,
    parse_time,
    text,
    unauthorized,
)

SIGNATURE_HEADER = "x-twilio-email-event-webhook-signature"
TIMESTAMP_HEADER = "x-twilio-email-event-webhook-timestamp"
# Fields SendGrid sets itself; every other top-level string is a custom arg echoed from the send request.
RESERVED = {"email", "timestamp", "event", "sg_event_id", "sg_message_id", "smtp-id", "category", "reason",
            "status", "type", "bounce_classification", "response", "attempt", "useragent", "ip", "url", "tls",
            "cert_err", "asm_group_id", "sg_machine_open", "marketing_campaign_id", "marketing_campaign_name",
            "pool", "sg_template_id", "sg_template_name", "url_offset", "send_at"}
DROPPED = {"bounced address": HARD_BOUNCE, "invalid": HARD_BOUNCE, "invalid address": HARD_BOUNCE,
           "unsubscribed address": UNSUBSCRIBE, "spam reporting address": COMPLAINT}


def load_key(value: str, source: str, key: str) -> ec.EllipticCurvePublicKey:
    """The verification key from its base64 DER form (as SendGrid shows it) or PEM."""
    value = value.strip()
    try:
        if value.startswith("-----BEGIN"):
            loaded = load_pem_public_key(value.encode())
        else:
            loaded = load_der_public_key(base64.b64decode(value, validate=True))
    except (ValueError, binascii.Error, TypeError):
        raise ConfigError(source, key, "does not hold a SendGrid verification key (base64 of the public key "
                          "shown under Settings > Mail Settings > Signed Event Webhook)") from None
    if not isinstance(loaded, ec.EllipticCurvePublicKey) or loaded.curve.name != "secp256r1":
        raise ConfigError(source, key, "holds a key that is not an ECDSA P-256 public key")
    return loaded


class SendGridReceiver:
    name = "sendgrid"

    def __init__(self, key: ec.EllipticCurvePublicKey, max_age: float) -> None:
        self.key = key
        self.max_age = max_age

    def receive(self, request: WebhookRequest) -> Received:
        self.verify(request)
        payload = json_body(request)
        if not isinstance(payload, list):
            raise bad_request("a SendGrid event webhook body is a JSON array of events")
        events = [e for e in (parse(item, request.received) for item in payload if isinstance(item, dict)) if e]
        return Received(events)

    def verify(self, request: WebhookRequest) -> None:
        signature, stamp = request.header(SIGNATURE_HEADER), request.header(TIMESTAMP_HEADER).strip()
        if not signature or not stamp:
            raise unauthorized("the SendGrid signature or timestamp header is missing (turn on the Signed Event "
                               "Webhook)")
        if not stamp.isdigit() or len(stamp) > 12:
            raise forbidden("the SendGrid timestamp is not a number of seconds")
        if abs(request.received - int(stamp)) > self.max_age:
            raise forbidden(f"the SendGrid timestamp is more than {self.max_age:.0f} s away from now (stale "
                            "or replayed)")
        try:
            der = base64.b64decode(signature.strip(), validate=True)
            self.key.verify(der, stamp.encode() + request.body, ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, binascii.Error, ValueError):
            raise forbidden("the SendGrid signature does not match the body") from None


def _kind(item: dict) -> str | None:
    event = item.get("event")
    if event == "delivered":
        return DELIVERED
    if event == "bounce":
        return SOFT_BOUNCE if item.get("type") == "blocked" else HARD_BOUNCE  # a block is the receiver's policy
    if event == "dropped":
        return DROPPED.get(text(item.get("reason")).lower())
    if event == "spamreport":
        return COMPLAINT
    if event in ("unsubscribe", "group_unsubscribe"):
        return UNSUBSCRIBE
    return None  # processed, deferred, open, click, group_resubscribe


def parse(item: dict, received: float) -> Event | None:
    """One SendGrid event object → an Event, or None for events publisher does not act on."""
    kind = _kind(item)
    event_id = text(item.get("sg_event_id"))
    if kind is None or not event_id:
        return None
    detail = " ".join(filter(None, (text(item.get("type")), text(item.get("status")),
                                    text(item.get("reason") or item.get("response"), 400))))
    metadata = {key: text(value) for key, value in item.items()
                if key not in RESERVED and isinstance(value, str) and text(value)}
    return Event("sendgrid", event_id, kind, address(item.get("email")), parse_time(item.get("timestamp"), received),
                 provider_message_id=text(item.get("sg_message_id")), message_id=bracketed(item.get("smtp-id")),
                 detail=detail, metadata=dict(list(metadata.items())[:50]))
