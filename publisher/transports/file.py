"""A transport that writes each message as an .eml file (previews, dry runs, and sites without a mailer).

The files and any folder it creates are private to this user: each message carries its reader's address and
signed unsubscribe and preferences links."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from pathlib import Path

from ..files import PRIVATE_FILE, write_if_changed
from ..message import Outgoing
from .base import SENT, SendResult, TransportError, chunks


class FileTransport:
    batch_size = 100
    idempotent = True  # writing the same Message-ID again replaces the same file

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.sleep = time.sleep

    def requests(self, messages: Sequence[Outgoing]) -> list[tuple[Outgoing, ...]]:
        return chunks(messages, self.batch_size)

    def path_for(self, message: Outgoing) -> Path:
        stem = re.sub(r"[^A-Za-z0-9.@_-]+", "_", message.message_id.strip("<>"))
        return self.folder / f"{stem}.eml"

    def send(self, messages: Sequence[Outgoing], key: str = "") -> list[SendResult]:
        results: list[SendResult] = []
        for message in messages:
            path = self.path_for(message)
            try:
                write_if_changed(path, message.as_bytes(), PRIVATE_FILE)  # it carries the reader's own links
            except OSError as exc:  # the folder cannot take files: stop, with what was written settled
                raise TransportError(f"{self.folder}: cannot write .eml files there ({exc.strerror})", results,
                                     hint="check [outbox] folder: it must be a folder this user can write to") from None
            results.append(SendResult(message.key, SENT, provider_id=str(path)))
        return results

    def close(self) -> None:
        pass
