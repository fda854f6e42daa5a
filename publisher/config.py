"""config.toml → frozen dataclasses, validated once; every error names the TOML key."""

from __future__ import annotations

import dataclasses
import math
import re
import tomllib
import types
import typing
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime
from datetime import time as Time
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import ConfigError

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DEFAULT_MARKERS = (r"^-{3,}\s*END\s*-{3,}$", r"^<!--\s*END\s*-->$")


@dataclass(frozen=True, slots=True)
class SiteConfig:
    title: str
    base_url: str
    language: str = "en"
    author: str = ""
    timezone: str = "UTC"
    description: str = ""


@dataclass(frozen=True, slots=True)
class PostsConfig:
    folder: str = "posts"
    patterns: tuple[str, ...] = ("*.md", "*.markdown", "*.txt")
    permalink: str = "/{year}/{month}/{day}/{slug}/"


FEED_FORMATS = ("atom", "rss", "json")


@dataclass(frozen=True, slots=True)
class FeedsConfig:
    folder: str = "feeds"
    base_url: str = ""
    url_path: str = "feeds/"
    entries: int = 20
    content: str = "full"
    formats: tuple[str, ...] = FEED_FORMATS
    opml: tuple[str, ...] = ("atom",)
    websub_hubs: tuple[str, ...] = ()
    websub_timeout: float = 5.0
    websub_wait: float = 10.0
    websub_retry_delay: float = 1.0
    websub_give_up_hours: float = 24.0
    category_slugs: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StateConfig:
    database: str = "state/publisher.sqlite3"
    busy_timeout: float = 30.0


@dataclass(frozen=True, slots=True)
class CleanupConfig:
    markers: bool = True
    marker_patterns: tuple[str, ...] = DEFAULT_MARKERS
    title_repeat: bool = True
    repeated_blocks: bool = True
    repeated_min_chars: int = 30
    repeated_sentences: bool = True
    sentence_min_chars: int = 20
    sentence_near_ratio: float = 0.2
    truncation: bool = True
    invisible_chars: bool = True


@dataclass(frozen=True, slots=True)
class DigestConfig:
    enabled: bool = True
    subject: str = "{site} — weekly digest {start:%Y-%m-%d} to {end:%Y-%m-%d}"
    from_address: str = ""
    reply_to: str = ""
    list_id: str = ""
    preheader: str = "{count} new posts this week"
    period_days: int = 7
    day: str = "mon"
    time: str = "08:00"
    catch_up_hours: int = 48
    max_posts: int = 30
    adopt_existing: bool = True
    unsubscribe_url: str = ""
    preferences_url: str = ""
    token_secret_env: str = "PUBLISHER_TOKEN_SECRET"
    templates: str = "templates"
    transport: str = "file"
    rate: float = 0.0
    concurrency: int = 1
    max_attempts: int = 5
    give_up_hours: float = 72.0
    sample_recipients: tuple[str, ...] = ()
    sender_name: str = ""
    postal_address: str = ""
    signing_domain: str = ""
    archive: bool = True
    # Parsed once from `day` and `time` (left at these defaults when invalid: validation reports them).
    weekday: int = field(default=0, init=False, repr=False)
    send_time: Time = field(default=Time(8, 0), init=False, repr=False)

    def __post_init__(self) -> None:
        day = self.day.lower()[:3]
        if day in WEEKDAYS:
            object.__setattr__(self, "weekday", WEEKDAYS.index(day))
        m = re.fullmatch(r"([01]?\d|2[0-3]):([0-5]\d)", self.time)
        if m:
            object.__setattr__(self, "send_time", Time(int(m.group(1)), int(m.group(2))))


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    host: str = "127.0.0.1"
    port: int = 587
    security: str = "starttls"
    username: str = ""
    password_env: str = "PUBLISHER_SMTP_PASSWORD"
    timeout: float = 30.0
    retries: int = 3
    retry_delay: float = 2.0


