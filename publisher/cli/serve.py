"""`publish serve`, `publish status` and `publish web`."""

from __future__ import annotations

import json
import sys
from datetime import datetime

import click

from ..errors import UsageError
from .common import app_of, honours_dry_run, open_store, when
from .digest import status_lines
from .publish import digest_lines, run_publish


@honours_dry_run
@click.command()
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
    the lock. SIGTERM or SIGINT finishes the message in flight, records it, and exits 0. With --once it
    runs one pass like `publish`, with the same output and exit codes.

    \b
    Example:
        publish serve
        publish serve --once      # from cron
    """
    from ..service.scheduler import Service, configure_logging

    app = app_of(ctx)
    dry_run = bool(ctx.find_root().obj.get("dry_run"))
    if once:
        ctx.exit(run_publish(app, dry_run=dry_run, role="publish serve --once"))
    if dry_run:
        raise UsageError("`publish serve --dry-run` would run forever doing nothing",
                         "use `publish serve --once --dry-run` (or `publish --dry-run`) to preview one pass")
    configure_logging(app.cfg, sys.stderr)
    service = Service(app, scan_interval or app.cfg.serve.scan_interval,
                      lambda report: digest_lines(report, app.cfg))
    service.serve_forever()


@honours_dry_run
@click.command()
@click.pass_context
def status(ctx: click.Context) -> None:
    """Show the service and its schedule, the last runs, held posts, and the last digest's ledger.

    \b
    Example:
        publish status
    """
    from ..digest.schedule import next_slot
    from ..errors import PublisherError
    from ..service.pipeline import run_pass
    from ..service.scheduler import is_stale

    app, store = open_store(ctx, readonly=True)
    cfg = app.cfg
    lease = store.lease("publisher")
    running = lease is not None and not is_stale(lease.expires, 0)
    if lease is not None and running:
        click.echo(f"Running: {lease.owner} (lock renewed until {when(datetime.fromisoformat(lease.expires), cfg)})")
    else:
        click.echo("Running: no publisher holds the lock now")
    schedule = store.get_meta("serve_schedule")
    if schedule and running:
        for job, at in sorted(json.loads(schedule)["jobs"].items()):
            click.echo(f"  next {job}: {when(datetime.fromisoformat(at), cfg)}")
    click.echo(f"Next digest time: {when(next_slot(cfg, app.now()), cfg)} ({cfg.digest.day} {cfg.digest.time}, "
               f"{cfg.site.timezone}){'' if cfg.digest.enabled else ' — disabled'}")
    for kind in ("publish", "digest"):
        last = store.last_run(kind)
        if last:
            summary = ", ".join(f"{k} {v}" for k, v in last.summary.items())
            click.echo(f"Last {kind} run: {when(last.finished, cfg)}: {summary}")
        else:
            click.echo(f"Last {kind} run: never")
    try:
        report = run_pass(app, dry_run=True, store=store, with_digest=False)
    except PublisherError as exc:
        click.echo(f"Held posts: unknown ({exc})")
    else:
        click.echo(f"Held posts: {len(report.held)}")
        for held in report.held:
            due = f"due {when(held.due, cfg)}" if held.due else "draft"
            click.echo(f"  · {held.post.key}  {due}  {held.post.title}")
    websub_lines(store, cfg)
    status_lines(store, cfg)


def websub_lines(store, cfg) -> None:
    """WebSub: the hubs, how many pings were sent, and those pending or given up, with their errors."""
    counts = store.ping_counts()
    if not cfg.feeds.websub_hubs and not counts:
        return
    hubs = ", ".join(cfg.feeds.websub_hubs) or "none configured"
    click.echo(f"WebSub hubs: {hubs}; pings {counts.get('sent', 0)} sent, {counts.get('pending', 0)} pending, "
               f"{counts.get('failed', 0)} given up")
    due = store.next_ping_due()
    if due:
        click.echo(f"  next try: {when(datetime.fromisoformat(due), cfg)}")
    for ping in store.pings(("pending", "failed"), limit=10):
        state = "pending" if ping.state == "pending" else "given up"
        click.echo(f"  {'?' if ping.state == 'pending' else '!'} {state} after {ping.attempts} attempt(s): "
                   f"{ping.hub} for {ping.feed_url}: {ping.last_error or 'not tried yet'}")


@click.command()
@click.option("--host", default=None, help="Address to listen on (default: [web] host).")
@click.option("--port", type=click.IntRange(0, 65535), default=None, help="Port to listen on (default: [web] port).")
@click.pass_context
def web(ctx: click.Context, host: str | None, port: int | None) -> None:
    """Serve the subscription pages: one-click unsubscribe, sign-up with double opt-in, preferences.

    Run it behind your web server so that base_url + unsubscribe/, preferences/, subscribe and confirm/
    reach it, and list that server's address in [web] trusted_proxies. Links are signed with the secret
    in [digest] token_secret_env. Each request is logged on stderr with link tokens redacted.

    \b
    Example:
        publish web --port 8080
    """
    import logging

    from ..service.scheduler import configure_logging
    from ..web import create_app
    from ..web.guard import security_headers
    from ..web.server import serve as serve_pages

    app = app_of(ctx)
    cfg = app.cfg
    configure_logging(cfg, sys.stderr)  # stamped like every time publisher prints; uvicorn's lines too
    log = logging.getLogger("publisher.web")
    app.notify = lambda text: log.warning("%s", text)  # a secret generated on start is said in the log
    for warning in cfg.web.deprecations(cfg.source):
        log.warning("%s", warning)
    asgi = create_app(app, server_adds_headers=True)
    serve_pages(asgi, cfg, host or cfg.web.host, cfg.web.port if port is None else port,
                security_headers(cfg.site.base_url.startswith("https:")))
