"""Each HTTP provider played by a real HTTP server on 127.0.0.1 (pytest-httpserver)."""

from __future__ import annotations

import json
import re
import sqlite3
import time
from urllib.parse import parse_qs

import pytest
from werkzeug import Request, Response

from .conftest import DIGEST_NOW

KEY = "test-api-key"


def use_provider(site, httpserver, name, monkeypatch, **http):
    monkeypatch.setenv("PUBLISHER_API_KEY", KEY)
    site.set_config('transport = "file"', f'transport = "{name}"')
    site.set_config('api_url = ""', f'api_url = "{httpserver.url_for("/").rstrip("/")}"')
    site.set_config("retry_delay = 1.0", "retry_delay = 0.01")
    text = site.config.read_text(encoding="utf-8")
    for key, value in http.items():  # whole keys only: [web] request_timeout is not [http] timeout
        text = re.sub(rf"^{key} = ", f"{key} = {json.dumps(value)}\n_old_{key} = ", text, flags=re.M)
    site.config.write_text("\n".join(line for line in text.splitlines() if not line.startswith("_old_")),
                           encoding="utf-8")


def states(site):
    with sqlite3.connect(site.db) as conn:
        return dict(conn.execute("SELECT email, state FROM ledger WHERE state != 'skipped'").fetchall())


def send(site):
    return site.run("--now", DIGEST_NOW, "digest", "--send")


