"""A programmable fake of each HTTP email provider, a real HTTP server on 127.0.0.1.

It plays Postmark, SendGrid, Mailgun and Resend closely enough for delivery to be tested from outside:
the send endpoints, Resend's Idempotency-Key (same key and payload: the first answer again, nothing sent;
another payload: 409; while the first is in progress: 409), and the lookups `--reconcile` uses (Postmark's
outbound search by metadata, Mailgun's events, Resend's GET /emails/{id}). Faults are queued per request
or set for every request. Everything it accepted is recorded, so tests count what arrived.

Faults: "hang" (never answers, accepts nothing), "timeout" (accepts, answers too late), "drop" (accepts,
closes without answering), "429", "500", "503", "401", "malformed" (accepts, answers 200 with garbage),
"partial" (accepts half: Postmark lists only those, Resend reports the rest as errors).
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

KINDS = ("postmark", "sendgrid", "mailgun", "resend")
DOMAIN = "mg.example.com"


@dataclass
class Accepted:
    """One message the provider accepted."""

    to: str
    message_id: str  # our Message-ID (Mailgun: from the recipient variables)
    batch: str
    subscriber: str
    provider_id: str
    at: float


@dataclass
class FakeProvider:
    kind: str
    latency: float = 0.0  # seconds before answering any send (widens the window a kill can land in)
    hang_seconds: float = 5.0  # how long "hang" and "timeout" keep the client waiting
    accepted: list[Accepted] = field(default_factory=list)
    faults: list[str] = field(default_factory=list)  # for the next requests, in order
    always: str = ""  # a fault for every request while no queued one is left
    sends: int = 0  # send requests received
    lookups: int = 0
    keys: dict[str, tuple[str, int, bytes]] = field(default_factory=dict)  # Resend: key → (payload hash, answer)
    in_progress: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    # -- the server -------------------------------------------------------------------------------------
    def start(self) -> FakeProvider:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802
                provider._post(self)

            def do_GET(self):  # noqa: N802
                provider._get(self)

            def log_message(self, *args):
                pass

        class Server(ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                pass  # a client killed mid-request resets its connection: expected here

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def recipients(self) -> Counter:
        with self.lock:
            return Counter(a.to for a in self.accepted)

    def duplicates(self) -> int:
        return sum(n - 1 for n in self.recipients().values() if n > 1)

    # -- requests ---------------------------------------------------------------------------------------
    def _fault(self) -> str:
        with self.lock:
            self.sends += 1
            return self.faults.pop(0) if self.faults else self.always

    def _post(self, h: BaseHTTPRequestHandler) -> None:
        body = h.rfile.read(int(h.headers.get("Content-Length") or 0))
        fault = self._fault()
        if fault == "hang":
            time.sleep(self.hang_seconds)
            h.close_connection = True
            return
        if fault in ("429", "500", "503", "401"):
            extra = {"Retry-After": "1"} if fault == "429" else {}
            return _answer(h, int(fault), {"Message": f"fake {fault}"}, extra)
        key = h.headers.get("Idempotency-Key", "") if self.kind == "resend" else ""
        if key:
            digest = hashlib.sha256(body).hexdigest()
            with self.lock:
                known = self.keys.get(key)
                busy = key in self.in_progress
                if not known and not busy:
                    self.in_progress.add(key)
            if busy:
                return _answer(h, 409, {"name": "concurrent_idempotent_requests", "message": "in progress"})
            if known:
                if known[0] != digest:
                    return _answer(h, 409, {"name": "invalid_idempotent_request", "message": "other payload"})
                return _raw(h, known[1], known[2])
        try:
            status, answer, extra = self._accept(h, body, fault)
            raw = json.dumps(answer).encode() if answer is not None else b""
            if fault == "malformed":
                raw = b'{"data": [{"id": "trunc'
            if key:
                with self.lock:
                    self.keys[key] = (hashlib.sha256(body).hexdigest(), status, raw)
        finally:
            if key:
                with self.lock:
                    self.in_progress.discard(key)
        if self.latency:
            time.sleep(self.latency)
        if fault == "timeout":
            time.sleep(self.hang_seconds)
        if fault == "drop":
            h.close_connection = True
            h.connection.shutdown(socket.SHUT_RDWR)
            return
        _raw(h, status, raw, extra)

    def _accept(self, h: BaseHTTPRequestHandler, body: bytes, fault: str) -> tuple[int, object, dict]:
        """Record what the request delivers; the answer to give."""
        path = urlsplit(h.path).path
        if self.kind == "postmark" and path == "/email/batch":
            return self._postmark(json.loads(body), fault)
        if self.kind == "sendgrid" and path == "/v3/mail/send":
            return self._sendgrid(json.loads(body))
        if self.kind == "mailgun" and path == f"/v3/{DOMAIN}/messages":
            return self._mailgun(parse_qs(body.decode()))
        if self.kind == "resend" and path == "/emails/batch":
            return self._resend(json.loads(body), fault)
        return 404, {"message": f"no {h.path}"}, {}

    def _record(self, to: str, message_id: str, batch: str, subscriber: str, provider_id: str) -> None:
        with self.lock:
            self.accepted.append(Accepted(to, message_id, batch, subscriber, provider_id, time.time()))

    def _postmark(self, messages: list, fault: str) -> tuple[int, object, dict]:
        keep = len(messages) // 2 if fault == "partial" else len(messages)
        out = []
        for m in messages[:keep]:
            pid = str(uuid.uuid4())
            headers = {x["Name"]: x["Value"] for x in m.get("Headers", [])}
            meta = m.get("Metadata") or {}
            self._record(m["To"], headers.get("Message-ID", ""), meta.get("publisher_batch", ""),
                         meta.get("publisher_subscriber", ""), pid)
            out.append({"ErrorCode": 0, "Message": "OK", "MessageID": pid, "To": m["To"]})
        return 200, out, {}

    def _sendgrid(self, body: dict) -> tuple[int, object, dict]:
        xid = uuid.uuid4().hex[:22]
        for p in body["personalizations"]:
            args = p.get("custom_args") or {}
            self._record(p["to"][0]["email"], (p.get("headers") or {}).get("Message-ID", ""),
                         args.get("publisher_batch", ""), args.get("publisher_subscriber", ""), xid)
        return 202, None, {"X-Message-Id": xid}

    def _mailgun(self, form: dict) -> tuple[int, object, dict]:
        mid = f"<{uuid.uuid4().hex}@{DOMAIN}>"
        variables = json.loads(form["recipient-variables"][0])
        for to in form["to"]:
            self._record(to, variables[to]["id"], form.get("v:publisher_batch", [""])[0], "", mid)
        return 200, {"id": mid, "message": "Queued. Thank you."}, {}

    def _resend(self, messages: list, fault: str) -> tuple[int, object, dict]:
        keep = len(messages) // 2 if fault == "partial" else len(messages)
        data, errors = [], []
        for index, m in enumerate(messages):
            if index >= keep:
                errors.append({"index": index, "message": "fake: refused"})
                continue
            pid = str(uuid.uuid4())
            tags = {t["name"]: t["value"] for t in m.get("tags") or []}
            self._record(m["to"][0], m.get("headers", {}).get("Message-ID", ""), tags.get("publisher_batch", ""),
                         tags.get("publisher_subscriber", ""), pid)
            data.append({"id": pid})
        return 200, {"data": data, "errors": errors}, {}

    # -- lookups ----------------------------------------------------------------------------------------
    def _get(self, h: BaseHTTPRequestHandler) -> None:
        with self.lock:
            self.lookups += 1
            accepted = list(self.accepted)
        parts = urlsplit(h.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        if self.kind == "postmark" and parts.path == "/messages/outbound":
            found = [a for a in accepted if a.batch == query.get("metadata_publisher_batch")]
            offset, count = int(query.get("offset", 0)), int(query.get("count", 100))
            page = found[offset:offset + count]
            return _answer(h, 200, {"TotalCount": len(found), "Messages": [
                {"MessageID": a.provider_id, "Recipients": [a.to], "To": [{"Email": a.to}], "Status": "Sent",
                 "Metadata": {"publisher_batch": a.batch, "publisher_subscriber": a.subscriber}} for a in page]})
        if self.kind == "mailgun" and parts.path == f"/v3/{DOMAIN}/events":
            page = int(query.get("page", 0))
            found = [a for a in accepted if a.to == query.get("recipient") and a.at >= float(query.get("begin", 0))]
            items = found[page * 2:page * 2 + 2]  # small pages, so paging is exercised
            nxt = f"{self.url}{parts.path}?recipient={query.get('recipient')}&begin={query.get('begin', 0)}&page={page + 1}"
            return _answer(h, 200, {"items": [
                {"event": "accepted", "recipient": a.to, "timestamp": a.at,
                 "user-variables": {"publisher_batch": a.batch, "publisher_message": a.message_id},
                 "message": {"headers": {"message-id": a.provider_id.strip("<>")}}} for a in items],
                "paging": {"next": nxt}})
        if self.kind == "resend" and parts.path.startswith("/emails/"):
            wanted = parts.path.rsplit("/", 1)[1]
            hit = next((a for a in accepted if a.provider_id == wanted), None)
            if hit is None:
                return _answer(h, 404, {"name": "not_found"})
            return _answer(h, 200, {"object": "email", "id": hit.provider_id, "to": [hit.to], "last_event": "sent"})
        _answer(h, 404, {"message": f"no {h.path}"})


def _answer(h: BaseHTTPRequestHandler, status: int, body: object, headers: dict | None = None) -> None:
    _raw(h, status, json.dumps(body).encode(), headers)


def _raw(h: BaseHTTPRequestHandler, status: int, raw: bytes, headers: dict | None = None) -> None:
    try:
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(raw)))
        for name, value in (headers or {}).items():
            h.send_header(name, value)
        h.end_headers()
        h.wfile.write(raw)
    except OSError:
        pass  # the client gave up (timed out, killed): what was accepted stays accepted
