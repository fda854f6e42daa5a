"""`publish digest`: dry run, preview, test, send, status and repair of the weekly digest."""

from __future__ import annotations

import json
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ..errors import EXIT_ATTENTION, EXIT_FAILED, EXIT_OK, UsageError
from .common import Failed, StopSignals, honours_dry_run, lease, open_store, when

ACTIONS = ("--dry-run", "--preview DIR", "--test ADDR", "--send", "--status", "--lint", "--reconcile",
           "--resend-unknown", "--resend-failed")

if TYPE_CHECKING:
    from ..app import App
    from ..config import Config
    from ..store.base import Digest, Problem, Store


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
@click.option("--reconcile", is_flag=True,
              help="Ask the provider which 'unknown' messages it accepted (Postmark, Mailgun, Resend).")
@click.option("--resend-unknown", is_flag=True, help="Send the 'unknown' messages again (some may arrive twice).")
@click.option("--resend-failed", is_flag=True, help="Send the 'failed' messages again.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (with --resend-unknown/--resend-failed).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="With --status: json prints counts by state and every failed or unknown recipient.")
@click.pass_context
def digest(ctx: click.Context, dry: bool, preview: Path | None, test_addr: str | None, send: bool,
           status: bool, lint: bool, period: str | None, reconcile: bool, resend_unknown: bool,
           resend_failed: bool, yes: bool, fmt: str) -> None:
    """Preview, test, send, inspect or repair the weekly email digest.

    The digest covers the posts first published in the [digest] period_days before its send time ([digest]
    day and time, in the site timezone). --dry-run, --preview and --test show the digest that goes out next,
    with the posts published so far (--period last: the last scheduled one). --send sends the digest of the
    latest scheduled time; each period is sent once: --send resumes an interrupted send and never re-sends a
    delivered message. Preview and test messages are signed like real ones, so their links work. A message
    whose fate is unknown (a crash or timeout while its request was in flight) is never resent on its own:
    --reconcile asks the provider, and --resend-unknown sends it again if you decide so. Ctrl-C or SIGTERM
    stop a send after the request in flight, which is recorded.

    \b
    Example:
        publish digest --dry-run
        publish digest --preview preview/
        publish digest --preview preview/ --period last
        publish digest --test me@example.com
        publish digest --send
        publish digest --status --format json
        publish digest --lint
        publish digest --reconcile
        publish digest --resend-unknown --yes
    """
    if ctx.find_root().obj.get("dry_run") and not (status or preview or lint):
        dry, send, test_addr = True, False, None  # `publish --dry-run digest …` never sends
    if dry and (send or test_addr):
        send, test_addr = False, None  # `publish digest --send --dry-run`: show what the send would do
    if ctx.find_root().obj.get("dry_run") or dry:
        reconcile = resend_unknown = resend_failed = False
    chosen = [name for name, on in zip(ACTIONS, (dry, preview, test_addr, send, status, lint, reconcile,
                                                 resend_unknown, resend_failed), strict=True) if on]
    if len(chosen) != 1:
        raise UsageError(f"choose one of {', '.join(ACTIONS)}")
    if period and not (dry or preview or test_addr or lint):
        raise UsageError(f"--period is for --dry-run, --preview, --test and --lint; {chosen[0]} always takes the "
                         "latest digest")
    if fmt == "json" and not status:
        raise UsageError("--format json goes with --status")
    app, store = open_store(ctx, readonly=not (send or test_addr or reconcile or resend_unknown or resend_failed))
    if status:
        ctx.exit(_status_json(store) if fmt == "json" else _status(store, app.cfg))
    if send:
        ctx.exit(_send(app, store))
    if reconcile:
        ctx.exit(_reconcile(app, store))
    if resend_unknown or resend_failed:
        ctx.exit(_resend(app, store, "unknown" if resend_unknown else "failed", yes))
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


def _send(app: App, store: Store, slot: datetime | None = None) -> int:
    """Send (or resume) a digest under the lease, with a progress bar on a terminal; the exit code."""
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
    with StopSignals() as stop, lease(app, "publish digest --send") as held:
        try:
            report = send_digest(cfg, store, app.secrets, app.transport, app.now(), slot, progress=progress,
                                 should_stop=lambda: stop() or held.lost(), by_hand=True, holder=held.holder)
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
    code = print_ledger(report.counts, report.skipped, report.problems, report.error)
    if stop.signum:
        click.echo(f"Stopped by {stop.name}: the message in flight was recorded; `publish digest --send` "
                   "carries on from here.")
        return stop.exit_code
    if report.error:
        return EXIT_FAILED
    if report.unfinished:
        why = "this process lost its lock to another publisher" if held.lost() else \
            "refused for now: each is tried again 5, 10, 20 … minutes after its refusal"
        click.echo(f"{report.unfinished} message(s) not sent yet ({why}): the next run sends them.")
        return EXIT_FAILED
    return code


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
                   "automatically: `publish digest --reconcile` asks the provider (Postmark, Mailgun, Resend), "
                   "`publish digest --resend-unknown` sends them again.")
    return EXIT_ATTENTION if counts.get("failed") or counts.get("unknown") else EXIT_OK


