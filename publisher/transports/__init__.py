"""Transports: one small protocol, several ways to deliver a message."""

from __future__ import annotations

from ..config import Config
from .base import SendResult, Transport, TransportError


def make_transport(cfg: Config, name: str | None = None) -> Transport:
    """The transport named in [digest] transport (or `name`), configured; connections open lazily."""
    name = name or cfg.digest.transport
    if name == "smtp":
        from .smtp import SMTPTransport

        return SMTPTransport(cfg.smtp)
    if name == "ses":
        from .ses import SESTransport

        return SESTransport(cfg.ses)
    if name == "file":
        from .file import FileTransport

        return FileTransport(cfg.root / cfg.outbox.folder)
    from .http import provider

    return provider(name, cfg.http)


__all__ = ["SendResult", "Transport", "TransportError", "make_transport"]