@dataclass(frozen=True, slots=True)
class HttpConfig:
    api_url: str = ""
    api_key_env: str = "PUBLISHER_API_KEY"
    domain: str = ""
    message_stream: str = "broadcast"
    timeout: float = 30.0
    retries: int = 4
    retry_delay: float = 1.0
    max_retry_wait: float = 60.0
    batch_size: int = 0


@dataclass(frozen=True, slots=True)
class SesConfig:
    region: str = ""
    endpoint_url: str = ""
    profile: str = ""
    configuration_set: str = ""
    timeout: float = 30.0
    retries: int = 4
    retry_delay: float = 1.0
    max_retry_wait: float = 60.0


@dataclass(frozen=True, slots=True)
class OutboxConfig:
    folder: str = "outbox"


@dataclass(frozen=True, slots=True)
class ServeConfig:
    scan_interval: float = 60.0
    lease_seconds: float = 60.0
    watch: bool = False


LOOPBACK_PROXIES = ("127.0.0.1", "::1")


@dataclass(frozen=True, slots=True)
class WebConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    confirm_hours: int = 48
    preferences_days: int = 90
    # Sign-up limits (0: no limit): requests per client, mails per mailbox, per domain, in all.
    per_client_per_hour: int = 10
    per_address_per_day: int = 3
    per_domain_per_hour: int = 30
    mails_per_hour: int = 100
    dotless_domains: tuple[str, ...] = ("gmail.com", "googlemail.com")
    trusted_proxies: tuple[str, ...] = ()
    max_body: int = 16384
    request_timeout: float = 10.0
    max_connections: int = 1000
    trust_forwarded: bool = False  # deprecated: read as trusted_proxies = LOOPBACK_PROXIES

    @property
    def proxies(self) -> tuple[str, ...]:
        """The proxies whose X-Forwarded-For and X-Forwarded-Proto are believed; networks in canonical form
        ("10.0.0.1/8" is the network 10.0.0.0/8, as validation reads it)."""
        import ipaddress

        if self.trusted_proxies:
            return tuple(str(ipaddress.ip_network(p, strict=False)) if "/" in p else p for p in self.trusted_proxies)
        return LOOPBACK_PROXIES if self.trust_forwarded else ()

    def deprecations(self, source: str) -> list[str]:
        """Warnings about deprecated keys that are still read."""
        if not self.trust_forwarded:
            return []
        if self.trusted_proxies:
            return [f"{source}: [web] trust_forwarded is deprecated and ignored because trusted_proxies is set; "
                    "remove it"]
        return [f"{source}: [web] trust_forwarded is deprecated; it is read as trusted_proxies = "
                '["127.0.0.1", "::1"] (the client is the address your proxy appended to X-Forwarded-For); '
                "replace it with trusted_proxies listing your proxies' addresses"]


