"""Real HTTP servers on 127.0.0.1 for the WebSub tests: a small hub, a subscriber callback, a feed server.

The hub does what a WebSub hub does (W3C Recommendation, §5–7), reduced to what the tests need: it verifies a
subscriber's intent with a GET challenge, records every publish ping, and on a ping fetches the feed from the
publisher's web server and POSTs it to each verified subscriber of that topic, signed with X-Hub-Signature.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from functools import partial
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class _Server:
    """A ThreadingHTTPServer on a free loopback port, in a background thread."""

    def __init__(self, handler, port: int = 0) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@dataclass
class Ping:
    at: float  # time.time() when it arrived
    form: dict[str, list[str]]
    content_type: str
    status: int


@dataclass
class HubState:
    pings: list[Ping] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)  # statuses to answer the next pings with, then 204
    hang: float = 0.0  # seconds to wait before answering a ping
    trickle: float = 0.0  # answer a ping one byte every this many seconds (for at most 15 s)
    subscriptions: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # topic → (callback, secret)
    fetched: list[tuple[float, str, int]] = field(default_factory=list)  # (time, topic, status)
    delivered: list[tuple[float, str, str, int]] = field(default_factory=list)  # (time, topic, callback, status)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def urls(self) -> list[str]:
        return [url for p in self.pings if p.status < 300 for url in p.form.get("hub.url", [])]


def _hub_handler(state: HubState):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode()
            form = urllib.parse.parse_qs(body)
            mode = form.get("hub.mode", [""])[0]
            if mode == "publish":
                self._publish(form)
            elif mode == "subscribe":
                self._subscribe(form)
            else:
                self._answer(400, b"unknown hub.mode")

        def _answer(self, status: int, body: bytes = b"") -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _publish(self, form) -> None:
            if state.hang:
                time.sleep(state.hang)
            if state.trickle:
                with state.lock:
                    state.pings.append(Ping(time.time(), form, self.headers.get("Content-Type", ""), 0))
                started = time.monotonic()
                try:
                    for byte in b"HTTP/1.1 204 No Content\r\nX-Slow: " + b"." * 1000:
                        if time.monotonic() - started > 15:
                            break
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        time.sleep(state.trickle)
                except OSError:
                    pass  # the publisher gave up on us
                self.close_connection = True
                return
            with state.lock:
                status = state.answers.pop(0) if state.answers else 204
                state.pings.append(Ping(time.time(), form, self.headers.get("Content-Type", ""), status))
            self._answer(status, b"" if status < 300 else b"try later")
            if status < 300:
                for topic in form.get("hub.url", []):
                    threading.Thread(target=_distribute, args=(state, topic), daemon=True).start()

        def _subscribe(self, form) -> None:
            callback, topic = form["hub.callback"][0], form["hub.topic"][0]
            secret = form.get("hub.secret", [""])[0]
            self._answer(202)
            threading.Thread(target=_verify, args=(state, callback, topic, secret), daemon=True).start()

    return Handler


def _verify(state: HubState, callback: str, topic: str, secret: str) -> None:
    """Verification of intent (§5.3): the subscriber must echo the challenge."""
    challenge = secrets.token_hex(8)
    query = urllib.parse.urlencode({"hub.mode": "subscribe", "hub.topic": topic, "hub.challenge": challenge,
                                    "hub.lease_seconds": "3600"})
    with urllib.request.urlopen(f"{callback}?{query}", timeout=5) as resp:
        if resp.status == 200 and resp.read().decode() == challenge:
            with state.lock:
                state.subscriptions.setdefault(topic, []).append((callback, secret))


def _distribute(state: HubState, topic: str) -> None:
    """Content distribution (§7): fetch the topic, POST it to each subscriber with Link headers and a signature."""
    try:
        with urllib.request.urlopen(topic, timeout=5) as resp:
            body, ctype = resp.read(), resp.headers.get("Content-Type", "application/octet-stream")
            state.fetched.append((time.time(), topic, resp.status))
    except OSError:
        state.fetched.append((time.time(), topic, 0))
        return
    with state.lock:
        subscribers = list(state.subscriptions.get(topic, []))
    for callback, secret in subscribers:
        signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        request = urllib.request.Request(callback, data=body, method="POST", headers={
            "Content-Type": ctype, "Link": f'<{topic}>; rel="self", <{state.url}>; rel="hub"',
            "X-Hub-Signature": f"sha256={signature}"})
        with urllib.request.urlopen(request, timeout=5) as resp:
            state.delivered.append((time.time(), topic, callback, resp.status))


class Hub(_Server):
    def __init__(self, port: int = 0, state: HubState | None = None) -> None:
        self.state = state or HubState()
        super().__init__(_hub_handler(self.state), port)
        self.state.url = self.url

    def subscribe(self, topic: str, subscriber: Subscriber, timeout: float = 10) -> None:
        """Subscribe `subscriber` to `topic` the way a reader's client does, and wait until verified."""
        data = urllib.parse.urlencode({"hub.mode": "subscribe", "hub.topic": topic, "hub.callback": subscriber.url,
                                       "hub.secret": subscriber.secret}).encode()
        with urllib.request.urlopen(urllib.request.Request(self.url, data=data), timeout=5) as resp:
            assert resp.status == 202
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.state.lock:
                if any(cb == subscriber.url for cb, _ in self.state.subscriptions.get(topic, [])):
                    return
            time.sleep(0.02)
        raise AssertionError("the hub never verified the subscription")


@dataclass
class Delivery:
    at: float
    body: bytes
    headers: dict[str, str]


def _subscriber_handler(sub: Subscriber):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:  # verification of intent: echo the challenge
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
            body = query.get("hub.challenge", [""])[0].encode()
            self.send_response(200 if body else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:  # content distribution: keep it if the signature holds
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            expected = "sha256=" + hmac.new(sub.secret.encode(), body, hashlib.sha256).hexdigest()
            ok = hmac.compare_digest(self.headers.get("X-Hub-Signature", ""), expected)
            if ok:
                sub.deliveries.append(Delivery(time.time(), body, dict(self.headers)))
            self.send_response(202 if ok else 403)
            self.send_header("Content-Length", "0")
            self.end_headers()

    return Handler


class Subscriber(_Server):
    """A reader's callback endpoint: answers verification and records signed deliveries."""

    def __init__(self) -> None:
        self.secret = secrets.token_hex(16)
        self.deliveries: list[Delivery] = []
        super().__init__(_subscriber_handler(self))


class FeedServer(_Server):
    """The publisher's web server: serves a site folder (the feeds live in its `feeds/`)."""

    def __init__(self, root: Path) -> None:
        class Quiet(SimpleHTTPRequestHandler):
            extensions_map = {**SimpleHTTPRequestHandler.extensions_map, ".xml": "application/atom+xml",
                              ".json": "application/feed+json"}

            def log_message(self, *args) -> None:
                pass

        super().__init__(partial(Quiet, directory=str(root)))
