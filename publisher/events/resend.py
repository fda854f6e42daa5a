"""Resend webhooks, delivered by Svix: verified with the Standard Webhooks library (HMAC-SHA256, ±5 minutes).

Svix names its headers `svix-id`, `svix-timestamp` and `svix-signature`; the library reads the
`webhook-*` names, so the headers are handed over under those.
"""

from __future__ import annotations

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from ..errors import ConfigError
from .model import (
    COMPLAINT,
    DELIVERED,
    HARD_BOUNCE,
    SOFT_BOUNCE,
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

KINDS = {"email.delivered": DELIVERED, "email.complained": COMPLAINT, "email.suppressed": HARD_BOUNCE}


def load_secret(value: str, source: str, key: str) -> Webhook:
    try:
        return Webhook(value.strip())
    except Exception:  # the library raises its own errors, binascii.Error or RuntimeError for a bad secret
        raise ConfigError(source, key, "does not hold a Resend signing secret (whsec_…)") from None


class ResendReceiver:
    name = "resend"

    def __init__(self, webhook: Webhook) -> None:
        self.webhook = webhook

    def receive(self, request: WebhookRequest) -> Received:
        msg_id = request.header("svix-id") or request.header("webhook-id")
        headers = {
            "webhook-id": msg_id,
            "webhook-timestamp": request.header("svix-timestamp") or request.header("webhook-timestamp"),
            "webhook-signature": request.header("svix-signature") or request.header("webhook-signature"),
        }
        if not all(headers.values()):
            raise unauthorized("the svix-id, svix-timestamp or svix-signature header is missing")
        try:
            self.webhook.verify(request.body, headers, json_parse=False)
        except WebhookVerificationError as exc:
            raise forbidden(f"the Resend signature was refused: {exc}") from None
        except ValueError:  # a malformed signature list, bad base64 or a body that is not UTF-8
            raise forbidden("the Resend signature header or body is malformed") from None
        payload = json_body(request)
        if not isinstance(payload, dict):
            raise bad_request("a Resend webhook body is a JSON object")
        return Received(parse(payload, text(msg_id), request.received))


def _tags(value: object) -> dict[str, str]:
    """Tags come as {name: value} (SDK typing) or [{name, value}] (API docs): accept both."""
    if isinstance(value, list):
        value = {t.get("name"): t.get("value") for t in value if isinstance(t, dict)}
    return string_map(value)


def parse(payload: dict, msg_id: str, received: float) -> list[Event]:
    """A Resend event → one Event per recipient (none for events publisher does not act on)."""
    kind = KINDS.get(text(payload.get("type")))
    data = payload.get("data") if isinstance(payload.get("data"), dict) else {}
    detail = ""
    if payload.get("type") == "email.bounced":
        bounce = data.get("bounce") if isinstance(data.get("bounce"), dict) else {}
        kind = HARD_BOUNCE if bounce.get("type") == "Permanent" else SOFT_BOUNCE
        detail = " ".join(filter(None, (text(bounce.get("type")), text(bounce.get("subType")),
                                        text(bounce.get("message"), 400))))
    to = data.get("to")
    recipients = [r for r in (to if isinstance(to, list) else [to]) if text(r)][:50]
    if kind is None or not msg_id or not recipients:
        return []
    when = parse_time(payload.get("created_at"), received)
    return [Event("resend", msg_id if len(recipients) == 1 else f"{msg_id}:{address(r)}", kind, address(r), when,
                  provider_message_id=text(data.get("email_id")), message_id=bracketed(data.get("message_id")),
                  detail=detail, metadata=_tags(data.get("tags"))) for r in recipients]