@dataclass(frozen=True, slots=True)
class WebhooksConfig:
    max_body: int = 1_000_000
    max_age: float = 300.0
    postmark_username: str = "postmark"
    postmark_password_env: str = "PUBLISHER_POSTMARK_WEBHOOK_PASSWORD"
    sendgrid_key_env: str = "PUBLISHER_SENDGRID_WEBHOOK_KEY"
    mailgun_key_env: str = "PUBLISHER_MAILGUN_SIGNING_KEY"
    resend_secret_env: str = "PUBLISHER_RESEND_WEBHOOK_SECRET"
    generic_secret_env: str = "PUBLISHER_WEBHOOK_SECRET"
    sns_topic_arns: tuple[str, ...] = ()
    sns_max_age: float = 3600.0
    sns_cert_hosts: str = r"^sns\.[a-zA-Z0-9\-]{3,}\.amazonaws\.com(\.cn)?$"
    sns_ca_file: str = ""


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration; paths are resolved against the folder holding config.toml."""

    root: Path
    site: SiteConfig
    posts: PostsConfig
    feeds: FeedsConfig
    state: StateConfig
    cleanup: CleanupConfig
    digest: DigestConfig = field(default_factory=DigestConfig)
    smtp: SmtpConfig = field(default_factory=SmtpConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    ses: SesConfig = field(default_factory=SesConfig)
    outbox: OutboxConfig = field(default_factory=OutboxConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)
    web: WebConfig = field(default_factory=WebConfig)
    webhooks: WebhooksConfig = field(default_factory=WebhooksConfig)
    source: str = "config.toml"
    tz: ZoneInfo = field(default=ZoneInfo("UTC"), init=False, repr=False)  # parsed once from site.timezone

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "tz", ZoneInfo(self.site.timezone))
        except (ZoneInfoNotFoundError, ValueError):
            pass  # reported by validation

    @property
    def posts_dir(self) -> Path:
        return self.root / self.posts.folder

    @property
    def feeds_dir(self) -> Path:
        return self.root / self.feeds.folder

    @property
    def database_path(self) -> Path:
        return self.root / self.state.database

    @property
    def state_dir(self) -> Path:
        """The folder of the state database; private to this user (0700) when publisher creates it."""
        return self.database_path.parent

    @property
    def unsubscribe_url(self) -> str:
        return self.digest.unsubscribe_url or self.site.base_url + "unsubscribe/{token}"

    @property
    def preferences_url(self) -> str:
        return self.digest.preferences_url or self.site.base_url + "preferences/{token}"

    @property
    def list_id(self) -> str:
        host = urlsplit(self.site.base_url).hostname or "localhost"
        return self.digest.list_id or f"digest.{host}"

    @property
    def feeds_url(self) -> str:
        """The public URL of the feeds, ending in '/': from configuration only, never from the folder on disk."""
        path = self.feeds.url_path.strip("/")
        url = self.feeds.base_url or self.site.base_url + (path + "/" if path else "")
        parts = urlsplit(url if url.endswith("/") else url + "/")
        # a URI, not an IRI: a Japanese path is percent-encoded like a Japanese slug ('%' kept: already encoded)
        return urlunsplit(parts._replace(path=quote(parts.path, safe="/%!$&'()*+,;=:@~")))


SECTIONS: dict[str, type] = {
    "site": SiteConfig,
    "posts": PostsConfig,
    "feeds": FeedsConfig,
    "state": StateConfig,
    "cleanup": CleanupConfig,
    "digest": DigestConfig,
    "smtp": SmtpConfig,
    "http": HttpConfig,
    "ses": SesConfig,
    "outbox": OutboxConfig,
    "serve": ServeConfig,
    "web": WebConfig,
    "webhooks": WebhooksConfig,
}
TRANSPORTS = ("smtp", "postmark", "sendgrid", "mailgun", "resend", "ses", "file")
REQUIRED_SECTIONS = ("site",)


# Numbers in config.toml are seconds, hours, counts or rates: past these they mean nothing and overflow dates.
MAX_WHOLE = 2**31 - 1
MAX_NUMBER = 1e6
# Whole numbers with a narrower sensible range (inclusive): spans the schedule adds to a date, and ports.
RANGES = {"digest.period_days": (1, 366), "digest.catch_up_hours": (0, 24 * 366), "web.confirm_hours": (1, 24 * 366),
          "web.preferences_days": (1, 3660), "web.port": (0, 65535), "smtp.port": (1, 65535)}


def _check_value(source: str, key: str, value: object, hint: object) -> object:
    """Check one TOML value against a field's type hint and convert lists to tuples."""
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        for option in typing.get_args(hint):
            if option is type(None) and value is None:
                return None
            try:
                return _check_value(source, key, value, option)
            except ConfigError:
                continue
        raise ConfigError(source, key, f"has the wrong type ({type(value).__name__})")
    if origin is tuple:
        (item,) = {a for a in typing.get_args(hint) if a is not Ellipsis}
        if not isinstance(value, list):
            raise ConfigError(source, key, f"must be a list of {item.__name__}, not {type(value).__name__}")
        return tuple(_check_value(source, f"{key}[{i}]", v, item) for i, v in enumerate(value))
    if origin is dict:
        key_type, value_type = typing.get_args(hint)
        if not isinstance(value, dict):
            raise ConfigError(source, key, f"must be a table, not {type(value).__name__}")
        return {str(k): _check_value(source, f"{key}.{k}", v, value_type) for k, v in value.items()}
    if hint is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(source, key, f"must be a whole number, not {value!r}")
    if hint is float and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise ConfigError(source, key, f"must be a number, not {value!r}")
    if hint is int and not -MAX_WHOLE <= value <= MAX_WHOLE:
        raise ConfigError(source, key, f"must be a whole number between {-MAX_WHOLE} and {MAX_WHOLE}, not {value!r}")
    if hint is float and not (math.isfinite(value) and abs(value) <= MAX_NUMBER):
        raise ConfigError(source, key, f"must be a finite number of at most {MAX_NUMBER:.0f}, not {value!r}")
    if hint is float:
        return float(value)
    if hint in (str, bool) and not isinstance(value, hint):
        kind = "text in quotes" if hint is str else "true or false"
        raise ConfigError(source, key, f"must be {kind}, not {value!r}")
    return value


