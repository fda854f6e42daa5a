"""Amazon SES v2 through botocore: `SendEmail` with the raw MIME message, one recipient per call.

Credentials and region are found the way AWS tools find them (environment, shared config and credentials
files, `[ses] profile`, instance roles). botocore's own retries are off; throttling and 5xx are retried here
with our backoff and then stop the send (the message stays pending, nobody is charged an attempt), message
rejections are `failed`, and credential or account problems stop the send.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from ..config import SesConfig
from ..message import Outgoing
from .base import FAILED, SENT, UNKNOWN, SendResult, TransportError, backoff, chunks

RETRY_CODES = {"TooManyRequestsException", "Throttling", "ThrottlingException", "LimitExceededException",
               "ServiceUnavailable", "ServiceUnavailableException", "InternalFailure", "InternalServerError",
               "RequestTimeout", "RequestTimeoutException"}
FAILED_CODES = {"MessageRejected", "BadRequestException", "InvalidParameterValue"}
CREDENTIAL_CODES = {"UnrecognizedClientException", "InvalidClientTokenId", "SignatureDoesNotMatch",
                    "AccessDeniedException", "AccessDenied", "ExpiredToken", "ExpiredTokenException",
                    "InvalidSignatureException", "IncompleteSignature", "MissingAuthenticationToken",
                    "NotAuthorized"}
ACCOUNT_HINTS = {
    "AccountSuspendedException": "SES suspended this account's sending; see the SES console's reputation page",
    "SendingPausedException": "sending is paused for this account or configuration set; resume it in SES",
    "MailFromDomainNotVerifiedException": "the MAIL FROM domain of [digest] from_address is not verified in SES",
    "NotFoundException": "check [ses] configuration_set and that the sender identity exists in this region",
}


class SESTransport:
    batch_size = 1  # SendEmail takes one message; parallelism comes from [digest] concurrency
    idempotent = False  # SES has no idempotency key: a call whose answer was lost is reported unknown

    def __init__(self, cfg: SesConfig) -> None:
        self.cfg = cfg
        self.client = None
        self.sleep = time.sleep

    def _client(self):
        if self.client is None:
            import botocore.session
            from botocore.config import Config
            from botocore.exceptions import BotoCoreError

            try:
                session = botocore.session.Session(profile=self.cfg.profile or None)
                self.client = session.create_client(
                    "sesv2", region_name=self.cfg.region or None, endpoint_url=self.cfg.endpoint_url or None,
                    config=Config(retries={"total_max_attempts": 1, "mode": "standard"},
                                  connect_timeout=self.cfg.timeout, read_timeout=self.cfg.timeout))
            except BotoCoreError as exc:
                raise TransportError(f"cannot set up Amazon SES: {exc}", hint=_setup_hint(exc)) from None
        return self.client

    def requests(self, messages: Sequence[Outgoing]) -> list[tuple[Outgoing, ...]]:
        return chunks(messages, 1)

    def send(self, messages: Sequence[Outgoing], key: str = "") -> list[SendResult]:
        results: list[SendResult] = []
        for message in messages:
            try:
                results.append(self._send_one(message))
            except TransportError as exc:
                exc.results = results
                raise
        return results

    def _request(self, message: Outgoing) -> dict:
        request: dict = {"FromEmailAddress": message.sender, "Destination": {"ToAddresses": [message.to]},
                         "Content": {"Raw": {"Data": message.as_bytes()}}}
        if self.cfg.configuration_set:
            request["ConfigurationSetName"] = self.cfg.configuration_set
        return request

    def _send_one(self, message: Outgoing) -> SendResult:
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            ConnectTimeoutError,
            EndpointConnectionError,
            HTTPClientError,
        )

        client = self._client()
        last = ""
        for attempt in range(1, self.cfg.retries + 2):
            try:
                answer = client.send_email(**self._request(message))
                return SendResult(message.key, SENT, provider_id=str(answer.get("MessageId", "")))
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
                text = f"SES {code or status}: {exc.response.get('Error', {}).get('Message', '')}".strip()
                if code in CREDENTIAL_CODES or status in (401, 403):
                    raise TransportError(f"Amazon SES refused the credentials ({text})",
                                         hint="check the AWS credentials (AWS_ACCESS_KEY_ID / AWS_PROFILE / "
                                              "[ses] profile) and their ses:SendRawEmail permission") from None
                if code in ACCOUNT_HINTS:
                    raise TransportError(f"Amazon SES cannot send ({text})", hint=ACCOUNT_HINTS[code]) from None
                if code not in RETRY_CODES and status < 500 and status != 429:
                    return SendResult(message.key, FAILED, error=text)
                last = text
            except (EndpointConnectionError, ConnectTimeoutError) as exc:
                last = f"cannot connect to Amazon SES ({exc})"  # nothing reached SES: safe to retry
            except HTTPClientError as exc:
                return SendResult(message.key, UNKNOWN, error=f"no answer from Amazon SES ({type(exc).__name__}); "
                                  "the message may have been accepted")
            except BotoCoreError as exc:
                raise TransportError(f"cannot send through Amazon SES: {exc}", hint=_setup_hint(exc)) from None
            if attempt <= self.cfg.retries:
                self.sleep(backoff(attempt, self.cfg.retry_delay, self.cfg.max_retry_wait))
        raise TransportError(f"Amazon SES is not accepting messages: {last} ({self.cfg.retries + 1} tries)",
                             hint="nothing was lost: the messages stay pending and the next run sends them "
                                  "(`publish serve` retries every pass until [digest] give_up_hours)")

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None


def _setup_hint(exc: Exception) -> str:
    name = type(exc).__name__
    if name in ("NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError"):
        return "give AWS credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or [ses] profile"
    if name == "NoRegionError":
        return "set [ses] region (e.g. \"ap-northeast-1\") or AWS_REGION"
    if name == "ProfileNotFound":
        return "the profile named by [ses] profile or AWS_PROFILE is not in ~/.aws/config"
    return "check the [ses] section of config.toml"
