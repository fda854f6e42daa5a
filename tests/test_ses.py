"""Amazon SES v2 through botocore, against a local HTTP server speaking the SES v2 API (pytest-httpserver)."""

from __future__ import annotations

import base64
import json
import sqlite3
from email import message_from_bytes, policy

import pytest
from werkzeug import Request, Response

from .conftest import DIGEST_NOW

ENDPOINT = "/v2/email/outbound-emails"


@pytest.fixture
def ses_site(digest_site, httpserver, monkeypatch, tmp_path):
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION",
                 "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # never ask an instance metadata service
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    digest_site.set_config('transport = "file"', 'transport = "ses"')
    section = digest_site.config.read_text(encoding="utf-8").split("\n[ses]\n")[1].split("[outbox]")[0]
    digest_site.set_config(section, f'\nregion = "ap-northeast-1"\nendpoint_url = "{httpserver.url_for("/").rstrip("/")}"\n'
                           'configuration_set = "digest-events"\nretries = 2\nretry_delay = 0.01\n\n')
    return digest_site


def ledger(site):
    with sqlite3.connect(site.db) as conn:
        return {email: (state, pid or "", err or "") for email, state, pid, err in conn.execute(
            "SELECT email, state, provider_id, last_error FROM ledger WHERE state != 'skipped'")}


def send(site):
    return site.run("--now", DIGEST_NOW, "digest", "--send")


class FakeSES:
    """Answers SendEmail as SES v2 does; `plan` maps a recipient to the answers to give, in order."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict, dict]] = []
        self.plan: dict[str, list[tuple[int, dict, dict]]] = {}

    def __call__(self, request: Request) -> Response:
        body = request.get_json(force=True)
        self.requests.append((dict(request.headers), body))
        to = body["Destination"]["ToAddresses"][0]
        if self.plan.get(to):
            status, headers, payload = self.plan[to].pop(0)
            return Response(json.dumps(payload), status=status, headers=headers, content_type="application/json")
        return Response(json.dumps({"MessageId": f"0100-ses-{len(self.requests)}"}), status=200,
                        content_type="application/json", headers={"x-amzn-RequestId": "req-1"})

    def messages(self):
        return [message_from_bytes(base64.b64decode(b["Content"]["Raw"]["Data"]), policy=policy.default)
                for _, b in self.requests]


def test_ses_sends_raw_mime_signed_with_sigv4(ses_site, httpserver):
    fake = FakeSES()
    httpserver.expect_request(ENDPOINT, method="POST").respond_with_handler(fake)
    result = send(ses_site)
    assert result.exit_code == 0, result.output
    assert ledger(ses_site) == {"all@example.com": ("sent", "0100-ses-1", ""),
                                "chips@example.com": ("sent", "0100-ses-2", "")}
    headers, body = fake.requests[0]
    assert headers["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert "/ap-northeast-1/ses/aws4_request" in headers["Authorization"]
    assert body["FromEmailAddress"] == "AI速報ラボ <digest@news.example.jp>"
    assert body["ConfigurationSetName"] == "digest-events"
    first = fake.messages()[0]
    assert first["To"].addresses[0].addr_spec == "all@example.com"
    assert first["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert first.get_body(("plain",)).get_content().startswith("AI速報ラボ")


def test_ses_throttling_is_retried_with_our_backoff_only(ses_site, httpserver):
    fake = FakeSES()
    fake.plan["all@example.com"] = [(429, {"x-amzn-ErrorType": "TooManyRequestsException:http://internal/"},
                                     {"message": "Maximum sending rate exceeded."})]
    httpserver.expect_request(ENDPOINT, method="POST").respond_with_handler(fake)
    result = send(ses_site)
    assert result.exit_code == 0, result.output
    to = [b["Destination"]["ToAddresses"][0] for _, b in fake.requests]
    assert to.count("all@example.com") == 2, "one refusal, one retry: botocore's own retries are off"
    assert ledger(ses_site)["all@example.com"][0] == "sent"


def test_ses_rejection_fails_that_message_only(ses_site, httpserver):
    fake = FakeSES()
    fake.plan["chips@example.com"] = [(400, {"x-amzn-ErrorType": "MessageRejected:http://internal.amazon.com/"},
                                       {"message": "Email address is not verified."})]
    httpserver.expect_request(ENDPOINT, method="POST").respond_with_handler(fake)
    result = send(ses_site)
    assert result.exit_code == 1
    state = ledger(ses_site)
    assert state["all@example.com"][0] == "sent"
    assert state["chips@example.com"] == ("failed", "", "SES MessageRejected: Email address is not verified.")
    assert "chips@example.com: failed after 1 attempt(s): SES MessageRejected" in result.output


def test_ses_persistent_5xx_leaves_the_message_pending(ses_site, httpserver):
    fake = FakeSES()
    fake.plan["all@example.com"] = [(503, {}, {"__type": "com.amazonaws#ServiceUnavailable", "message": "down"})] * 3
    httpserver.expect_request(ENDPOINT, method="POST").respond_with_handler(fake)
    send(ses_site)
    to = [b["Destination"]["ToAddresses"][0] for _, b in fake.requests]
    assert to.count("all@example.com") == 3, "[ses] retries = 2: three tries"
    assert ledger(ses_site)["all@example.com"][0] == "pending", "an outage fails no recipient"


@pytest.mark.parametrize("status,payload,needle", [
    (403, {"__type": "com.amazonaws#UnrecognizedClientException", "message": "The security token is invalid."},
     "check the AWS credentials"),
    (400, {"__type": "com.amazonaws#AccountSuspendedException", "message": "suspended"}, "reputation page"),
])
def test_ses_credential_and_account_errors_stop_the_send(ses_site, httpserver, status, payload, needle):
    httpserver.expect_request(ENDPOINT, method="POST").respond_with_json(payload, status=status)
    result = send(ses_site)
    assert result.exit_code == 3, result.output
    assert needle in result.output and "Traceback" not in result.output
    assert {s for s, _, _ in ledger(ses_site).values()} == {"pending"}, "nothing marked failed or sent"


def test_ses_without_credentials_says_how_to_give_them(ses_site, httpserver, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    result = send(ses_site)
    assert result.exit_code == 3
    assert "AWS_ACCESS_KEY_ID" in result.output and "Traceback" not in result.output
    assert len(httpserver.log) == 0, "nothing unsigned was sent"


def test_ses_unknown_config_values_are_named(ses_site):
    ses_site.set_config('configuration_set = "digest-events"', 'configuration_set = 5')
    result = ses_site.run("digest", "--dry-run")
    assert result.exit_code == 2 and "[ses.configuration_set]" in result.output


def test_ses_lost_answer_is_unknown_never_resent(ses_site, httpserver):
    import time

    ses_site.set_config("retries = 2", "retries = 2\ntimeout = 0.5")
    fake = FakeSES()
    arrived = []

    def slow(request: Request) -> Response:
        arrived.append(request.get_json(force=True)["Destination"]["ToAddresses"][0])
        if arrived[-1] == "all@example.com":
            time.sleep(1.0)
        return fake(request)

    httpserver.expect_request(ENDPOINT, method="POST").respond_with_handler(slow)
    result = send(ses_site)
    assert result.exit_code == 1
    state = ledger(ses_site)
    assert state["all@example.com"][0] == "unknown" and "may have been accepted" in state["all@example.com"][2]
    assert arrived.count("all@example.com") == 1, "a call whose answer was lost is not repeated"