def parse_section(source: str, name: str, cls: type, data: object) -> object:
    """Build one section's dataclass from its TOML table, refusing unknown keys and wrong types."""
    if not isinstance(data, dict):
        raise ConfigError(source, name, "must be a table, e.g. [" + name + "]")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(source, f"{name}.{unknown[0]}",
                          f"is not a known key; known keys: {', '.join(sorted(fields))}")
    values = {}
    for fname, f in fields.items():
        key = f"{name}.{fname}"
        if fname in data:
            values[fname] = _check_value(source, key, data[fname], hints[fname])
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(source, key, "is missing; add it to the file")
    return cls(**values)


def _url_problem(url: str) -> str:
    """Why `url` cannot start the site's or the feeds' addresses ('' when it can)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (a port out of range raises here)
    except ValueError as exc:
        return f"is not a URL ({exc})"
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return "is not an absolute http(s) URL"
    if "?" in url or "#" in url:
        return "has a query or fragment, which every feed address would carry"
    if any(c.isspace() or not c.isprintable() for c in url):
        return "holds spaces or control characters"
    if any(segment in (".", "..") for segment in parts.path.split("/")):
        return "has '.' or '..' path segments"
    return ""


def _validate(source: str, cfg: Config) -> None:
    problem = _url_problem(cfg.site.base_url)
    if problem:
        raise ConfigError(source, "site.base_url", f"must be an absolute http(s) URL, not {cfg.site.base_url!r} "
                          f"(it {problem})")
    if not cfg.site.base_url.endswith("/"):
        raise ConfigError(source, "site.base_url", "must end with '/'")
    _validate_feeds(source, cfg)
    try:
        ZoneInfo(cfg.site.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(source, "site.timezone",
                          f"{cfg.site.timezone!r} is not a known time zone; use a name like 'Asia/Tokyo'") from None
    for key, (low, high) in RANGES.items():
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        if not low <= value <= high:
            raise ConfigError(source, key, f"must be between {low} and {high}, not {value!r}")
    if cfg.state.busy_timeout < 0:
        raise ConfigError(source, "state.busy_timeout", "must be 0 or more seconds")
    if not cfg.posts.patterns:
        raise ConfigError(source, "posts.patterns", "must name at least one pattern, e.g. ['*.md']")
    if "{slug}" not in cfg.posts.permalink:
        raise ConfigError(source, "posts.permalink", "must contain {slug} so every post has its own URL")
    for i, pattern in enumerate(cfg.cleanup.marker_patterns):
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ConfigError(source, f"cleanup.marker_patterns[{i}]", f"is not a valid regex: {exc}") from None
    if cfg.cleanup.sentence_min_chars < 1:
        raise ConfigError(source, "cleanup.sentence_min_chars", "must be at least 1")
    if not 0 <= cfg.cleanup.sentence_near_ratio <= 0.5:
        raise ConfigError(source, "cleanup.sentence_near_ratio",
                          "must be between 0 (exact copies only) and 0.5 (edits per character)")
    _validate_digest(source, cfg)
    _validate_webhooks(source, cfg.webhooks, cfg.root)


SLUG_MAX_BYTES = 200  # a slug with a -n suffix and a feed suffix stays below every file system's 255-byte limit


def make_slug(text: str) -> str:
    """A URL- and file-safe slug that keeps Unicode (Japanese stays Japanese; URLs percent-encode it): NFKC,
    lowercased, runs of spaces and of / \\ ? # % & : ; * " ' < > | made '-', no leading or trailing '-' or '.'."""
    text = unicodedata.normalize("NFKC", text).strip().lower()
    text = re.sub(r"[\s/\\?#%&:;*\"'<>|]+", "-", text)
    return text.strip("-.") or "untitled"


