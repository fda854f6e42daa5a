"""The `publish` command group; each command's docstring is its --help."""

from __future__ import annotations

import json
import sys
from collections import Counter
from datetime import datetime
from pathlib import Path

import click

from .config import Config, load_config
from .errors import Finding, PublisherError

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
        report = run_pass(cfg, now, dry_run=ctx.obj["dry_run"])
    except PublisherError as exc:
        raise Failed(str(exc)) from None
    _print_report(report, cfg)
    return EXIT_REJECTED if report.rejected else EXIT_OK


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


def run() -> None:
    """Entry point that keeps tracebacks from reaching the operator."""
    try:
        main(standalone_mode=True)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    run()
