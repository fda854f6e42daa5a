"""The `publish` command group; each command's docstring is its --help."""

from __future__ import annotations

import json
import sys
from collections import Counter
from datetime import datetime
from pathlib import Path

import click

from .config import Config, load_config
from .errors import ConfigError, Finding, PublisherError

EXIT_OK, EXIT_REJECTED, EXIT_CONFIG, EXIT_FAILED = 0, 1, 2, 3
EXIT_CODES_HELP = """Exit codes: 0 done, nothing rejected; 1 done, but some posts were rejected (or `check` found
errors); 2 usage or config.toml error; 3 the run could not complete (state database or feeds folder)."""


class Failed(click.ClickException):
    """An operator-facing failure: one line on stderr, a chosen exit code, no traceback."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = code


def _load(ctx: click.Context) -> Config:
    obj = ctx.find_root().obj
    if "config" not in obj:
        try:
            obj["config"] = load_config(obj["config_path"])
        except PublisherError as exc:
            raise Failed(str(exc), EXIT_CONFIG) from None
    return obj["config"]


def _parse_now(value: str | None, cfg: Config) -> datetime:
    if value is None:
        return datetime.now(cfg.tz).replace(microsecond=0)
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise Failed(f"--now {value!r} is not an ISO time; write it like 2026-01-05T09:00 or "
                     "2026-01-05T09:00+09:00", EXIT_CONFIG) from None
    return when if when.tzinfo else when.replace(tzinfo=cfg.tz)


def _when(dt: datetime, cfg: Config) -> str:
    return dt.astimezone(cfg.tz).strftime("%Y-%m-%d %H:%M %z")


@click.group(invoke_without_command=True, epilog=EXIT_CODES_HELP)
@click.option("--config", "config_path", type=click.Path(path_type=Path), default="config.toml",
              envvar="PUBLISHER_CONFIG", show_default=True, help="The config.toml to use.")
@click.option("--dry-run", is_flag=True, help="Print what the pass would do; write and record nothing.")
@click.option("--now", "now_text", metavar="ISO-TIME", help="Run as if it were this time (site timezone if no offset).")
@click.version_option(package_name="publisher")
@click.pass_context
def main(ctx: click.Context, config_path: Path, dry_run: bool, now_text: str | None) -> None:
    """Publish the posts that came due and rebuild the feeds that changed.

    With no command, runs one pass: new posts are published, changed feeds are rewritten, and a summary
    is printed (new posts, feeds written, posts held, posts rejected).

    \b
    Example:
        publish --dry-run
        publish --now 2026-01-05T09:00
        publish check --strict
    """
    ctx.ensure_object(dict)
    ctx.obj.update(config_path=config_path, dry_run=dry_run, now_text=now_text)
    if ctx.invoked_subcommand is None:
        ctx.exit(_publish(ctx))


def _publish(ctx: click.Context) -> int:
    from .pipeline import run_pass

    cfg = _load(ctx)
    now = _parse_now(ctx.obj["now_text"], cfg)
    try:
        if ctx.obj["dry_run"]:
            report = run_pass(cfg, now, dry_run=True)
        else:
            with _lease(cfg, "publish"):
                report = run_pass(cfg, now)
    except ConfigError as exc:
        raise Failed(str(exc), EXIT_CONFIG) from None
    except PublisherError as exc:
        raise Failed(str(exc)) from None
    _print_report(report, cfg)
    if report.digest_error:
        return EXIT_FAILED
    return EXIT_REJECTED if report.rejected else EXIT_OK


def _lease(cfg: Config, role: str):
    from .lease import Lease

    return Lease(cfg.database_path, role, cfg.serve.lease_seconds)


def _print_report(report, cfg: Config) -> None:
    dry = report.dry_run
    lines: list[str] = []
    echo = lines.append
    echo(f"{'Dry run' if dry else 'Pass'} at {_when(report.now, cfg)}: {report.posts_read} post file(s) read")
    if report.new:
        echo(f"{'Would publish' if dry else 'Published'} {len(report.new)} new post(s):")
        for post, post_id in report.new:
            cats = ", ".join(post.categories) or "-"
            echo(f"  + {_when(post.date, cfg)}  [{cats}]  {post.title}  ({post.key}; id {post_id})")
    if report.changed:
        echo(f"{'Would update' if dry else 'Updated'} {len(report.changed)} changed post(s):")
        for post in report.changed:
            echo(f"  ~ {post.title}  ({post.key})")
    if report.feeds_written:
        echo(f"{'Would write' if dry else 'Wrote'} {len(report.feeds_written)} feed file(s):")
        for relpath, entries in report.feeds_written:
            echo(f"  > {relpath} ({entries} {'feeds' if relpath.endswith('.opml') else 'entries'})")
    if report.feeds_removed:
        echo(f"{'Would remove' if dry else 'Removed'} {len(report.feeds_removed)} feed file(s) with no posts left:")
        for relpath in report.feeds_removed:
            echo(f"  - {relpath}")
    if report.held:
        echo(f"Held {len(report.held)} post(s):")
        for held in report.held:
            due = f"due {_when(held.due, cfg)}" if held.due else "draft (published: false or draft: true)"
            echo(f"  · {held.post.key}  {due}  {held.post.title}")
    if report.findings:
        echo(f"Warnings ({len(report.findings)}); `publish check` lists every finding:")
        for finding in report.findings:
            echo(f"  ? {finding}")
    if report.rejected:
        echo(f"Rejected {len(report.rejected)} post(s):")
        for finding in report.rejected:
            echo(f"  ! {finding}")
    s = report.summary()
    echo(f"Summary: {s['new']} new, {s['feeds_written']} feed file(s) {'to write' if dry else 'written'}, "
         f"{s['feeds_unchanged']} unchanged, {s['feeds_removed']} removed, {s['held']} held, "
         f"{s['rejected']} rejected")
    lines += report.digest
    if report.digest_error:
        echo(f"Digest not sent: {report.digest_error}")
    if dry:
        echo("Dry run: nothing was written or recorded.")
    click.echo("\n".join(lines))


@main.command()
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="json prints one object with every finding, for tools.")
@click.option("--strict", is_flag=True, help="Fail on warnings too, not only on errors.")
@click.pass_context
def check(ctx: click.Context, fmt: str, strict: bool) -> None:
    """Validate every post and report each problem as path:line: severity: what — how to fix.

    Reads every post file fresh (no cache), writes nothing. Errors are posts that cannot be published;
    warnings are posts that are published but look wrong (cut off, repeated text); info lines are
    clean-ups applied automatically.

    \b
    Example:
        publish check
        publish check --format json --strict
    """
    from .posts import ReaderSettings, read_many, scan_posts

    cfg = _load(ctx)
    settings = ReaderSettings.from_config(cfg, check_body=True)
    sources = scan_posts(cfg.posts_dir, cfg.posts.patterns)
    findings: list[Finding] = []
    for _, result in read_many(sources, settings):
        findings.extend([result] if isinstance(result, Finding) else result.findings)
    counts = Counter(f.severity for f in findings)
    failed = counts["error"] > 0 or (strict and counts["warning"] > 0)
    if fmt == "json":
        click.echo(json.dumps({"posts": len(sources), "counts": {k: counts[k] for k in ("error", "warning", "info")},
                               "ok": not failed, "findings": [f.as_dict() for f in findings]},
                              ensure_ascii=False, indent=2))
    else:
        for finding in findings:
            click.echo(str(finding))
            if finding.detail:
                click.echo("".join(f"    {line}\n" for line in finding.detail.splitlines()), nl=False)
        click.echo(f"{len(sources)} post(s) checked: {counts['error']} error(s), {counts['warning']} warning(s), "
                   f"{counts['info']} clean-up(s)")
    ctx.exit(EXIT_REJECTED if failed else EXIT_OK)


def _store(ctx: click.Context, readonly: bool = False):
    from .state import Store

    cfg = _load(ctx)
    try:
        return cfg, Store.open(cfg.database_path, readonly=readonly)
    except PublisherError as exc:
        raise Failed(str(exc)) from None


def _stamp() -> str:
    from datetime import UTC

    return datetime.now(UTC).isoformat()


@main.group()
def subscribers() -> None:
    """Manage digest subscribers (stored in the state database).

    \b
    Example:
        publish subscribers add reader@example.com --name "読者" --category 投資分析
        publish subscribers import subscribers.csv
        publish subscribers list --status active
    """


@subscribers.command("add")
@click.argument("email")
@click.option("--name", default="", help="Display name.")
@click.option("--category", "categories", multiple=True, help="A category to follow (repeat); none means all.")
@click.option("--resubscribe", is_flag=True, help="Re-activate an address that unsubscribed or bounced.")
@click.pass_context
def subscribers_add(ctx: click.Context, email: str, name: str, categories: tuple[str, ...], resubscribe: bool) -> None:
    """Add a subscriber, or update their name and categories."""
    from .subscribers import add_subscriber, parse_categories

    _, store = _store(ctx)
    try:
        outcome = add_subscriber(store, email, name, parse_categories(categories), _stamp(), resubscribe)
    except PublisherError as exc:
        raise Failed(f"{email}: {exc}", EXIT_CONFIG) from None
    if outcome in ("unsubscribed", "bounced"):
        raise Failed(f"{email}: this address is {outcome}; add --resubscribe only if the person asked to "
                     "subscribe again", EXIT_REJECTED)
    click.echo(f"{email}: {outcome}")


@subscribers.command("remove")
@click.argument("email")
@click.option("--purge", is_flag=True, help="Delete the record entirely instead of marking it unsubscribed.")
@click.pass_context
def subscribers_remove(ctx: click.Context, email: str, purge: bool) -> None:
    """Unsubscribe an address (kept as unsubscribed so no import brings it back)."""
    from .subscribers import remove_subscriber

    _, store = _store(ctx)
    try:
        found = remove_subscriber(store, email, _stamp(), purge)
    except PublisherError as exc:
        raise Failed(f"{email}: {exc}", EXIT_CONFIG) from None
    if not found:
        raise Failed(f"{email}: no such subscriber", EXIT_REJECTED)
    click.echo(f"{email}: {'deleted' if purge else 'unsubscribed'}")


@subscribers.command("list")
@click.option("--status", type=click.Choice(["active", "unsubscribed", "bounced", "pending"]), default=None)
@click.pass_context
def subscribers_list(ctx: click.Context, status: str | None) -> None:
    """List subscribers: address, status, categories, name."""
    from .subscribers import Subscriber

    _, store = _store(ctx, readonly=True)
    count = 0
    for row in store.subscribers(status):
        sub = Subscriber.from_row(row)
        click.echo(f"{sub.email}\t{sub.status}\t{', '.join(sub.categories) or '(all)'}\t{sub.name}")
        count += 1
    click.echo(f"{count} subscriber(s)", err=True)


@subscribers.command("import")
@click.argument("csv_file", type=click.Path(path_type=Path))
@click.pass_context
def subscribers_import(ctx: click.Context, csv_file: Path) -> None:
    """Import a CSV with a header row: email[,name][,categories separated by ';'].

    Bad rows are reported by line and skipped; good rows are kept. Importing the same file again changes
    nothing, and an import never re-subscribes an address that unsubscribed.
    """
    from .subscribers import import_csv

    _, store = _store(ctx)
    try:
        report = import_csv(store, csv_file, _stamp())
    except PublisherError as exc:
        raise Failed(str(exc), EXIT_CONFIG) from None
    for error in report.errors:
        click.echo(error)
    counts = ", ".join(f"{n} {k}" for k, n in sorted(report.counts.items())) or "nothing imported"
    click.echo(f"{csv_file}: {counts}; {len(report.errors)} bad row(s)")
    ctx.exit(EXIT_REJECTED if report.errors else EXIT_OK)


@subscribers.command("export")
@click.pass_context
def subscribers_export(ctx: click.Context) -> None:
    """Write every subscriber as CSV to standard output."""
    from .subscribers import export_csv

    _, store = _store(ctx, readonly=True)
    count = export_csv(store, sys.stdout)
    click.echo(f"{count} subscriber(s) exported", err=True)


@main.command()
@click.option("--dry-run", "dry", is_flag=True, help="Who would get what: recipients, post counts, sizes.")
@click.option("--preview", type=click.Path(path_type=Path), metavar="DIR",
              help="Write the HTML, the text and one .eml per sample recipient into DIR.")
@click.option("--test", "test_addr", metavar="ADDR", help="Send one message, marked as a test, to ADDR.")
@click.option("--send", is_flag=True, help="Send (or resume) the digest of the latest scheduled time.")
@click.option("--status", is_flag=True, help="The ledger of the latest digest.")
@click.pass_context
def digest(ctx: click.Context, dry: bool, preview: Path | None, test_addr: str | None, send: bool,
           status: bool) -> None:
    """Preview, test, send or inspect the weekly email digest.

    The digest covers the posts first published in the period before the latest scheduled time
    ([digest] day and time, in the site timezone). Each period is sent once: --send resumes an
    interrupted send and never re-sends a delivered message.

    \b
    Example:
        publish digest --dry-run
        publish digest --preview preview/
        publish digest --test me@example.com
        publish digest --send
        publish digest --status
    """
    if ctx.obj["dry_run"] and not (status or preview):
        dry, send, test_addr = True, False, None  # `publish --dry-run digest …` never sends
    chosen = [name for name, on in (("--dry-run", dry), ("--preview", preview), ("--test", test_addr),
                                    ("--send", send), ("--status", status)) if on]
    if len(chosen) != 1:
        raise Failed("choose one of --dry-run, --preview DIR, --test ADDR, --send, --status", EXIT_CONFIG)
    from . import sending

    readonly = not (send or test_addr)
    cfg, store = _store(ctx, readonly=readonly)
    now = _parse_now(ctx.obj["now_text"], cfg)
    try:
        if status:
            ctx.exit(_digest_status(store))
        if dry:
            _digest_dry_run(sending.dry_run_digest(cfg, store, now), cfg)
        elif preview:
            paths = sending.preview_digest(cfg, store, now, preview)
            if not paths:
                click.echo("No posts were first published in this digest period: nothing to preview.")
            for path in paths:
                click.echo(f"wrote {path}")
        elif test_addr:
            _digest_test(cfg, store, now, test_addr)
        else:
            with _lease(cfg, "publish digest --send"):
                code = _digest_send(cfg, store, now)
            ctx.exit(code)
    except PublisherError as exc:
        raise Failed(str(exc)) from None


def _period(plan, cfg: Config) -> str:
    return f"{_when(plan.start, cfg)} – {_when(plan.end, cfg)}"


def _digest_dry_run(result, cfg: Config) -> None:
    click.echo(f"Digest {_period(result.plan, cfg)}: {len(result.plan.posts)} post(s)")
    if result.already_done:
        click.echo("Already sent for this period; --send would do nothing.")
    from .digest import GMAIL_CLIP_BYTES

    for categories, count, posts, size in result.by_categories:
        clip = " — over Gmail's ~102 KB clipping size" if size > GMAIL_CLIP_BYTES else ""
        click.echo(f"  {count} subscriber(s) following {categories}: {posts} post(s), {size / 1024:.1f} KB{clip}")
    click.echo(f"Would send {result.recipients} message(s); {result.nothing_new} subscriber(s) have nothing new "
               "and would get no email. Dry run: nothing sent or recorded.")


def _digest_test(cfg: Config, store, now: datetime, address: str) -> None:
    from . import sending
    from .subscribers import normalize_email
    from .transports import make_transport

    address = normalize_email(address)
    result = sending.send_test(cfg, store, make_transport(cfg), now, address)
    if result is None:
        click.echo("No posts were first published in this digest period: nothing to send.")
    elif result.status == "sent":
        click.echo(f"Test message sent to {address} ({result.provider_id or 'accepted'}); not recorded as the "
                   "week's send.")
    else:
        raise Failed(f"{address}: test message {result.status}: {result.error}")


def _digest_send(cfg: Config, store, now: datetime) -> int:
    from . import sending
    from .transports import make_transport

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
        report = sending.send_digest(cfg, store, lambda: make_transport(cfg), now, progress=progress, by_hand=True)
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
    store.record_run("digest", started, datetime.now(cfg.tz), {"sent": report.sent_now, **report.counts})
    click.echo(f"Digest {_period(report.plan, cfg)}: {len(report.plan.posts)} post(s)")
    if report.already_done:
        click.echo("Already sent for this period: nothing to do.")
    click.echo(f"Sent {report.sent_now} message(s) in this run.")
    for warning in report.warnings:
        click.echo(f"Warning: {warning}")
    return _print_ledger(report.counts, report.skipped, report.problems, report.error)


def _print_ledger(counts, skipped, problems, error: str = "") -> int:
    click.echo("Ledger: " + (", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "no recipients"))
    for reason, n in sorted(skipped.items()):
        click.echo(f"  skipped {n}: {reason}")
    for email, state, attempts, last_error in problems:
        click.echo(f"  {email}: {state} after {attempts} attempt(s): {last_error}")
    if error:
        click.echo(f"Stopped: {error}")
        return EXIT_FAILED
    if counts.get("unknown"):
        click.echo("Messages marked unknown may or may not have been delivered; they are never resent "
                   "automatically.")
    return EXIT_REJECTED if counts.get("failed") or counts.get("unknown") else EXIT_OK


def _digest_status(store) -> int:
    latest = store.latest_digest()
    if latest is None:
        click.echo("No digest has been sent yet.")
        return EXIT_OK
    digest_id, start, end, subject, _, status = latest
    click.echo(f"Latest digest: {start} – {end} ({status}): {subject}")
    return _print_ledger(store.ledger_counts(digest_id), store.skip_reasons(digest_id),
                         store.ledger_problems(digest_id))


@main.command()
@click.option("--once", is_flag=True, help="Run one pass (publish, feeds, digest when due) and exit: for cron.")
@click.option("--scan-interval", type=float, default=None, metavar="SECONDS",
              help="Seconds between scans of the posts folder (default: [serve] scan_interval).")
@click.pass_context
def serve(ctx: click.Context, once: bool, scan_interval: float | None) -> None:
    """Run as a service: publish posts the moment they come due and send the digest on time.

    Scans the posts folder every --scan-interval seconds, publishes each future-dated post at its exact
    due time, and sends the weekly digest at [digest] day and time in the site timezone. On start it
    publishes what came due while it was down and sends a missed digest once (within [digest]
    catch_up_hours). Only one publisher runs at a time: a second one waits, saying which process holds
    the lock. SIGTERM or SIGINT finishes the message in flight, records it, and exits 0.

    \b
    Example:
        publish serve
        publish serve --once      # from cron
    """
    import logging

    from .scheduler import Service, describe

    cfg = _load(ctx)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    if once:
        from .pipeline import run_pass

        try:
            with _lease(cfg, "publish serve --once"):
                report = run_pass(cfg, _parse_now(ctx.obj["now_text"], cfg))
        except PublisherError as exc:
            raise Failed(str(exc)) from None
        logging.getLogger("publisher.serve").info("once: %s", describe(report))
        ctx.exit(EXIT_FAILED if report.digest_error else EXIT_OK)
    service = Service(cfg, scan_interval or cfg.serve.scan_interval, cfg.serve.lease_seconds)
    service.serve_forever()


@main.command()
@click.pass_context
def status(ctx: click.Context) -> None:
    """Show the service and its schedule, the last runs, held posts, and the last digest's ledger.

    \b
    Example:
        publish status
    """
    from .digest import next_slot
    from .pipeline import run_pass
    from .scheduler import is_stale

    cfg, store = _store(ctx, readonly=True)
    now = _parse_now(ctx.obj["now_text"], cfg)
    lease = store.lease("publisher")
    if lease and not is_stale(lease[1], 0):
        click.echo(f"Running: {lease[0]} (lock renewed until {lease[1]})")
    else:
        click.echo("Running: no publisher holds the lock now")
    schedule = store.get_meta("serve_schedule")
    if schedule and lease and not is_stale(lease[1], 0):
        for job, when in sorted(json.loads(schedule)["jobs"].items()):
            click.echo(f"  next {job}: {_when(datetime.fromisoformat(when), cfg)}")
    click.echo(f"Next digest time: {_when(next_slot(cfg, now), cfg)} ({cfg.digest.day} {cfg.digest.time}, "
               f"{cfg.site.timezone}){'' if cfg.digest.enabled else ' — disabled'}")
    for kind in ("publish", "digest"):
        last = store.last_run(kind)
        if last:
            summary = ", ".join(f"{k} {v}" for k, v in last[1].items())
            click.echo(f"Last {kind} run: {_when(last[0], cfg)}: {summary}")
        else:
            click.echo(f"Last {kind} run: never")
    try:
        report = run_pass(cfg, now, dry_run=True, store=store, with_digest=False)
    except PublisherError as exc:
        click.echo(f"Held posts: unknown ({exc})")
    else:
        click.echo(f"Held posts: {len(report.held)}")
        for held in report.held:
            due = f"due {_when(held.due, cfg)}" if held.due else "draft"
            click.echo(f"  · {held.post.key}  {due}  {held.post.title}")
    _digest_status(store)


@main.command()
@click.option("--host", default=None, help="Address to listen on (default: [web] host).")
@click.option("--port", type=int, default=None, help="Port to listen on (default: [web] port).")
@click.pass_context
def web(ctx: click.Context, host: str | None, port: int | None) -> None:
    """Serve the subscription pages: one-click unsubscribe, sign-up with double opt-in, preferences.

    Run it behind your web server so that base_url + unsubscribe/, preferences/, subscribe and confirm/
    reach it. Links are signed with the secret in [digest] token_secret_env.

    \b
    Example:
        publish web --port 8080
    """
    import uvicorn

    from .web import create_app

    cfg = _load(ctx)
    try:
        app = create_app(cfg)
    except PublisherError as exc:
        raise Failed(str(exc), EXIT_CONFIG) from None
    uvicorn.run(app, host=host or cfg.web.host, port=port or cfg.web.port, proxy_headers=cfg.web.trust_forwarded,
                server_header=False, log_level="info")


def run() -> None:
    """Entry point that keeps tracebacks from reaching the operator (PUBLISHER_DEBUG=1 shows them)."""
    import os

    try:
        main(standalone_mode=True)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # a bug: say so in one line, keep the traceback for those who ask
        if os.environ.get("PUBLISHER_DEBUG"):
            raise
        click.echo(f"Error: internal error {type(exc).__name__}: {exc}. Nothing after this point was recorded; "
                   "run again with PUBLISHER_DEBUG=1 for the details and please report it.", err=True)
        sys.exit(EXIT_FAILED)


if __name__ == "__main__":
    run()