def _validate_feeds(source: str, cfg: Config) -> None:
    f = cfg.feeds
    problem = _url_problem(f.base_url) if f.base_url else ""
    if problem:
        raise ConfigError(source, "feeds.base_url", f"must be an absolute http(s) URL or empty, not {f.base_url!r} "
                          f"(it {problem})")
    path = f.url_path.strip("/")
    if urlsplit(f.url_path).scheme or f.url_path.startswith("//") or any(
            part in (".", "..") for part in path.split("/")) or any(c in f.url_path for c in "?#\\") or any(
            c.isspace() or not c.isprintable() for c in f.url_path):
        raise ConfigError(source, "feeds.url_path", f"must be a path below site.base_url like 'feeds/', "
                          f"not {f.url_path!r} (for another host set feeds.base_url)")
    if f.entries < 1:
        raise ConfigError(source, "feeds.entries", "must be at least 1")
    if f.content not in ("full", "summary"):
        raise ConfigError(source, "feeds.content", f"must be 'full' or 'summary', not {f.content!r}")
    for key, values in (("formats", f.formats), ("opml", f.opml)):
        unknown = [v for v in values if v not in FEED_FORMATS]
        if unknown or len(set(values)) != len(values) or (key == "formats" and not values):
            raise ConfigError(source, f"feeds.{key}", f"must list distinct formats out of {', '.join(FEED_FORMATS)}"
                              f", not {list(values)!r}")
    missing = [v for v in f.opml if v not in f.formats]
    if missing:
        raise ConfigError(source, "feeds.opml", f"lists {missing[0]!r}, which is not in feeds.formats")
    for i, hub in enumerate(f.websub_hubs):
        parts = urlsplit(hub)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(source, f"feeds.websub_hubs[{i}]", f"must be an absolute http(s) URL, not {hub!r}")
    for key in ("websub_timeout", "websub_retry_delay", "websub_give_up_hours"):
        if getattr(f, key) <= 0:
            raise ConfigError(source, f"feeds.{key}", "must be a positive number")
    if f.websub_wait < 0:
        raise ConfigError(source, "feeds.websub_wait", "must be 0 (do not wait) or a positive number of seconds")
    mapped: dict[str, str] = {}
    for category, slug in f.category_slugs.items():
        if not slug.strip() or "/" in slug or "\\" in slug or slug.strip(".") == "":
            raise ConfigError(source, f"feeds.category_slugs.{category}", f"{slug!r} is not a usable slug")
        if len(slug.encode()) > SLUG_MAX_BYTES:
            raise ConfigError(source, f"feeds.category_slugs.{category}", f"is too long for a file name: use at "
                              f"most {SLUG_MAX_BYTES} bytes")
        key = unicodedata.normalize("NFKC", make_slug(slug)).casefold()  # the feed address it gives
        if key in mapped:
            raise ConfigError(source, f"feeds.category_slugs.{category}", f"{slug!r} is also the slug of "
                              f"{mapped[key]!r}: one feed address cannot serve two categories")
        mapped[key] = category


