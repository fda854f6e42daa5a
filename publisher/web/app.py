"""`publish web`: one-click unsubscribe (RFC 8058), double opt-in sign-up, and preferences, on Starlette."""

from __future__ import annotations

import hashlib
import hmac
import secrets as pysecrets
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from ..app import App
from ..errors import PublisherError
from ..message import Outgoing
from ..store.base import Store, Subscriber
from ..subscribers import SubscriberError, normalize_email
from ..tokens import TokenError, make_token, read_token

CSRF_COOKIE = "publisher_csrf"
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",  # the URL carries a token: never leak it to another site
    "Cache-Control": "no-store",
}

TEXT = {
    "ja": {
        "unsubscribe_title": "配信停止", "unsubscribe_ask": "{email} へのダイジェストの配信を停止しますか？",
        "unsubscribe_button": "配信を停止する", "unsubscribed": "{email} への配信を停止しました。",
        "subscribe_title": "ダイジェストの購読", "email": "メールアドレス",
        "categories": "カテゴリ（未選択ならすべて）", "subscribe_button": "確認メールを送る",
        "check_inbox": "確認メールを送りました。メール内のリンクから登録を確定してください。"
                       "届かない場合は迷惑メールフォルダをご確認ください。",
        "too_many": "短時間に多くのリクエストがありました。しばらくしてからお試しください。",
        "bad_email": "メールアドレスの形式が正しくありません。", "confirm_title": "購読の確定",
        "confirm_ask": "{email} で週刊ダイジェストの購読を確定しますか？", "confirm_button": "購読を確定する",
        "confirmed": "登録が完了しました。次回のダイジェストからお届けします。",
        "preferences_title": "配信設定", "save": "設定を保存する", "saved": "設定を保存しました。",
        "bad_link": "このリンクは使えません（{reason}）。最新のメールにあるリンクをお使いください。",
        "bad_form": "フォームの有効期限が切れました。ページを読み込み直してからもう一度お試しください。",
        "confirm_subject": "{site} 購読の確認",
        "already_mail": "{site} の週刊ダイジェストは、このアドレスですでに購読中です。\n\n"
                        "カテゴリの変更や配信停止は、次のリンクからどうぞ:\n{url}\n\n"
                        "お心当たりのない場合は、このメールを破棄してください。",
        "confirm_mail": "{site} の週刊ダイジェストへの登録を受け付けました。\n\n"
                        "登録を確定するには、次のリンクを開いてください（{hours} 時間有効）:\n{url}\n\n"
                        "お心当たりのない場合は、このメールを破棄してください。登録は行われません。",
        "error": "エラーが発生しました。時間をおいてもう一度お試しください。", "not_found": "ページが見つかりません。",
        "all": "すべて",
    },
    "en": {
        "unsubscribe_title": "Unsubscribe", "unsubscribe_ask": "Stop sending the digest to {email}?",
        "unsubscribe_button": "Unsubscribe", "unsubscribed": "{email} will receive no more digests.",
        "subscribe_title": "Subscribe to the digest", "email": "Email address",
        "categories": "Categories (none selected: all)", "subscribe_button": "Send confirmation email",
        "check_inbox": "We sent a confirmation email. Open the link in it to finish subscribing.",
        "too_many": "Too many requests. Please try again later.", "bad_email": "That email address is not valid.",
        "confirm_title": "Confirm your subscription", "confirm_ask": "Subscribe {email} to the weekly digest?",
        "confirm_button": "Confirm subscription", "confirmed": "You are subscribed.",
        "preferences_title": "Preferences", "save": "Save", "saved": "Your preferences were saved.",
        "bad_link": "This link cannot be used ({reason}). Use the link in your latest email.",
        "bad_form": "The form expired. Reload the page and try again.",
        "confirm_subject": "{site}: confirm your subscription",
        "already_mail": "This address is already subscribed to the {site} digest.\n\n"
                        "To change your categories or unsubscribe, open:\n{url}\n\n"
                        "If it was not you, ignore this email.",
        "confirm_mail": "Someone (hopefully you) asked to subscribe this address to the {site} digest.\n\n"
                        "To confirm, open this link within {hours} hours:\n{url}\n\n"
                        "If it was not you, ignore this email: nothing happens.",
        "error": "Something went wrong. Please try again later.", "not_found": "Page not found.", "all": "All",
    },
}


