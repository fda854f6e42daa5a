"""Sign-up limits: which buckets a request and a confirmation mail count against.

Every count lives in the store (`take_rates`), so several web processes on one database share them. Bucket
names hold keyed hashes, never addresses or IP addresses in clear.
"""

from __future__ import annotations

from ..config import WebConfig
from ..store.base import RateLimit
from ..tokens import keyed_hash

HOUR, DAY = 3600.0, 86400.0
DOMAIN_ALIASES = {"googlemail.com": "gmail.com"}


def mailbox(email: str, dotless_domains: tuple[str, ...]) -> tuple[str, str]:
    """(mailbox, domain) an address delivers to: lower case, without a +tag, and without dots where the
    provider ignores them (victim+1@example.org, Vic.Tim@googlemail.com → victim@example.org, victim@gmail.com)."""
    local, _, domain = email.lower().rpartition("@")
    domain = DOMAIN_ALIASES.get(domain, domain)
    base = local.split("+", 1)[0] or local
    if domain in dotless_domains or domain in (DOMAIN_ALIASES.get(d, d) for d in dotless_domains):
        base = base.replace(".", "") or base
    return f"{base}@{domain}", domain


class SignupLimits:
    """The buckets of the [web] limits, named by keyed hashes."""

    def __init__(self, web: WebConfig, secret: bytes) -> None:
        self.web = web
        self.secret = secret

    def _name(self, kind: str, value: str) -> str:
        return f"{kind}:{keyed_hash(self.secret, 'limit-' + kind, value).hex()}"

    def client(self, client: str) -> RateLimit:
        """Sign-up requests per client and hour."""
        return RateLimit(self._name("client", client), self.web.per_client_per_hour, HOUR)

    def mail(self, email: str) -> list[RateLimit]:
        """A confirmation mail to `email`: per mailbox and day, per domain and hour, and in all per hour."""
        box, domain = mailbox(email, self.web.dotless_domains)
        return [RateLimit(self._name("mailbox", box), self.web.per_address_per_day, DAY),
                RateLimit(self._name("domain", domain), self.web.per_domain_per_hour, HOUR),
                RateLimit("mails:all", self.web.mails_per_hour, HOUR)]
