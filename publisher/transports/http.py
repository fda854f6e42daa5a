"""HTTP email providers over httpx: Postmark, SendGrid, Mailgun and Resend, each through its batch endpoint."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from email.utils import parseaddr, parsedate_to_datetime

import httpx

from ..config import HttpConfig
from ..errors import SecretError
from ..message import PREFERENCES_MARK, UNSUBSCRIBE_MARK, Outgoing
from .base import FAILED, RETRY, SENT, UNKNOWN, SendResult, TransportError, backoff

SKIP_HEADERS = {"Date"}  # providers stamp their own Date


@dataclass(frozen=True, slots=True)
class Call:
    """One HTTP request covering some messages."""

    path: str
    messages: tuple[Outgoing, ...]
    json: object = None
    data: object = None
    idempotency_key: str = ""


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds to wait from Retry-After (seconds or HTTP date) or SendGrid's X-RateLimit-Reset (epoch)."""
    value = response.headers.get("retry-after")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            try:
                return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
            except (TypeError, ValueError):
                return None
    reset = response.headers.get("x-ratelimit-reset")
    if reset:
        try:
            return max(0.0, float(reset) - time.time())
        except ValueError:
            return None
    return None


def _error_text(response: httpx.Response) -> str:
    body = response.text.strip().replace("\n", " ")
    return f"HTTP {response.status_code}: {body[:300]}"


class HttpProvider:
    """Shared request loop: auth, retries with backoff on 429/5xx/connection errors, results per message."""

    name = "http"
    default_url = ""
    batch_size = 100
    idempotent = False

    def __init__(self, cfg: HttpConfig) -> None:
        self.cfg = cfg
        self.key = os.environ.get(cfg.api_key_env, "")
        if not self.key:
            raise SecretError(f"the environment variable {cfg.api_key_env} is not set",
                              f"set it to your {self.name} API key ([http] api_key_env names it)")
        self.base_url = (cfg.api_url or self.default_url).rstrip("/")
        self.client: httpx.Client | None = None
        self.sleep = time.sleep

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def calls(self, messages: Sequence[Outgoing]) -> list[Call]:
        raise NotImplementedError

    def results(self, response: httpx.Response, call: Call) -> list[SendResult]:
        raise NotImplementedError

    def send(self, messages: Sequence[Outgoing]) -> list[SendResult]:
        if self.client is None:
            self.client = httpx.Client(timeout=self.cfg.timeout, headers={"Accept": "application/json"})
        out: list[SendResult] = []
        for call in self.calls(messages):
            try:
                out.extend(self._post(call))
            except TransportError as exc:
                exc.results = out
                raise
        return out

    def _post(self, call: Call) -> list[SendResult]:
        assert self.client is not None
        headers = self.auth_headers()
        if call.idempotency_key:
            headers["Idempotency-Key"] = call.idempotency_key
        last = ""
        for attempt in range(1, self.cfg.retries + 2):
            wait = backoff(attempt, self.cfg.retry_delay, self.cfg.max_retry_wait)
            try:
                response = self.client.post(self.base_url + call.path, headers=headers, json=call.json, data=call.data)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                last = f"cannot connect to {self.base_url} ({exc})"  # nothing reached the provider: safe to retry
            except httpx.TransportError as exc:
                if not self.idempotent:
                    return [SendResult(m.key, UNKNOWN, error=f"no answer from {self.name} ({type(exc).__name__}); "
                                       "the request may have been accepted") for m in call.messages]
                last = f"no answer from {self.name} ({type(exc).__name__})"
            else:
                status = response.status_code
                if status in (401, 403):
                    raise TransportError(f"{self.name} refused the API key ({_error_text(response)}); check "
                                         f"${self.cfg.api_key_env}")
                if status == 429 or status >= 500:
                    last = _error_text(response)
                    hinted = _retry_after(response)
                    if hinted is not None:
                        wait = min(hinted, self.cfg.max_retry_wait)
                else:
                    return self.results(response, call)
            if attempt <= self.cfg.retries:
                self.sleep(wait)
        return [SendResult(m.key, RETRY, error=f"temporary failure after {self.cfg.retries + 1} tries: {last}")
                for m in call.messages]

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None


