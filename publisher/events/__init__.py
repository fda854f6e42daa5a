"""Provider events in: verify each provider's webhook, and turn its payload into provider-neutral Events."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Protocol

from ..config import Config
from .model import (
    COMPLAINT,
    DELIVERED,
    HARD_BOUNCE,
    KINDS,
    SOFT_BOUNCE,
    UNSUBSCRIBE,
    Event,
    MemoryReplayGuard,
    Received,
    ReplayGuard,
    WebhookRejected,
    WebhookRequest,
)

PROVIDERS = ("postmark", "sendgrid", "mailgun", "resend", "ses", "generic")


class Receiver(Protocol):
    """Verifies one provider's webhook call and returns its events; raises WebhookRejected."""

    name: str

    def receive(self, request: WebhookRequest) -> Received: ...


def receivers(cfg: Config, guard: ReplayGuard, environ: Mapping[str, str] | None = None) -> dict[str, Receiver]:
    """The receivers whose secrets are configured (a provider without its secret has no endpoint)."""
    env = os.environ if environ is None else environ
    w = cfg.webhooks
    out: dict[str, Receiver] = {}
    if env.get(w.postmark_password_env):
        from .postmark import PostmarkReceiver

        out["postmark"] = PostmarkReceiver(w.postmark_username, env[w.postmark_password_env])
    if env.get(w.sendgrid_key_env):
        from .sendgrid import SendGridReceiver, load_key

        key = load_key(env[w.sendgrid_key_env], f"${w.sendgrid_key_env}", "webhooks.sendgrid_key_env")
        out["sendgrid"] = SendGridReceiver(key, w.max_age)
    if env.get(w.mailgun_key_env):
        from .mailgun import MailgunReceiver

        out["mailgun"] = MailgunReceiver(env[w.mailgun_key_env], w.max_age, guard)
    if env.get(w.resend_secret_env):
        from .resend import ResendReceiver, load_secret

        out["resend"] = ResendReceiver(load_secret(env[w.resend_secret_env], f"${w.resend_secret_env}",
                                                   "webhooks.resend_secret_env"))
    if w.sns_topic_arns:
        from .sns import Certificates, SNSReceiver

        ca_file = str(cfg.root / w.sns_ca_file) if w.sns_ca_file else ""
        out["ses"] = SNSReceiver(w.sns_topic_arns, Certificates(w.sns_cert_hosts, ca_file), w.sns_max_age)
    if env.get(w.generic_secret_env):
        from .generic import GenericReceiver

        out["generic"] = GenericReceiver(env[w.generic_secret_env], w.max_age)
    return out


__all__ = ["COMPLAINT", "DELIVERED", "HARD_BOUNCE", "KINDS", "PROVIDERS", "SOFT_BOUNCE", "UNSUBSCRIBE", "Event",
           "MemoryReplayGuard", "Received", "Receiver", "ReplayGuard", "WebhookRejected", "WebhookRequest",
           "receivers"]
