"""`publish serve`'s WebSub sender: a background thread that sends the pings a pass queued the moment it is
woken, and retries failed ones when their backoff ends; a pass never waits for a hub."""

from __future__ import annotations

import logging
import threading
from datetime import datetime

from ..app import App
from ..errors import PublisherError
from ..feeds.websub import USER_AGENT, PingReport, deliver, utcnow

log = logging.getLogger("publisher.serve")
IDLE_SECONDS = 60.0  # a look at the store at least this often, for pings queued by another process


class PingWorker:
    """Sends due WebSub pings in its own thread with its own store connection."""

    def __init__(self, app: App, stop: threading.Event) -> None:
        self.app = app
        self.stop = stop
        self.woken = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="websub-pings", daemon=True)

    def start(self) -> None:
        if self.app.cfg.feeds.websub_hubs:
            self.thread.start()

    def wake(self) -> None:
        """Called after a pass that changed feeds (and on shutdown)."""
        self.woken.set()

    def join(self) -> None:
        self.wake()
        if self.thread.is_alive():
            self.thread.join(timeout=self.app.cfg.feeds.websub_timeout + 5)

    def _loop(self) -> None:
        import httpx

        with httpx.Client(follow_redirects=True, headers={"User-Agent": USER_AGENT}) as client:
            while not self.stop.is_set():
                self.woken.clear()
                due = self._round(client)
                wait = IDLE_SECONDS
                if due is not None:
                    wait = min(IDLE_SECONDS, max(0.0, (datetime.fromisoformat(due) - utcnow()).total_seconds()))
                self.woken.wait(wait)

    def _round(self, client) -> str | None:
        """One sweep of the due pings, logged; the time the next one is due."""
        try:
            store = self.app.open_store()
            try:
                report = deliver(self.app.cfg, store, stop=self.stop, client=client)
                due = store.next_ping_due()
            finally:
                store.close()
        except PublisherError as exc:
            log.error("websub: %s", exc)
            return None
        except Exception as exc:  # a bug must not stop the service: log it, try again later
            log.exception("websub failed unexpectedly: %s", exc)
            return None
        _log(report)
        return due


def _log(report: PingReport) -> None:
    if report.sent or report.retrying or report.failed:
        log.info("websub: %d ping(s) sent, %d to retry, %d given up", report.sent, len(report.retrying),
                 len(report.failed))
    for ping, error in report.failed:
        log.error("websub: %s refused %s: %s", ping.hub, ping.feed_url, error)
    for ping, error in report.retrying:
        log.warning("websub: %s for %s: %s (retried later)", ping.hub, ping.feed_url, error)
