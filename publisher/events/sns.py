"""Amazon SES events through SNS: the SNS message signature is checked with the certificate fetched from its
validated SigningCertURL, the topic must be one the operator named, and a subscription is confirmed by
fetching its (validated) SubscribeURL. The SES notification inside `Message` becomes one Event per recipient.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import ssl
import threading
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import urlsplit

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from .model import (
    COMPLAINT,
    DELIVERED,
    HARD_BOUNCE,
    SOFT_BOUNCE,
    Event,
    Received,
    WebhookRejected,
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

AWS_HOSTS = r"^sns\.[a-zA-Z0-9\-]{3,}\.amazonaws\.com(\.cn)?$"  # as the AWS SDKs' message validators check
SIGNED_KEYS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}
HASHES = {"1": hashes.SHA1, "2": hashes.SHA256}
MAX_CERT_BYTES = 64 * 1024


class Certificates:
    """SNS signing certificates, fetched over https from hosts matching `host_pattern` only, and cached."""

    def __init__(self, host_pattern: str = AWS_HOSTS, ca_file: str = "", timeout: float = 5.0,
                 client: Callable[[], httpx.Client] | None = None) -> None:
        self.host = re.compile(host_pattern)
        self.verify = ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()
        self.timeout = timeout
        self.client = client or (lambda: httpx.Client(verify=self.verify, timeout=self.timeout,
                                                      follow_redirects=False, trust_env=False))
        self.cache: OrderedDict[str, x509.Certificate] = OrderedDict()
        self.lock = threading.Lock()

    def check_url(self, url: str, what: str, pem: bool = False) -> str:
        """`url` when it is https on an allowed host (and names a .pem file when `pem`); else a 403."""
        try:
            parts = urlsplit(url)
            host = parts.hostname or ""
            parts.port  # noqa: B018 — raises ValueError for a malformed port
        except ValueError:
            raise forbidden(f"the {what} is not a URL") from None
        if parts.scheme != "https" or "@" in parts.netloc or not self.host.fullmatch(host):
            raise forbidden(f"the {what} is not an https URL on an SNS host: {url[:200]!r}")
        if pem and not parts.path.endswith(".pem"):
            raise forbidden(f"the {what} does not name a .pem certificate")
        return url

    def _get(self, url: str, what: str) -> bytes:
        try:
            with self.client() as client, client.stream("GET", url) as response:
                if response.status_code != 200:
                    raise WebhookRejected(503, f"fetching the {what} answered HTTP {response.status_code}")
                data = b""
                for chunk in response.iter_bytes():
                    data += chunk
                    if len(data) > MAX_CERT_BYTES:
                        raise forbidden(f"the {what} answer is too large")
                return data
        except httpx.HTTPError as exc:
            raise WebhookRejected(503, f"cannot fetch the {what} ({type(exc).__name__})") from None

    def certificate(self, url: str) -> x509.Certificate:
        self.check_url(url, "SigningCertURL", pem=True)
        with self.lock:
            if url in self.cache:
                self.cache.move_to_end(url)
                return self.cache[url]
        try:
            cert = x509.load_pem_x509_certificate(self._get(url, "signing certificate"))
        except ValueError:
            raise forbidden("the SigningCertURL does not hold a PEM certificate") from None
        with self.lock:
            self.cache[url] = cert
            while len(self.cache) > 32:
                self.cache.popitem(last=False)
        return cert

    def confirm(self, url: str) -> None:
        """Confirm a subscription by fetching its SubscribeURL."""
        self._get(self.check_url(url, "SubscribeURL"), "SubscribeURL")


class SNSReceiver:
    name = "ses"

    def __init__(self, topics: tuple[str, ...], certificates: Certificates, max_age: float) -> None:
        self.topics = set(topics)
        self.certificates = certificates
        self.max_age = max_age

    def receive(self, request: WebhookRequest) -> Received:
        payload = json_body(request)  # SNS sends JSON as text/plain
        if not isinstance(payload, dict):
            raise bad_request("an SNS message is a JSON object")
        for spelling, key in (("SigningCertUrl", "SigningCertURL"), ("SubscribeUrl", "SubscribeURL"),
                              ("UnsubscribeUrl", "UnsubscribeURL")):
            if spelling in payload and key not in payload:
                payload[key] = payload[spelling]
        kind = payload.get("Type")
        if kind not in SIGNED_KEYS:
            raise bad_request(f"unknown SNS message Type {text(kind)!r}")
        if request.header("x-amz-sns-message-type") not in ("", kind):
            raise bad_request("the x-amz-sns-message-type header does not match the message Type")
        if payload.get("TopicArn") not in self.topics:
            raise forbidden(f"SNS topic {text(payload.get('TopicArn'))!r} is not one of [webhooks] sns_topic_arns")
        self.verify(payload, request.received)
        if kind == "SubscriptionConfirmation":
            self.certificates.confirm(str(payload.get("SubscribeURL")))
            return Received([], note=f"subscription to {payload['TopicArn']} confirmed")
        if kind == "UnsubscribeConfirmation":
            return Received([], note=f"unsubscribed from {payload['TopicArn']}")
        try:
            message = json.loads(str(payload.get("Message")))
        except ValueError:
            return Received([], note="the SNS notification holds no SES event")
        return Received(ses_events(message, text(payload.get("MessageId")), request.received)
                        if isinstance(message, dict) else [])

    def verify(self, payload: dict, now: float) -> None:
        """Check the message's age and its signature against the certificate at its SigningCertURL."""
        keys = SIGNED_KEYS[payload["Type"]]
        if not all(isinstance(payload.get(k), str) for k in keys if k != "Subject"):
            raise bad_request("the SNS message lacks a signed field")
        algorithm = HASHES.get(str(payload.get("SignatureVersion")))
        if algorithm is None:
            raise forbidden(f"unknown SNS SignatureVersion {text(payload.get('SignatureVersion'))!r}")
        sent = parse_time(payload.get("Timestamp"), 0)
        if not (-300 <= now - sent.timestamp() <= self.max_age):
            raise forbidden(f"the SNS message is older than {self.max_age:.0f} s (stale or replayed)")
        try:
            signature = base64.b64decode(str(payload.get("Signature", "")), validate=True)
        except (binascii.Error, ValueError):
            raise unauthorized("the SNS Signature is not base64") from None
        cert = self.certificates.certificate(str(payload.get("SigningCertURL", "")))
        key = cert.public_key()
        current = cert.not_valid_before_utc <= datetime.now(UTC) <= cert.not_valid_after_utc
        if not isinstance(key, rsa.RSAPublicKey) or not current:
            raise forbidden("the SNS signing certificate is not a valid RSA certificate")
        signed = "".join(f"{k}\n{payload[k]}\n" for k in keys if isinstance(payload.get(k), str))
        try:
            key.verify(signature, signed.encode(), padding.PKCS1v15(), algorithm())
        except InvalidSignature:
            raise forbidden("the SNS signature does not match the message") from None


