"""HTTP email providers over httpx: Postmark, SendGrid, Mailgun and Resend, one batch request per `send`.

Outages are not results: 429, 5xx, refused connections and refused credentials raise TransportError after
the retries (no recipient is charged an attempt, the messages stay pending). What goes in each request
(batch key, subscriber, Message-ID) lets `lookup` ask the provider later what it accepted.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parseaddr, parsedate_to_datetime

import httpx

from ..config import HttpConfig
from ..errors import Interrupted, SecretError
from ..message import PREFERENCES_MARK, UNSUBSCRIBE_MARK, Outgoing
from .base import FAILED, RETRY, SENT, UNKNOWN, Lookup, SendResult, TransportError, backoff, chunks

SKIP_HEADERS = {"Date"}  # providers stamp their own Date
BATCH_KEY, SUBSCRIBER_KEY, MESSAGE_KEY = "publisher_batch", "publisher_subscriber", "publisher_message"
MAX_PAGES = 20  # pages of search results read per lookup


@dataclass(frozen=True, slots=True)
class Call:
    """One HTTP request covering some messages."""

    path: str
    messages: tuple[Outgoing, ...]
    json: object = None
    data: object = None
    idempotency_key: str = ""
    headers: tuple[tuple[str, str], ...] = ()


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


def _age(tried: str) -> timedelta:
    try:
        return datetime.now().astimezone() - datetime.fromisoformat(tried)
    except ValueError:
        return timedelta(0)


class HttpProvider:
    """Shared request loop: auth, retries with backoff on 429/5xx/connection errors, results per message."""

    name = "http"
    default_url = ""
    max_batch = 100
    idempotent = False
    replay_hours: float | None = None

    def __init__(self, cfg: HttpConfig) -> None:
        self.cfg = cfg
        self.key = os.environ.get(cfg.api_key_env, "")
        if not self.key:
            raise SecretError(f"the environment variable {cfg.api_key_env} is not set",
                              f"set it to your {self.name} API key ([http] api_key_env names it)")
        self.base_url = (cfg.api_url or self.default_url).rstrip("/")
        self.batch_size = min(cfg.batch_size or self.max_batch, self.max_batch)
        self.client: httpx.Client | None = None
        self.sleep = time.sleep

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def _client(self) -> httpx.Client:
        if self.client is None:
            self.client = httpx.Client(timeout=self.cfg.timeout, headers={"Accept": "application/json"})
        return self.client

    def requests(self, messages: Sequence[Outgoing]) -> list[tuple[Outgoing, ...]]:
        return chunks(messages, self.batch_size)

    def call(self, messages: tuple[Outgoing, ...], key: str) -> Call:
        raise NotImplementedError

    def results(self, response: httpx.Response, call: Call) -> list[SendResult]:
        raise NotImplementedError

    def send(self, messages: Sequence[Outgoing], key: str = "") -> list[SendResult]:
        out: list[SendResult] = []
        for index, group in enumerate(self.requests(messages)):  # one group when the sender froze it
            try:
                out.extend(self._post(self.call(group, key if index == 0 else f"{key}-{index}")))
            except TransportError as exc:
                exc.results = out
                raise
        return out

    def _post(self, call: Call) -> list[SendResult]:
        headers = {**self.auth_headers(), **dict(call.headers)}
        if call.idempotency_key and self.idempotent:
            headers["Idempotency-Key"] = call.idempotency_key
        last, unanswered = "", False
        tries = self.cfg.retries + 1
        for attempt in range(1, tries + 1):
            wait = backoff(attempt, self.cfg.retry_delay, self.cfg.max_retry_wait)
            try:
                response = self._client().post(self.base_url + call.path, headers=headers, json=call.json,
                                               data=call.data)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                last = f"cannot connect to {self.base_url} ({exc})"  # nothing reached the provider: safe to retry
            except httpx.TransportError as exc:
                if not self.idempotent:
                    return [SendResult(m.key, UNKNOWN, error=f"no answer from {self.name} ({type(exc).__name__}); "
                                       "the request may have been accepted") for m in call.messages]
                last, unanswered = f"no answer ({type(exc).__name__})", True
            else:
                status = response.status_code
                self._refuse(response)
                if self.throttled(response):
                    last = _error_text(response)
                    unanswered = unanswered or (self.idempotent and status >= 500)
                    hinted = _retry_after(response)
                    if hinted is not None:
                        wait = min(hinted, self.cfg.max_retry_wait)
                else:
                    return self._read(response, call)
            if attempt < tries:
                try:
                    self.sleep(wait)
                except Interrupted:
                    raise Interrupted(maybe_sent=unanswered) from None
        raise TransportError(f"{self.name} is not accepting messages: {last} ({tries} tries)",
                             hint="nothing was lost: the messages stay pending and the next run sends them (`publish "
                             "serve` retries every pass until [digest] give_up_hours)", maybe_sent=unanswered)

    def _refuse(self, response: httpx.Response) -> None:
        """Stop at answers that no retry will change: refused credentials, an unknown endpoint or domain."""
        status = response.status_code
        if status in (401, 403):
            raise TransportError(f"{self.name} refused the API key ({_error_text(response)})",
                                 hint=f"check ${self.cfg.api_key_env}; nothing was sent, the messages stay pending")
        if status == 404:
            raise TransportError(f"{self.name} has no such endpoint ({response.request.url}: "
                                 f"{_error_text(response)})", hint="check [http] api_url and domain; nothing was "
                                 "sent, the messages stay pending")

    def throttled(self, response: httpx.Response) -> bool:
        return response.status_code == 429 or response.status_code >= 500

    def _read(self, response: httpx.Response, call: Call) -> list[SendResult]:
        """The provider's answer per message; an answer that cannot be read leaves them unknown."""
        try:
            return self.results(response, call)
        except (ValueError, TypeError, AttributeError, KeyError) as exc:
            what = "not JSON" if isinstance(exc, json.JSONDecodeError) else f"not the expected shape ({exc})"
            return [SendResult(m.key, UNKNOWN, error=f"{self.name} answered HTTP {response.status_code} with a body "
                               f"that is {what}: {response.text[:120]!r}; the messages may have been accepted")
                    for m in call.messages]

    def lookup(self, items: list[Lookup]) -> list[SendResult]:
        """Ask the provider what became of messages whose fate is unknown: SENT (it accepted them), RETRY
        (it has no record of them: send again) or UNKNOWN (it cannot tell, or not yet)."""
        return [SendResult(i.key, UNKNOWN, error=f"{self.name} cannot be asked whether it accepted a message; "
                           "decide with --resend-unknown") for i in items]

    def _get(self, path: str, params: dict | None = None) -> httpx.Response:
        try:
            response = self._client().get(path if path.startswith("http") else self.base_url + path,
                                          headers=self.auth_headers(), params=params)
        except httpx.HTTPError as exc:
            raise TransportError(f"cannot ask {self.name} ({type(exc).__name__}: {exc})",
                                 hint="try --reconcile again later") from None
        if response.status_code in (401, 403):
            self._refuse(response)
        if self.throttled(response):
            raise TransportError(f"{self.name} is not answering lookups: {_error_text(response)}",
                                 hint="try --reconcile again later")
        return response

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None