def _validate_digest(source: str, cfg: Config) -> None:
    d = cfg.digest
    if d.transport not in TRANSPORTS:
        raise ConfigError(source, "digest.transport", f"must be one of {', '.join(TRANSPORTS)}, not {d.transport!r}")
    if d.day.lower()[:3] not in WEEKDAYS:
        raise ConfigError(source, "digest.day", f"must be a weekday like 'mon', not {d.day!r}")
    if not re.fullmatch(r"([01]?\d|2[0-3]):[0-5]\d", d.time):
        raise ConfigError(source, "digest.time", f"must be HH:MM, not {d.time!r}")
    for key in ("period_days", "max_posts", "concurrency", "max_attempts"):
        if getattr(d, key) < 1:
            raise ConfigError(source, f"digest.{key}", "must be at least 1")
    if d.signing_domain and not re.fullmatch(r"(?i)[a-z0-9-]+(\.[a-z0-9-]+)+", d.signing_domain):
        raise ConfigError(source, "digest.signing_domain", f"must be a domain name like news.example.jp, not "
                          f"{d.signing_domain!r}")
    if d.give_up_hours <= 0:
        raise ConfigError(source, "digest.give_up_hours", "must be a positive number of hours, e.g. 72")
    if cfg.http.batch_size < 0:
        raise ConfigError(source, "http.batch_size", "must be 0 (the provider's largest batch) or a positive number")
    if d.rate < 0:
        raise ConfigError(source, "digest.rate", "must be 0 (no limit) or a positive number of messages per second")
    for key, url in (("unsubscribe_url", cfg.unsubscribe_url), ("preferences_url", cfg.preferences_url)):
        if "{token}" not in url or urlsplit(url).scheme != "https":
            raise ConfigError(source, f"digest.{key}", f"must be an https URL containing {{token}}, not {url!r}")
    try:
        d.subject.format(site="", start=datetime.now(), end=datetime.now(), count=0)
        d.preheader.format(site="", start=datetime.now(), end=datetime.now(), count=0)
    except (KeyError, ValueError, IndexError) as exc:
        raise ConfigError(source, "digest.subject", f"has an unknown placeholder {exc}; use {{site}} {{start}} "
                          "{end} {count}") from None
    if cfg.serve.scan_interval < 1 or cfg.serve.lease_seconds < 5:
        raise ConfigError(source, "serve.scan_interval", "must be at least 1 second (lease_seconds at least 5)")
    _validate_web(source, cfg.web)
    if cfg.smtp.security not in ("starttls", "tls", "none"):
        raise ConfigError(source, "smtp.security", f"must be starttls, tls or none, not {cfg.smtp.security!r}")
    if cfg.ses.endpoint_url and urlsplit(cfg.ses.endpoint_url).scheme not in ("http", "https"):
        raise ConfigError(source, "ses.endpoint_url", "must be an http(s) URL or empty (the region's SES endpoint)")
    if cfg.ses.retries < 0 or cfg.ses.timeout <= 0:
        raise ConfigError(source, "ses.retries", "must be 0 or more (and [ses] timeout above 0)")
    if d.transport == "mailgun" and not cfg.http.domain:
        raise ConfigError(source, "http.domain", "is needed for Mailgun: the sending domain, e.g. mg.example.com")


