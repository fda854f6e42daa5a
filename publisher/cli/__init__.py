"""The `publish` command group; each command's docstring is its --help."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from ..errors import EXIT_FAILED, PublisherError
from . import digest, feeds, publish, serve, subscribers
from .common import EXIT_CODES_HELP, PublisherGroup, app_of, honours_dry_run
from .publish import check, run_publish


@honours_dry_run
@click.group(cls=PublisherGroup, invoke_without_command=True, epilog=EXIT_CODES_HELP)
@click.option("--config", "config_path", type=click.Path(path_type=Path), default="config.toml",
              envvar="PUBLISHER_CONFIG", show_default=True, help="The config.toml to use.")
@click.option("--dry-run", is_flag=True, help="Print what the pass would do; write and record nothing.")
@click.option("--now", "now_text", metavar="ISO-TIME", help="Run as if it were this time (site timezone if no offset).")
@click.version_option(package_name="publisher")
@click.pass_context
def main(ctx: click.Context, config_path, dry_run: bool, now_text: str | None) -> None:
    """Publish the posts that came due and rebuild the feeds that changed.

    With no command, runs one pass: new posts are published, changed feeds are rewritten, the weekly
    digest is sent when its time has come, and a summary is printed.

    The options --config, --now and --dry-run may also follow the command: `publish digest --now
    2026-01-05T09:00 --dry-run` is the same as `publish --now 2026-01-05T09:00 digest --dry-run`.

    \b
    Example:
        publish --dry-run
        publish --now 2026-01-05T09:00
        publish check --strict
    """
    ctx.ensure_object(dict)
    ctx.obj.update(config_path=config_path, dry_run=dry_run, now_text=now_text)
    if ctx.invoked_subcommand is None:
        ctx.exit(run_publish(app_of(ctx), dry_run))


main.add_command(check)
main.add_command(subscribers.subscribers)
main.add_command(digest.digest)
main.add_command(feeds.feeds)
main.add_command(serve.serve)
main.add_command(serve.status)
main.add_command(serve.web)


def run() -> None:
    """Entry point that keeps tracebacks from reaching the operator (PUBLISHER_DEBUG=1 shows them)."""
    try:
        main(standalone_mode=True)
    except KeyboardInterrupt:
        sys.exit(130)
    except PublisherError as exc:  # raised outside a command (e.g. while click was closing resources)
        click.echo(f"Error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except Exception as exc:  # a bug: say so in one line, keep the traceback for those who ask
        if os.environ.get("PUBLISHER_DEBUG"):
            raise
        click.echo(f"Error: internal error {type(exc).__name__}: {exc}. Nothing after this point was recorded; "
                   "run again with PUBLISHER_DEBUG=1 for the details and please report it.", err=True)
        sys.exit(EXIT_FAILED)


__all__ = ["main", "publish", "run"]