def _headers(message: Outgoing) -> dict[str, str]:
    headers = {k: v for k, v in message.headers.items() if k not in SKIP_HEADERS}
    headers["Message-ID"] = message.message_id
    return headers


def _batch_key(messages: Sequence[Outgoing]) -> str:
    """A key for a request made outside the ledger (a test message): from its Message-IDs."""
    return "publisher-" + hashlib.sha256("\n".join(m.message_id for m in messages).encode()).hexdigest()[:40]


class Postmark(HttpProvider):
    name = "Postmark"
    default_url = "https://api.postmarkapp.com"
    max_batch = 500
    search_delay = timedelta(minutes=2)  # how soon an accepted message can be found by search

    def auth_headers(self) -> dict[str, str]:
        return {"X-Postmark-Server-Token": self.key}

    def call(self, messages: tuple[Outgoing, ...], key: str) -> Call:
        key = key or _batch_key(messages)
        body = [{
            "From": m.sender, "To": m.to, "Subject": m.subject, "HtmlBody": m.html, "TextBody": m.text,
            "MessageStream": self.cfg.message_stream,
            "Headers": [{"Name": k, "Value": v} for k, v in _headers(m).items() if k != "Reply-To"],
            "Metadata": {BATCH_KEY: key, SUBSCRIBER_KEY: str(m.key)},
            **({"ReplyTo": m.headers["Reply-To"]} if "Reply-To" in m.headers else {}),
        } for m in messages]
        return Call("/email/batch", messages, json=body)

    def results(self, response: httpx.Response, call: Call) -> list[SendResult]:
        if response.status_code != 200:
            return [SendResult(m.key, FAILED, error=_error_text(response)) for m in call.messages]
        items = response.json()
        if not isinstance(items, list):
            raise TypeError("a batch answer is a list")
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

    def lookup(self, items: list[Lookup]) -> list[SendResult]:
        """Outbound message search by the batch key in each message's metadata: one query per batch."""
        out: list[SendResult] = []
        by_batch: dict[str, list[Lookup]] = {}
        for item in items:
            by_batch.setdefault(item.batch_key, []).append(item)
        for key, group in by_batch.items():
            if not key:
                out += HttpProvider.lookup(self, group)
                continue
            found = {}
            for page in range(MAX_PAGES):
                answer = self._get("/messages/outbound", {"count": 500, "offset": page * 500,
                                                          f"metadata_{BATCH_KEY}": key}).json()
                messages = answer.get("Messages") or []
                for m in messages:
                    found[str((m.get("Metadata") or {}).get(SUBSCRIBER_KEY, ""))] = str(m.get("MessageID", ""))
                if len(messages) < 500:
                    break
            out += [_found(i, found.get(str(i.key)), self.name, self.search_delay) for i in group]
        return out