def _headers(message: Outgoing) -> dict[str, str]:
    headers = {k: v for k, v in message.headers.items() if k not in SKIP_HEADERS}
    headers["Message-ID"] = message.message_id
    return headers


def _batches(messages: Sequence[Outgoing], size: int) -> list[tuple[Outgoing, ...]]:
    return [tuple(messages[i:i + size]) for i in range(0, len(messages), size)]


class Postmark(HttpProvider):
    name = "Postmark"
    default_url = "https://api.postmarkapp.com"
    batch_size = 500

    def auth_headers(self) -> dict[str, str]:
        return {"X-Postmark-Server-Token": self.key}

    def calls(self, messages: Sequence[Outgoing]) -> list[Call]:
        out = []
        for batch in _batches(messages, self.batch_size):
            body = [{
                "From": m.sender, "To": m.to, "Subject": m.subject, "HtmlBody": m.html, "TextBody": m.text,
                "MessageStream": self.cfg.message_stream,
                "Headers": [{"Name": k, "Value": v} for k, v in _headers(m).items() if k != "Reply-To"],
                **({"ReplyTo": m.headers["Reply-To"]} if "Reply-To" in m.headers else {}),
            } for m in batch]
            out.append(Call("/email/batch", batch, json=body))
        return out

    def results(self, response: httpx.Response, call: Call) -> list[SendResult]:
        if response.status_code != 200:
            return [SendResult(m.key, FAILED, error=_error_text(response)) for m in call.messages]
        items = response.json()
        out = []
        for message, item in zip(call.messages, items, strict=False):
            code = item.get("ErrorCode", 0)
            if code == 0:
                out.append(SendResult(message.key, SENT, provider_id=str(item.get("MessageID", ""))))
            else:
                reason = "inactive (suppressed) recipient" if code == 406 else item.get("Message", "")
                out.append(SendResult(message.key, FAILED, error=f"Postmark error {code}: {reason}"))
        out += [SendResult(m.key, UNKNOWN, error="Postmark gave no result for this message")
                for m in call.messages[len(items):]]
        return out


class SendGrid(HttpProvider):
    """Messages rendered from the same template go in one request, one personalization each (1,000 max)."""

    name = "SendGrid"
    default_url = "https://api.sendgrid.com"
    batch_size = 1000

    def calls(self, messages: Sequence[Outgoing]) -> list[Call]:
        out = []
        for batch in _template_batches(messages, self.batch_size):
            first = batch[0]
            html, text = _template_of(first)
            name, addr = parseaddr(first.sender)
            body: dict = {
                "from": {"email": addr, **({"name": name} if name else {})},
                "subject": first.subject,
                "content": [{"type": "text/plain", "value": text}, {"type": "text/html", "value": html}],
                "personalizations": [{
                    "to": [{"email": m.to, **({"name": m.to_name} if m.to_name else {})}],
                    "headers": _headers(m),
                    "substitutions": _substitutions(m),
                } for m in batch],
            }
            if "Reply-To" in first.headers:
                body["reply_to"] = {"email": parseaddr(first.headers["Reply-To"])[1]}
            out.append(Call("/v3/mail/send", batch, json=body))
        return out

    def results(self, response: httpx.Response, call: Call) -> list[SendResult]:
        return _whole_batch(response, call, 202, lambda: response.headers.get("x-message-id", ""))


