"""Files written atomically (temp file, fsync, rename) and only when their bytes change, with chosen modes.

Public outputs (feeds) are world-readable whatever the umask; private ones (the state folder, .eml files,
the signing secret) are created for this user only (folders 0700, files 0600).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

PUBLIC_FILE, PUBLIC_DIR = 0o644, 0o755
PRIVATE_FILE, PRIVATE_DIR = 0o600, 0o700


def make_dirs(folder: Path, mode: int = PUBLIC_DIR) -> None:
    """Create `folder` and its missing parents with exactly `mode` (the umask does not narrow or widen it);
    folders that already exist keep their mode."""
    missing = []
    for part in (folder, *folder.parents):
        if part.is_dir():
            break
        missing.append(part)
    for part in reversed(missing):
        try:
            part.mkdir(mode=mode)
        except FileExistsError:
            if not part.is_dir():
                raise
            continue  # another process made it first: its mode is its own
        os.chmod(part, mode)


def write_if_changed(path: Path, data: bytes, mode: int = PUBLIC_FILE, dir_mode: int | None = None) -> bool:
    """Write atomically unless the file already holds exactly `data`; True when written. New folders get
    `dir_mode` (default: searchable by all for public files, this user only for private ones)."""
    try:
        if path.stat().st_size == len(data) and path.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    make_dirs(path.parent, dir_mode if dir_mode is not None else (PUBLIC_DIR if mode & 0o044 else PRIVATE_DIR))
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # created 0600
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True


def create_once(path: Path, data: bytes, mode: int = PRIVATE_FILE) -> bool:
    """Create `path` holding `data` unless it exists; True if this call created it. Readers never see a
    partial file, and of several processes racing, exactly one creates it (link(2) refuses an existing name)."""
    make_dirs(path.parent, PRIVATE_DIR if not mode & 0o044 else PUBLIC_DIR)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError:  # a file system without hard links: exclusive create (the content follows at once)
            return _create_exclusive(path, data, mode)
        _sync_folder(path.parent)
        return True
    finally:
        Path(tmp).unlink(missing_ok=True)


def _create_exclusive(path: Path, data: bytes, mode: int) -> bool:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    return True


def _sync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
