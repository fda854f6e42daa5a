"""`publish feeds`: the feeds' addresses, discovery links, and renaming a category's feed slug."""

from __future__ import annotations

from contextlib import nullcontext
from datetime import UTC, datetime

import click

from ..errors import UsageError
from .common import app_of, honours_dry_run, lease, open_store, when


@click.group()
def feeds() -> None:
    """The feeds' addresses: list them, print discovery links, rename a category's slug.

    \b
    Example:
        publish feeds list
        publish feeds links
        publish feeds rename-slug research research-notes
    """


@honours_dry_run
@feeds.command("list")
@click.pass_context
def list_feeds(ctx: click.Context) -> None:
    """List every category's feed slug and address, moved feeds, and config that disagrees with them.

    A slug is handed out once, the first time a category is published, and kept in the state database:
    later config changes do not move a feed (use `publish feeds rename-slug`).

    \b
    Example:
        publish feeds list
    """
    from ..feeds.build import SUFFIXES, feed_url
    from ..feeds.slugs import mapping_differences

    app, store = open_store(ctx, readonly=True)
    cfg = app.cfg
    slugs, moves = store.feed_slugs(), store.feed_moves()
    formats = cfg.feeds.formats
    click.echo(f"Feeds are served from {cfg.feeds_url} and written to {cfg.feeds_dir}")
    click.echo(f"  (site) {feed_url(cfg, 'all', formats[0])}  ({', '.join(SUFFIXES[f] for f in formats)})")
    for category, rec in sorted(slugs.items(), key=lambda kv: kv[1].slug):
        click.echo(f"  {category}: {feed_url(cfg, 'category/' + rec.slug, formats[0])}")
    for old, move in sorted(moves.items()):
        new = slugs[move.category].slug if move.category in slugs else "?"
        moved = when(datetime.fromisoformat(move.moved), cfg)
        click.echo(f"  moved {moved}: category/{old} → category/{new} ({move.category}); the old files carry a "
                   "notice: redirect them on the web server (README: Serving the feeds)")
    for category, used, wanted in mapping_differences(slugs, cfg.feeds.category_slugs):
        click.echo(f"  ! [feeds.category_slugs] maps {category!r} to {wanted!r} but its feed is at {used!r}: "
                   f"`publish feeds rename-slug {used} {wanted}` moves it")
    if not slugs:
        click.echo("  no category published yet")


@honours_dry_run
@feeds.command()
@click.pass_context
def links(ctx: click.Context) -> None:
    """Print the <link rel="alternate"> tags for the site's HTML <head> (also written to discovery.html).

    \b
    Example:
        publish feeds links > templates/feed-links.html
    """
    from ..feeds.index import DISCOVERY_NAME

    cfg = app_of(ctx).cfg
    path = cfg.feeds_dir / DISCOVERY_NAME
    if not path.exists():
        raise UsageError(f"{path}: not written yet", "run `publish` first")
    click.echo(path.read_text(encoding="utf-8"), nl=False)


@honours_dry_run
@feeds.command("rename-slug")
@click.argument("old")
@click.argument("new")
@click.pass_context
def rename_slug(ctx: click.Context, old: str, new: str) -> None:
    """Move a category's feeds from slug OLD to NEW, leaving a notice at the old address.

    The feeds are rewritten at category/NEW.*; the files at category/OLD.* are replaced by a feed with one
    entry pointing to the new address (JSON Feed: "expired"). Add a permanent redirect from the old
    address on the web server too (README: Serving the feeds), and set the category's slug in
    [feeds.category_slugs] so `publish check` stays quiet. OLD stays reserved: no other category gets it.

    \b
    Example:
        publish feeds rename-slug research research-notes
    """
    from ..feeds.slugs import SLUG_MAX_BYTES, category_slug, slug_clash
    from .publish import report_lines

    app = app_of(ctx)
    cfg = app.cfg
    if len(new.encode()) > SLUG_MAX_BYTES:
        raise UsageError(f"{new!r} is too long for a file name", f"use at most {SLUG_MAX_BYTES} bytes")
    if category_slug(new) != new:
        raise UsageError(f"{new!r} is not a slug",
                         f"use {category_slug(new)!r} (lowercase, no spaces or / \\ ? # % …)")
    dry_run = ctx.find_root().obj.get("dry_run")
    with lease(app, "publish feeds rename-slug") if not dry_run else nullcontext():
        _, store = open_store(ctx, readonly=bool(dry_run))
        slugs, moves = store.feed_slugs(), store.feed_moves()
        category = next((c for c, rec in slugs.items() if rec.slug == old), None)
        if category is None:
            raise UsageError(f"no category's feed is at {old!r}", "`publish feeds list` shows the slugs in use")
        clash = slug_clash(new, category, slugs, moves)
        if clash:
            raise UsageError(f"{new!r} is (or was) the slug of {clash!r}",
                             "choose another one: a feed address is never handed to a second category")
        if old == new:
            click.echo(f"{category!r} already uses {new!r}: nothing to do")
            return
        if dry_run:
            click.echo(f"Would move the feeds of {category!r} from category/{old}.* to category/{new}.*")
            return
        from ..errors import PublisherError
        from ..reading.posts import site_posts
        from ..service.pipeline import run_pass

        site_posts(cfg)  # the feeds are rewritten from the posts: no posts folder, nothing recorded
        store.rename_slug(category, old, new, app.now().astimezone(UTC).isoformat())
        try:
            report = run_pass(app, store=store, with_digest=False)
        except PublisherError as exc:
            raise PublisherError(exc.message, f"{exc.hint + '; ' if exc.hint else ''}the move to {new!r} is "
                                 "recorded: the next `publish` writes its feeds", exc.exit_code) from None
    click.echo(f"Moved the feeds of {category!r} from category/{old}.* to category/{new}.*; the old files "
               "now carry a notice pointing to the new address.")
    if cfg.feeds.category_slugs.get(category) != new:
        click.echo(f'Set [feeds.category_slugs] "{category}" = "{new}" in {cfg.source}, and redirect '
                   f"{cfg.feeds_url}category/{old}.* to the new files on the web server (README).")
    click.echo("\n".join(report_lines(report, cfg)))
