"""`publish digest`: dry run, preview, test, send and status of the weekly digest."""

from __future__ import annotations

import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ..errors import EXIT_ATTENTION, EXIT_FAILED, EXIT_OK, UsageError
from .common import Failed, honours_dry_run, lease, open_store, when

if TYPE_CHECKING:
    from ..app import App
    from ..config import Config
    from ..store.base import Problem, Store


@honours_dry_run
@click.command()
@click.option("--dry-run", "dry", is_flag=True, help="Who would get what: recipients, post counts, sizes.")
@click.option("--preview", type=click.Path(path_type=Path), metavar="DIR",
              help="Write the HTML, the text and one .eml per sample recipient into DIR.")
@click.option("--test", "test_addr", metavar="ADDR", help="Send one message, marked as a test, to ADDR.")
@click.option("--send", is_flag=True, help="Send (or resume) the digest of the latest scheduled time.")
@click.option("--status", is_flag=True, help="The ledger of the latest digest.")
@click.option("--lint", is_flag=True, help="Check a rendered message against the bulk-sender rules; exit 1 on any "
              "failure.")
@click.option("--period", type=click.Choice(["next", "last"]), default=None,
              help="For --dry-run, --preview, --test and --lint: the digest that goes out next (default; the posts "
                   "so far) or the last scheduled one.")
@click.pass_context
def digest(ctx: click.Context, dry: bool, preview: Path | None, test_addr: str | None, send: bool,
           status: bool, lint: bool, period: str | None) -> None:
    """Preview, test, send or inspect the weekly email digest.

    The digest covers the posts first published in the [digest] period_days before its send time ([digest]
    day and time, in the site timezone). --dry-run, --preview and --test show the digest that goes out next,
    with the posts published so far (--period last: the last scheduled one). --send sends the digest of the
    latest scheduled time; each period is sent once: --send resumes an interrupted send and never re-sends a
    delivered message. Preview and test messages are signed like real ones, so their links work.

    \b
    Example:
        publish digest --dry-run
        publish digest --preview preview/
        publish digest --preview preview/ --period last
        publish digest --test me@example.com
        publish digest --send
        publish digest --status
        publish digest --lint
    """
    if ctx.find_root().obj.get("dry_run") and not (status or preview or lint):
        dry, send, test_addr = True, False, None  # `publish --dry-run digest …` never sends
    if dry and (send or test_addr):
        send, test_addr = False, None  # `publish digest --send --dry-run`: show what the send would do
    chosen = [name for name, on in (("--dry-run", dry), ("--preview", preview), ("--test", test_addr),
                                    ("--send", send), ("--status", status), ("--lint", lint)) if on]
    if len(chosen) != 1:
        raise UsageError("choose one of --dry-run, --preview DIR, --test ADDR, --send, --status, --lint")
    if period and (send or status):
        raise UsageError(f"--period is for --dry-run, --preview, --test and --lint; {chosen[0]} always takes the "
                         "latest scheduled digest")
    app, store = open_store(ctx, readonly=not (send or test_addr))
    if status:
        ctx.exit(_status(store, app.cfg))
    if send:
        with lease(app, "publish digest --send"):
            ctx.exit(_send(app, store))
    from ..digest.job import prepare_digest, upcoming_slot
    from ..digest.schedule import last_slot

    now = app.now()
    slot = last_slot(app.cfg, now) if period == "last" else upcoming_slot(app.cfg, store, now)
    job = prepare_digest(app.cfg, store, slot)
    click.echo(_heading(job, app.cfg, now))
    if lint:
        ctx.exit(_lint(app, job, now))
    if dry:
        _dry_run(app, store, job, now)
    elif preview:
        from ..digest.preview import preview_digest

        paths = preview_digest(app.cfg, store, job, app.secrets, now, preview)
        if not paths:
            click.echo("No posts in this digest yet: nothing to preview.")
        for path in paths:
            click.echo(f"wrote {path}")
    else:
        _test(app, store, job, now, test_addr or "")


def _period(job, cfg: Config) -> str:
    return f"{when(job.start, cfg)} – {when(job.end, cfg)}"


def _heading(job, cfg: Config, now: datetime) -> str:
    """Which digest this is: its send time, its period, and its posts (so far, for one still to come)."""
    from ..digest.schedule import late_by

    if late_by(now, job.slot) < timedelta(0):
        return (f"Next digest, sent {when(job.slot, cfg)}: posts first published {_period(job, cfg)}; "
                f"{len(job.posts)} so far")
    state = {None: "not sent yet", "done": "sent", "sending": "started, not finished: see --status",
             "missed": "skipped as missed"}[job.row.status if job.row else None]
    return f"Digest of {when(job.slot, cfg)} ({state}): posts first published {_period(job, cfg)}; {len(job.posts)}"


