"""The store: one port (`base.Store`), opened in one place from the configuration."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import Store

if TYPE_CHECKING:
    from ..config import Config


def open_store(cfg: Config, readonly: bool = False) -> Store:
    """The store named by [state]: the SQLite file (the default)."""
    from .sqlite import SQLiteStore

    return SQLiteStore.open(cfg.database_path, readonly=readonly, busy_timeout=cfg.state.busy_timeout)


__all__ = ["Store", "open_store"]
