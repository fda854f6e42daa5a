"""What every command shares: the app built from --config and --now, the global options accepted after any
command, the error mapping, time formatting."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..config import Config, load_config
from ..errors import EXIT_FAILED, PublisherError, UsageError

if TYPE_CHECKING:
    from ..app import App
    from ..store import Store

EXIT_CODES_HELP = """\b
Exit codes:
  0  done
  1  done, but something needs a look (posts rejected, recipients failed or unknown, bad rows)
  2  usage, config.toml or input error (an API key or password not set, no posts folder)
  3  the run could not complete (state database locked or unwritable, feeds folder, mail server or API,
     another publisher holding the lock)"""

# The global options: given before the command (`publish --now … digest`) or after it (`publish digest --now …`).
GLOBAL_OPTIONS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("--config", "config_path", {"type": click.Path(path_type=Path), "metavar": "PATH",
                                 "help": "The config.toml to use (default: ./config.toml, or $PUBLISHER_CONFIG)."}),
    ("--now", "now_text", {"metavar": "ISO-TIME",
                           "help": "Run as if it were this time (site timezone if no offset)."}),
    ("--dry-run", "dry_run", {"is_flag": True, "help": "Show what would be done; write, send and record nothing."}),
)


class Failed(click.ClickException):
    """An operator-facing failure: one line on stderr, a chosen exit code, no traceback."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = code

    @classmethod
    def of(cls, exc: PublisherError) -> Failed:
        return cls(str(exc), exc.exit_code)


class PublisherGroup(click.Group):
    """The root command group: every PublisherError becomes its one line and exit code, here and nowhere
    else; every command it runs accepts the global options after its name and documents the exit codes."""

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            accept_global_options(command)
        return command

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except PublisherError as exc:
            raise Failed.of(exc) from None


def honours_dry_run(command: click.Command) -> click.Command:
    """Mark a command that does nothing irreversible under --dry-run (it previews, or only reads)."""
    command.honours_dry_run = True  # type: ignore[attr-defined]
    return command


def _remember(key: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value is not None and value is not False:
            ctx.find_root().ensure_object(dict)[key] = value
        return value

    return callback


def accept_global_options(command: click.Command) -> None:
    """Let `command` (and each command of a group) take --config, --now and --dry-run after its name too, and
    end its --help with the exit codes. Options a command defines itself stay its own."""
    if getattr(command, "accepts_global_options", False):
        return
    command.accepts_global_options = True  # type: ignore[attr-defined]
    taken = {opt for param in command.params for opt in getattr(param, "opts", ())}
    for flag, key, attrs in GLOBAL_OPTIONS:
        if flag in taken or (flag == "--dry-run" and not getattr(command, "honours_dry_run", False)):
            continue
        command.params.append(click.Option([flag], expose_value=False, callback=_remember(key), **attrs))
    if command.epilog is None:
        command.epilog = EXIT_CODES_HELP
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            accept_global_options(sub)


def app_of(ctx: click.Context) -> App:
    """The app for this invocation: config read once, the clock fixed by --now when given."""
    from ..app import App

    obj = ctx.find_root().obj
    if obj.get("dry_run") and not getattr(ctx.command, "honours_dry_run", False):
        raise UsageError(f"`{ctx.command_path}` has no dry run",
                         "leave out --dry-run (`publish --dry-run` previews a publishing pass)")
    if "app" not in obj:
        path: Path = obj["config_path"]
        if path.is_dir():
            raise UsageError(f"{path}: is a folder", "pass the config.toml file itself to --config")
        cfg = load_config(path)
        app = App(cfg, notify=lambda text: click.echo(text, err=True))
        if obj.get("now_text") is not None:  # an empty --now is refused, not taken for the real time
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
    when = when if when.tzinfo else when.replace(tzinfo=cfg.tz)
    try:  # the schedule reaches a week or so either side, and tokens count seconds from 1970
        in_range = 1970 <= when.astimezone(cfg.tz).year <= 9998
    except OverflowError:
        in_range = False
    if not in_range:
        raise UsageError(f"--now {value!r} is outside the years publisher can schedule (1970 to 9998)",
                         "write a time like 2026-01-05T09:00")
    return when


def when(dt: datetime | str, cfg: Config) -> str:
    """A time as every command prints it: ISO 8601 in the site timezone, with its offset (stored UTC
    stamps are converted too)."""
    from ..text import local_time

    return local_time(dt, cfg.tz)


def lease(app: App, role: str):
    from ..service.lease import Lease

    return Lease(app.open_store, role, app.cfg.serve.lease_seconds, tz=app.cfg.tz)


class StopSignals:
    """While sending: SIGINT (Ctrl-C) and SIGTERM ask the work in hand to stop after the request in flight,
    which is recorded; a second signal stops at once. `exit_code` is 128 + the signal's number."""

    def __init__(self) -> None:
        self.signum = 0
        self._previous: dict[int, object] = {}

    def __call__(self) -> bool:
        return bool(self.signum)

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else ""

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    def _handle(self, signum: int, frame: object) -> None:
        if self.signum:
            raise KeyboardInterrupt
        self.signum = signum

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
