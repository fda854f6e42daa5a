"""`publish web`: one-click unsubscribe (RFC 8058), double opt-in sign-up, and preferences, on Starlette.

The route table (`WebApp.pages`) is the one place a page is added: each entry names its path, methods, body
size cap, and whether its path holds a credential (never logged). The middleware stack around the router is
built in `create_app`, outermost first: trusted proxies → access log → security headers → Starlette (body
caps per route, error pages). Every piece of state goes through the store, none stays in the process.
"""

from __future__ import annotations

import logging
import secrets as pysecrets
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from ..app import App
from ..errors import PublisherError
from ..message import Outgoing
from ..store.base import PendingConfirmation, Store, Subscriber
from ..subscribers import SubscriberError, normalize_email
from ..tokens import TokenError, make_confirm_token, make_token, read_confirm_token, read_token
from .guard import (
    AccessLog,
    BadRequest,
    Csrf,
    SecurityHeaders,
    client_key,
    first,
    read_body,
    read_form,
    security_headers,
)
from .limits import SignupLimits
from .texts import texts_for

log = logging.getLogger("publisher.web")


def mask(email: str) -> str:
    """a***@example.com: enough for the owner to recognise, little for anyone else."""
    user, _, domain = email.partition("@")
    return f"{user[:1]}***@{domain}"


@dataclass(frozen=True, slots=True)
class Page:
    """One route: `secret_path` pages carry a credential in their path, which the access log never records."""

    path: str
    endpoint: Callable[[Request], Awaitable[Response]]
    methods: tuple[str, ...]
    max_body: int
    secret_path: bool = False

    @property
    def prefix(self) -> str:
        """The fixed part of the path, before its first parameter."""
        return self.path.split("{", 1)[0]


