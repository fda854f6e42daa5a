"""One error tree: every error the operator can meet carries its hint and its exit code.

The CLI maps these to exit codes in one place (`cli.run`); library code raises them and never prints.
Exit codes: 0 done; 1 done, but something needs a look; 2 usage, config or input error; 3 the run could not
complete (state database, feeds folder, mail server or API, another publisher holding the lock).
"""

from __future__ import annotations

from dataclasses import dataclass

EXIT_OK, EXIT_ATTENTION, EXIT_USAGE, EXIT_FAILED = 0, 1, 2, 3


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing `publish check` reports about a post: where, how bad, what, and how to fix it."""

    path: str
    line: int
    severity: str  # "error", "warning" or "info"
    what: str
    fix: str = ""
    detail: str = ""  # extra lines for `publish check`, e.g. a front matter block to paste
    # For text removed as a repeat: its last line, the line where the first copy starts, and its opening words.
    end_line: int = 0
    repeat_of: int = 0
    preview: str = ""

    def __str__(self) -> str:
        text = f"{self.path}:{self.line}: {self.severity}: {self.what}"
        return f"{text} — {self.fix}" if self.fix else text

    def as_tuple(self) -> tuple:
        """Plain values in field order (the parse cache stores these); rows of the older 6-field layout still
        load, as `Finding(*row)`, with the repeat fields left empty."""
        return (self.path, self.line, self.severity, self.what, self.fix, self.detail,
                self.end_line, self.repeat_of, self.preview)

    def as_dict(self) -> dict[str, object]:
        return {"path": self.path, "line": self.line, "severity": self.severity, "what": self.what,
                "fix": self.fix, "detail": self.detail, "end_line": self.end_line or self.line,
                "repeat_of": self.repeat_of or None, "preview": self.preview}


class PublisherError(Exception):
    """Base for errors shown to the operator as one clear line (what, and how to fix it), never a traceback."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str, hint: str = "", exit_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:
        return f"{self.message}; {self.hint}" if self.hint else self.message


class UsageError(PublisherError):
    """A command line, an argument or an input file the operator gave cannot be used."""

    exit_code = 2


class ConfigError(UsageError):
    """A config.toml key is missing, unknown or has the wrong value."""

    def __init__(self, source: str, key: str, reason: str) -> None:
        super().__init__(f"{source}: [{key}] {reason}" if key != "-" else f"{source}: {reason}")
        self.key = key


class SecretError(UsageError):
    """A secret the configuration names (signing secret, API key, SMTP password) is missing or unusable."""


class PostError(PublisherError):
    """A post that cannot be published; carries the finding that says why."""

    exit_code = 1

    def __init__(self, path: str, line: int, what: str, fix: str, detail: str = "") -> None:
        self.finding = Finding(path, line, "error", what, fix, detail)
        super().__init__(str(self.finding))


class StoreError(PublisherError):
    """The state database or folder cannot be used (locked, full, read-only, corrupt, unreachable)."""


class TransportError(PublisherError):
    """The transport cannot go on (bad credentials, unreachable server, provider down or throttling); `results`
    holds what was settled before. Nothing else was delivered, except when `maybe_sent`: a request went
    unanswered and a transport with an idempotency key may replay it."""

    def __init__(self, message: str, results: list | None = None, hint: str = "", maybe_sent: bool = False) -> None:
        super().__init__(message, hint)
        self.results = results or []
        self.maybe_sent = maybe_sent


class Interrupted(TransportError):
    """A stop was asked for (SIGTERM, Ctrl-C, a lost lease) while the transport waited to retry."""

    def __init__(self, maybe_sent: bool = False) -> None:
        super().__init__("stopped while waiting to retry", maybe_sent=maybe_sent)


class ClaimLost(PublisherError):
    """This sender no longer holds the lease or the claim it acts under: another sender took over."""

    def __init__(self, what: str) -> None:
        super().__init__(f"stopped sending: {what}",
                         "another publisher took over this digest (this process lost its lock, e.g. paused or "
                         "stalled past [serve] lease_seconds); it carries on, nothing more is sent from here")


class LeaseHeld(PublisherError):
    """Another process holds the lease."""

    def __init__(self, holder: str, expires: str) -> None:
        super().__init__(f"another publisher holds the lock: {holder} (until {expires} unless renewed)",
                         "wait for it to finish, or stop it first")
        self.holder = holder