def _found(item: Lookup, provider_id: str | None, name: str, delay: timedelta) -> SendResult:
    if provider_id is not None:
        return SendResult(item.key, SENT, provider_id=provider_id)
    if _age(item.tried) < delay:
        ready = (datetime.fromisoformat(item.tried) + delay).astimezone().strftime("%H:%M")
        return SendResult(item.key, UNKNOWN, error=f"{name} may not list it yet; run --reconcile again after {ready}")
    return SendResult(item.key, RETRY, error=f"{name} has no record of accepting it: it is sent again")


class SendGrid(HttpProvider):
    """Messages rendered from the same template go in one request, one personalization each (1,000 max)."""

    name = "SendGrid"
    default_url = "https://api.sendgrid.com"
    max_batch = 1000

    def requests(self, messages: Sequence[Outgoing]) -> list[tuple[Outgoing, ...]]:
        return _template_batches(messages, self.batch_size)

    def call(self, messages: tuple[Outgoing, ...], key: str) -> Call:
        key = key or _batch_key(messages)
        first = messages[0]
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
                "custom_args": {BATCH_KEY: key, SUBSCRIBER_KEY: str(m.key)},
            } for m in messages],
        }
        if "Reply-To" in first.headers:
            body["reply_to"] = {"email": parseaddr(first.headers["Reply-To"])[1]}
        return Call("/v3/mail/send", messages, json=body)

    def results(self, response: httpx.Response, call: Call) -> list[SendResult]:
        return _whole_batch(response, call, 202, lambda: response.headers.get("x-message-id", ""))

    def lookup(self, items: list[Lookup]) -> list[SendResult]:
        return [SendResult(i.key, UNKNOWN, error="SendGrid tells what it accepted only through its paid Email "
                           "Activity add-on or the Event Webhook; decide with --resend-unknown") for i in items]


class Mailgun(HttpProvider):
    """One form POST per template group with recipient-variables, so each recipient gets their own links."""

    name = "Mailgun"
    default_url = "https://api.mailgun.net"
    max_batch = 1000
    search_delay = timedelta(minutes=30)  # Mailgun's events may be indexed this late

    def auth_headers(self) -> dict[str, str]:
        return {}

    def _client(self) -> httpx.Client:
        if self.client is None:
            self.client = httpx.Client(timeout=self.cfg.timeout, auth=("api", self.key),
                                       headers={"Accept": "application/json"})
        return self.client

    def requests(self, messages: Sequence[Outgoing]) -> list[tuple[Outgoing, ...]]:
        return _template_batches(messages, self.batch_size)

    def call(self, messages: tuple[Outgoing, ...], key: str) -> Call:
        key = key or _batch_key(messages)
        first = messages[0]
        html, text = _template_of(first)
        marks = {UNSUBSCRIBE_MARK: "%recipient.unsubscribe%", PREFERENCES_MARK: "%recipient.preferences%"}
        for mark, var in marks.items():
            html, text = html.replace(mark, var), text.replace(mark, var)
        variables = {m.to: {"unsubscribe": m.links.get(UNSUBSCRIBE_MARK, ""),
                            "preferences": m.links.get(PREFERENCES_MARK, ""), "id": m.message_id}
                     for m in messages}
        data = [("from", first.sender), ("subject", first.subject), ("html", html), ("text", text),
                ("recipient-variables", json.dumps(variables)),
                ("h:List-Unsubscribe", "<%recipient.unsubscribe%>"),
                (f"v:{BATCH_KEY}", key), (f"v:{MESSAGE_KEY}", "%recipient.id%")]
        data += [(f"h:{k}", v) for k, v in first.headers.items()
                 if k not in SKIP_HEADERS and k != "List-Unsubscribe"]
        form: dict[str, str | list[str]] = dict(data)
        form["to"] = [m.to for m in messages]
        return Call(f"/v3/{self.cfg.domain}/messages", messages, data=form)

    def results(self, response: httpx.Response, call: Call) -> list[SendResult]:
        return _whole_batch(response, call, 200, lambda: str(response.json()["id"]))

    def lookup(self, items: list[Lookup]) -> list[SendResult]:
        """The events log, per recipient since the request: an 'accepted' event carrying our Message-ID."""
        out = []
        for item in items:
            since = datetime.fromisoformat(item.tried).timestamp() - 300
            params: dict | None = {"recipient": item.to, "event": "accepted", "begin": int(since),
                                   "ascending": "yes", "limit": 300}
            url, found = f"/v3/{self.cfg.domain}/events", None
            for _ in range(MAX_PAGES):
                events = self._get(url, params).json()
                for event in events.get("items") or []:
                    if (event.get("user-variables") or {}).get(MESSAGE_KEY) == item.message_id:
                        found = str(((event.get("message") or {}).get("headers") or {}).get("message-id", ""))
                url, params = (events.get("paging") or {}).get("next", ""), None
                if found is not None or not events.get("items") or not url:
                    break
            out.append(_found(item, found, self.name, self.search_delay))
        return out


