"""`publish serve`: APScheduler jobs that call the same pass as the CLI, at the right moments."""

from __future__ import annotations

import json
import logging
import signal
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, tzinfo

from ..app import App
from ..config import Config
from ..errors import PublisherError
from ..text import local_time, one_line
from .lease import Lease
from .notify import PingWorker
from .pipeline import PassReport

log = logging.getLogger("publisher.serve")


def digest_trigger(cfg: Config):
    """A cron trigger for the digest in the site timezone: wall-clock time, so DST changes are followed."""
    from apscheduler.triggers.cron import CronTrigger

    at = cfg.digest.send_time
    return CronTrigger(day_of_week=cfg.digest.weekday, hour=at.hour, minute=at.minute, timezone=cfg.tz)


class SiteTimeFormatter(logging.Formatter):
    """Log lines stamped like every other time publisher prints: ISO 8601 in the site timezone, with offset."""

    def __init__(self, tz: tzinfo) -> None:
        super().__init__("%(asctime)s %(levelname)s %(message)s")
        self.tz = tz

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return local_time(datetime.fromtimestamp(record.created, UTC), self.tz, seconds=True)


def configure_logging(cfg: Config, stream) -> None:
    """One line per job on `stream`. APScheduler's own lines ('Running job …', a scan skipped while the last
    one still runs, with times in another format) and httpx's line per request are left out: every pass and
    every round of WebSub pings logs its own line."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(SiteTimeFormatter(cfg.tz))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per WebSub ping or provider call: ours say it


def describe(report: PassReport, render_digest: Callable[[PassReport], list[str]]) -> str:
    """One log line for a pass."""
    s = report.summary()
    line = (f"pass: {s['new']} new, {s['changed']} changed, {s['feeds_written']} feed file(s) written, "
            f"{s['feeds_removed']} removed, {s['held']} held, {s['rejected']} rejected")
    line += "".join(f"; rejected {one_line(str(f))}" for f in report.rejected)  # named, as `publish` names them
    digest = render_digest(report)
    if digest:
        line += "; " + "; ".join(x.strip() for x in digest)
    return line


class Service:
    """Runs passes on a schedule while holding the lease; at most one pass at a time."""

    def __init__(self, app: App, scan_seconds: float, render_digest: Callable[[PassReport], list[str]]) -> None:
        from apscheduler.executors.pool import ThreadPoolExecutor
        from apscheduler.schedulers.background import BackgroundScheduler

        self.app = app
        app.notify = lambda text: log.warning("%s", text)  # notices (a generated secret) go to the log too
        self.cfg = cfg = app.cfg
        self.scan_seconds = scan_seconds
        self.render_digest = render_digest
        self.stop = threading.Event()
        self.lease = Lease(app.open_store, "publish serve", cfg.serve.lease_seconds, tz=cfg.tz)
        self.run_lock = threading.Lock()
        self.pings = PingWorker(app, self.stop)
        self.scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(1)}, timezone=cfg.tz,
            job_defaults={"coalesce": True, "max_instances": 1,
                          "misfire_grace_time": cfg.digest.catch_up_hours * 3600})

    # -- jobs ---------------------------------------------------------------------------------------------
    def run_pass(self, why: str) -> None:
        """One pass (publish, feeds, digest when due); logged, never raising into the scheduler."""
        from .pipeline import run_pass

        if self.stop.is_set():
            return
        try:
            grant = self.lease.try_acquire()
        except PublisherError as exc:
            log.error("%s skipped: %s", why, exc)
            return
        if not grant.taken:
            log.info("%s: skipped, %s holds the lock until %s", why, grant.owner,
                     local_time(grant.expires, self.cfg.tz))
            return
        with self.run_lock:
            try:
                report = run_pass(self.app, should_stop=lambda: self.stop.is_set() or self.lease.lost(),
                                  holder=self.lease.holder, feeds_done=self._feeds_done)
                log.info("%s: %s", why, describe(report, self.render_digest))
                self._schedule_next_due(report)
            except PublisherError as exc:
                log.error("%s failed: %s", why, exc)
            except Exception as exc:  # a bug must not stop the service: log the cause, keep running
                log.exception("%s failed unexpectedly: %s", why, exc)
            finally:
                self._record_schedule()

    def _feeds_done(self, report: PassReport) -> None:
        if report.pings_queued:
            self.pings.wake()  # hubs hear of the changed feeds now, from the sender's thread

    # The two methods below touch the scheduler from inside a job. shutdown() waits for the job (run_lock)
    # before it shuts the scheduler down, which takes the scheduler's locks: never the other way round.

    def _schedule_next_due(self, report) -> None:
        """A one-off job at the exact due time of the next future-dated post."""
        due = [h.due for h in report.held if h.due is not None]
        job = self.scheduler.get_job("due")
        if not due:
            if job:
                job.remove()
            return
        when = min(due)
        if job is None or job.next_run_time != when:
            self.scheduler.add_job(self.run_pass, "date", run_date=when, args=["post due"], id="due",
                                   replace_existing=True, misfire_grace_time=None)

    def _record_schedule(self) -> None:
        jobs = {job.id: job.next_run_time.isoformat() for job in self.scheduler.get_jobs() if job.next_run_time}
        try:
            store = self.app.open_store()
            try:
                store.set_meta("serve_schedule", json.dumps({"owner": self.lease.owner, "jobs": jobs,
                                                             "at": datetime.now(UTC).isoformat()}))
            finally:
                store.close()
        except PublisherError as exc:
            log.warning("could not record the schedule: %s", exc)

    # -- lifecycle -----------------------------------------------------------------------------------------
    def start(self) -> None:
        now = datetime.now(self.cfg.tz)
        self.scheduler.add_job(self.run_pass, "interval", seconds=self.scan_seconds, args=["scan"], id="scan",
                               next_run_time=now)  # the first scan at once: publishes what came due while down
        self.scheduler.add_job(self.run_pass, digest_trigger(self.cfg), args=["digest"], id="digest")
        self.scheduler.start()
        self.pings.start()  # also sends what an earlier run left pending
        if self.cfg.serve.watch:
            self._start_watching()
        log.info("serving %s as %s: scan every %ss, digest %s %s (%s)", self.cfg.source, self.lease.owner,
                 self.scan_seconds, self.cfg.digest.day, self.cfg.digest.time, self.cfg.site.timezone)

    def _start_watching(self) -> None:
        """Run a pass as soon as a post file is saved (watchfiles), besides the regular scans."""
        try:
            from watchfiles import watch
        except ImportError:
            log.warning("[serve] watch is on but the watchfiles package is missing: pip install 'publisher[watch]'")
            return

        def loop() -> None:
            folder = self.cfg.posts_dir
            folder.mkdir(parents=True, exist_ok=True)
            for _ in watch(folder, stop_event=self.stop, debounce=500, step=100):
                if not self.stop.is_set():
                    self.scheduler.add_job(self.run_pass, args=["file saved"], id="watch", replace_existing=True)

        threading.Thread(target=loop, name="watch-posts", daemon=True).start()

    def shutdown(self) -> None:
        """Finish (or park) the work in flight, record it, release the lease."""
        self.stop.set()
        with self.run_lock:  # the pass in flight ends: a digest parks after the message it is sending
            pass
        self.scheduler.shutdown(wait=True)
        self.pings.join()
        self.lease.release()
        log.info("stopped")

    def serve_forever(self) -> None:
        def on_signal(signum, frame) -> None:
            log.info("%s received: finishing the work in flight", signal.Signals(signum).name)
            self.stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        self.start()
        try:
            while not self.stop.wait(1.0):
                pass
        finally:
            self.shutdown()


def is_stale(recorded_at: str, seconds: float) -> bool:
    return datetime.now(UTC) - datetime.fromisoformat(recorded_at) > timedelta(seconds=seconds)
