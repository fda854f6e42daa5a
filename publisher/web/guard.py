"""What stands between the open internet and the pages: security headers on every answer, an access log that
never records a link's token, the client's identity behind trusted proxies, strict form reading and CSRF."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import logging
import re
import secrets as pysecrets
import time
from urllib.parse import parse_qsl, urlsplit

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

access_log = logging.getLogger("publisher.web.access")

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",  # the URL carries a token: never leak it to another site
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
}
HSTS = ("Strict-Transport-Security", "max-age=31536000")
FORM_TYPE = "application/x-www-form-urlencoded"
MAX_FORM_FIELDS = 64


def security_headers(https: bool) -> list[tuple[bytes, bytes]]:
    """The headers every answer carries (HSTS only when the public address is https)."""
    pairs = list(SECURITY_HEADERS.items()) + ([HSTS] if https else [])
    return [(name.lower().encode(), value.encode()) for name, value in pairs]


class SecurityHeaders:
    """ASGI middleware: adds the security headers to every answer, the framework's own errors included (none
    when `headers` is empty: under `publish web` uvicorn adds them, also to its own 500 and 503 answers); an
    answer given before the request body was read to its end closes the connection (the rest is not wanted)."""

    def __init__(self, app: ASGIApp, headers: list[tuple[bytes, bytes]]) -> None:
        self.app = app
        self.headers = headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = {name: value for name, value in scope["headers"] if name in (b"content-length",
                                                                                   b"transfer-encoding")}
        body_done = declared.get(b"content-length", b"0") in (b"0", b"") and b"transfer-encoding" not in declared

        async def tracking_receive() -> Message:
            nonlocal body_done
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [h for h in self.headers if h[0] not in present]
                if not body_done and b"connection" not in present:
                    headers.append((b"connection", b"close"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, tracking_receive, send_with_headers)


_TOKENISH = re.compile(r"[A-Za-z0-9_.=%-]{16,}")


def printable(text: str) -> str:
    """Text as one log line may hold it: ASCII, control characters and backslashes escaped, quotes as %22."""
    return text.encode("unicode_escape").decode("ascii").replace('"', "%22")


def redact(path: str, secret_prefixes: tuple[str, ...]) -> str:
    """The path as it may be logged: whatever follows a secret route's prefix, and anything that looks like a
    token anywhere else (also inside a path segment), is replaced; control characters are escaped."""
    lowered = path.lower()
    for prefix in secret_prefixes:
        if lowered.startswith(prefix):
            return prefix + "[redacted]"
    return printable(_TOKENISH.sub("[redacted]", path[:300]))


class AccessLog:
    """ASGI middleware: one line per request (client, method, redacted path, status, bytes, milliseconds)."""

    def __init__(self, app: ASGIApp, secret_prefixes: tuple[str, ...]) -> None:
        self.app = app
        self.secret_prefixes = tuple(p.lower() for p in secret_prefixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        status, size = 0, 0

        async def logged_send(message: Message) -> None:
            nonlocal status, size
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                size += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, logged_send)
        finally:
            client = scope.get("client")
            path = redact(scope.get("path", ""), self.secret_prefixes) + ("?[redacted]" if scope.get("query_string")
                                                                           else "")
            method = str(scope.get("method", "-"))[:16]
            access_log.info('%s "%s %s HTTP/%s" %s %d %.1fms', printable(client[0]) if client else "-", method, path,
                            scope.get("http_version", "1.1"), status or "-", size,
                            (time.monotonic() - started) * 1000)


def client_key(request: Request) -> str:
    """Who a request comes from, for rate limits: the IPv4 address, or the /64 network of an IPv6 address
    (one subscriber line usually holds a whole /64). Behind trusted proxies the client is the address the
    proxy appended to X-Forwarded-For (uvicorn's ProxyHeadersMiddleware set it)."""
    host = request.client.host if request.client else ""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return "other:" + host[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class BadRequest(Exception):
    """A request that cannot be read: answered with `status` and the page text `text`."""

    def __init__(self, status: int, text: str = "bad_request") -> None:
        super().__init__(status, text)
        self.status = status
        self.text = text


async def read_body(request: Request, timeout: float) -> bytes:
    """The request body, bounded by the route's size cap (Starlette answers 413) and by `timeout` seconds."""
    try:
        async with asyncio.timeout(timeout):
            return await request.body()
    except TimeoutError:
        raise BadRequest(408) from None
    except ClientDisconnect:
        raise BadRequest(400) from None


async def read_form(request: Request, timeout: float) -> dict[str, list[str]]:
    """An application/x-www-form-urlencoded body as field → values; anything else is refused before it is read."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != FORM_TYPE:
        raise BadRequest(415)
    body = await read_body(request, timeout)
    try:
        pairs = parse_qsl(body.decode("ascii"), keep_blank_values=True, encoding="utf-8", errors="strict",
                          max_num_fields=MAX_FORM_FIELDS)
    except (UnicodeDecodeError, ValueError):
        raise BadRequest(400) from None
    form: dict[str, list[str]] = {}
    for name, value in pairs:
        form.setdefault(name, []).append(value)
    return form


def first(form: dict[str, list[str]], name: str) -> str:
    values = form.get(name, [])
    return values[0] if values else ""


_COOKIE_RE = re.compile(r"[A-Za-z0-9_-]{32}")


class Csrf:
    """Double-submit CSRF: a random cookie, and in the form an HMAC of it that only this server can make.
    The cookie is `__Host-` prefixed and Secure whenever the public address is https (also behind a TLS proxy)."""

    def __init__(self, secret: bytes, base_url: str) -> None:
        self.secret = secret
        self.https = urlsplit(base_url).scheme == "https"
        self.cookie_name = "__Host-publisher_csrf" if self.https else "publisher_csrf"
        self.site_host = urlsplit(base_url).netloc.lower()

    def cookie_of(self, request: Request) -> str | None:
        value = request.cookies.get(self.cookie_name, "")
        return value if _COOKIE_RE.fullmatch(value) else None

    def pair(self, request: Request) -> tuple[str, str]:
        """(cookie, form value) for a page with a form: the visitor's cookie, or a new one."""
        cookie = self.cookie_of(request) or pysecrets.token_urlsafe(24)
        return cookie, self.form_value(cookie)

    def form_value(self, cookie: str) -> str:
        return hmac.new(self.secret, f"csrf\0{cookie}".encode(), hashlib.sha256).hexdigest()[:32]

    def precheck(self, request: Request) -> bool:
        """Before the body is read: a well-formed cookie, and no sign that another site sent the form."""
        if self.cookie_of(request) is None or request.headers.get("sec-fetch-site", "") == "cross-site":
            return False
        origin = request.headers.get("origin", "null")
        if origin == "null":  # what browsers send for our own forms under Referrer-Policy: no-referrer
            return True
        try:
            netloc = urlsplit(origin).netloc.lower()
        except ValueError:
            return False
        return netloc in (self.site_host, request.headers.get("host", "").lower())

    def check(self, request: Request, form: dict[str, list[str]]) -> bool:
        cookie = self.cookie_of(request)
        values = form.get("csrf", [])
        if cookie is None or len(values) != 1 or not values[0].isascii():
            return False
        return hmac.compare_digest(values[0].encode("ascii"), self.form_value(cookie).encode("ascii"))

    def set_cookie(self, response: Response, cookie: str) -> Response:
        response.set_cookie(self.cookie_name, cookie, max_age=7200, httponly=True, samesite="strict",
                            secure=self.https, path="/")
        return response
