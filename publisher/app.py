"""The composition root: one place builds the config's collaborators (store, clock, secrets, transports) for
the CLI, the scheduler, the web app and the tests, which may hand in their own clock or transport."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from .config import Config, load_config

if TYPE_CHECKING:  # imported where used: a pass with nothing to do never loads the mail or token code
    from .store import Store
    from .tokens import Secrets
    from .transports.base import Transport


class App:
    """The configured publisher: hands out stores, the time, the signing secrets and transports."""

    def __init__(self, cfg: Config, *, clock: Callable[[], datetime] | None = None,
                 transport_factory: Callable[[], Transport] | None = None, secrets: Secrets | None = None) -> None:
        self.cfg = cfg
        self._clock = clock
        self._transport_factory = transport_factory
        if secrets is not None:
            self.__dict__["secrets"] = secrets

    @classmethod
    def from_path(cls, path: str | Path) -> App:
        return cls(load_config(path))

    def now(self) -> datetime:
        """The current time in the site timezone (a fixed time when the app was given a clock)."""
        if self._clock is not None:
            return self._clock().astimezone(self.cfg.tz)
        return datetime.now(self.cfg.tz).replace(microsecond=0)

    def with_clock(self, when: datetime) -> App:
        """This app, with the time fixed at `when` (for --now)."""
        app = App(self.cfg, clock=lambda: when, transport_factory=self._transport_factory)
        if "secrets" in self.__dict__:
            app.__dict__["secrets"] = self.__dict__["secrets"]
        return app

    def open_store(self, readonly: bool = False) -> Store:
        from .store import open_store

        return open_store(self.cfg, readonly=readonly)

    @cached_property
    def secrets(self) -> Secrets:
        """The secrets that sign subscriber links; required to send or serve pages."""
        from .tokens import Secrets

        return Secrets.from_env(self.cfg.digest.token_secret_env)

    @property
    def preview_secrets(self) -> Secrets:
        """The real secrets when set, else a preview-only secret (links in previews then do not verify)."""
        if "secrets" in self.__dict__:
            return self.__dict__["secrets"]
        from .tokens import Secrets

        return Secrets.from_env(self.cfg.digest.token_secret_env, required=False)

    def transport(self) -> Transport:
        """A new transport of the configured kind (connections open lazily)."""
        if self._transport_factory is not None:
            return self._transport_factory()
        from .transports import make_transport

        return make_transport(self.cfg)
