"""The digest's archived copy: the whole digest as a static page next to the feeds ("view in browser").

No personal link is on it (no unsubscribe or preferences token); the same digest gives the same bytes, and the
file is written atomically and only when it changed.
"""

from __future__ import annotations

from pathlib import Path

from ..config import Config
from ..files import write_if_changed
from .job import DigestJob
from .render import archive_name


def archive_path(cfg: Config, job: DigestJob) -> Path:
    return cfg.feeds_dir / "archive" / archive_name(cfg, job.end)


def write_archive(cfg: Config, job: DigestJob) -> Path | None:
    """Write the archived copy of `job` (when [digest] archive is on and it has posts); its path."""
    if not cfg.digest.archive:
        return None
    page = job.renderer.archive_page()
    if page is None:
        return None
    path = archive_path(cfg, job)
    write_if_changed(path, page.encode())
    return path