class WebApp:
    """The subscription pages; every change is written to the store at once."""

    def __init__(self, app: App) -> None:
        from jinja2 import Environment, select_autoescape

        from ..digest.render import template_loader

        self.app = app
        self.cfg = cfg = app.cfg
        self.secrets = app.secrets
        self.text = texts_for(cfg.site.language)
        self.csrf = Csrf(self.secrets.current, cfg.site.base_url)
        self.limits = SignupLimits(cfg.web, self.secrets.current)
        self.timeout = cfg.web.request_timeout
        self._stores = threading.local()
        self.env = Environment(loader=template_loader(str(cfg.root / cfg.digest.templates)),
                               autoescape=select_autoescape(["html", "html.j2"]))
        app.open_store().close()  # create or upgrade the store before serving

    def pages(self) -> list[Page]:
        """The route table."""
        cap = self.cfg.web.max_body
        return [
            Page("/unsubscribe/{token}", self.unsubscribe, ("GET", "POST"), cap, secret_path=True),
            Page("/subscribe", self.subscribe, ("GET", "POST"), cap),
            Page("/confirm/{token}", self.confirm, ("GET", "POST"), cap, secret_path=True),
            Page("/preferences/{token}", self.preferences, ("GET", "POST"), cap, secret_path=True),
        ]

    # -- plumbing -----------------------------------------------------------------------------------------
    def now(self) -> datetime:
        return self.app.now().astimezone(UTC)

    def page(self, status: int, title: str, headers: dict[str, str] | None = None, **context: Any) -> HTMLResponse:
        html = self.env.get_template("web.html.j2").render(site=self.cfg.site, title=title, t=self.text, **context)
        return HTMLResponse(html, status_code=status, headers=headers)

    def message(self, status: int, title: str, text: str, headers: dict[str, str] | None = None) -> HTMLResponse:
        return self.page(status, title, headers, kind="message", text=text)

    def in_store(self, work: Callable[[Store], Response]) -> Awaitable[Response]:
        """Run `work` with a store in a worker thread, so a slow database never stalls the event loop. Each
        worker thread keeps its store open between requests (a connection, not state: every fact is in the
        database); a store that failed is closed and opened afresh next time."""
        def run() -> Response:
            store = getattr(self._stores, "store", None)
            if store is None:
                store = self._stores.store = self.app.open_store()
            try:
                return work(store)
            except BaseException:
                self._stores.store = None
                store.close()
                raise

        return run_in_threadpool(run)

    def subscriber(self, store: Store, token: str, purpose: str, max_age: int | None) -> Subscriber:
        def email_of(sid: int) -> str | None:
            sub = store.subscriber_by_id(sid)
            return sub.email if sub else None

        sid = read_token(self.secrets, token, purpose, email_of, max_age, self.now().timestamp())
        return store.subscriber_by_id(sid)  # type: ignore[return-value]

    def bad_link(self, exc: TokenError, title: str) -> HTMLResponse:
        return self.message(exc.status, title, self.text["bad_link"].format(reason=exc))

    # -- unsubscribe (RFC 8058) -------------------------------------------------------------------------
    async def unsubscribe(self, request: Request) -> Response:
        token = request.path_params["token"]
        if request.method == "POST":
            await read_body(request, self.timeout)  # the one-click body, in whatever encoding: not needed

        def work(store: Store) -> Response:
            title = self.text["unsubscribe_title"]
            try:
                sub = self.subscriber(store, token, "unsubscribe", None)
            except TokenError as exc:
                return self.bad_link(exc, title)
            if request.method != "POST":  # link scanners prefetch (GET or HEAD): that only asks
                return self.page(200, title, kind="unsubscribe",
                                 question=self.text["unsubscribe_ask"].format(email=mask(sub.email)))
            # Also when already unsubscribed: that retires sign-ups made since, which must not undo this.
            store.set_subscriber_status(sub.id, "unsubscribed", self.now().isoformat())
            return self.message(200, title, self.text["unsubscribed"].format(email=mask(sub.email)))

        return await self.in_store(work)

    # -- sign-up with double opt-in ----------------------------------------------------------------------
    async def subscribe(self, request: Request) -> Response:
        if request.method != "POST":  # GET or HEAD
            return await self.in_store(lambda store: self.signup_form(request, store, 200, [], "", ""))
        title = self.text["subscribe_title"]
        if not self.csrf.precheck(request):  # before a byte of the body is read
            return self.message(403, title, self.text["bad_form"])
        form = await read_form(request, self.timeout)
        if not self.csrf.check(request, form):
            return self.message(403, title, self.text["bad_form"])
        return await self.in_store(lambda store: self.signup(request, store, form))

    def signup_form(self, request: Request, store: Store, status: int, chosen: list[str], email: str,
                    error: str) -> Response:
        cookie, csrf = self.csrf.pair(request)
        response = self.page(status, self.text["subscribe_title"], kind="subscribe",
                             categories=store.known_categories(), csrf=csrf, chosen=chosen, email=email, error=error)
        return self.csrf.set_cookie(response, cookie)

    def too_many(self, seconds: float) -> Response:
        return self.message(429, self.text["subscribe_title"], self.text["too_many"],
                            headers={"Retry-After": str(max(1, int(seconds + 0.999)))})

    def signup(self, request: Request, store: Store, form: dict[str, list[str]]) -> Response:
        now = self.now()
        store.purge_web_state(now.isoformat(), now.timestamp())
        client = self.limits.client(client_key(request))
        if store.take_rates([client], now.timestamp()) is not None:
            return self.too_many(client.period / max(1, client.limit))
        known = store.known_categories()
        chosen = [c for c in dict.fromkeys(form.get("category", [])) if c in known]
        raw_email = first(form, "email")[:254]
        try:
            email = normalize_email(raw_email)
        except SubscriberError:
            return self.signup_form(request, store, 400, chosen, raw_email, self.text["bad_email"])
        mail_limits = self.limits.mail(email)
        full = store.take_rates(mail_limits, now.timestamp())
        if full is not None and full > 0:  # the domain's or the site's hourly mail budget is spent
            return self.too_many(mail_limits[full].period / max(1, mail_limits[full].limit))
        if full is None:  # (full == 0: this mailbox had its mails for the day: the same answer, and no mail)
            sub = store.subscriber(email)
            if sub is not None and sub.status == "active":
                self.send_link(email, "preferences", make_token(self.secrets, sub.id, sub.email, "preferences",
                                                                int(now.timestamp())), now)
            else:
                nonce = pysecrets.token_bytes(16)
                expires = now + timedelta(hours=self.cfg.web.confirm_hours)
                store.add_confirmation(PendingConfirmation(nonce.hex(), email, tuple(chosen), now.isoformat(),
                                                           expires.isoformat()))
                self.send_link(email, "confirm", make_confirm_token(self.secrets, nonce, int(now.timestamp())), now)
        # The same answer whatever the address's state, so the page reveals nothing about who subscribes.
        return self.message(200, self.text["subscribe_title"], self.text["check_inbox"])

    def send_link(self, email: str, purpose: str, token: str, now: datetime) -> None:
        """Mail a confirmation link, or (to an address already subscribed) its preferences link."""
        from email.utils import format_datetime, make_msgid

        from ..message import sender_domain

        cfg, t = self.cfg, self.text
        already = purpose == "preferences"
        url = f"{cfg.site.base_url}{purpose}/{token}"
        text = t["already_mail" if already else "confirm_mail"].format(site=cfg.site.title, url=url,
                                                                       hours=cfg.web.confirm_hours)
        html = self.env.get_template("web.html.j2").render(
            site=cfg.site, title=t["confirm_title"], t=t, kind="mail", text=text, url=url,
            link_label=t["preferences_title"] if already else t["confirm_button"])
        message = Outgoing(0, email, "", cfg.digest.from_address, t["confirm_subject"].format(site=cfg.site.title),
                           html, text, make_msgid(domain=sender_domain(cfg.digest.from_address)),
                           {"Date": format_datetime(now)})
        transport = self.app.transport()
        try:
            result = transport.send([message])[0]
        finally:
            transport.close()
        if result.status != "sent":
            raise PublisherError(f"{email}: the sign-up mail was not sent ({result.error})")

    async def confirm(self, request: Request) -> Response:
        token = request.path_params["token"]
        if request.method == "POST":
            await read_body(request, self.timeout)
        title = self.text["confirm_title"]
        try:
            nonce = read_confirm_token(self.secrets, token, self.cfg.web.confirm_hours * 3600,
                                       self.now().timestamp()).hex()
        except TokenError as exc:
            return self.bad_link(exc, title)

        def work(store: Store) -> Response:
            now = self.now().isoformat()
            if request.method != "POST":  # GET or HEAD: only asks
                pending = store.pending_confirmation(nonce, now)
                if pending is None:
                    return self.message(403, title, self.text["link_used"])
                return self.page(200, title, kind="confirm",
                                 question=self.text["confirm_ask"].format(email=mask(pending.email)))
            sub = store.confirm_signup(nonce, now)  # single use: a second POST finds nothing
            if sub is None:
                return self.message(403, title, self.text["link_used"])
            prefs = make_token(self.secrets, sub.id, sub.email, "preferences", int(self.now().timestamp()))
            return self.page(200, title, kind="message", text=self.text["confirmed"],
                             link=f"{self.cfg.site.base_url}preferences/{prefs}")

        return await self.in_store(work)

    # -- preferences --------------------------------------------------------------------------------------
    async def preferences(self, request: Request) -> Response:
        token = request.path_params["token"]
        title = self.text["preferences_title"]
        form: dict[str, list[str]] | None = None
        if request.method == "POST":
            if not self.csrf.precheck(request):
                return self.message(403, title, self.text["bad_form"])
            form = await read_form(request, self.timeout)
            if not self.csrf.check(request, form):
                return self.message(403, title, self.text["bad_form"])
        return await self.in_store(lambda store: self.preferences_page(request, store, token, form))

    def preferences_page(self, request: Request, store: Store, token: str,
                         form: dict[str, list[str]] | None) -> Response:
        title = self.text["preferences_title"]
        try:
            sub = self.subscriber(store, token, "preferences", self.cfg.web.preferences_days * 86400)
        except TokenError as exc:
            return self.bad_link(exc, title)
        categories = sorted(set(store.known_categories()) | set(sub.categories))
        saved = ""
        if form is not None:
            now = self.now().isoformat()
            if first(form, "action") == "unsubscribe":
                store.set_subscriber_status(sub.id, "unsubscribed", now)
                return self.message(200, self.text["unsubscribe_title"],
                                    self.text["unsubscribed"].format(email=mask(sub.email)))
            chosen = [c for c in dict.fromkeys(form.get("category", [])) if c in categories]
            with store.transaction():  # re-read under the write lock: an unsubscribe since then stays
                current = store.subscriber_by_id(sub.id)
                if current is not None:
                    store.update_subscriber(current.id, current.name, chosen, current.status, now)
            sub = store.subscriber_by_id(sub.id) or sub
            saved = self.text["saved"]
        cookie, csrf = self.csrf.pair(request)
        response = self.page(200, title, kind="preferences", categories=categories, chosen=list(sub.categories),
                             csrf=csrf, email=mask(sub.email), saved=saved)
        return self.csrf.set_cookie(response, cookie)

    # -- errors: every answer is a page -------------------------------------------------------------------
    async def http_error(self, request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 400
        key = {404: "not_found", 405: "not_allowed", 413: "too_large"}.get(status, "bad_request")
        headers = {"Allow": exc.headers["Allow"]} if isinstance(exc, HTTPException) and exc.headers and \
            "Allow" in exc.headers else {}
        if status == 413:
            headers["Connection"] = "close"  # the rest of the body is not read
        return self.message(status, self.text[key], self.text[key], headers)

    async def bad_request(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, BadRequest)
        return self.message(exc.status, self.text[exc.text], self.text[exc.text],
                            {"Connection": "close"} if exc.status in (408, 415) else None)

    async def unavailable(self, request: Request, exc: Exception) -> Response:
        log.error("%s %s: %s", request.method, request.url.path.split("/")[1][:20], exc)
        return self.message(503, self.text["unavailable"], self.text["unavailable"], {"Retry-After": "60"})

    async def server_error(self, request: Request, exc: Exception) -> Response:
        return self.message(500, self.text["error"], self.text["error"])


def create_app(app: App, server_adds_headers: bool = False) -> ASGIApp:
    """The ASGI application for `publish web` (and for tests): the route table inside the guard middleware.
    `server_adds_headers`: the server adds the security headers to every answer (see `server.serve`)."""
    web = WebApp(app)
    pages = web.pages()
    routes = [Route(p.path, p.endpoint, methods=list(p.methods), max_body_size=p.max_body) for p in pages]
    handlers: dict[Any, Callable] = {
        HTTPException: web.http_error, BadRequest: web.bad_request, PublisherError: web.unavailable,
        500: web.server_error, Exception: web.server_error}
    router = Starlette(routes=routes, exception_handlers=handlers, max_body_size=min(p.max_body for p in pages))
    router.router.redirect_slashes = False
    https = app.cfg.site.base_url.startswith("https:")
    stack: ASGIApp = SecurityHeaders(router, [] if server_adds_headers else security_headers(https))
    stack = AccessLog(stack, tuple(p.prefix for p in pages if p.secret_path))
    if app.cfg.web.proxies:
        from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

        stack = ProxyHeadersMiddleware(stack, trusted_hosts=list(app.cfg.web.proxies))  # type: ignore[arg-type]
    return stack