def mask(email: str) -> str:
    """a***@example.com: enough for the owner to recognise, little for anyone else."""
    user, _, domain = email.partition("@")
    return f"{user[:1]}***@{domain}"


class WebApp:
    """The subscription pages; every change is written to the store at once."""

    def __init__(self, app: App) -> None:
        from jinja2 import Environment, FileSystemLoader, select_autoescape

        from ..digest.render import PACKAGE_TEMPLATES

        self.app = app
        self.cfg = cfg = app.cfg
        self.secrets = app.secrets
        self.text = TEXT.get(cfg.site.language.split("-")[0], TEXT["en"])
        loader = FileSystemLoader([str(cfg.root / cfg.digest.templates), str(PACKAGE_TEMPLATES)])
        self.env = Environment(loader=loader, autoescape=select_autoescape(["html", "html.j2"]))
        app.open_store().close()  # create or upgrade the store before serving

    # -- plumbing -----------------------------------------------------------------------------------------
    def store(self) -> Store:
        return self.app.open_store()

    def page(self, status: int, title: str, **context: Any) -> HTMLResponse:
        html = self.env.get_template("web.html.j2").render(
            site=self.cfg.site, title=title, t=self.text, **context)
        return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)

    def message(self, status: int, title: str, text: str) -> HTMLResponse:
        return self.page(status, title, kind="message", text=text)

    def email_of(self, store: Store):
        def lookup(sid: int) -> str | None:
            sub = store.subscriber_by_id(sid)
            return sub.email if sub else None

        return lookup

    def subscriber(self, store: Store, token: str, purpose: str, max_age: int | None) -> Subscriber:
        sid = read_token(self.secrets, token, purpose, self.email_of(store), max_age)
        return store.subscriber_by_id(sid)  # type: ignore[return-value]

    def csrf_pair(self, request: Request) -> tuple[str, str]:
        """(cookie value, form value): the form value is an HMAC of the cookie, so a forged form fails."""
        cookie = request.cookies.get(CSRF_COOKIE) or pysecrets.token_urlsafe(24)
        return cookie, self._csrf_mac(cookie)

    def _csrf_mac(self, cookie: str) -> str:
        return hmac.new(self.secrets.current, f"csrf\0{cookie}".encode(), hashlib.sha256).hexdigest()[:32]

    def csrf_ok(self, request: Request, form: Any) -> bool:
        cookie = request.cookies.get(CSRF_COOKIE, "")
        return bool(cookie) and hmac.compare_digest(str(form.get("csrf", "")), self._csrf_mac(cookie))

    def with_csrf_cookie(self, response: Response, request: Request, cookie: str) -> Response:
        secure = request.url.scheme == "https" or (
            self.cfg.web.trust_forwarded and request.headers.get("x-forwarded-proto") == "https")
        response.set_cookie(CSRF_COOKIE, cookie, max_age=7200, httponly=True, samesite="strict", secure=secure,
                            path="/")
        return response

    def client(self, request: Request) -> str:
        if self.cfg.web.trust_forwarded and request.headers.get("x-forwarded-for"):
            return request.headers["x-forwarded-for"].split(",")[0].strip()
        return request.client.host if request.client else "unknown"

    def bad_link(self, exc: TokenError) -> HTMLResponse:
        status = 403 if "expired" in str(exc) or "not valid" in str(exc) else 400
        return self.message(status, self.text["unsubscribe_title"], self.text["bad_link"].format(reason=exc))

    # -- unsubscribe (RFC 8058) -------------------------------------------------------------------------
    async def unsubscribe(self, request: Request) -> Response:
        token = request.path_params["token"]
        store = self.store()
        try:
            sub = self.subscriber(store, token, "unsubscribe", None)
            if request.method == "GET":  # link scanners prefetch: a GET only asks
                return self.page(200, self.text["unsubscribe_title"], kind="unsubscribe",
                                 question=self.text["unsubscribe_ask"].format(email=mask(sub.email)))
            await request.body()  # the one-click body (List-Unsubscribe=One-Click) or the button's form
            if sub.status != "unsubscribed":
                store.set_subscriber_status(sub.id, "unsubscribed", datetime.now(UTC).isoformat())
            return self.message(200, self.text["unsubscribe_title"],
                                self.text["unsubscribed"].format(email=mask(sub.email)))
        except TokenError as exc:
            return self.bad_link(exc)
        finally:
            store.close()

    # -- sign-up with double opt-in ----------------------------------------------------------------------
    async def subscribe(self, request: Request) -> Response:
        store = self.store()
        try:
            categories = store.known_categories()
            cookie, csrf = self.csrf_pair(request)
            if request.method == "GET":
                response = self.page(200, self.text["subscribe_title"], kind="subscribe", categories=categories,
                                     csrf=csrf, chosen=[], email="")
                return self.with_csrf_cookie(response, request, cookie)
            form = await request.form()
            if not self.csrf_ok(request, form):
                return self.message(403, self.text["subscribe_title"], self.text["bad_form"])
            chosen = [c for c in form.getlist("category") if c in categories]
            raw_email = str(form.get("email", ""))[:254]
            try:
                email = normalize_email(raw_email)
            except SubscriberError:
                response = self.page(400, self.text["subscribe_title"], kind="subscribe", categories=categories,
                                     csrf=csrf, chosen=chosen, email=raw_email, error=self.text["bad_email"])
                return self.with_csrf_cookie(response, request, cookie)
            return await self._signup(request, store, email, chosen)
        finally:
            store.close()

    async def _signup(self, request: Request, store: Store, email: str, chosen: list[str]) -> Response:
        from starlette.concurrency import run_in_threadpool

        now = datetime.now(UTC)
        web = self.cfg.web
        by_email, _ = store.confirmations_since(email, "", (now - timedelta(days=1)).isoformat())
        _, by_client = store.confirmations_since("", self.client(request), (now - timedelta(hours=1)).isoformat())
        if by_client >= web.per_client_per_hour:
            return self.message(429, self.text["subscribe_title"], self.text["too_many"])
        sub = store.subscriber(email)
        # The same answer whatever the address's state, so the page reveals nothing about who subscribes.
        will_send = by_email < web.per_address_per_day
        store.record_confirmation(email if will_send else "", self.client(request), now.isoformat())
        if will_send:
            if sub is None:
                store.insert_subscriber(email, "", chosen, "pending", now.isoformat())
            elif sub.status != "active":
                store.update_subscriber(sub.id, sub.name, chosen, sub.status, now.isoformat())
            # An address already subscribed gets its preferences link instead of a confirmation.
            await run_in_threadpool(self._send_confirmation, store.subscriber(email), now,
                                    sub is not None and sub.status == "active")
        return self.message(200, self.text["subscribe_title"], self.text["check_inbox"])

    def _send_confirmation(self, sub: Subscriber, now: datetime, already: bool) -> None:
        from email.utils import format_datetime, make_msgid

        from ..message import sender_domain

        cfg, t = self.cfg, self.text
        purpose, path, label = ("preferences", "preferences", t["preferences_title"]) if already else (
            "confirm", "confirm", t["confirm_button"])
        url = f"{cfg.site.base_url}{path}/{make_token(self.secrets, sub.id, sub.email, purpose, int(now.timestamp()))}"
        body = t["already_mail" if already else "confirm_mail"]
        text = body.format(site=cfg.site.title, url=url, hours=cfg.web.confirm_hours)
        html = self.env.get_template("web.html.j2").render(site=cfg.site, title=t["confirm_title"], t=t,
                                                          kind="mail", text=text, url=url, link_label=label)
        message = Outgoing(0, sub.email, "", cfg.digest.from_address, t["confirm_subject"].format(site=cfg.site.title),
                           html, text, make_msgid(domain=sender_domain(cfg.digest.from_address)),
                           {"Date": format_datetime(now)})
        transport = self.app.transport()
        try:
            result = transport.send([message])[0]
        finally:
            transport.close()
        if result.status != "sent":
            raise PublisherError(f"{sub.email}: the confirmation email was not sent ({result.error})")

    async def confirm(self, request: Request) -> Response:
        token = request.path_params["token"]
        store = self.store()
        try:
            sub = self.subscriber(store, token, "confirm", self.cfg.web.confirm_hours * 3600)
            if request.method == "GET":
                return self.page(200, self.text["confirm_title"], kind="confirm",
                                 question=self.text["confirm_ask"].format(email=mask(sub.email)))
            if sub.status != "active":
                store.set_subscriber_status(sub.id, "active", datetime.now(UTC).isoformat())
            prefs = make_token(self.secrets, sub.id, sub.email, "preferences")
            return self.page(200, self.text["confirm_title"], kind="message", text=self.text["confirmed"],
                             link=f"{self.cfg.site.base_url}preferences/{prefs}")
        except TokenError as exc:
            return self.bad_link(exc)
        finally:
            store.close()

    # -- preferences --------------------------------------------------------------------------------------
    async def preferences(self, request: Request) -> Response:
        token = request.path_params["token"]
        store = self.store()
        try:
            sub = self.subscriber(store, token, "preferences", self.cfg.web.preferences_days * 86400)
            categories = sorted(set(store.known_categories()) | set(sub.categories))
            cookie, csrf = self.csrf_pair(request)
            saved = ""
            if request.method == "POST":
                form = await request.form()
                if not self.csrf_ok(request, form):
                    return self.message(403, self.text["preferences_title"], self.text["bad_form"])
                now = datetime.now(UTC).isoformat()
                if form.get("action") == "unsubscribe":
                    store.set_subscriber_status(sub.id, "unsubscribed", now)
                    return self.message(200, self.text["unsubscribe_title"],
                                        self.text["unsubscribed"].format(email=mask(sub.email)))
                chosen = [c for c in form.getlist("category") if c in categories]
                store.update_subscriber(sub.id, sub.name, chosen, sub.status, now)
                sub = store.subscriber_by_id(sub.id)  # type: ignore[assignment]
                saved = self.text["saved"]
            response = self.page(200, self.text["preferences_title"], kind="preferences", categories=categories,
                                 chosen=list(sub.categories), csrf=csrf, email=mask(sub.email), saved=saved)
            return self.with_csrf_cookie(response, request, cookie)
        except TokenError as exc:
            return self.bad_link(exc)
        finally:
            store.close()

    # -- errors -------------------------------------------------------------------------------------------
    async def not_found(self, request: Request, exc: Exception) -> Response:
        return self.message(404, self.text["not_found"], self.text["not_found"])

    async def server_error(self, request: Request, exc: Exception) -> Response:
        return self.message(500, self.text["error"], self.text["error"])


def create_app(app: App) -> Starlette:
    """The ASGI application for `publish web` (and for tests)."""
    web = WebApp(app)
    routes = [
        Route("/unsubscribe/{token}", web.unsubscribe, methods=["GET", "POST"]),
        Route("/subscribe", web.subscribe, methods=["GET", "POST"]),
        Route("/confirm/{token}", web.confirm, methods=["GET", "POST"]),
        Route("/preferences/{token}", web.preferences, methods=["GET", "POST"]),
    ]
    handlers = {404: web.not_found, 405: web.not_found, 500: web.server_error, Exception: web.server_error}
    return Starlette(routes=routes, exception_handlers=handlers)
