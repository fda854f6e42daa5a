"""SMTP: one connection reused for many messages; 4xx retried with backoff, 5xx failed, drops reconnected."""

from __future__ import annotations

import os
import smtplib
import ssl
import time
from collections.abc import Sequence
from email.utils import parseaddr
from functools import lru_cache

from ..config import SmtpConfig
from ..errors import SecretError
from ..message import Outgoing
from .base import FAILED, RETRY, SENT, UNKNOWN, SendResult, TransportError, backoff, chunks


@lru_cache(maxsize=16)
def _address(sender: str) -> str:
    return parseaddr(sender)[1]


class SMTPTransport:
    batch_size = 1  # one message per ledger step: a crash leaves at most one message of unknown fate
    idempotent = False  # SMTP has no idempotency key: a message caught mid-DATA is reported, never resent

    def __init__(self, cfg: SmtpConfig) -> None:
        self.cfg = cfg
        self.password = os.environ.get(cfg.password_env, "")
        if cfg.username and not self.password:
            raise SecretError(f"the environment variable {cfg.password_env} is not set",
                              f"set it to the SMTP password of {cfg.username!r} ([smtp] password_env names it)")
        self.conn: smtplib.SMTP | None = None
        self.sleep = time.sleep

    def _connect(self) -> smtplib.SMTP:
        cfg = self.cfg
        where = f"SMTP server {cfg.host}:{cfg.port}"
        try:
            if cfg.security == "tls":
                conn: smtplib.SMTP = smtplib.SMTP_SSL(cfg.host, cfg.port, timeout=cfg.timeout,
                                                      context=ssl.create_default_context())
            else:
                conn = smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout)
            conn.ehlo()
            if cfg.security == "starttls":
                conn.starttls(context=ssl.create_default_context())
                conn.ehlo()
            if cfg.username:
                conn.login(cfg.username, self.password)
        except smtplib.SMTPAuthenticationError as exc:
            raise TransportError(f"{where} refused the login for {cfg.username!r} ({exc.smtp_code}); check "
                                 f"[smtp] username and ${cfg.password_env}") from None
        except smtplib.SMTPNotSupportedError:
            raise TransportError(f"{where} does not offer STARTTLS; set [smtp] security to "
                                 "\"tls\" or \"none\"") from None
        except (OSError, smtplib.SMTPException) as exc:
            raise TransportError(f"cannot connect to {where} ({exc}); check [smtp] host, port and security") from None
        self.conn = conn
        return conn

    def _drop(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except OSError:
                pass
        self.conn = None

    def _reset(self) -> None:
        try:
            if self.conn is not None:
                self.conn.rset()
        except (OSError, smtplib.SMTPException):
            self._drop()

    def requests(self, messages: Sequence[Outgoing]) -> list[tuple[Outgoing, ...]]:
        return chunks(messages, 1)

    def send(self, messages: Sequence[Outgoing], key: str = "") -> list[SendResult]:
        results: list[SendResult] = []
        for message in messages:
            try:
                results.append(self._send_one(message))
            except TransportError as exc:
                exc.results = results  # what was settled before the server became unreachable
                raise
        return results

    def _send_one(self, message: Outgoing) -> SendResult:
        """One message, temporary refusals retried with backoff. A refusal of this recipient or message is a
        result (failed, or retry: an attempt); the server refusing everything (421, the sender refused,
        the connection dropping before DATA) raises TransportError: an outage charges no recipient."""
        data = message.as_bytes()
        sender = _address(message.sender)
        last, outage = "", False
        for attempt in range(1, self.cfg.retries + 2):
            phase = "connect"
            try:
                conn = self.conn or self._connect()
                phase = "sender"
                code, reply = conn.mail(sender)
                if code == 250:
                    phase = "recipient"
                    code, reply = conn.rcpt(message.to)
                if code not in (250, 251):
                    raise smtplib.SMTPResponseException(code, reply)
                phase = "data"
                code, reply = conn.data(data)
                if code != 250:  # smtplib returns the final reply to DATA without raising
                    phase = "refused"
                    raise smtplib.SMTPDataError(code, reply)
                return SendResult(message.key, SENT, provider_id=reply.decode(errors="replace")[:200])
            except smtplib.SMTPResponseException as exc:
                reply = exc.smtp_error
                last = f"{exc.smtp_code} {reply.decode(errors='replace') if isinstance(reply, bytes) else reply}"
                self._reset()
                outage = exc.smtp_code == 421 or phase == "sender"
                if phase == "sender" and not 400 <= exc.smtp_code < 500:
                    raise TransportError(f"SMTP server {self.cfg.host}:{self.cfg.port} refused the sender "
                                         f"{sender}: {last}", hint="check [digest] from_address and what the "
                                         "server lets this account send as; nothing was sent") from None
                if not 400 <= exc.smtp_code < 500:
                    return SendResult(message.key, FAILED, error=f"refused by the server: {last}")
            except (smtplib.SMTPServerDisconnected, OSError) as exc:
                self._drop()
                if phase == "data":
                    return SendResult(message.key, UNKNOWN, error=f"connection lost during DATA ({exc}); "
                                      "the server may have accepted the message")
                last, outage = f"connection lost ({exc})", True
            if attempt <= self.cfg.retries:
                self.sleep(backoff(attempt, self.cfg.retry_delay))
        tries = self.cfg.retries + 1
        if outage:
            raise TransportError(f"SMTP server {self.cfg.host}:{self.cfg.port} is not accepting mail: {last} "
                                 f"({tries} tries)", hint="the messages stay pending and the next run sends them")
        return SendResult(message.key, RETRY, error=f"refused for now after {tries} tries: {last}")

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.quit()
            except (OSError, smtplib.SMTPException):
                pass
        self.conn = None