def _dry_run(app: App, store: Store, job, now: datetime) -> None:
    from ..digest.preview import dry_run_digest
    from ..message import GMAIL_CLIP_BYTES

    cfg = app.cfg
    app.check_ready_to_send()  # what a real send would refuse, the dry run refuses too
    result = dry_run_digest(cfg, store, job, app.preview_secrets, now)
    if result.already_done:
        click.echo("Already sent for this period; --send would do nothing.")
    for group in result.groups:
        clip = " — over Gmail's ~102 KB clipping size" if group.size > GMAIL_CLIP_BYTES else ""
        more = f" (and {group.more} more, over [digest] max_posts)" if group.more else ""
        which = ", ".join(group.categories) or "(all)"
        click.echo(f"  {group.subscribers} subscriber(s) following {which}: {group.posts} post(s){more}, "
                   f"{group.size / 1024:.1f} KB{clip}")
    click.echo(f"Would send {result.recipients} message(s); {result.nothing_new} subscriber(s) have nothing new "
               "and would get no email. Dry run: nothing sent or recorded.")


def _lint(app: App, job, now: datetime) -> int:
    from ..digest.lint import lint_digest

    checks = lint_digest(app.cfg, job, app.preview_secrets, now)
    if checks is None:
        click.echo("No posts in this digest yet: nothing to lint (--period last lints the last scheduled one).")
        return EXIT_OK
    for check in checks:
        click.echo(f"{'ok  ' if check.ok else 'FAIL'}  {check.rule}: {check.detail}")
    failed = sum(not c.ok for c in checks)
    click.echo(f"{failed} of {len(checks)} check(s) failed." if failed else f"All {len(checks)} checks passed.")
    return EXIT_ATTENTION if failed else EXIT_OK


def _test(app: App, store: Store, job, now: datetime, address: str) -> None:
    from ..digest.preview import send_test
    from ..subscribers import normalize_email

    address = normalize_email(address)
    result = send_test(app.cfg, store, job, app.secrets, app.transport(), now, address)
    if result is None:
        click.echo("No posts in this digest yet: nothing to send.")
    elif result.status == "sent":
        click.echo(f"Test message sent to {address} ({result.provider_id or 'accepted'}); not recorded as the "
                   "week's send.")
    else:
        raise Failed(f"{address}: test message {result.status}: {result.error}")


def _send(app: App, store: Store) -> int:
    from ..digest.delivery import send_digest

    cfg = app.cfg
    bar = None
    if sys.stdout.isatty():
        bar = click.progressbar(length=1, label="Sending", show_pos=True)
        bar.__enter__()

    def progress(done: int, total: int) -> None:
        if bar is not None:
            bar.length = max(total, 1)
            bar.update(done - bar.pos)

    started = datetime.now(cfg.tz)
    try:
        report = send_digest(cfg, store, app.secrets, app.transport, app.now(), progress=progress, by_hand=True)
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
    store.record_run("digest", started, datetime.now(cfg.tz), {"sent": report.sent_now, **report.counts})
    click.echo(f"Digest {_period(report.job, cfg)}: {len(report.job.posts)} post(s)")
    if report.already_done:
        click.echo("Already sent for this period: nothing to do.")
    click.echo(f"Sent {report.sent_now} message(s) in this run.")
    for warning in report.warnings:
        click.echo(f"Warning: {warning}")
    return print_ledger(report.counts, report.skipped, report.problems, report.error)


def print_ledger(counts: dict[str, int], skipped: dict[str, int], problems: list[Problem], error: str = "") -> int:
    click.echo("Ledger: " + (", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "no recipients"))
    for reason, n in sorted(skipped.items()):
        click.echo(f"  skipped {n}: {reason}")
    for p in problems:
        click.echo(f"  {p.email}: {p.state} after {p.attempts} attempt(s): {p.error}")
    if error:
        click.echo(f"Stopped: {error}")
        return EXIT_FAILED
    if counts.get("unknown"):
        click.echo("Messages marked unknown may or may not have been delivered; they are never resent "
                   "automatically.")
    return EXIT_ATTENTION if counts.get("failed") or counts.get("unknown") else EXIT_OK


def _status(store: Store, cfg: Config) -> int:
    latest = store.latest_digest()
    if latest is None:
        click.echo("No digest has been sent yet.")
        return EXIT_OK
    click.echo(f"Latest digest: {when(latest.period_start, cfg)} – {when(latest.period_end, cfg)} "
               f"({latest.status}): {latest.subject}")
    return print_ledger(store.ledger_counts(latest.id), store.skip_reasons(latest.id),
                        store.ledger_problems(latest.id))


def status_lines(store: Store, cfg: Config) -> int:
    """The latest digest's ledger, for `publish status`."""
    return _status(store, cfg)
