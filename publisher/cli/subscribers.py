"""`publish subscribers …`: add, remove, list, import and export digest subscribers."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import click

from ..errors import EXIT_ATTENTION, EXIT_OK, UsageError
from .common import Failed, honours_dry_run, open_store, when


def _stamp() -> str:
    return datetime.now(UTC).isoformat()


@click.group()
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
@click.option("--name", default=None, help="Display name (kept as it is when not given).")
@click.option("--category", "categories", multiple=True,
              help="A category to follow (repeat); replaces the categories followed. A new subscriber given none "
                   "follows all.")
@click.option("--all-categories", is_flag=True, help="Follow every category (clears the --category choices).")
@click.option("--allow-new-category", is_flag=True, help="Accept a category that no post uses yet.")
@click.option("--resubscribe", is_flag=True, help="Re-activate an address that unsubscribed or bounced.")
@click.pass_context
def subscribers_add(ctx: click.Context, email: str, name: str | None, categories: tuple[str, ...],
                    all_categories: bool, allow_new_category: bool, resubscribe: bool) -> None:
    """Add a subscriber, or change what is given of an existing one (the rest stays as it is).

    A category must be one that a published post uses (the error lists them); --allow-new-category
    accepts one that no post uses yet.

    \b
    Example:
        publish subscribers add reader@example.com --name "読者" --category 半導体
        publish subscribers add reader@example.com --name "読者 花子"     # categories stay
        publish subscribers add reader@example.com --all-categories
    """
    from ..subscribers import add_subscriber, parse_categories

    if categories and all_categories:
        raise UsageError("give --category or --all-categories, not both")
    chosen = [] if all_categories else parse_categories(categories) if categories else None
    _, store = open_store(ctx)
    try:
        outcome = add_subscriber(store, email, name, chosen, _stamp(), resubscribe, allow_new_category)
    except UsageError as exc:
        raise Failed(f"{email}: {exc}", exc.exit_code) from None
    if outcome in ("unsubscribed", "bounced"):
        raise Failed(f"{email}: this address is {outcome}; add --resubscribe only if the person asked to "
                     "subscribe again", EXIT_ATTENTION)
    click.echo(f"{email}: {outcome}")


@subscribers.command("remove")
@click.argument("email")
@click.option("--purge", is_flag=True, help="Delete the record entirely instead of marking it unsubscribed.")
@click.pass_context
def subscribers_remove(ctx: click.Context, email: str, purge: bool) -> None:
    """Unsubscribe an address (kept as unsubscribed so no import brings it back).

    \b
    Example:
        publish subscribers remove reader@example.com
    """
    from ..subscribers import remove_subscriber

    _, store = open_store(ctx)
    try:
        found = remove_subscriber(store, email, _stamp(), purge)
    except UsageError as exc:
        raise Failed(f"{email}: {exc}", exc.exit_code) from None
    if not found:
        raise Failed(f"{email}: no such subscriber", EXIT_ATTENTION)
    click.echo(f"{email}: {'deleted' if purge else 'unsubscribed'}")


@honours_dry_run
@subscribers.command("list")
@click.option("--status", type=click.Choice(["active", "unsubscribed", "bounced", "pending"]), default=None)
@click.pass_context
def subscribers_list(ctx: click.Context, status: str | None) -> None:
    """List subscribers: address, status, categories, name.

    \b
    Example:
        publish subscribers list --status active
    """
    _, store = open_store(ctx, readonly=True)
    count = 0
    for sub in store.subscribers(status):
        click.echo(f"{sub.email}\t{sub.status}\t{', '.join(sub.categories) or '(all)'}\t{sub.name}")
        count += 1
    click.echo(f"{count} subscriber(s)", err=True)


@subscribers.command("import")
@click.argument("csv_file", type=click.Path(path_type=Path))
@click.option("--allow-new-category", is_flag=True, help="Accept categories that no post uses yet.")
@click.pass_context
def subscribers_import(ctx: click.Context, csv_file: Path, allow_new_category: bool) -> None:
    """Import a CSV with a header row: email[,name][,categories separated by ';'][,status].

    A column the file does not have leaves that field of existing subscribers as it is; a status of
    unsubscribed or bounced is recorded, so an export imported into a new database keeps who left. Bad
    rows (an invalid address, a category no post uses, an unknown status, an address already on an
    earlier line) are reported by line and skipped; good rows are kept. Importing the same file again
    changes nothing, and an import never re-subscribes an address that unsubscribed. Reads what
    `subscribers export` writes.

    \b
    Example:
        publish subscribers import subscribers.csv
    """
    from ..subscribers import import_csv

    _, store = open_store(ctx)
    report = import_csv(store, csv_file, _stamp(), allow_new_category)
    for error in report.errors:
        click.echo(error)
    counts = ", ".join(f"{n} {k}" for k, n in sorted(report.counts.items())) or "nothing imported"
    click.echo(f"{csv_file}: {counts}; {len(report.errors)} bad row(s)")
    ctx.exit(EXIT_ATTENTION if report.errors else EXIT_OK)


@honours_dry_run
@subscribers.command("export")
@click.pass_context
def subscribers_export(ctx: click.Context) -> None:
    """Write every subscriber as CSV to standard output (email, name, categories, status, joined).

    Cells that a spreadsheet would run as a formula (starting with = + - @, a tab or a carriage return)
    are written with a leading apostrophe; `subscribers import` reads them back unchanged.

    \b
    Example:
        publish subscribers export > subscribers.csv
    """
    from ..subscribers import export_csv

    app, store = open_store(ctx, readonly=True)
    count = export_csv(store, sys.stdout, lambda stamp: when(stamp, app.cfg))
    click.echo(f"{count} subscriber(s) exported", err=True)