class Resend(HttpProvider):
    """Batches of 100 under the batch's frozen Idempotency-Key: a replay within 24 hours cannot duplicate."""

    name = "Resend"
    default_url = "https://api.resend.com"
    max_batch = 100
    idempotent = True
    replay_hours = 23.0  # Resend keeps a key 24 hours

    def call(self, messages: tuple[Outgoing, ...], key: str) -> Call:
        key = key or _batch_key(messages)
        body = [{
            "from": m.sender, "to": [m.to], "subject": m.subject, "html": m.html, "text": m.text,
            "headers": {k: v for k, v in _headers(m).items() if k != "Reply-To"},
            "tags": [{"name": BATCH_KEY, "value": key}, {"name": SUBSCRIBER_KEY, "value": str(m.key)}],
            **({"reply_to": m.headers["Reply-To"]} if "Reply-To" in m.headers else {}),
        } for m in messages]
        return Call("/emails/batch", messages, json=body, idempotency_key=key,
                    headers=(("x-batch-validation", "permissive"),))

    def throttled(self, response: httpx.Response) -> bool:
        return super().throttled(response) or (response.status_code == 409 and
                                               "concurrent" in response.text)  # the first is still in progress

    def results(self, response: httpx.Response, call: Call) -> list[SendResult]:
        if response.status_code == 409:  # the key was used on a request with a different payload
            return [SendResult(m.key, UNKNOWN, error=f"Resend refused the replay ({_error_text(response)}); an "
                               "earlier request under this key may have delivered it") for m in call.messages]
        if response.status_code not in (200, 201, 202):
            return [SendResult(m.key, FAILED, error=_error_text(response)) for m in call.messages]
        payload = response.json()
        errors = {e.get("index"): e.get("message", "") for e in payload.get("errors") or []}
        ids = [item["id"] for item in payload.get("data") or []]
        out, ok = [], iter(ids)
        for index, message in enumerate(call.messages):
            if index in errors:
                out.append(SendResult(message.key, FAILED, error=f"Resend: {errors[index]}"))
            else:
                provider_id = next(ok, None)
                out.append(SendResult(message.key, SENT, provider_id=provider_id) if provider_id is not None
                           else SendResult(message.key, UNKNOWN, error="Resend gave no id for this message"))
        return out

    def lookup(self, items: list[Lookup]) -> list[SendResult]:
        """GET /emails/{id} where Resend gave an id; without one it cannot be asked."""
        out = []
        for item in items:
            if not item.provider_id:
                out += HttpProvider.lookup(self, [item])
                continue
            response = self._get(f"/emails/{item.provider_id}")
            if response.status_code == 200:
                out.append(SendResult(item.key, SENT, provider_id=item.provider_id))
            else:
                out.append(SendResult(item.key, UNKNOWN, error=f"Resend does not know email {item.provider_id} "
                                      f"({_error_text(response)})"))
        return out


def _template_batches(messages: Sequence[Outgoing], size: int) -> list[tuple[Outgoing, ...]]:
    """Batches of messages rendered from the same template, for APIs that substitute per recipient."""
    groups: dict[tuple, list[Outgoing]] = {}
    for m in messages:
        groups.setdefault(_template_key(m), []).append(m)
    return [batch for group in groups.values() for batch in chunks(group, size)]


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
