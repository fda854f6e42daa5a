"""`publish` (one pass) and `publish check`."""

from __future__ import annotations

import json
from collections import Counter
from typing import TYPE_CHECKING

import click

from ..errors import EXIT_ATTENTION, EXIT_FAILED, EXIT_OK, Finding
from .common import StopSignals, app_of, honours_dry_run, lease, when

if TYPE_CHECKING:
    from ..app import App
    from ..config import Config


def run_publish(app: App, dry_run: bool, role: str = "publish") -> int:
    """One pass (under the lease unless it is a dry run), its report printed; the exit code."""
    from ..service.pipeline import notify_hubs, run_pass

    pings = None
    stop = StopSignals()
    if dry_run:
        report = run_pass(app, dry_run=True)
    else:
        with stop, lease(app, role) as held:
            report = run_pass(app, should_stop=lambda: stop() or held.lost(), holder=held.holder)
            if not stop.signum:  # bounded: the rest waits for the next pass
                pings = notify_hubs(app, budget=app.cfg.feeds.websub_wait)
    click.echo("\n".join(report_lines(report, app.cfg) + ping_lines(report, pings)))
    if dry_run:
        _say_who_holds_the_lock(app)
    if stop.signum:
        click.echo(f"Stopped by {stop.name}: the message in flight was recorded; the next run carries on.")
        return stop.exit_code
    return pass_exit_code(report)


def _say_who_holds_the_lock(app: App) -> None:
    """A dry run does not need the lock, but the real pass does: say so while another publisher holds it."""
    from ..service.lease import LEASE_NAME
    from ..service.scheduler import is_stale

    store = app.open_store(readonly=True)
    try:
        held = store.lease(LEASE_NAME)
    finally:
        store.close()
    if held is not None and not is_stale(held.expires, 0):
        click.echo(f"Note: {held.owner} holds the lock (until {when(held.expires, app.cfg)} unless renewed); the "
                   "real pass would exit 3 until it is released.")


def ping_lines(report, pings) -> list[str]:
    """What was done about WebSub: the hubs notified of the feeds that changed, and what is left to retry."""
    if report.dry_run:
        return [f"Would notify the WebSub hub(s) with {report.pings_queued} ping(s)"] if report.pings_queued else []
    if pings is None or not (pings.sent or pings.retrying or pings.failed or pings.pending):
        return []
    lines = [f"WebSub: {pings.sent} ping(s) sent, {pings.pending} left for the next pass, "
             f"{len(pings.failed)} given up"]
    for ping, error in pings.failed:
        lines.append(f"  ! {ping.hub} refused {ping.feed_url}: {error}")
    for ping, error in pings.retrying[-5:]:
        lines.append(f"  ? {ping.hub} for {ping.feed_url}: {error} (retried)")
    return lines


def pass_exit_code(report) -> int:
    """The most serious outcome: a digest that could not be sent exits as `publish digest --send` would, one
    with messages still to send exits 3."""
    code = EXIT_ATTENTION if report.rejected else EXIT_OK
    for d in report.digests:
        if d.error:
            code = max(code, d.error_code)
        elif d.action == "sent" and d.unfinished:
            code = max(code, EXIT_FAILED)
    return code


def digest_lines(report, cfg: Config) -> list[str]:
    """What the pass did about the weekly digest (and earlier ones still unfinished), one line each."""
    return [line for d in report.digests for line in _digest_lines(d, cfg, report.dry_run)]


