"""One publisher at a time: a lease in the store, renewed by a heartbeat thread while work goes on."""

from __future__ import annotations

import os
import re
import socket
import threading
from collections.abc import Callable
from datetime import UTC, datetime, tzinfo

from ..errors import LeaseHeld, PublisherError
from ..store.base import Store
from ..text import local_time

LEASE_NAME = "publisher"


def owner_name(role: str) -> str:
    return f"{role} pid {os.getpid()} on {socket.gethostname()}"


def _gone(holder: str) -> bool:
    """True when the holder ran on this machine and its process no longer exists."""
    m = re.fullmatch(r".* pid (\d+) on (.+)", holder)
    if not m or m.group(2) != socket.gethostname():
        return False
    try:
        os.kill(int(m.group(1)), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class Lease:
    """Take the lease (or raise LeaseHeld) and keep it renewed from a background thread until released."""

    def __init__(self, open_store: Callable[[], Store], role: str, seconds: float = 60.0, tz: tzinfo = UTC) -> None:
        self.open_store, self.seconds, self.tz = open_store, seconds, tz
        self.owner = owner_name(role)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.held = False

    def _try(self) -> tuple[bool, str, str]:
        store = self.open_store()
        try:
            taken, holder, expires = store.take_lease(LEASE_NAME, self.owner, datetime.now(UTC), self.seconds)
            if not taken and _gone(holder):  # a holder on this machine that was killed: no need to wait
                taken, holder, expires = store.take_lease(LEASE_NAME, self.owner, datetime.now(UTC), self.seconds,
                                                          dead_owner=holder)
            return taken, holder, expires
        finally:
            store.close()

    def try_acquire(self) -> tuple[bool, str, str]:
        """Take or renew the lease; (taken, holder, expires)."""
        taken, holder, expires = self._try()
        self.held = taken
        if taken and self._thread is None:
            self._thread = threading.Thread(target=self._heartbeat, name="lease-heartbeat", daemon=True)
            self._thread.start()
        return taken, holder, expires

    def acquire(self) -> None:
        taken, holder, expires = self.try_acquire()
        if not taken:
            raise LeaseHeld(holder, local_time(expires, self.tz))

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.seconds / 3):
            try:
                self.held = self._try()[0]
            except PublisherError:
                self.held = False

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self.held:
            store = self.open_store()
            try:
                store.drop_lease(LEASE_NAME, self.owner)
            finally:
                store.close()
            self.held = False

    def __enter__(self) -> Lease:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