def _validate_webhooks(source: str, w: WebhooksConfig, root: Path) -> None:
    if w.max_body < 1024:
        raise ConfigError(source, "webhooks.max_body", "must be at least 1024 bytes")
    for key in ("max_age", "sns_max_age"):
        if getattr(w, key) < 1:
            raise ConfigError(source, f"webhooks.{key}", "must be at least 1 second")
    try:
        re.compile(w.sns_cert_hosts)
    except re.error as exc:
        raise ConfigError(source, "webhooks.sns_cert_hosts", f"is not a valid regex: {exc}") from None
    for i, arn in enumerate(w.sns_topic_arns):
        if not re.fullmatch(r"arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}", arn):
            raise ConfigError(source, f"webhooks.sns_topic_arns[{i}]",
                              f"{arn!r} is not an SNS topic ARN like arn:aws:sns:us-east-1:123456789012:ses-events")
    if w.sns_ca_file and not (root / w.sns_ca_file).is_file():
        raise ConfigError(source, "webhooks.sns_ca_file", f"{w.sns_ca_file!r} is not a file")


def _validate_web(source: str, web: WebConfig) -> None:
    import ipaddress

    for i, entry in enumerate(web.trusted_proxies):
        try:
            ipaddress.ip_network(entry, strict=False) if "/" in entry else ipaddress.ip_address(entry)
        except ValueError:
            raise ConfigError(source, f"web.trusted_proxies[{i}]", f"{entry!r} is not an IP address or network "
                              "like '10.0.0.0/8'") from None
    for key in ("per_client_per_hour", "per_address_per_day", "per_domain_per_hour", "mails_per_hour"):
        if getattr(web, key) < 0:
            raise ConfigError(source, f"web.{key}", "must be 0 (no limit) or a positive number")
    for key in ("confirm_hours", "preferences_days", "max_connections"):
        if getattr(web, key) < 1:
            raise ConfigError(source, f"web.{key}", "must be at least 1")
    if not 1024 <= web.max_body <= 64 * 1024 * 1024:
        raise ConfigError(source, "web.max_body", "must be between 1024 and 67108864 bytes")
    if not 1 <= web.request_timeout <= 300:
        raise ConfigError(source, "web.request_timeout", "must be between 1 and 300 seconds")


def load_config(path: str | Path) -> Config:
    """Read and validate config.toml; raises ConfigError naming the offending key."""
    path = Path(path)
    source = str(path)
    try:
        # utf-8-sig: a byte order mark, as some editors write one, is not part of the TOML
        data = tomllib.loads(path.read_bytes().decode("utf-8-sig"))
    except FileNotFoundError:
        raise ConfigError(source, "-", "file not found; pass --config PATH or create config.toml") from None
    except IsADirectoryError:
        raise ConfigError(source, "-", "is a folder; pass the config.toml file itself to --config") from None
    except OSError as exc:
        raise ConfigError(source, "-", f"cannot be read ({exc.strerror}); check its permissions") from None
    except UnicodeDecodeError:
        raise ConfigError(source, "-", "is not UTF-8 text; save it as UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, "-", f"is not valid TOML: {exc}") from None
    return config_from_dict(data, path.resolve().parent, source)


def config_from_dict(data: dict, root: Path, source: str = "config.toml") -> Config:
    """Build a Config from already-parsed TOML data."""
    unknown = sorted(set(data) - set(SECTIONS))
    if unknown:
        raise ConfigError(source, unknown[0], f"is not a known section; known: {', '.join(SECTIONS)}")
    for name in REQUIRED_SECTIONS:
        if name not in data:
            raise ConfigError(source, name, "section is missing; add it to the file")
    sections = {name: parse_section(source, name, cls, data.get(name, {})) for name, cls in SECTIONS.items()}
    cfg = Config(root=root, source=source, **sections)
    _validate(source, cfg)
    return cfg


def require_sender(cfg: Config) -> None:
    """Sending needs a sender address; previews do not."""
    if "@" not in cfg.digest.from_address:
        raise ConfigError(cfg.source, "digest.from_address", "is needed to send: e.g. \"Site <news@example.com>\"")
