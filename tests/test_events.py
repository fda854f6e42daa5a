"""Webhook verification and event normalisation, provider by provider, with the providers' documented example
payloads and signing schemes and keys made here: genuine, forged, stale and replayed calls."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from standardwebhooks.webhooks import Webhook

from publisher.events import (
    COMPLAINT,
    DELIVERED,
    HARD_BOUNCE,
    SOFT_BOUNCE,
    UNSUBSCRIBE,
    MemoryReplayGuard,
    WebhookRejected,
    WebhookRequest,
)
from publisher.events.generic import GenericReceiver, sign
from publisher.events.mailgun import MailgunReceiver
from publisher.events.postmark import PostmarkReceiver
from publisher.events.resend import ResendReceiver
from publisher.events.sendgrid import SendGridReceiver, load_key
from publisher.events.sns import Certificates, SNSReceiver

from .pki import LocalPKI
from .servers import HTTPSServer


def rejected(receiver, request) -> WebhookRejected:
    with pytest.raises(WebhookRejected) as info:
        receiver.receive(request)
    return info.value


# -- Postmark: basic auth, documented records ---------------------------------------------------------------

POSTMARK_COMPLAINT = {  # verbatim from Postmark's spam complaint webhook docs
    "RecordType": "SpamComplaint", "MessageStream": "outbound", "ID": 42, "Type": "SpamComplaint", "TypeCode": 512,
    "Name": "Spam complaint", "Tag": "Test", "MessageID": "00000000-0000-0000-0000-000000000000",
    "Metadata": {"a_key": "a_value", "b_key": "b_value"}, "ServerID": 1234, "Description": "",
    "Details": "Test spam complaint details", "Email": "john@example.com", "From": "sender@example.com",
    "BouncedAt": "2019-11-05T16:33:54.9070259Z", "DumpAvailable": True, "Inactive": True, "CanActivate": False,
    "Subject": "Test subject", "Content": "<Abuse report dump>"}
POSTMARK_BOUNCE = {
    "RecordType": "Bounce", "ID": 42, "Type": "HardBounce", "TypeCode": 1, "Name": "Hard bounce", "ServerID": 23,
    "MessageStream": "outbound", "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483", "Tag": "welcome-email",
    "Description": "The server was unable to deliver your message (ex: unknown user, mailbox not found).",
    "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.", "Email": "john@example.com",
    "From": "sender@yourdomain.com", "BouncedAt": "2025-04-05T16:33:54.9070259Z", "DumpAvailable": True,
    "Inactive": True, "CanActivate": True, "Subject": "Welcome to our service", "Metadata": {"customer_id": "12345"}}
POSTMARK_DELIVERY = {
    "RecordType": "Delivery", "ServerID": 23, "MessageStream": "outbound",
    "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483", "Recipient": "john@example.com", "Tag": "welcome-email",
    "DeliveredAt": "2025-04-05T16:33:54.9070259Z", "Details": "Test delivery webhook details",
    "Metadata": {"customer_id": "12345"}}
POSTMARK_SUBSCRIPTION = {  # verbatim from Postmark's subscription change webhook docs
    "RecordType": "SubscriptionChange", "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483", "ServerID": 123456,
    "MessageStream": "outbound", "ChangedAt": "2020-02-01T10:53:34.416071Z", "Recipient": "bounced-address@wildbit.com",
    "Origin": "Recipient", "SuppressSending": True, "SuppressionReason": "HardBounce", "Tag": "my-tag",
    "Metadata": {"example": "value", "example_2": "value"}}


def postmark_request(payload, user="hook", password="s3cret-pass") -> WebhookRequest:
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    return WebhookRequest({"authorization": f"Basic {auth}", "content-type": "application/json"},
                          json.dumps(payload).encode())


def test_postmark_documented_records():
    receiver = PostmarkReceiver("hook", "s3cret-pass")
    (complaint,) = receiver.receive(postmark_request(POSTMARK_COMPLAINT)).events
    assert (complaint.kind, complaint.address, complaint.event_id) == (COMPLAINT, "john@example.com", "SpamComplaint:42")
    assert complaint.provider_message_id == "00000000-0000-0000-0000-000000000000"
    assert complaint.metadata == {"a_key": "a_value", "b_key": "b_value"}
    assert complaint.time == datetime(2019, 11, 5, 16, 33, 54, 907025, tzinfo=UTC)
    (bounce,) = receiver.receive(postmark_request(POSTMARK_BOUNCE)).events
    assert bounce.kind == HARD_BOUNCE and "550 5.1.1" in bounce.detail
    (delivery,) = receiver.receive(postmark_request(POSTMARK_DELIVERY)).events
    assert (delivery.kind, delivery.address) == (DELIVERED, "john@example.com")
    (change,) = receiver.receive(postmark_request(POSTMARK_SUBSCRIPTION)).events
    assert (change.kind, change.address) == (HARD_BOUNCE, "bounced-address@wildbit.com")
    manual = dict(POSTMARK_SUBSCRIPTION, SuppressionReason="ManualSuppression")
    assert receiver.receive(postmark_request(manual)).events[0].kind == UNSUBSCRIBE
    reactivated = dict(POSTMARK_SUBSCRIPTION, SuppressSending=False, SuppressionReason=None, Metadata={})
    assert receiver.receive(postmark_request(reactivated)).events == []
    soft = dict(POSTMARK_BOUNCE, Type="SoftBounce", TypeCode=4096, Inactive=False, ID=43)
    assert receiver.receive(postmark_request(soft)).events[0].kind == SOFT_BOUNCE
    auto = dict(POSTMARK_BOUNCE, Type="AutoResponder", TypeCode=64, Inactive=False, ID=44)
    assert receiver.receive(postmark_request(auto)).events == [], "an out-of-office reply is no bounce"
    again = receiver.receive(postmark_request(POSTMARK_DELIVERY)).events[0]
    assert again.event_id == delivery.event_id, "a retried delivery record keeps its id"


def test_postmark_wrong_or_missing_credentials():
    receiver = PostmarkReceiver("hook", "s3cret-pass")
    assert rejected(receiver, postmark_request(POSTMARK_BOUNCE, password="guess")).status == 401
    assert rejected(receiver, postmark_request(POSTMARK_BOUNCE, user="other")).status == 401
    bare = WebhookRequest({}, json.dumps(POSTMARK_BOUNCE).encode())
    assert rejected(receiver, bare).status == 401
    garbage = WebhookRequest({"authorization": "Basic ***"}, b"{}")
    assert rejected(receiver, garbage).status == 401
    not_json = postmark_request(POSTMARK_BOUNCE)
    assert rejected(receiver, WebhookRequest(not_json.headers, b"\xff{")).status == 400


# -- SendGrid: ECDSA P-256 over timestamp + raw body ---------------------------------------------------------

# The test vector of sendgrid-python's test_eventwebhook.py.
SG_PUBLIC_KEY = ("MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRqe62gw+2fNNRaINX"
                 "vVpiglSI8eNEc6wEA3F+g==")
SG_SIGNATURE = "MEUCIGHQVtGj+Y3LkG9fLcxf3qfI10QysgDWmMOVmxG0u6ZUAiEAyBiXDWzM+uOe5W0JuG+luQAbPIqHh89M15TluLtEZtM="
SG_TIMESTAMP = "1600112502"
SG_PAYLOAD = ('[{"email":"hello@world.com","event":"dropped","reason":"Bounced Address","sg_event_id":'
              '"ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA","sg_message_id":'
              '"LRzXl_NHStOGhQ4kofSm_A.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0","smtp-id":'
              '"<LRzXl_NHStOGhQ4kofSm_A@ismtpd0039p1iad1.sendgrid.net>","timestamp":1600112492}]\r\n')
SG_EVENTS = [  # shaped like the Event Webhook docs' example array
    {"email": "a@example.com", "timestamp": 1513299569, "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>",
     "event": "processed", "category": "cat facts", "sg_event_id": "sg_1", "sg_message_id": "14c5d75ce93.dfd.64b469"},
    {"email": "a@example.com", "timestamp": 1513299569, "event": "delivered", "response": "250 OK",
     "sg_event_id": "sg_2", "sg_message_id": "14c5d75ce93.dfd.64b469", "publisher_mid": "<d1.s1@news.example.jp>"},
    {"email": "b@example.com", "timestamp": 1513299569, "event": "bounce", "type": "bounce", "status": "5.0.0",
     "reason": "500 unknown recipient", "sg_event_id": "sg_3", "sg_message_id": "14c5d75ce93.dfd.64b469"},
    {"email": "c@example.com", "timestamp": 1513299569, "event": "bounce", "type": "blocked",
     "reason": "blocked by policy", "sg_event_id": "sg_4", "sg_message_id": "x"},
    {"email": "d@example.com", "timestamp": 1513299569, "event": "spamreport", "sg_event_id": "sg_5",
     "sg_message_id": "x"},
    {"email": "e@example.com", "timestamp": 1513299569, "event": "group_unsubscribe", "asm_group_id": 10,
     "sg_event_id": "sg_6", "sg_message_id": "x"},
    {"email": "f@example.com", "timestamp": 1513299569, "event": "open", "sg_event_id": "sg_7"},
]


def sendgrid_signed(key: ec.EllipticCurvePrivateKey, body: bytes, stamp: int) -> WebhookRequest:
    signature = key.sign(str(stamp).encode() + body, ec.ECDSA(hashes.SHA256()))
    return WebhookRequest({"x-twilio-email-event-webhook-signature": base64.b64encode(signature).decode(),
                           "x-twilio-email-event-webhook-timestamp": str(stamp)}, body, received=stamp + 2)


def sendgrid_receiver(key: ec.EllipticCurvePrivateKey) -> SendGridReceiver:
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return SendGridReceiver(load_key(base64.b64encode(der).decode(), "$KEY", "webhooks.sendgrid_key_env"), 300)


def test_sendgrid_official_test_vector():
    receiver = SendGridReceiver(load_key(SG_PUBLIC_KEY, "$KEY", "k"), 300)
    headers = {"x-twilio-email-event-webhook-signature": SG_SIGNATURE,
               "x-twilio-email-event-webhook-timestamp": SG_TIMESTAMP}
    (event,) = receiver.receive(WebhookRequest(headers, SG_PAYLOAD.encode(), received=1600112510)).events
    assert (event.kind, event.address) == (HARD_BOUNCE, "hello@world.com")
    assert event.message_id == "<LRzXl_NHStOGhQ4kofSm_A@ismtpd0039p1iad1.sendgrid.net>"
    stripped = WebhookRequest(headers, SG_PAYLOAD.strip().encode(), received=1600112510)
    assert rejected(receiver, stripped).status == 403, "the raw body, trailing CRLF included, is what is signed"


def test_sendgrid_events_signed_here():
    key = ec.generate_private_key(ec.SECP256R1())
    receiver = sendgrid_receiver(key)
    body = json.dumps(SG_EVENTS).encode()
    now = int(time.time())
    events = receiver.receive(sendgrid_signed(key, body, now)).events
    assert [(e.kind, e.address) for e in events] == [
        (DELIVERED, "a@example.com"), (HARD_BOUNCE, "b@example.com"), (SOFT_BOUNCE, "c@example.com"),
        (COMPLAINT, "d@example.com"), (UNSUBSCRIBE, "e@example.com")]
    assert events[0].metadata == {"publisher_mid": "<d1.s1@news.example.jp>"}, "custom args come back as metadata"
    assert [e.event_id for e in events] == ["sg_2", "sg_3", "sg_4", "sg_5", "sg_6"]


def test_sendgrid_forged_stale_and_unsigned():
    key = ec.generate_private_key(ec.SECP256R1())
    receiver = sendgrid_receiver(key)
    body = json.dumps(SG_EVENTS).encode()
    now = int(time.time())
    good = sendgrid_signed(key, body, now)
    forged = WebhookRequest(good.headers, body.replace(b"b@example.com", b"z@example.com"), received=now)
    assert "does not match" in str(rejected(receiver, forged))
    other_key = sendgrid_signed(ec.generate_private_key(ec.SECP256R1()), body, now)
    assert rejected(receiver, other_key).status == 403
    stale = sendgrid_signed(key, body, now - 3600)
    stale = WebhookRequest(stale.headers, body, received=now)
    assert "stale" in str(rejected(receiver, stale))
    assert rejected(receiver, WebhookRequest({}, body)).status == 401
    junk = dict(good.headers, **{"x-twilio-email-event-webhook-signature": "%%%not base64"})
    assert rejected(receiver, WebhookRequest(junk, body, received=now)).status == 403
    with pytest.raises(Exception, match="P-256|verification key"):
        load_key("bm90IGEga2V5", "$KEY", "webhooks.sendgrid_key_env")


# -- Mailgun: HMAC of timestamp + token; tokens used once ----------------------------------------------------

MAILGUN_KEY = "key-signing-0123456789abcdef"
MAILGUN_FAILED = {  # the event-data of Mailgun's documented permanent failure
    "event": "failed", "id": "G9Bn5sl1TC6nu79C8C0bwg", "timestamp": 1521233195.375624, "severity": "permanent",
    "reason": "suppress-bounce", "recipient": "alice@example.com", "recipient-domain": "example.com",
    "delivery-status": {"attempt-no": 1, "message": "", "code": 605,
                        "description": "Not delivering to previously bounced address", "session-seconds": 0},
    "message": {"headers": {"to": "Alice <alice@example.com>", "message-id": "20130503192659.13651.20287@example.com",
                            "from": "Bob <bob@example.com>", "subject": "Test permanent_fail webhook"}},
    "user-variables": {"my_var_1": "Mailgun Variable #1", "my-var-2": "awesome"}, "tags": ["my_tag_1"],
}


def mailgun_body(data: dict, stamp: int, token: str, key: str = MAILGUN_KEY) -> bytes:
    signature = hmac.new(key.encode(), f"{stamp}{token}".encode(), hashlib.sha256).hexdigest()
    return json.dumps({"signature": {"timestamp": str(stamp), "token": token, "signature": signature},
                       "event-data": data}).encode()


def test_mailgun_signed_event_and_replay():
    receiver = MailgunReceiver(MAILGUN_KEY, 300, MemoryReplayGuard())
    now = int(time.time())
    token = "a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de0"
    request = WebhookRequest({}, mailgun_body(MAILGUN_FAILED, now, token), received=now)
    (event,) = receiver.receive(request).events
    assert (event.kind, event.address, event.event_id) == (HARD_BOUNCE, "alice@example.com", "G9Bn5sl1TC6nu79C8C0bwg")
    assert event.message_id == "<20130503192659.13651.20287@example.com>"
    assert event.metadata == {"my_var_1": "Mailgun Variable #1", "my-var-2": "awesome"}
    replay = receiver.receive(request)
    assert replay.replayed and replay.events == [], "the same token is honoured once"
    swapped = dict(MAILGUN_FAILED, recipient="victim@example.com")
    replay_other_data = WebhookRequest({}, mailgun_body(swapped, now, token), received=now)
    assert receiver.receive(replay_other_data).events == [], "a captured signature cannot carry other data"
    temporary = dict(MAILGUN_FAILED, severity="temporary", id="T1")
    assert receiver.receive(WebhookRequest({}, mailgun_body(temporary, now, "t" * 50), received=now)
                            ).events[0].kind == SOFT_BOUNCE


def test_mailgun_forged_and_stale():
    receiver = MailgunReceiver(MAILGUN_KEY, 300, MemoryReplayGuard())
    now = int(time.time())
    forged = WebhookRequest({}, mailgun_body(MAILGUN_FAILED, now, "x" * 50, key="another-key"), received=now)
    assert rejected(receiver, forged).status == 403
    stale = WebhookRequest({}, mailgun_body(MAILGUN_FAILED, now - 900, "y" * 50), received=now)
    assert "stale" in str(rejected(receiver, stale))
    unsigned = WebhookRequest({}, json.dumps({"event-data": MAILGUN_FAILED}).encode(), received=now)
    assert rejected(receiver, unsigned).status == 401
    assert rejected(receiver, WebhookRequest({}, b"[1, 2]")).status == 400


# -- Resend: Svix signatures through the standardwebhooks library --------------------------------------------

RESEND_SECRET = "whsec_" + base64.b64encode(b"resend-test-secret-0123456789ab").decode()
RESEND_BOUNCE = {  # shaped like Resend's email.bounced body parameters
    "type": "email.bounced", "created_at": "2024-11-22T23:41:12.126Z",
    "data": {"broadcast_id": "8b146471-e88e-4322-86af-016cd36fd216", "created_at": "2024-11-22T23:41:11.894719+00:00",
             "email_id": "56761188-7520-42d8-8898-ff6fc54ce618", "from": "Acme <onboarding@resend.dev>",
             "to": ["delivered@resend.dev"], "subject": "Sending this example",
             "bounce": {"message": "The recipient's email address is on the suppression list.",
                        "subType": "Suppressed", "type": "Permanent"},
             "tags": [{"name": "category", "value": "confirm_email"}]}}


def resend_request(payload: dict, msg_id: str, stamp: int, secret: str = RESEND_SECRET) -> WebhookRequest:
    body = json.dumps(payload)
    signature = Webhook(secret).sign(msg_id, datetime.fromtimestamp(stamp, UTC), body)
    return WebhookRequest({"svix-id": msg_id, "svix-timestamp": str(stamp), "svix-signature": signature},
                          body.encode())


def test_resend_signed_events():
    from publisher.events.resend import load_secret

    receiver = ResendReceiver(load_secret(RESEND_SECRET, "$S", "k"))
    now = int(time.time())
    (event,) = receiver.receive(resend_request(RESEND_BOUNCE, "msg_p5jXN8AQM9LWM0D4loKWxJek", now)).events
    assert (event.kind, event.address, event.event_id) == (HARD_BOUNCE, "delivered@resend.dev",
                                                          "msg_p5jXN8AQM9LWM0D4loKWxJek")
    assert event.provider_message_id == "56761188-7520-42d8-8898-ff6fc54ce618"
    assert event.metadata == {"category": "confirm_email"}
    complaint = {"type": "email.complained", "created_at": "2024-11-22T23:41:12Z",
                 "data": {"email_id": "e1", "to": ["x@example.com"], "tags": {"a": "b"}}}
    assert receiver.receive(resend_request(complaint, "msg_2", now)).events[0].kind == COMPLAINT
    opened = {"type": "email.opened", "created_at": "2024-11-22T23:41:12Z", "data": {"to": ["x@example.com"]}}
    assert receiver.receive(resend_request(opened, "msg_3", now)).events == []


def test_resend_forged_stale_and_malformed():
    from publisher.events.resend import load_secret

    receiver = ResendReceiver(load_secret(RESEND_SECRET, "$S", "k"))
    now = int(time.time())
    other = "whsec_" + base64.b64encode(b"some-other-secret-0123456789").decode()
    assert rejected(receiver, resend_request(RESEND_BOUNCE, "msg_1", now, other)).status == 403
    assert "too old" in str(rejected(receiver, resend_request(RESEND_BOUNCE, "msg_1", now - 600)))
    good = resend_request(RESEND_BOUNCE, "msg_1", now)
    tampered = WebhookRequest(good.headers, good.body.replace(b"Permanent", b"Transient"))
    assert rejected(receiver, tampered).status == 403
    broken = WebhookRequest(dict(good.headers, **{"svix-signature": "v1"}), good.body)
    assert rejected(receiver, broken).status == 403
    assert rejected(receiver, WebhookRequest({"svix-id": "msg_1"}, good.body)).status == 401


# -- Amazon SES through SNS ------------------------------------------------------------------------------------

TOPIC = "arn:aws:sns:us-west-2:123456789012:ses-events"
SES_BOUNCE = {  # the SES event publishing example (Bounce), recipients as documented
    "eventType": "Bounce",
    "bounce": {"bounceType": "Permanent", "bounceSubType": "General",
               "bouncedRecipients": [{"emailAddress": "recipient@example.com", "action": "failed", "status": "5.1.1",
                                      "diagnosticCode": "smtp; 550 5.1.1 user unknown"}],
               "timestamp": "2017-08-05T00:41:02.669Z",
               "feedbackId": "01000157c44f053b-61b59c11-9236-11e6-8f96-7be8aexample-000000",
               "reportingMTA": "dsn; mta.example.com"},
    "mail": {"timestamp": "2017-08-05T00:40:02.012Z", "source": "Sender Name <sender@example.com>",
             "sendingAccountId": "123456789012",
             "messageId": "EXAMPLE7c191be45-e9aedb9a-02f9-4d12-a87d-dd0099a07f8a-000000",
             "destination": ["recipient@example.com"], "headersTruncated": False,
             "commonHeaders": {"from": ["Sender Name <sender@example.com>"], "to": ["recipient@example.com"],
                               "messageId": "<d7.s3@news.example.jp>", "subject": "Message sent from Amazon SES"},
             "tags": {"ses:configuration-set": ["ConfigSet"], "campaign": ["c1"]}}}
SES_COMPLAINT = {
    "notificationType": "Complaint",
    "complaint": {"complainedRecipients": [{"emailAddress": "richard@example.com"}],
                  "timestamp": "2016-01-27T14:59:38.237Z", "feedbackId": "0000013786031775-fea503bc-example-000000",
                  "complaintFeedbackType": "abuse", "userAgent": "AnyCompany Feedback Loop (V0.01)"},
    "mail": {"messageId": "000001378603177f-7a5433e7-8edb-42ae-af10-f0181f34d6ee-000000",
             "timestamp": "2016-01-27T14:59:38.237Z", "source": "john@example.com"}}
SES_DELIVERY = {
    "notificationType": "Delivery",
    "delivery": {"timestamp": "2016-01-27T14:59:38.237Z", "processingTimeMillis": 546,
                 "recipients": ["success@simulator.amazonses.com"], "smtpResponse": "250 ok",
                 "reportingMTA": "a8-70.smtp-out.amazonses.com"},
    "mail": {"messageId": "0000014644fe5ef6-9a483358-9170-4cb4-a269-f5dcdf415321-000000"}}


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return LocalPKI.create(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def cert_host(pki):
    with HTTPSServer(str(pki.server_cert), str(pki.server_key)) as server:
        server.routes["/SimpleNotificationService-test.pem"] = pki.signing_cert_pem
        server.routes["/confirm"] = b"<ConfirmSubscriptionResponse/>"
        yield server


def sns_receiver(pki, max_age=3600.0) -> SNSReceiver:
    return SNSReceiver((TOPIC,), Certificates(r"127\.0\.0\.1", str(pki.ca_file)), max_age)


def notification(pki, server, message: dict, *, version="1", when=None, **extra) -> WebhookRequest:
    stamp = (when or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    envelope = {"Type": "Notification", "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324", "TopicArn": TOPIC,
                "Message": json.dumps(message), "Timestamp": stamp,
                "SigningCertURL": server.url("/SimpleNotificationService-test.pem"),
                "UnsubscribeURL": server.url("/?Action=Unsubscribe"), **extra}
    signed = pki.sign_sns(envelope, version)
    return WebhookRequest({"x-amz-sns-message-type": "Notification", "content-type": "text/plain; charset=UTF-8"},
                          json.dumps(signed).encode())


@pytest.mark.parametrize("version", ["1", "2"])
def test_sns_ses_events(pki, cert_host, version):
    receiver = sns_receiver(pki)
    (bounce,) = receiver.receive(notification(pki, cert_host, SES_BOUNCE, version=version)).events
    assert (bounce.kind, bounce.address) == (HARD_BOUNCE, "recipient@example.com")
    assert bounce.provider_message_id == "EXAMPLE7c191be45-e9aedb9a-02f9-4d12-a87d-dd0099a07f8a-000000"
    assert bounce.message_id == "<d7.s3@news.example.jp>" and bounce.metadata["campaign"] == "c1"
    assert "550 5.1.1" in bounce.detail
    (complaint,) = receiver.receive(notification(pki, cert_host, SES_COMPLAINT, Subject="x")).events
    assert (complaint.kind, complaint.address, complaint.detail) == (COMPLAINT, "richard@example.com", "abuse")
    (delivered,) = receiver.receive(notification(pki, cert_host, SES_DELIVERY)).events
    assert delivered.kind == DELIVERED
    soft = dict(SES_BOUNCE, bounce=dict(SES_BOUNCE["bounce"], bounceType="Transient", bounceSubType="MailboxFull"))
    assert receiver.receive(notification(pki, cert_host, soft)).events[0].kind == SOFT_BOUNCE
    assert cert_host.requests.count("/SimpleNotificationService-test.pem") == 1, "the certificate is cached"


def test_sns_forged_stale_foreign_topic_and_bad_cert_urls(pki, cert_host):
    receiver = sns_receiver(pki, max_age=600)
    good = notification(pki, cert_host, SES_BOUNCE)
    body = json.loads(good.body)
    forged = dict(body, Message=body["Message"].replace("recipient@example.com", "victim@example.com"))
    assert "signature does not match" in str(rejected(receiver, WebhookRequest(good.headers,
                                                                              json.dumps(forged).encode())))
    stale = notification(pki, cert_host, SES_BOUNCE, when=datetime.fromtimestamp(time.time() - 3600, UTC))
    assert "stale" in str(rejected(receiver, stale))
    foreign = pki.sign_sns(dict(body, TopicArn="arn:aws:sns:us-west-2:999999999999:attacker"))
    assert rejected(receiver, WebhookRequest(good.headers, json.dumps(foreign).encode())).status == 403
    for url in ("http://127.0.0.1:1/cert.pem", "https://evil.example/cert.pem", cert_host.url("/cert.txt"),
                "https://127.0.0.1@evil.example/x.pem", "file:///etc/passwd"):
        moved = pki.sign_sns({k: v for k, v in body.items() if k not in ("Signature", "SignatureVersion")})
        moved["SigningCertURL"] = url
        assert rejected(receiver, WebhookRequest(good.headers, json.dumps(moved).encode())).status == 403, url
    production = SNSReceiver((TOPIC,), Certificates(), 3600)
    assert rejected(production, good).status == 403, "the AWS host pattern refuses 127.0.0.1"
    assert rejected(receiver, WebhookRequest(good.headers, b"not json")).status == 400


def test_sns_subscription_confirmed_by_fetching_subscribe_url(pki, cert_host):
    receiver = sns_receiver(pki)
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    confirmation = pki.sign_sns({
        "Type": "SubscriptionConfirmation", "MessageId": "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
        "Token": "2336412f37fb687f5d51e6e241d09c805a5a57b30d712f794cc5f6a988666d92768dd60a747ba6f3beb71854e285d6ad02428b",
        "TopicArn": TOPIC, "Message": f"You have chosen to subscribe to the topic {TOPIC}.",
        "SubscribeURL": cert_host.url("/confirm?Action=ConfirmSubscription&Token=2336"), "Timestamp": stamp,
        "SigningCertURL": cert_host.url("/SimpleNotificationService-test.pem")})
    request = WebhookRequest({"x-amz-sns-message-type": "SubscriptionConfirmation"}, json.dumps(confirmation).encode())
    result = receiver.receive(request)
    assert result.events == [] and "confirmed" in result.note
    assert "/confirm?Action=ConfirmSubscription&Token=2336" in cert_host.requests
    elsewhere = pki.sign_sns({k: v for k, v in confirmation.items() if k not in ("Signature", "SignatureVersion")}
                             | {"SubscribeURL": "https://evil.example/confirm"})
    assert rejected(receiver, WebhookRequest({}, json.dumps(elsewhere).encode())).status == 403
    assert not any(r.startswith("https://evil") for r in cert_host.requests)


# -- generic: bearer or HMAC signature ---------------------------------------------------------------------------

def test_generic_bearer_and_signature():
    receiver = GenericReceiver("generic-secret-0123456789", 300)
    body = json.dumps({"events": [
        {"id": "mbox-1", "type": "hard_bounce", "email": "Dead@Example.com", "detail": "550 no such user",
         "message_id": "d3.s9@news.example.jp", "time": "2026-03-16T01:00:00Z"},
        {"id": "mbox-2", "type": "complaint", "email": "angry@example.com"}]}).encode()
    bearer = WebhookRequest({"authorization": "Bearer generic-secret-0123456789"}, body)
    events = receiver.receive(bearer).events
    assert [(e.kind, e.address) for e in events] == [(HARD_BOUNCE, "dead@example.com"), (COMPLAINT, "angry@example.com")]
    assert events[0].message_id == "<d3.s9@news.example.jp>"
    now = int(time.time())
    signed = WebhookRequest({"x-publisher-signature": sign("generic-secret-0123456789", now, body)}, body, now)
    assert len(receiver.receive(signed).events) == 2
    assert rejected(receiver, WebhookRequest({"authorization": "Bearer wrong"}, body)).status == 401
    stale = WebhookRequest({"x-publisher-signature": sign("generic-secret-0123456789", now - 900, body)}, body, now)
    assert rejected(receiver, stale).status == 403
    forged = WebhookRequest(signed.headers, body.replace(b"angry", b"other"), now)
    assert rejected(receiver, forged).status == 403
    assert rejected(receiver, WebhookRequest({}, body)).status == 401


@pytest.mark.parametrize("payload", [
    [], {"events": "x"}, {"id": "1", "type": "exploded", "email": "a@example.com"}, {"type": "complaint"},
    {"id": "1", "type": "complaint", "email": "not an address"}, {"events": [1]},
])
def test_generic_bad_payloads_are_400(payload):
    receiver = GenericReceiver("generic-secret-0123456789", 300)
    request = WebhookRequest({"authorization": "Bearer generic-secret-0123456789"}, json.dumps(payload).encode())
    assert rejected(receiver, request).status == 400
