"""One publisher at a time: a lease in the store with a fencing token, renewed by a heartbeat thread.

Losing the lease (another process took it after this one was paused or stalled past its expiry, or it
could not be renewed in time) sets `lost` at once; the fencing token makes the store refuse this
process's next claim or batch in any case, so it stops before its next request.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
from collections.abc import Callable
from datetime import UTC, datetime, tzinfo

from ..errors import LeaseHeld, PublisherError
from ..store.base import Holder, LeaseGrant, Store
from ..text import local_time

LEASE_NAME = "publisher"
log = logging.getLogger("publisher.lease")


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
    """Take the lease (or raise LeaseHeld) and keep it renewed from a background thread until released.
    `holder` is what the store checks this process's writes against; `lost()` turns true the moment the
    lease is known to be gone."""

    def __init__(self, open_store: Callable[[], Store], role: str, seconds: float = 60.0, tz: tzinfo = UTC) -> None:
        self.open_store, self.seconds, self.tz = open_store, seconds, tz
        self.owner = owner_name(role)
        self._stop = threading.Event()
        self._lost = threading.Event()
        self._thread: threading.Thread | None = None
        self.holder: Holder | None = None
        self.expires: datetime | None = None

    @property
    def held(self) -> bool:
        return self.holder is not None and not self._lost.is_set()

    def lost(self) -> bool:
        return self._lost.is_set()

    def _try(self) -> LeaseGrant:
        store = self.open_store()
        try:
            grant = store.take_lease(LEASE_NAME, self.owner, datetime.now(UTC), self.seconds)
            if not grant.taken and _gone(grant.owner):  # a holder on this machine that was killed: no need to wait
                grant = store.take_lease(LEASE_NAME, self.owner, datetime.now(UTC), self.seconds,
                                         dead_owner=grant.owner)
            return grant
        finally:
            store.close()

    def try_acquire(self) -> LeaseGrant:
        """Take or renew the lease; a new tenure (a new fencing token) when it had been lost."""
        grant = self._try()
        if grant.taken:
            if self.holder is None or self._lost.is_set() or self.holder.fence != grant.fence:
                self.holder = Holder(LEASE_NAME, self.owner, grant.fence)
                self._lost.clear()
            self.expires = datetime.fromisoformat(grant.expires)
            if self._thread is None:
                self._stop.clear()
                self._thread = threading.Thread(target=self._heartbeat, name="lease-heartbeat", daemon=True)
                self._thread.start()
        elif self.holder is not None:
            self._lose(f"{grant.owner} holds it now")
        return grant

    def acquire(self) -> Holder:
        grant = self.try_acquire()
        if not grant.taken:
            raise LeaseHeld(grant.owner, local_time(grant.expires, self.tz))
        assert self.holder is not None
        return self.holder

    def _lose(self, why: str) -> None:
        if not self._lost.is_set():
            log.warning("lost the lock (%s): stopping what it covered", why)
            self._lost.set()

    def _heartbeat(self) -> None:
        """Renew every third of the lease; after an error (a locked database, anything) retry within a
        second, and give the lease up as lost once it has expired unrenewed. Never dies."""
        delay = self.seconds / 3
        while not self._stop.wait(delay):
            try:
                grant = self._try()
                if not grant.taken:
                    self._lose(f"{grant.owner} holds it now")
                elif self.holder is None or grant.fence != self.holder.fence:
                    self._lose("it changed hands while this process was not renewing it")
                else:
                    self.expires = datetime.fromisoformat(grant.expires)
                delay = self.seconds / 3
            except Exception as exc:  # the heartbeat must outlive any error
                log.warning("could not renew the lock: %s", exc)
                if self.expires is None or datetime.now(UTC) >= self.expires:
                    self._lose("it expired before it could be renewed")
                delay = min(1.0, self.seconds / 10)

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self.holder is not None:
            try:
                store = self.open_store()
                try:
                    store.drop_lease(LEASE_NAME, self.owner, datetime.now(UTC))
                finally:
                    store.close()
            except PublisherError as exc:  # it expires on its own
                log.warning("could not release the lock: %s", exc)
            self.holder = None

    def __enter__(self) -> Lease:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