def test_postmark_batch_with_per_message_error(digest_site, httpserver, monkeypatch):
    use_provider(digest_site, httpserver, "postmark", monkeypatch)
    seen = []

    def handler(request: Request) -> Response:
        seen.append((dict(request.headers), request.get_json()))
        body = [{"ErrorCode": 406 if m["To"] == "chips@example.com" else 0, "MessageID": f"pm-{i}",
                 "To": m["To"], "Message": "inactive" if m["To"] == "chips@example.com" else "OK"}
                for i, m in enumerate(request.get_json())]
        return Response(json.dumps(body), status=200, content_type="application/json")

    httpserver.expect_request("/email/batch", method="POST").respond_with_handler(handler)
    result = send(digest_site)
    assert result.exit_code == 1
    assert states(digest_site) == {"all@example.com": "sent", "chips@example.com": "failed"}
    assert "chips@example.com: failed after 1 attempt(s): Postmark error 406: inactive (suppressed) recipient" \
        in result.output
    headers, batch = seen[0]
    assert headers["X-Postmark-Server-Token"] == KEY
    assert len(batch) == 2
    first = batch[0]
    assert first["From"] == "AI速報ラボ <digest@news.example.jp>" and first["MessageStream"] == "broadcast"
    names = {h["Name"]: h["Value"] for h in first["Headers"]}
    assert names["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert names["List-Unsubscribe"].startswith("<https://news.example.jp/unsubscribe/")
    assert names["List-Unsubscribe"][1:-1] in first["HtmlBody"] and "%%" not in first["HtmlBody"]


def test_sendgrid_personalizations_with_substitutions(digest_site, httpserver, monkeypatch):
    use_provider(digest_site, httpserver, "sendgrid", monkeypatch)
    seen = []

    def handler(request: Request) -> Response:
        seen.append((request.headers.get("Authorization"), request.get_json()))
        return Response("", status=202, headers={"X-Message-Id": "sg-batch-1"})

    httpserver.expect_request("/v3/mail/send", method="POST").respond_with_handler(handler)
    result = send(digest_site)
    assert result.exit_code == 0, result.output
    assert states(digest_site) == {"all@example.com": "sent", "chips@example.com": "sent"}
    assert len(seen) == 2, "one request per category set (each a different template)"
    auth, body = seen[0]
    assert auth == f"Bearer {KEY}"
    person = body["personalizations"][0]
    assert person["headers"]["List-Unsubscribe"][1:-1] == person["substitutions"]["%%UNSUBSCRIBE_URL%%"]
    assert "%%UNSUBSCRIBE_URL%%" in body["content"][1]["value"]
    assert [c["type"] for c in body["content"]] == ["text/plain", "text/html"]


def test_mailgun_recipient_variables(digest_site, httpserver, monkeypatch):
    use_provider(digest_site, httpserver, "mailgun", monkeypatch, domain="mg.example.com")
    seen = []

    def handler(request: Request) -> Response:
        seen.append((request.authorization, parse_qs(request.get_data(as_text=True))))
        return Response(json.dumps({"id": "<mg-1@mg.example.com>", "message": "Queued"}), status=200,
                        content_type="application/json")

    httpserver.expect_request("/v3/mg.example.com/messages", method="POST").respond_with_handler(handler)
    result = send(digest_site)
    assert result.exit_code == 0, result.output
    auth, form = seen[0]
    assert (auth.username, auth.password) == ("api", KEY)
    variables = json.loads(form["recipient-variables"][0])
    to = form["to"][0]
    assert variables[to]["unsubscribe"].startswith("https://news.example.jp/unsubscribe/")
    assert "%recipient.unsubscribe%" in form["html"][0]
    assert form["h:List-Unsubscribe"] == ["<%recipient.unsubscribe%>"]
    assert form["h:List-Unsubscribe-Post"] == ["List-Unsubscribe=One-Click"]


def test_resend_idempotency_and_batch_errors(digest_site, httpserver, monkeypatch):
    use_provider(digest_site, httpserver, "resend", monkeypatch)
    digest_site.run("subscribers", "add", "bad@example.com")
    seen = []

    def handler(request: Request) -> Response:
        batch = request.get_json()
        seen.append((request.headers.get("Idempotency-Key"), batch))
        bad = [i for i, m in enumerate(batch) if m["to"] == ["bad@example.com"]]
        data = [{"id": f"re-{i}"} for i in range(len(batch)) if i not in bad]
        errors = [{"index": i, "message": "Invalid `to` field."} for i in bad]
        return Response(json.dumps({"data": data, "errors": errors}), status=200, content_type="application/json")

    httpserver.expect_request("/emails/batch", method="POST").respond_with_handler(handler)
    result = send(digest_site)
    assert states(digest_site) == {"all@example.com": "sent", "chips@example.com": "sent", "bad@example.com": "failed"}
    assert "bad@example.com: failed after 1 attempt(s): Resend: Invalid `to` field." in result.output
    key, batch = seen[0]
    assert key and key.startswith("publisher-") and len(batch) == 3


def test_429_with_retry_after_then_success(digest_site, httpserver, monkeypatch):
    use_provider(digest_site, httpserver, "postmark", monkeypatch)
    httpserver.expect_ordered_request("/email/batch").respond_with_response(
        Response("slow down", status=429, headers={"Retry-After": "1"}))
    ok = [{"ErrorCode": 0, "MessageID": "a"}, {"ErrorCode": 0, "MessageID": "b"}]
    httpserver.expect_ordered_request("/email/batch").respond_with_json(ok)
    started = time.monotonic()
    result = send(digest_site)
    assert result.exit_code == 0, result.output
    assert time.monotonic() - started >= 0.9, "Retry-After was honoured"
    assert states(digest_site) == {"all@example.com": "sent", "chips@example.com": "sent"}


def test_500_then_success(digest_site, httpserver, monkeypatch):
    use_provider(digest_site, httpserver, "postmark", monkeypatch)
    httpserver.expect_ordered_request("/email/batch").respond_with_data("oops", status=500)
    httpserver.expect_ordered_request("/email/batch").respond_with_data("oops", status=503)
    httpserver.expect_ordered_request("/email/batch").respond_with_json(
        [{"ErrorCode": 0, "MessageID": "a"}, {"ErrorCode": 0, "MessageID": "b"}])
    result = send(digest_site)
    assert result.exit_code == 0, result.output
    assert len(httpserver.log) == 3


def test_persistent_5xx_leaves_rows_for_the_next_run(digest_site, httpserver, monkeypatch):
    use_provider(digest_site, httpserver, "postmark", monkeypatch, retries=1)
    httpserver.expect_request("/email/batch").respond_with_data("down", status=502)
    result = send(digest_site)
    assert result.exit_code == 3, result.output
    assert "Stopped: Postmark is not accepting messages: HTTP 502: down (2 tries); nothing was lost" in result.output
    assert states(digest_site) == {"all@example.com": "pending", "chips@example.com": "pending"}
    with sqlite3.connect(digest_site.db) as conn:
        assert {a for (a,) in conn.execute("SELECT attempts FROM ledger")} == {0}, "an outage charges no attempt"
    httpserver.clear()
    httpserver.expect_request("/email/batch").respond_with_json(
        [{"ErrorCode": 0, "MessageID": "a"}, {"ErrorCode": 0, "MessageID": "b"}])
    again = send(digest_site)
    assert again.exit_code == 0 and "Sent 2 message(s)" in again.output


def _slow(seconds: float, body: object):
    def handler(request: Request) -> Response:
        time.sleep(seconds)
        return Response(json.dumps(body), status=200, content_type="application/json")
    return handler


def test_timeout_without_idempotency_is_unknown(digest_site, httpserver, monkeypatch):
    use_provider(digest_site, httpserver, "postmark", monkeypatch, timeout=0.3)
    httpserver.expect_request("/email/batch").respond_with_handler(
        _slow(1.0, [{"ErrorCode": 0, "MessageID": "a"}, {"ErrorCode": 0, "MessageID": "b"}]))
    result = send(digest_site)
    assert result.exit_code == 1
    assert states(digest_site) == {"all@example.com": "unknown", "chips@example.com": "unknown"}
    assert "never resent automatically" in result.output
    time.sleep(1.0)
    again = send(digest_site)
    assert "Sent 0 message(s)" in again.output and len(httpserver.log) == 1, "unknown rows are not resent"


def test_timeout_with_idempotency_key_is_retried(digest_site, httpserver, monkeypatch):
    use_provider(digest_site, httpserver, "resend", monkeypatch, timeout=0.3)
    keys = []

    def first(request: Request) -> Response:
        keys.append(request.headers.get("Idempotency-Key"))
        time.sleep(0.5)  # the client gives up at 0.3 s; its retry is answered once this one is done
        return Response("{}", status=200, content_type="application/json")

    def second(request: Request) -> Response:
        keys.append(request.headers.get("Idempotency-Key"))
        return Response(json.dumps({"data": [{"id": "1"}, {"id": "2"}]}), status=200, content_type="application/json")

    httpserver.expect_ordered_request("/emails/batch").respond_with_handler(first)
    httpserver.expect_ordered_request("/emails/batch").respond_with_handler(second)
    result = send(digest_site)
    assert result.exit_code == 0, result.output
    assert len(keys) == 2 and keys[0] == keys[1], "the retry carries the same Idempotency-Key"


def test_401_stops_with_a_clear_message_and_keeps_rows_pending(digest_site, httpserver, monkeypatch):
    use_provider(digest_site, httpserver, "sendgrid", monkeypatch)
    httpserver.expect_request("/v3/mail/send").respond_with_json({"errors": [{"message": "bad key"}]}, status=401)
    result = send(digest_site)
    assert result.exit_code == 3
    assert "SendGrid refused the API key" in result.output and "$PUBLISHER_API_KEY" in result.output
    assert set(states(digest_site).values()) == {"pending"}


def test_missing_api_key(digest_site, httpserver, monkeypatch):
    use_provider(digest_site, httpserver, "postmark", monkeypatch)
    monkeypatch.delenv("PUBLISHER_API_KEY")
    result = send(digest_site)
    assert result.exit_code == 2 and "the environment variable PUBLISHER_API_KEY is not set" in result.output


@pytest.mark.parametrize("header", ["Retry-After", "X-RateLimit-Reset"])
def test_retry_after_parsing(header):
    import httpx

    from publisher.transports.http import _retry_after

    value = "3" if header == "Retry-After" else str(int(time.time()) + 3)
    got = _retry_after(httpx.Response(429, headers={header: value}))
    assert 1.5 <= got <= 3.0
