"""What every command shares: the app built from --config and --now, the error mapping, time formatting."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ..config import Config, load_config
from ..errors import EXIT_FAILED, PublisherError, UsageError

if TYPE_CHECKING:
    from ..app import App
    from ..store import Store

EXIT_CODES_HELP = """Exit codes: 0 done; 1 done, but something needs a look (posts rejected, recipients failed or
unknown, bad rows); 2 usage, config.toml or input error; 3 the run could not complete (state database,
feeds folder, mail server or API, another publisher holding the lock)."""


class Failed(click.ClickException):
    """An operator-facing failure: one line on stderr, a chosen exit code, no traceback."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = code

    @classmethod
    def of(cls, exc: PublisherError) -> Failed:
        return cls(str(exc), exc.exit_code)


class PublisherGroup(click.Group):
    """A command group that turns every PublisherError into its one line and exit code."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except PublisherError as exc:
            raise Failed.of(exc) from None


def app_of(ctx: click.Context) -> App:
    """The app for this invocation: config read once, the clock fixed by --now when given."""
    from ..app import App

    obj = ctx.find_root().obj
    if "app" not in obj:
        path: Path = obj["config_path"]
        if path.is_dir():
            raise UsageError(f"{path}: is a folder; pass the config.toml file itself to --config")
        cfg = load_config(path)
        app = App(cfg)
        if obj.get("now_text"):
            app = app.with_clock(parse_now(obj["now_text"], cfg))
        obj["app"] = app
    return obj["app"]


def config_of(ctx: click.Context) -> Config:
    return app_of(ctx).cfg


def open_store(ctx: click.Context, readonly: bool = False) -> tuple[App, Store]:
    """The app and a store that is closed when the command ends."""
    app = app_of(ctx)
    store = app.open_store(readonly=readonly)
    ctx.call_on_close(store.close)
    return app, store


def parse_now(value: str, cfg: Config) -> datetime:
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise UsageError(f"--now {value!r} is not an ISO time",
                         "write it like 2026-01-05T09:00 or 2026-01-05T09:00+09:00") from None
    return when if when.tzinfo else when.replace(tzinfo=cfg.tz)


def when(dt: datetime, cfg: Config) -> str:
    """A time as every command prints it: ISO 8601 in the site timezone, with its offset."""
    return dt.astimezone(cfg.tz).replace(microsecond=0).isoformat(timespec="minutes")


def lease(app: App, role: str):
    from ..service.lease import Lease

    return Lease(app.open_store, role, app.cfg.serve.lease_seconds)