def _digest_lines(d, cfg: Config, dry_run: bool) -> list[str]:
    at = when(d.slot, cfg)
    if d.action == "missed":
        return [f"Digest of {at} was missed and is older than [digest] catch_up_hours "
                f"({cfg.digest.catch_up_hours} h): skipped"]
    if d.action == "gave-up":
        return [f"Digest of {at}: gave up on {d.given_up} message(s) still unsent after [digest] give_up_hours "
                f"({cfg.digest.give_up_hours:g} h); they are recorded as failed (see `publish digest --status`)"]
    if d.action == "would-send":
        return [f"Would send the digest of {at} ({d.posts} posts) to {d.recipients} subscriber(s); "
                f"{d.nothing_new} with nothing new"]
    if d.error and not d.counts:
        return [f"Digest {'would not be' if dry_run else 'not'} sent: {d.error}"]
    counts = ", ".join(f"{n} {state}" for state, n in sorted(d.counts.items()))
    lines = [f"Digest of {at}: {d.sent_now} sent now ({counts or 'no recipients'})"]
    lines += [f"  {w}" for w in d.warnings]
    if d.stopped:
        lines.append("  stopped before the end: the next start resumes it")
    if d.error:
        lines.append(f"Digest not sent: {d.error}")
    elif d.unfinished and not d.stopped:
        lines.append(f"  {d.unfinished} message(s) not sent yet: the next run sends them")
    return lines


def report_lines(report, cfg: Config) -> list[str]:
    dry = report.dry_run
    lines: list[str] = []
    echo = lines.append
    echo(f"{'Dry run' if dry else 'Pass'} at {when(report.now, cfg)}: {report.posts_read} post file(s) read")
    if report.new:
        echo(f"{'Would publish' if dry else 'Published'} {len(report.new)} new post(s):")
        for post, post_id in report.new:
            cats = ", ".join(post.categories) or "-"
            mark = "  (adopted)" if post.key in report.adopted else ""
            echo(f"  + {when(post.date, cfg)}  [{cats}]  {post.title}  ({post.key}; id {post_id}){mark}")
        if report.adopted:
            echo(f"  {len(report.adopted)} of them {'would be' if dry else 'were'} adopted as the blog's back "
                 f"catalogue: dated before the next digest's period ({when(report.adopted_before, cfg)}), "
                 "published but not news for any digest ([digest] adopt_existing)")
    if report.changed:
        echo(f"{'Would update' if dry else 'Updated'} {len(report.changed)} changed post(s):")
        for post in report.changed:
            echo(f"  ~ {post.title}  ({post.key})")
    feeds = report.feeds
    if feeds.written:
        echo(f"{'Would write' if dry else 'Wrote'} {len(feeds.written)} feed file(s):")
        for relpath, entries in feeds.written:
            echo(f"  > {relpath} ({entries} {'feeds' if relpath.endswith(('.opml', '.html')) else 'entries'})")
    if feeds.removed:
        echo(f"{'Would remove' if dry else 'Removed'} {len(feeds.removed)} feed file(s) with no posts left:")
        for relpath in feeds.removed:
            echo(f"  - {relpath}")
    if report.held:
        echo(f"Held {len(report.held)} post(s):")
        for held in report.held:
            due = f"due {when(held.due, cfg)}" if held.due else "draft (published: false or draft: true)"
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
    lines += digest_lines(report, cfg)
    if dry:
        echo("Dry run: nothing was written or recorded.")
    return lines


def _stored_slugs(app: App) -> dict:
    """The feed slugs in use, to compare with the config; none when the state database cannot be read."""
    from ..errors import PublisherError

    try:
        store = app.open_store(readonly=True)
    except PublisherError:
        return {}
    try:
        return store.feed_slugs()
    except PublisherError:
        return {}
    finally:
        store.close()


@honours_dry_run
@click.command()
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
    from ..feeds.slugs import category_findings
    from ..reading.posts import ReaderSettings, read_many, site_posts

    app = app_of(ctx)
    cfg = app.cfg
    settings = ReaderSettings.from_config(cfg, check_body=True)
    sources = site_posts(cfg)
    findings: list[Finding] = []
    posts = []
    for source, result in read_many(sources, settings):
        findings.extend([result] if isinstance(result, Finding) else result.findings)
        if not isinstance(result, Finding):
            posts.append((source.path, result))
    findings += category_findings(posts, cfg.feeds.category_slugs, _stored_slugs(app), cfg.source)
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
    ctx.exit(EXIT_ATTENTION if failed else EXIT_OK)
