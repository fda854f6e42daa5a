"""Errors and findings that carry a location and a hint telling the operator what to fix."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing `publish check` reports about a post: where, how bad, what, and how to fix it."""

    path: str
    line: int
    severity: str  # "error", "warning" or "info"
    what: str
    fix: str = ""
    detail: str = ""  # extra lines for `publish check`, e.g. a front matter block to paste

    def __str__(self) -> str:
        text = f"{self.path}:{self.line}: {self.severity}: {self.what}"
        return f"{text} — {self.fix}" if self.fix else text

    def as_tuple(self) -> tuple[str, int, str, str, str, str]:
        return (self.path, self.line, self.severity, self.what, self.fix, self.detail)

    def as_dict(self) -> dict[str, object]:
        return {"path": self.path, "line": self.line, "severity": self.severity,
                "what": self.what, "fix": self.fix, "detail": self.detail}


class PublisherError(Exception):
    """Base for errors shown to the operator as one clear line, never a traceback."""


class ConfigError(PublisherError):
    """A config.toml key is missing, unknown or has the wrong value."""

    def __init__(self, source: str, key: str, reason: str) -> None:
        super().__init__(f"{source}: [{key}] {reason}" if key != "-" else f"{source}: {reason}")
        self.key = key


class PostError(PublisherError):
    """A post that cannot be published; carries the finding that says why."""

    def __init__(self, path: str, line: int, what: str, fix: str, detail: str = "") -> None:
        self.finding = Finding(path, line, "error", what, fix, detail)
        super().__init__(str(self.finding))


class StoreError(PublisherError):
    """The state database cannot be used (locked, corrupt, unwritable)."""
