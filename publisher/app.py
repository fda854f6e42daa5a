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

SECRET_FILE = "token-secret"  # in the state folder, used when the environment names no signing secret


def _log_notice(text: str) -> None:
    import logging

    logging.getLogger("publisher").warning("%s", text)


class App:
    """The configured publisher: hands out stores, the time, the signing secrets and transports."""

    def __init__(self, cfg: Config, *, clock: Callable[[], datetime] | None = None,
                 transport_factory: Callable[[], Transport] | None = None, secrets: Secrets | None = None,
                 notify: Callable[[str], None] | None = None) -> None:
        self.cfg = cfg
        self._clock = clock
        self._transport_factory = transport_factory
        self.notify = notify or _log_notice  # one-time notices for the operator (the CLI prints them on stderr)
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
        app = App(self.cfg, clock=lambda: when, transport_factory=self._transport_factory, notify=self.notify)
        if "secrets" in self.__dict__:
            app.__dict__["secrets"] = self.__dict__["secrets"]
        return app

    def open_store(self, readonly: bool = False) -> Store:
        from .store import open_store

        return open_store(self.cfg, readonly=readonly)

    # -- secrets ------------------------------------------------------------------------------------------
    @property
    def secret_path(self) -> Path:
        return self.cfg.state_dir / SECRET_FILE

    @cached_property
    def secrets(self) -> Secrets:
        """The secrets that sign subscriber links: $NAME ([digest] token_secret_env) when set, else the secret
        kept in the state folder, generated (once, 0600) the first time one is needed."""
        import secrets as pysecrets

        from .errors import StoreError
        from .files import create_once
        from .tokens import env_secrets

        name = self.cfg.digest.token_secret_env
        found = env_secrets(name)
        if found is not None:
            return self._accepting_kept(found)
        found = self._kept_secrets()
        if found is not None:
            return found
        path = self.secret_path
        try:
            created = create_once(path, (pysecrets.token_urlsafe(32) + "\n").encode())
        except OSError as exc:
            raise StoreError(f"{path}: cannot keep the secret that signs subscriber links ({exc.strerror})",
                             f"make the state folder writable by this user, or set {name}") from None
        kept = self._kept_secrets()
        assert kept is not None
        if created:
            self.notify(f"Generated the secret that signs subscriber links and kept it in {path} (readable by "
                        f"this user only); keep it with the state database. Set {name} to use your own instead.")
        return kept

    @property
    def preview_secrets(self) -> Secrets:
        """The real secrets when they exist; for a dry run before the first send (which shows no links and
        writes nothing), a throwaway one rather than generating the kept secret."""
        if "secrets" in self.__dict__:
            return self.__dict__["secrets"]
        from .tokens import env_secrets, throwaway_secrets

        return env_secrets(self.cfg.digest.token_secret_env) or self._kept_secrets() or throwaway_secrets()

    def _accepting_kept(self, found: Secrets) -> Secrets:
        """The environment's secrets, still accepting links signed with the kept secret: an operator who sets
        the variable after mails went out keeps their unsubscribe links working. A kept file that cannot be
        used is left alone here: the variable is the secret."""
        from dataclasses import replace

        from .errors import PublisherError

        try:
            kept = self._kept_secrets()
        except PublisherError:
            return found
        if kept is None or kept.current in found.all:
            return found
        return replace(found, previous=(*found.previous, kept.current))

    def _kept_secrets(self) -> Secrets | None:
        from .errors import SecretError, StoreError
        from .tokens import secrets_from_text

        name, path = self.cfg.digest.token_secret_env, self.secret_path
        try:
            text = path.read_text(encoding="ascii")
        except FileNotFoundError:
            return None
        except UnicodeDecodeError:
            text = ""  # not what publisher writes: unusable, like a secret too short
        except OSError as exc:
            raise StoreError(f"{path}: cannot read the secret that signs subscriber links ({exc.strerror})",
                             f"make it readable by this user, or set {name}") from None
        found = secrets_from_text(text, name, str(path))
        if found is None:
            raise SecretError(f"{path}: holds no usable signing secret",
                              "delete the file to generate a new one (links in mails already sent stop working), "
                              f"or set {name}")
        return found

    # -- transports ---------------------------------------------------------------------------------------
    def transport(self) -> Transport:
        """A new transport of the configured kind (connections open lazily)."""
        if self._transport_factory is not None:
            return self._transport_factory()
        from .transports import make_transport

        return make_transport(self.cfg)

    def check_ready_to_send(self) -> None:
        """Raise what a real send would raise before sending anything (no sender address, an unusable signing
        secret, missing credentials), so a dry run never promises a send that the real one refuses."""
        from .config import require_sender

        require_sender(self.cfg)
        _ = self.preview_secrets  # validates $NAME and the kept secret
        self.transport().close()  # checks credentials are set; connections open lazily
