"""Mailgun webhooks: HMAC-SHA256 of timestamp + token with the webhook signing key; each token is used once.

The signature does not cover `event-data`, so a captured request could be replayed with other data: the token
is remembered (ReplayGuard) for as long as its timestamp is acceptable, and older timestamps are refused.
"""

from __future__ import annotations

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
    ReplayGuard,
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


class MailgunReceiver:
    name = "mailgun"

    def __init__(self, signing_key: str, max_age: float, guard: ReplayGuard) -> None:
        self.key = signing_key.encode()
        self.max_age = max_age
        self.guard = guard

    def receive(self, request: WebhookRequest) -> Received:
        payload = json_body(request)
        if not isinstance(payload, dict):
            raise bad_request("a Mailgun webhook body is a JSON object with 'signature' and 'event-data'")
        token, stamp = self.verify(payload.get("signature"), request.received)
        data = payload.get("event-data")
        if not isinstance(data, dict):
            raise bad_request("the Mailgun webhook has no 'event-data' object")
        if not self.guard.first_use(f"mailgun:{token}", int(stamp) + self.max_age):
            return Received([], replayed=True)
        event = parse(data, request.received)
        return Received([event] if event else [])

    def verify(self, signature: object, now: float) -> tuple[str, str]:
        """The (token, timestamp) of a valid signature object; raises for a missing, forged or stale one."""
        if not isinstance(signature, dict):
            raise unauthorized("the Mailgun webhook has no 'signature' object")
        stamp, token, given = (text(signature.get(k), 300) for k in ("timestamp", "token", "signature"))
        if not stamp or not token or not given:
            raise unauthorized("the Mailgun signature lacks its timestamp, token or signature")
        if not stamp.isdigit() or len(stamp) > 12:
            raise forbidden("the Mailgun timestamp is not a number of seconds")
        expected = hmac.new(self.key, (stamp + token).encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise forbidden("the Mailgun signature does not match (check the webhook signing key)")
        if abs(now - int(stamp)) > self.max_age:
            raise forbidden(f"the Mailgun timestamp is more than {self.max_age:.0f} s away from now (stale or "
                            "replayed)")
        return token, stamp


def _kind(data: dict) -> str | None:
    event = data.get("event")
    if event == "delivered":
        return DELIVERED
    if event == "failed":
        return HARD_BOUNCE if data.get("severity") == "permanent" else SOFT_BOUNCE
    if event == "complained":
        return COMPLAINT
    if event == "unsubscribed":
        return UNSUBSCRIBE
    return None  # accepted, opened, clicked, stored, rejected


def parse(data: dict, received: float) -> Event | None:
    """Mailgun `event-data` → an Event, or None for events publisher does not act on."""
    kind = _kind(data)
    event_id = text(data.get("id"))
    if kind is None or not event_id:
        return None
    status = data.get("delivery-status") if isinstance(data.get("delivery-status"), dict) else {}
    message = data.get("message") if isinstance(data.get("message"), dict) else {}
    headers = message.get("headers") if isinstance(message.get("headers"), dict) else {}
    detail = " ".join(filter(None, (text(data.get("severity")), text(data.get("reason")), text(status.get("code")),
                                    text(status.get("description") or status.get("message"), 400))))
    mid = bracketed(headers.get("message-id"))
    return Event("mailgun", event_id, kind, address(data.get("recipient")), parse_time(data.get("timestamp"), received),
                 provider_message_id=mid, message_id=mid, detail=detail,
                 metadata=string_map(data.get("user-variables")))