def _recipients(items: object, key: str) -> list[str]:
    if not isinstance(items, list):
        return []
    return [text(r.get(key) if isinstance(r, dict) else r, 320) for r in items[:100]]


def ses_events(message: dict, sns_id: str, received: float) -> list[Event]:
    """An SES notification (identity notifications or event publishing) → one Event per recipient."""
    kind_name = message.get("notificationType") or message.get("eventType")
    mail = message.get("mail") if isinstance(message.get("mail"), dict) else {}
    common = mail.get("commonHeaders") if isinstance(mail.get("commonHeaders"), dict) else {}
    if kind_name == "Bounce":
        part = message.get("bounce") if isinstance(message.get("bounce"), dict) else {}
        kind = HARD_BOUNCE if part.get("bounceType") == "Permanent" else SOFT_BOUNCE
        recipients = part.get("bouncedRecipients")
        who = {text(r.get("emailAddress"), 320): text(r.get("diagnosticCode") or r.get("status"), 300)
               for r in recipients[:100] if isinstance(r, dict)} if isinstance(recipients, list) else {}
        head = " ".join(filter(None, (text(part.get("bounceType")), text(part.get("bounceSubType")))))
        details = {addr: " ".join(filter(None, (head, why))) for addr, why in who.items()}
    elif kind_name == "Complaint":
        part = message.get("complaint") if isinstance(message.get("complaint"), dict) else {}
        kind = COMPLAINT
        why = text(part.get("complaintFeedbackType") or part.get("complaintSubType"))
        details = {addr: why for addr in _recipients(part.get("complainedRecipients"), "emailAddress")}
    elif kind_name == "Delivery":
        part = message.get("delivery") if isinstance(message.get("delivery"), dict) else {}
        kind = DELIVERED
        details = {addr: text(part.get("smtpResponse"), 300) for addr in _recipients(part.get("recipients"), "")}
    else:
        return []  # Send, Reject, Open, Click, DeliveryDelay, …
    when = parse_time(part.get("timestamp"), received)
    return [Event("ses", f"{sns_id}:{address(addr)}", kind, address(addr), when,
                  provider_message_id=text(mail.get("messageId")), message_id=bracketed(common.get("messageId")),
                  detail=detail, metadata=string_map(mail.get("tags")))
            for addr, detail in details.items() if addr]