class Mailgun(HttpProvider):
    """One form POST per template group with recipient-variables, so each recipient gets their own links."""

    name = "Mailgun"
    default_url = "https://api.mailgun.net"
    batch_size = 1000

    def auth_headers(self) -> dict[str, str]:
        return {}

    def send(self, messages: Sequence[Outgoing]) -> list[SendResult]:
        if self.client is None:
            self.client = httpx.Client(timeout=self.cfg.timeout, auth=("api", self.key),
                                       headers={"Accept": "application/json"})
        return super().send(messages)

    def calls(self, messages: Sequence[Outgoing]) -> list[Call]:
        out = []
        for batch in _template_batches(messages, self.batch_size):
            first = batch[0]
            html, text = _template_of(first)
            marks = {UNSUBSCRIBE_MARK: "%recipient.unsubscribe%", PREFERENCES_MARK: "%recipient.preferences%"}
            for mark, var in marks.items():
                html, text = html.replace(mark, var), text.replace(mark, var)
            variables = {m.to: {"unsubscribe": m.links.get(UNSUBSCRIBE_MARK, ""),
                                "preferences": m.links.get(PREFERENCES_MARK, ""), "id": m.message_id}
                         for m in batch}
            data = [("from", first.sender), ("subject", first.subject), ("html", html), ("text", text),
                    ("recipient-variables", json.dumps(variables)),
                    ("h:List-Unsubscribe", "<%recipient.unsubscribe%>")]
            data += [(f"h:{k}", v) for k, v in first.headers.items()
                     if k not in SKIP_HEADERS and k != "List-Unsubscribe"]
            form: dict[str, str | list[str]] = dict(data)
            form["to"] = [m.to for m in batch]
            out.append(Call(f"/v3/{self.cfg.domain}/messages", batch, data=form))
        return out

    def results(self, response: httpx.Response, call: Call) -> list[SendResult]:
        return _whole_batch(response, call, 200, lambda: response.json().get("id", ""))


class Resend(HttpProvider):
    """Batches of 100 with an Idempotency-Key derived from the batch's messages, so a resend cannot duplicate."""

    name = "Resend"
    default_url = "https://api.resend.com"
    batch_size = 100
    idempotent = True

    def calls(self, messages: Sequence[Outgoing]) -> list[Call]:
        out = []
        for batch in _batches(messages, self.batch_size):
            body = [{
                "from": m.sender, "to": [m.to], "subject": m.subject, "html": m.html, "text": m.text,
                "headers": {k: v for k, v in _headers(m).items() if k != "Reply-To"},
                **({"reply_to": m.headers["Reply-To"]} if "Reply-To" in m.headers else {}),
            } for m in batch]
            key = hashlib.sha256("\n".join(m.message_id for m in batch).encode()).hexdigest()[:40]
            out.append(Call("/emails/batch", batch, json=body, idempotency_key=f"publisher-{key}"))
        return out

    def results(self, response: httpx.Response, call: Call) -> list[SendResult]:
        if response.status_code not in (200, 201, 202):
            return [SendResult(m.key, FAILED, error=_error_text(response)) for m in call.messages]
        payload = response.json()
        errors = {e.get("index"): e.get("message", "") for e in payload.get("errors") or []}
        ids = [item.get("id", "") for item in payload.get("data") or []]
        out, ok = [], iter(ids)
        for index, message in enumerate(call.messages):
            if index in errors:
                out.append(SendResult(message.key, FAILED, error=f"Resend: {errors[index]}"))
            else:
                provider_id = next(ok, None)
                out.append(SendResult(message.key, SENT, provider_id=provider_id) if provider_id is not None
                           else SendResult(message.key, UNKNOWN, error="Resend gave no id for this message"))
        return out


def _template_batches(messages: Sequence[Outgoing], size: int) -> list[tuple[Outgoing, ...]]:
    """Batches of messages rendered from the same template, for APIs that substitute per recipient."""
    groups: dict[tuple, list[Outgoing]] = {}
    for m in messages:
        groups.setdefault(_template_key(m), []).append(m)
    return [batch for group in groups.values() for batch in _batches(group, size)]


def _whole_batch(response: httpx.Response, call: Call, ok: int, provider_id) -> list[SendResult]:
    """Results for APIs that accept or refuse a whole request: every message shares the outcome."""
    if response.status_code == ok:
        pid = provider_id()
        return [SendResult(m.key, SENT, provider_id=pid) for m in call.messages]
    return [SendResult(m.key, FAILED, error=_error_text(response)) for m in call.messages]


def _template_key(message: Outgoing) -> tuple:
    html, text = _template_of(message)
    return (message.sender, message.subject, hash(html), hash(text))


def _template_of(message: Outgoing) -> tuple[str, str]:
    return message.template or (message.html, message.text)


def _substitutions(message: Outgoing) -> dict[str, str]:
    return dict(message.links) if message.template else {}


PROVIDERS = {"postmark": Postmark, "sendgrid": SendGrid, "mailgun": Mailgun, "resend": Resend}


def provider(name: str, cfg: HttpConfig) -> HttpProvider:
    return PROVIDERS[name](cfg)
