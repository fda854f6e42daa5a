"""A generic endpoint for anything else (a script reading a bounce mailbox, another provider's relay).

Authenticated by a shared secret, either as `Authorization: Bearer <secret>` or as a signature header
`X-Publisher-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>" keyed with the secret>`.
The body is one event or `{"events": [...]}`; each event is
`{"id", "type": delivered|hard_bounce|soft_bounce|complaint|unsubscribe, "email", "time"?, "message_id"?,
"provider_message_id"?, "detail"?, "metadata"?}`.
"""

from __future__ import annotations

import hashlib
import hmac

from .model import (
    KINDS,
    Event,
    Received,
    WebhookRequest,
    address,
    bad_request,
    bracketed,
    forbidden,
    json_body,
    parse_time,
    string_map,
    text,
    unauthorized,
)

SIGNATURE_HEADER = "x-publisher-signature"
MAX_EVENTS = 1000


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The X-Publisher-Signature value for `body` (for senders of generic events, and tests)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


class GenericReceiver:
    name = "generic"

    def __init__(self, secret: str, max_age: float) -> None:
        self.secret = secret
        self.max_age = max_age

    def receive(self, request: WebhookRequest) -> Received:
        self.authenticate(request)
        payload = json_body(request)
        items = payload.get("events") if isinstance(payload, dict) and "events" in payload else [payload]
        if not isinstance(items, list) or len(items) > MAX_EVENTS:
            raise bad_request(f"'events' must be a list of at most {MAX_EVENTS} events")
        return Received([parse(item, n, request.received) for n, item in enumerate(items)])

    def authenticate(self, request: WebhookRequest) -> None:
        scheme, _, token = request.header("authorization").partition(" ")
        if scheme.lower() == "bearer" and token:
            if not hmac.compare_digest(token.strip().encode(), self.secret.encode()):
                raise unauthorized("wrong bearer token for the generic webhook")
            return
        signature = request.header(SIGNATURE_HEADER)
        if not signature:
            raise unauthorized("send Authorization: Bearer <secret> or an X-Publisher-Signature header")
        fields = dict(part.split("=", 1) for part in signature.split(",") if "=" in part)
        stamp, given = fields.get("t", "").strip(), fields.get("v1", "").strip()
        if not stamp.isdigit() or len(stamp) > 12 or not given:
            raise forbidden("X-Publisher-Signature must read t=<unix seconds>,v1=<hex HMAC-SHA256>")
        expected = sign(self.secret, int(stamp), request.body).split("v1=", 1)[1]
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise forbidden("the X-Publisher-Signature does not match the body")
        if abs(request.received - int(stamp)) > self.max_age:
            raise forbidden(f"the signature's timestamp is more than {self.max_age:.0f} s away from now")


def parse(item: object, index: int, received: float) -> Event:
    where = f"event {index}"
    if not isinstance(item, dict):
        raise bad_request(f"{where} is not a JSON object")
    event_id, kind, who = text(item.get("id")), text(item.get("type")), address(item.get("email"))
    if not event_id:
        raise bad_request(f"{where} has no 'id' (a unique id, so a repeat is recognised)")
    if kind not in KINDS:
        raise bad_request(f"{where} has type {kind!r}; use one of {', '.join(KINDS)}")
    if "@" not in who:
        raise bad_request(f"{where} has no valid 'email'")
    return Event("generic", event_id, kind, who, parse_time(item.get("time"), received),
                 provider_message_id=text(item.get("provider_message_id")),
                 message_id=bracketed(item.get("message_id")), detail=text(item.get("detail"), 500),
                 metadata=string_map(item.get("metadata")))