def _latest(store: Store) -> Digest | None:
    latest = store.latest_digest()
    return latest if latest is None or latest.status != "missed" else None


def _status(store: Store, cfg: Config) -> int:
    latest = store.latest_digest()
    if latest is None:
        click.echo("No digest has been sent yet.")
        return EXIT_OK
    click.echo(f"Latest digest: {when(latest.period_start, cfg)} – {when(latest.period_end, cfg)} "
               f"({latest.status}): {latest.subject}")
    counts = store.ledger_counts(latest.id)
    code = print_ledger(counts, store.skip_reasons(latest.id), store.ledger_problems(latest.id))
    unfinished = counts.get("pending", 0) + counts.get("sending", 0)
    if unfinished:
        click.echo(f"{unfinished} message(s) not sent yet.")
    return code


def _status_json(store: Store) -> int:
    """The latest digest's ledger as one JSON object: counts by state, every failed or unknown recipient."""
    latest = store.latest_digest()
    out: dict = {"digest": None, "counts": {}, "skipped": {}, "problems": [], "complete": True, "ok": True}
    if latest is not None:
        counts = store.ledger_counts(latest.id)
        problems = store.ledger_problems(latest.id, limit=None)
        out.update(
            digest={"period_start": latest.period_start, "period_end": latest.period_end, "status": latest.status,
                    "subject": latest.subject, "created": latest.created},
            counts=counts, skipped=store.skip_reasons(latest.id),
            problems=[{"email": p.email, "state": p.state, "attempts": p.attempts, "reason": p.error,
                       "provider_id": p.provider_id} for p in problems],
            complete=not (counts.get("pending") or counts.get("sending")))
        out["ok"] = out["complete"] and not (counts.get("failed") or counts.get("unknown"))
    click.echo(json.dumps(out, ensure_ascii=False, indent=2))
    return EXIT_ATTENTION if out["counts"].get("failed") or out["counts"].get("unknown") else EXIT_OK


def _reconcile(app: App, store: Store) -> int:
    from ..digest.reconcile import reconcile

    latest = _latest(store)
    if latest is None or not store.ledger_counts(latest.id).get("unknown"):
        click.echo("No message of unknown fate: nothing to ask.")
        return EXIT_OK
    with lease(app, "publish digest --reconcile"):
        transport = app.transport()
        try:
            result = reconcile(store, transport, latest.id)
        finally:
            transport.close()
    click.echo(f"Asked about {result.asked} message(s) of unknown fate: {result.sent} accepted (now sent), "
               f"{result.pending} never accepted (pending: the next run sends them), "
               f"{len(result.unknown)} still unknown.")
    for email, why in result.unknown:
        click.echo(f"  {email}: {why}")
    return EXIT_ATTENTION if result.unknown else EXIT_OK


def _resend(app: App, store: Store, state: str, yes: bool) -> int:
    """After the operator confirms: rows 'unknown' or 'failed' are pending again, and the digest is sent."""
    from ..digest.delivery import slot_of

    latest = _latest(store)
    count = store.ledger_counts(latest.id).get(state, 0) if latest else 0
    if latest is None or not count:
        click.echo(f"No {state} message in the latest digest: nothing to send.")
        return EXIT_OK
    risk = " Some of them may already have been delivered and would arrive twice." if state == "unknown" else ""
    question = f"Send {count} {state} message(s) of the digest {latest.period_start} – {latest.period_end} again?"
    if not yes:
        if not sys.stdin.isatty():
            raise UsageError(f"{question}{risk}", "add --yes to confirm from a script")
        if not click.confirm(question + risk, default=False):
            click.echo("Nothing changed.")
            return EXIT_ATTENTION
    with lease(app, f"publish digest --resend-{state}"):
        reopened = store.reopen(latest.id, state, datetime.now().astimezone().isoformat())
    click.echo(f"{reopened} {state} message(s) are pending again.")
    return _send(app, store, slot_of(app.cfg, latest))


def status_lines(store: Store, cfg: Config) -> int:
    """The latest digest's ledger, for `publish status`."""
    return _status(store, cfg)
