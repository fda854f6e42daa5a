"""The subscription pages as the internet meets them: `publish web` (uvicorn) in a subprocess on loopback,
driven over real sockets, mail read from a real SMTP server, state read from the SQLite file."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import socket
import sqlite3
import threading
import time

import httpx
import pytest

from publisher.tokens import Secrets, make_confirm_token, make_token

from .conftest import SECRET, use_smtp
from .servers import PublishWeb, read_until_closed

SECURITY = ("content-security-policy", "x-content-type-options", "x-frame-options", "referrer-policy",
            "cache-control", "strict-transport-security")


@pytest.fixture
def start_web(digest_site, smtp_server, tmp_path):
    """start_web(**[web] settings) → a running `publish web`; all are stopped at the end of the test."""
    use_smtp(digest_site, smtp_server.port)
    servers = []

    def start(**web) -> PublishWeb:
        text = digest_site.config.read_text(encoding="utf-8")
        for key, value in web.items():
            text, count = re.subn(rf"^{key} = .*$", f"{key} = {value}", text, flags=re.M)
            if not count:
                text = text.replace("[web]\n", f"[web]\n{key} = {value}\n")
        digest_site.config.write_text(text, encoding="utf-8")
        server = PublishWeb(digest_site.config, tmp_path / f"web{len(servers)}.log",
                            {"PUBLISHER_TOKEN_SECRET": SECRET}).start()
        server.site, server.smtp = digest_site, smtp_server.recorder
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


class Visitor:
    """A sign-up form visitor: keeps its CSRF cookie by hand (it is Secure and `__Host-`, and this is http)."""

    def __init__(self, server: PublishWeb, forwarded_for: str | None = None) -> None:
        self.server = server
        self.headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
        page = httpx.get(server.base + "subscribe", headers=self.headers)
        assert page.status_code == 200, page.text
        self.cookie = page.headers["set-cookie"].split(";")[0]
        self.csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)

    def sign_up(self, email: str, categories: tuple[str, ...] = (), forwarded_for: str | None = None,
                csrf: str | None = None) -> httpx.Response:
        headers = {**self.headers, "Cookie": self.cookie}
        if forwarded_for:
            headers["X-Forwarded-For"] = forwarded_for
        data = {"csrf": self.csrf if csrf is None else csrf, "email": email, "category": list(categories)}
        return httpx.post(self.server.base + "subscribe", data=data, headers=headers)


def mails_to(recorder, predicate) -> list:
    return [m for m in recorder.parsed() if predicate(m["To"].addresses[0].addr_spec)]


def link_in(mail, path: str) -> str:
    body = mail.get_body(("plain",)).get_content()
    return re.search(rf"https://news\.example\.jp/({path}/\S+)", body).group(1)


def row(site, email: str):
    with sqlite3.connect(site.db) as conn:
        return conn.execute("SELECT status, categories FROM subscribers WHERE email = ?", (email,)).fetchone()


# -- 1. client identity behind proxies, and limits that hold ---------------------------------------------------
def test_client_is_what_the_trusted_proxy_appended(start_web):
    server = start_web(trusted_proxies='["127.0.0.1", "10.0.0.0/8"]', per_client_per_hour=3)
    visitor = Visitor(server)
    # The client writes whatever it likes on the left; nginx ($proxy_add_x_forwarded_for) and Caddy append
    # the address they saw on the right. Every request here really comes from 203.0.113.7.
    answers = [visitor.sign_up(f"reader{i}@example.net", forwarded_for=f"198.51.100.{i}, 203.0.113.7").status_code
               for i in range(5)]
    assert answers == [200, 200, 200, 429, 429], "a forged leftmost entry does not make a new client"
    limited = visitor.sign_up("x@example.net", forwarded_for="203.0.113.7")
    assert limited.headers["retry-after"] == "1200" and "x-content-type-options" in limited.headers
    # Two proxies in a row (a load balancer in 10/8 in front of the local proxy): the client is the last
    # address that is not a trusted proxy.
    assert visitor.sign_up("y@example.net", forwarded_for="1.1.1.1, 203.0.113.7, 10.1.2.3").status_code == 429
    # Another client behind the same proxy is not blocked by that one.
    assert visitor.sign_up("z@example.net", forwarded_for="203.0.113.8").status_code == 200
    # The counts live in the database: a restart forgets nothing.
    server.stop()
    server.start()
    assert Visitor(server).sign_up("w@example.net", forwarded_for="203.0.113.7").status_code == 429


def test_forwarded_headers_from_an_untrusted_peer_are_ignored(start_web):
    server = start_web(trusted_proxies='["10.0.0.0/8"]', per_client_per_hour=3)
    visitor = Visitor(server)
    answers = [visitor.sign_up(f"r{i}@example.net", forwarded_for=f"203.0.113.{i}").status_code for i in range(4)]
    assert answers == [200, 200, 200, 429], "X-Forwarded-For from a peer that is not a proxy is not believed"


def test_deprecated_trust_forwarded_is_read_as_loopback_proxies(start_web):
    server = start_web(trust_forwarded="true", per_client_per_hour=2)
    assert "trust_forwarded is deprecated" in server.log()
    visitor = Visitor(server)
    assert [visitor.sign_up(f"d{i}@example.net", forwarded_for=f"9.9.9.{i}, 203.0.113.9").status_code
            for i in range(3)] == [200, 200, 429]
    assert visitor.sign_up("e@example.net", forwarded_for="203.0.113.10").status_code == 200


def test_mail_limits_per_mailbox_domain_and_site(start_web):
    server = start_web(per_client_per_hour=1000, per_address_per_day=3, per_domain_per_hour=6, mails_per_hour=10)
    visitor = Visitor(server)
    recorder = server.smtp
    # Plus-tags and case: one mailbox.
    answers = {visitor.sign_up(f"Victim+{i}@example.org").status_code for i in range(10)}
    assert answers == {200}, "the answer never tells"
    assert len(mails_to(recorder, lambda a: a.startswith("victim"))) == 3
    # Dots at Gmail, and googlemail.com is gmail.com.
    for address in ("v.i.c.t.i.m@gmail.com", "victim@googlemail.com", "vic.tim+x@gmail.com", "victim@gmail.com"):
        assert visitor.sign_up(address).status_code == 200
    assert len(mails_to(recorder, lambda a: a.endswith(("@gmail.com", "@googlemail.com")))) == 3
    # Per destination domain: example.org had 3 mails; three more mailboxes there, then no more this hour.
    assert [visitor.sign_up(f"other{i}@example.org").status_code for i in range(4)] == [200, 200, 200, 429]
    assert len(mails_to(recorder, lambda a: a.endswith("@example.org"))) == 6
    # The whole site: 9 mails so far, one more, then the hourly budget is spent.
    assert visitor.sign_up("someone@example.net").status_code == 200
    refused = visitor.sign_up("another@example.info")
    assert refused.status_code == 429 and refused.headers["retry-after"] == "360"
    assert len(recorder.messages) == 10


# -- 2. malformed input is a 400/403 page, never a 500 ----------------------------------------------------------
def forged_token(purpose: bytes, subscriber_id: int) -> str:
    """A correctly signed new-format token naming any id, made with the test secret."""
    payload = b"\x02" + purpose + subscriber_id.to_bytes(8, "big") + int(time.time()).to_bytes(6, "big") + b"\0" * 8
    mac = hmac.new(SECRET.encode(), b"publisher-link\0" + payload, hashlib.sha256).digest()[:18]
    return base64.urlsafe_b64encode(payload + mac).decode()


def legacy_token(payload: str, email: str = "all@example.com") -> str:
    mac = hmac.new(SECRET.encode(), f"{payload}\0{email}".encode(), hashlib.sha256).digest()[:18]
    b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()  # noqa: E731
    return f"{b64(payload.encode())}.{b64(mac)}"


def test_malformed_tokens_and_forms_are_400_or_403(start_web):
    server = start_web()
    good = make_token(Secrets(SECRET.encode()), 1, "all@example.com", "unsubscribe")
    tokens = [
        forged_token(b"u", 2**63), forged_token(b"u", 2**64 - 1), forged_token(b"u", 0),
        legacy_token(f"{2**63}.u.0"), legacy_token("99999999999999999999999.u.0"), legacy_token("1.u.0 "),
        legacy_token("-1.u.0"), legacy_token("1.u.0") + "A", good + "A", good + "==", good[:-1] + "+",
        good + "%00", good[:20] + "%C3%BC" + good[23:], "%FF" * 56, "A" * 5000, "..", "A.B.C",
        base64.urlsafe_b64encode(b"1.u.0").decode() + "." + "A" * 24,
    ]
    for token in tokens:
        for path in ("unsubscribe", "preferences", "confirm"):
            for method in ("GET", "POST"):
                answer = httpx.request(method, f"{server.base}{path}/{token}")
                assert answer.status_code in (400, 403, 404), (path, token, answer.status_code)
                assert "<html" in answer.text
    assert row(server.site, "all@example.com")[0] == "active"

    visitor = Visitor(server)
    assert visitor.sign_up("a@example.com", csrf="é" * 32).status_code == 403, "a non-ASCII CSRF value"
    assert visitor.sign_up("a@example.com", csrf="").status_code == 403
    cookie = visitor.cookie
    bodies = [
        ("application/x-www-form-urlencoded", b"csrf=" + visitor.csrf.encode() + b"&email=%FF%FE@example.com", 400),
        ("application/x-www-form-urlencoded", "email=ü@example.com".encode(), 400),
        ("application/x-www-form-urlencoded", b"&".join(b"f%d=1" % i for i in range(100)), 400),
        ("multipart/form-data; boundary=x", b"--x\r\nContent-Disposition: form-data; name=csrf\r\n\r\nx\r\n--x--", 415),
        ("application/json", b'{"email": "a@example.com"}', 415),
        ("", b"email=a@example.com", 415),
    ]
    for content_type, body, status in bodies:
        headers = {"Cookie": cookie, "Content-Type": content_type}
        answer = httpx.post(server.base + "subscribe", content=body, headers=headers)
        assert answer.status_code == status, (content_type, body[:40], answer.status_code)
    raw = server.raw(b"POST /subscribe HTTP/1.1\r\nHost: x\r\nCookie: __Host-publisher_csrf=\xe9\xe9\r\n"
                     b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 6\r\n\r\ncsrf=x")
    assert raw.startswith(b"HTTP/1.1 403"), raw[:60]
    for garbage in (b"GET /unsubscribe/\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n", b"\x16\x03\x01\x02\x00\x01\r\n\r\n",
                    b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
                    b"GET /confirm/" + b"A" * 20000 + b" HTTP/1.1\r\n\r\n"):
        answer = server.raw(garbage, timeout=5)
        assert re.match(rb"HTTP/1.1 4\d\d", answer), (garbage[:40], answer[:80])
    assert httpx.get(server.base + "subscribe").status_code == 200, "still serving"
    log = server.log()
    assert "Traceback" not in log and "Exception" not in log and " 500 " not in log, log[-3000:]


# -- 3. confirmation links: single use, never undo an unsubscribe, never touch another row ----------------------
def test_confirmation_is_single_use_and_carries_its_categories(start_web):
    server = start_web(per_address_per_day=10)
    site, recorder = server.site, server.smtp
    visitor = Visitor(server)
    # Someone signs up a current subscriber with other categories: the row stays as it was.
    assert visitor.sign_up("chips@example.com", ("政策",)).status_code == 200
    assert row(site, "chips@example.com") == ("active", '["半導体", "Research"]')
    # A new reader: nothing is stored on a subscriber row until the link is used.
    visitor.sign_up("reader@example.net", ("半導体",))
    assert row(site, "reader@example.net") is None
    first_link = link_in(mails_to(recorder, lambda a: a == "reader@example.net")[-1], "confirm")
    assert httpx.get(server.base + first_link).status_code == 200
    visitor.sign_up("reader@example.net", ("政策", "Research"))
    second_link = link_in(mails_to(recorder, lambda a: a == "reader@example.net")[-1], "confirm")
    assert httpx.post(server.base + second_link).status_code == 200
    assert row(site, "reader@example.net") == ("active", '["政策", "Research"]'), "the categories that link asked for"
    assert httpx.post(server.base + second_link).status_code == 403, "a link is used once"
    assert httpx.post(server.base + first_link).status_code == 403, "using one link retires the others"
    # Unsubscribe, then try every confirmation link again: none brings the address back.
    sid = int(sqlite3.connect(site.db).execute("SELECT id FROM subscribers WHERE email = 'reader@example.net'")
              .fetchone()[0])
    token = make_token(Secrets(SECRET.encode()), sid, "reader@example.net", "unsubscribe")
    one_click = {"content": b"List-Unsubscribe=One-Click", "headers": {"Content-Type": "application/x-www-form-urlencoded"}}
    assert httpx.post(f"{server.base}unsubscribe/{token}", **one_click).status_code == 200
    for link in (first_link, second_link):
        assert httpx.post(server.base + link).status_code == 403
    # Someone signs the address up again; its owner answers with the unsubscribe link of an old digest:
    # the sign-up made before that unsubscribe can no longer be confirmed.
    visitor.sign_up("reader@example.net", ("半導体",))
    pending_link = link_in(mails_to(recorder, lambda a: a == "reader@example.net")[-1], "confirm")
    assert httpx.post(f"{server.base}unsubscribe/{token}", **one_click).status_code == 200
    assert httpx.get(server.base + pending_link).status_code == 403
    assert httpx.post(server.base + pending_link).status_code == 403
    assert row(site, "reader@example.net")[0] == "unsubscribed"
    # Signing up again after unsubscribing is a new double opt-in.
    visitor.sign_up("reader@example.net", ("Research",))
    fresh = link_in(mails_to(recorder, lambda a: a == "reader@example.net")[-1], "confirm")
    assert httpx.post(server.base + fresh).status_code == 200
    assert row(site, "reader@example.net") == ("active", '["Research"]')
    # A confirmation token for a nonce that was never issued, correctly signed, is refused too.
    stray = make_confirm_token(Secrets(SECRET.encode()), b"\x01" * 16)
    assert httpx.post(f"{server.base}confirm/{stray}").status_code == 403


# -- 4. logs, body caps, CSRF before the body, cookies, headers, purging -------------------------------------
def test_access_log_never_records_a_token(start_web):
    server = start_web()
    secrets = Secrets(SECRET.encode())
    tokens = [make_token(secrets, 1, "all@example.com", "unsubscribe"),
              make_token(secrets, 1, "all@example.com", "preferences"), make_confirm_token(secrets, b"\x02" * 16)]
    for token in tokens:
        for path in (f"unsubscribe/{token}", f"preferences/{token}", f"confirm/{token}", f"Unsubscribe/{token}",
                     f"unsubscribe/{token}/", f"/unsubscribe/{token}", f"nowhere/{token}", f"subscribe?t={token}"):
            httpx.get(server.base + path)
    httpx.post(f"{server.base}unsubscribe/{tokens[0]}", content=b"List-Unsubscribe=One-Click")
    time.sleep(0.3)
    log = server.log()
    for token in tokens:
        assert token not in log and token[:16] not in log
    assert re.search(r'"GET /unsubscribe/\[redacted\] HTTP/1.1" 200', log), log[-2000:]
    assert re.search(r'"POST /unsubscribe/\[redacted\] HTTP/1.1" 200', log)
    assert re.search(r'"GET /subscribe\?\[redacted\] HTTP/1.1" 200', log)


def test_body_caps_and_csrf_come_before_the_body(start_web):
    server = start_web(max_body=16384)
    visitor = Visitor(server)
    rss_before = server.rss_kib()
    head = ("POST {path} HTTP/1.1\r\nHost: x\r\nCookie: {cookie}\r\nContent-Type: {ctype}\r\n"
            "Content-Length: {length}\r\n\r\n")
    unsubscribe = f"/unsubscribe/{make_token(Secrets(SECRET.encode()), 1, 'all@example.com', 'unsubscribe')}"
    form = "application/x-www-form-urlencoded"
    cases = [("/subscribe", visitor.cookie, form, 100_000_000, b"413"),
             (unsubscribe, "", "multipart/form-data; boundary=x", 100_000_000, b"413"),
             ("/preferences/x", visitor.cookie, form, 100_000_000, b"413"),
             ("/nowhere", "", "text/plain", 100_000_000, b"413"),
             # Within the cap but never sent: answered before the body is waited for.
             ("/subscribe", "", form, 10_000, b"403"),  # no CSRF cookie
             ("/subscribe", visitor.cookie, "multipart/form-data; boundary=x", 10_000, b"415")]  # never parsed
    for path, cookie, ctype, length, status in cases:
        started = time.monotonic()
        request = head.format(path=path, cookie=cookie, ctype=ctype, length=length).encode() + b"x" * 1000
        answer = server.raw(request, timeout=8)
        assert answer.startswith(b"HTTP/1.1 " + status), (path, answer[:100])
        assert time.monotonic() - started < 4, "answered at once, without waiting for the body"
    # A chunked body (no Content-Length) is counted as it streams: cut off soon after the cap.
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(f"POST /subscribe HTTP/1.1\r\nHost: x\r\nCookie: {visitor.cookie}\r\n"
                     "Content-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
        sent, chunk = 0, b"10000\r\n" + b"a" * 0x10000 + b"\r\n"
        try:
            while sent < 100_000_000:
                sock.sendall(chunk)
                sent += 0x10000
                sock.settimeout(0.001)
                try:
                    if sock.recv(1, socket.MSG_PEEK):
                        break
                except (TimeoutError, BlockingIOError):
                    pass
                sock.settimeout(10)
        except OSError:
            pass  # the server closed the connection
        sock.settimeout(10)
        answer = read_until_closed(sock, 5)
    assert sent < 8_000_000, f"the server read {sent} bytes before refusing"
    assert answer.startswith(b"HTTP/1.1 413") or answer == b"", answer[:80]
    assert server.rss_kib() - rss_before < 30_000, "no body was held in memory"
    assert httpx.get(server.base + "subscribe").status_code == 200


def test_cookie_and_security_headers_on_every_answer(start_web):
    server = start_web()
    page = httpx.get(server.base + "subscribe")
    cookie = page.headers["set-cookie"]
    assert cookie.startswith("__Host-publisher_csrf=")
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
    assert {"secure", "httponly", "path", "samesite"} <= attributes and "domain" not in attributes
    assert "Path=/" in cookie and "SameSite=strict" in cookie
    answers = {
        200: page,
        400: httpx.post(server.base + "subscribe", content=b"email=%FF", headers={
            "Cookie": cookie.split(";")[0], "Content-Type": "application/x-www-form-urlencoded"}),
        403: httpx.get(server.base + "unsubscribe/" + "A" * 56),
        404: httpx.get(server.base + "nowhere"),
        405: httpx.delete(server.base + "subscribe"),
        413: httpx.post(server.base + "subscribe", content=b"x" * 20000),
        415: httpx.post(server.base + "subscribe", content=b"{}", headers={
            "Cookie": cookie.split(";")[0], "Content-Type": "application/json"}),
    }
    for status, answer in answers.items():
        assert answer.status_code == status, (status, answer.status_code)
        missing = [h for h in SECURITY if h not in answer.headers]
        assert not missing, (status, missing)
        assert answer.headers["strict-transport-security"].startswith("max-age=")
        assert "server" not in answer.headers
    assert answers[405].headers["allow"]
    raw = server.raw(b"NOT HTTP AT ALL\r\n\r\n").decode("latin-1").lower()
    assert raw.startswith("http/1.1 400") and "x-content-type-options: nosniff" in raw
    assert "strict-transport-security" in raw and "content-security-policy" in raw


def test_headers_once_and_on_uvicorns_own_503(start_web):
    server = start_web(max_connections=3)
    page = httpx.get(server.base + "subscribe")
    assert len(page.headers.get_list("content-security-policy")) == 1, "each header once"
    assert len(page.headers.get_list("x-frame-options")) == 1
    idle = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(2)]
    try:
        answer = server.raw(b"GET /subscribe HTTP/1.1\r\nHost: x\r\n\r\n").decode("latin-1").lower()
    finally:
        for sock in idle:
            sock.close()
    assert answer.startswith("http/1.1 503"), answer[:60]
    assert "x-content-type-options: nosniff" in answer and "strict-transport-security" in answer
    time.sleep(0.5)
    assert httpx.get(server.base + "subscribe").status_code == 200


def test_expired_signups_and_refilled_limits_are_purged(start_web):
    server = start_web()
    with sqlite3.connect(server.site.db) as conn:
        conn.execute("INSERT INTO pending_confirmations VALUES ('old', 'gone@example.net', '[]', "
                     "'2020-01-01T00:00:00+00:00', '2020-01-03T00:00:00+00:00')")
        conn.execute("INSERT INTO rate_buckets VALUES ('client:old', 1000.0)")
    Visitor(server).sign_up("fresh@example.net")
    with sqlite3.connect(server.site.db) as conn:
        assert conn.execute("SELECT email FROM pending_confirmations").fetchall() == [("fresh@example.net",)]
        buckets = [b for (b,) in conn.execute("SELECT bucket FROM rate_buckets")]
    assert "client:old" not in buckets and len(buckets) == 4, "client, mailbox, domain and site buckets"
    assert not any("fresh" in b or "127.0.0.1" in b for b in buckets), "bucket names are keyed hashes"


# -- slow clients ----------------------------------------------------------------------------------------------
def test_slow_clients_are_dropped_and_others_served(start_web):
    server = start_web(request_timeout="2.0")
    token = make_token(Secrets(SECRET.encode()), 1, "all@example.com", "unsubscribe")
    slow_headers = [socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(40)]
    slow_bodies = [socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(20)]
    for sock in slow_headers:
        sock.sendall(b"GET /subscribe HTTP/1.1\r\nHost: x\r\n")
    for sock in slow_bodies:
        sock.sendall(f"POST /unsubscribe/{token} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nL".encode())
    started = time.monotonic()
    served = []
    while time.monotonic() - started < 4:
        for sock in slow_headers:
            try:
                sock.sendall(b"X")  # one more byte of a header that never ends
            except OSError:
                pass
        t0 = time.monotonic()
        assert httpx.get(server.base + "subscribe", timeout=5).status_code == 200
        served.append(time.monotonic() - t0)
        time.sleep(0.2)
    assert max(served) < 2, f"a normal visitor waited {max(served):.2f} s"
    closed = 0
    for sock in slow_headers:
        try:
            sock.sendall(b"X")
            sock.settimeout(3)
            closed += sock.recv(100) == b""
        except OSError:
            closed += 1
        sock.close()
    assert closed == len(slow_headers), "clients trickling headers are dropped after request_timeout"
    for sock in slow_bodies:
        answer = read_until_closed(sock, 3)
        sock.close()
        assert answer.startswith(b"HTTP/1.1 408"), answer[:60]
    assert row(server.site, "all@example.com")[0] == "active", "a body that never arrived unsubscribes no one"


# -- found by attacking the pages from outside -----------------------------------------------------------------
def test_head_requests_change_nothing(start_web):
    """Link scanners and proxies send HEAD as readily as GET: it must only ask, like GET."""
    server = start_web()
    site = server.site
    token = make_token(Secrets(SECRET.encode()), 1, "all@example.com", "unsubscribe")
    assert httpx.head(f"{server.base}unsubscribe/{token}").status_code == 200
    assert row(site, "all@example.com")[0] == "active", "a HEAD unsubscribes no one"
    assert httpx.head(server.base + "subscribe").status_code == 200
    Visitor(server).sign_up("scanned@example.net")
    link = link_in(mails_to(server.smtp, lambda a: a == "scanned@example.net")[-1], "confirm")
    assert httpx.head(server.base + link).status_code == 200
    assert row(site, "scanned@example.net") is None, "a HEAD confirms no sign-up"
    assert httpx.post(server.base + link).status_code == 200, "the link still works for its owner"
    assert row(site, "scanned@example.net")[0] == "active"


def test_addresses_the_mail_parser_trips_on_get_the_form_again(start_web):
    server = start_web()
    visitor = Visitor(server)
    for address in ("a@[", "x@[192.0.2.1", "a.}@[&", "Ａ@[~"):
        answer = visitor.sign_up(address)
        assert answer.status_code == 400 and 'id="error"' in answer.text, (address, answer.status_code)
    assert httpx.get(server.base + "subscribe").status_code == 200
    assert "Traceback" not in server.log()


def test_a_preferences_save_never_undoes_an_unsubscribe(start_web):
    """A save and a one-click unsubscribe arriving together (both waiting on a busy database): the save changes
    the categories only, so the unsubscribe that was answered 200 stays recorded, whichever runs first."""
    server = start_web()
    secrets = Secrets(SECRET.encode())
    one_click = f"{server.base}unsubscribe/{make_token(secrets, 1, 'all@example.com', 'unsubscribe')}"
    preferences = f"{server.base}preferences/{make_token(secrets, 1, 'all@example.com', 'preferences')}"
    visitor = Visitor(server)
    answers: dict[str, int] = {}

    def unsubscribe() -> None:
        answers["unsubscribe"] = httpx.post(one_click, content=b"List-Unsubscribe=One-Click", timeout=60).status_code

    def save() -> None:
        answers["save"] = httpx.post(preferences, data={"csrf": visitor.csrf, "action": "save", "category": "Research"},
                                     headers={"Cookie": visitor.cookie}, timeout=60).status_code

    for attempt in range(8):
        with sqlite3.connect(server.site.db) as conn:
            conn.execute("UPDATE subscribers SET status = 'active', categories = '[]' WHERE id = 1")
        busy = sqlite3.connect(server.site.db, isolation_level=None)
        busy.execute("BEGIN IMMEDIATE")  # another writer (a pass) holds the database for a moment
        threads = [threading.Thread(target=unsubscribe), threading.Thread(target=save)]
        for thread in threads:
            thread.start()
            time.sleep(0.5)  # each request has read what it reads and waits to write
        busy.execute("ROLLBACK")
        busy.close()
        for thread in threads:
            thread.join(60)
        assert answers == {"unsubscribe": 200, "save": 200}, answers
        assert row(server.site, "all@example.com") == ("unsubscribed", '["Research"]'), f"attempt {attempt}"


def test_access_log_lines_cannot_be_forged_and_hide_tokens_inside_segments(start_web):
    server = start_web()
    token = make_token(Secrets(SECRET.encode()), 1, "all@example.com", "unsubscribe")
    forged = "2026-01-01 00:00:00,000 INFO 203.0.113.1 \"POST /subscribe HTTP/1.1\" 200"
    server.raw(b"GET /nowhere%0A" + forged.replace(" ", "%20").replace('"', "%22").encode()
               + b"%0D%1B[31m HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    for path in (f"/nowhere/a{token}%20", f"/unsubscribe;{token}", f"/nowhere/({token})", f"/x{token}"):
        server.raw(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    time.sleep(0.3)
    log = server.log()
    assert not any(line.startswith("2026-01-01") for line in log.splitlines()), "a request wrote its own log line"
    assert "\x1b" not in log and "\r" not in log, "control characters reach the log"
    assert token not in log and token[:16] not in log
    assert "GET /nowhere\\n2026-01-01" in log, "the path is still there, escaped"


def test_trusted_networks_with_host_bits_are_believed(start_web):
    """[web] accepts "127.0.0.1/8" as the network 127.0.0.0/8: the proxies in it are trusted as configured."""
    server = start_web(trusted_proxies='["127.0.0.1/8"]', per_client_per_hour=2)
    visitor = Visitor(server)
    answers = [visitor.sign_up(f"h{i}@example.net", forwarded_for=f"203.0.113.{i}").status_code for i in range(3)]
    assert answers == [200, 200, 200], "three clients behind the proxy, not one"
    assert [visitor.sign_up(f"k{i}@example.net", forwarded_for="203.0.113.9").status_code
            for i in range(3)] == [200, 200, 429]


def test_every_log_line_is_stamped_like_the_rest_of_publisher(start_web):
    """The README: every time publisher prints is ISO 8601 in the site timezone with its offset — the pages'
    access log and uvicorn's own lines (started, stopping) included."""
    server = start_web()
    assert httpx.get(server.base + "subscribe").status_code == 200
    time.sleep(0.3)
    server.stop()
    lines = server.log().splitlines()
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+09:00 (INFO|WARNING|ERROR) "
    assert any('"GET /subscribe HTTP/1.1" 200' in line for line in lines), lines
    assert any("Started server process" in line for line in lines), lines
    assert all(re.match(stamp, line) for line in lines), lines


def test_a_secret_generated_on_start_is_said_in_a_stamped_line(digest_site, monkeypatch, tmp_path):
    monkeypatch.delenv("PUBLISHER_TOKEN_SECRET")
    server = PublishWeb(digest_site.config, tmp_path / "web.log").start()
    server.stop()
    lines = server.log().splitlines()
    said = [line for line in lines if "Generated the secret that signs subscriber links" in line]
    assert len(said) == 1 and re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+09:00 WARNING ", said[0]), lines
