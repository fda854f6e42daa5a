"""The SQLite store: the embedded default, one database file holding both host-local and shared facts."""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ..errors import StoreError
from ..files import PRIVATE_DIR, PRIVATE_FILE, make_dirs
from .base import (
    Digest,
    FeedMove,
    FeedRecord,
    FeedSlug,
    LeaseInfo,
    LedgerEntry,
    NewPublished,
    Outcome,
    PendingConfirmation,
    Ping,
    Problem,
    Published,
    PublishedPost,
    RateLimit,
    RunInfo,
    Subscriber,
)

# Each entry upgrades the schema by one version; never edit a shipped entry, append a new one.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE post_cache (
        key TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, record BLOB NOT NULL
    );
    CREATE TABLE published (
        key TEXT PRIMARY KEY,
        post_id TEXT NOT NULL UNIQUE,
        first_published TEXT NOT NULL,
        content_hash TEXT NOT NULL,
        title TEXT NOT NULL,
        url TEXT NOT NULL,
        categories TEXT NOT NULL
    );
    CREATE INDEX published_first ON published (first_published);
    CREATE TABLE feed_files (
        path TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL, entries INTEGER NOT NULL
    );
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY, kind TEXT NOT NULL, started TEXT NOT NULL, finished TEXT NOT NULL,
        summary TEXT NOT NULL
    );
    """,
    """
    CREATE TABLE subscribers (
        id INTEGER PRIMARY KEY,
        email TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL DEFAULT '',
        categories TEXT NOT NULL DEFAULT '[]',
        status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'unsubscribed', 'bounced', 'pending')),
        joined TEXT NOT NULL,
        updated TEXT NOT NULL
    );
    CREATE TABLE digests (
        id INTEGER PRIMARY KEY,
        period_start TEXT NOT NULL,
        period_end TEXT NOT NULL UNIQUE,
        created TEXT NOT NULL,
        subject TEXT NOT NULL,
        posts TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'sending' CHECK (status IN ('sending', 'done', 'missed'))
    );
    CREATE TABLE ledger (
        digest_id INTEGER NOT NULL REFERENCES digests (id),
        subscriber_id INTEGER NOT NULL,
        email TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending'
            CHECK (state IN ('pending', 'sending', 'sent', 'failed', 'unknown', 'skipped')),
        attempts INTEGER NOT NULL DEFAULT 0,
        message_id TEXT,
        provider_id TEXT,
        last_error TEXT,
        batch_key TEXT,
        updated TEXT NOT NULL,
        PRIMARY KEY (digest_id, subscriber_id)
    );
    CREATE INDEX ledger_state ON ledger (digest_id, state, subscriber_id);
    CREATE TABLE leases (name TEXT PRIMARY KEY, owner TEXT NOT NULL, expires TEXT NOT NULL);
    """,
    """
    CREATE TABLE confirmations (email TEXT NOT NULL, client TEXT NOT NULL, sent TEXT NOT NULL);
    CREATE INDEX confirmations_email ON confirmations (email, sent);
    CREATE INDEX confirmations_client ON confirmations (client, sent);
    """,
    """
    CREATE INDEX subscribers_status ON subscribers (status, updated);
    """,
    """
    DROP TABLE confirmations;
    CREATE TABLE pending_confirmations (
        nonce TEXT PRIMARY KEY,
        email TEXT NOT NULL,
        categories TEXT NOT NULL,
        created TEXT NOT NULL,
        expires TEXT NOT NULL
    );
    CREATE INDEX pending_confirmations_email ON pending_confirmations (email);
    CREATE INDEX pending_confirmations_expires ON pending_confirmations (expires);
    CREATE TABLE rate_buckets (bucket TEXT PRIMARY KEY, tat DOUBLE PRECISION NOT NULL);
    CREATE INDEX rate_buckets_tat ON rate_buckets (tat);
    """,
    """
    ALTER TABLE published ADD COLUMN adopted INTEGER NOT NULL DEFAULT 0;
    """,
    """
    ALTER TABLE published ADD COLUMN edited TEXT;
    CREATE TABLE feed_slugs (category TEXT PRIMARY KEY, slug TEXT NOT NULL UNIQUE, assigned TEXT NOT NULL);
    CREATE TABLE feed_moves (old_slug TEXT PRIMARY KEY, category TEXT NOT NULL, moved TEXT NOT NULL);
    CREATE TABLE websub_pings (
        hub TEXT NOT NULL,
        feed_url TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'failed')),
        attempts INTEGER NOT NULL DEFAULT 0,
        queued TEXT NOT NULL,
        next_attempt TEXT NOT NULL,
        updated TEXT NOT NULL,
        last_error TEXT,
        PRIMARY KEY (hub, feed_url)
    );
    CREATE INDEX websub_pings_due ON websub_pings (state, next_attempt);
    """,
)


_SUBSCRIBER_COLUMNS = "id, email, name, categories, status, joined"


def _subscriber(row: tuple | None) -> Subscriber | None:
    if row is None:
        return None
    sid, email, name, categories, status, joined = row
    return Subscriber(sid, email, name, tuple(json.loads(categories)), status, joined)


def _digest(row: tuple | None) -> Digest | None:
    if row is None:
        return None
    digest_id, start, end, subject, posts, status = row
    return Digest(digest_id, start, end, subject, tuple(json.loads(posts)), status)


def _categories(values: Iterable[str]) -> str:
    return json.dumps(list(values), ensure_ascii=False)


def _store_error(path: Path | None, exc: sqlite3.Error) -> StoreError:
    """A clear message, naming the condition and its fix, for an SQLite error."""
    text = str(exc).lower()
    where = f"{path}: " if path else ""
    if "locked" in text or "busy" in text:
        return StoreError(f"{where}the state database is locked by another process",
                          "wait for it to finish (see `publish status`) and run again")
    if "readonly" in text or "read-only" in text:
        return StoreError(f"{where}the state database is read-only",
                          "make the file and its folder writable by this user")
    if "full" in text:
        return StoreError(f"{where}the disk holding the state database is full", "free some space and run again")
    if "malformed" in text or "not a database" in text:
        return StoreError(f"{where}the state database is damaged ({exc})",
                          "restore it from a backup, or move it away to start afresh")
    return StoreError(f"{where}the state database cannot be used ({exc})",
                      "check the path in [state] database and its permissions")


def _create_private(path: Path) -> None:
    """Create the state folder (0700) and an empty database file (0600) unless they exist: it holds
    subscribers' addresses. SQLite gives the -wal and -shm files the database file's permissions."""
    make_dirs(path.parent, PRIVATE_DIR)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE))
    except FileExistsError:
        pass


class SQLiteStore:
    """One SQLite database file; read-only stores (dry runs) never create or change it."""

    def __init__(self, conn: sqlite3.Connection, path: Path | None, readonly: bool) -> None:
        self.conn = conn
        self.path = path
        self.readonly = readonly
        self._depth = 0

    @classmethod
    def open(cls, path: Path, readonly: bool = False, busy_timeout: float = 30.0) -> SQLiteStore:
        try:
            if readonly and not path.exists():
                conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
            elif readonly:
                # With no write-ahead log in use, immutable=1 reads without creating -shm/-wal files.
                live_wal = Path(f"{path}-wal").exists()
                uri = f"{path.resolve().as_uri()}?mode=ro" + ("" if live_wal else "&immutable=1")
                conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
            else:
                _create_private(path)
                conn = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
            conn.execute("PRAGMA foreign_keys=ON")
            store = cls(conn, path, readonly)
            store._migrate()
        except sqlite3.Error as exc:
            raise _store_error(path, exc) from None
        except OSError as exc:
            raise StoreError(f"{path}: cannot create the state database ({exc.strerror})",
                             "check the path in [state] database and its permissions") from None
        return store

    def _migrate(self) -> None:
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise StoreError(f"{self.path}: the state database is from a newer publisher (schema {version})",
                             "upgrade publisher")
        if version == len(MIGRATIONS):
            return
        if self.readonly and self.path is not None and self.path.exists():
            # Upgrade a private in-memory copy: a dry run must not change the file.
            memory = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
            self.conn.backup(memory)
            self.conn.close()
            self.conn = memory
        with self.transaction():
            # again, under the write lock: a process opening a new database at the same time may have done it
            version = self.conn.execute("PRAGMA user_version").fetchone()[0]
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in script.split(";"):
                    if statement.strip():
                        self.conn.execute(statement)
                self.conn.execute(f"PRAGMA user_version={number}")

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """A unit of work: BEGIN IMMEDIATE … COMMIT, rolled back on any error; nested calls join the outer one."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise _store_error(self.path, exc) from None
        self._depth = 1
        try:
            yield
        except sqlite3.Error as exc:
            self._rollback()
            raise _store_error(self.path, exc) from None
        except BaseException:
            self._rollback()
            raise
        finally:
            self._depth = 0
        try:
            self.conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback()
            raise _store_error(self.path, exc) from None

    def _rollback(self) -> None:
        try:
            self.conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass

    def _all(self, sql: str, args: tuple = ()) -> list[tuple]:
        try:
            return self.conn.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise _store_error(self.path, exc) from None

    def _one(self, sql: str, args: tuple = ()) -> tuple | None:
        try:
            return self.conn.execute(sql, args).fetchone()
        except sqlite3.Error as exc:
            raise _store_error(self.path, exc) from None

    def _write(self, sql: str, args: tuple = ()) -> int:
        """One statement in its own (or the enclosing) transaction; the number of rows it changed."""
        with self.transaction():
            return self.conn.execute(sql, args).rowcount

    def _all_write(self, sql: str, args: tuple = ()) -> list[tuple]:
        """A writing statement with RETURNING, in its own (or the enclosing) transaction."""
        with self.transaction():
            return self.conn.execute(sql, args).fetchall()

    def _write_many(self, sql: str, rows: Iterable[tuple]) -> None:
        with self.transaction():
            self.conn.executemany(sql, rows)

    def close(self) -> None:
        self.conn.close()

    # -- host-local: settings of the last pass, the parse cache, the feed files written -----------------
    def get_meta(self, name: str) -> str | None:
        row = self._one("SELECT value FROM meta WHERE name = ?", (name,))
        return row[0] if row else None

    def set_meta(self, name: str, value: str) -> None:
        self._write("INSERT INTO meta VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                    (name, value))

    def cached_posts(self) -> dict[str, tuple[int, int, bytes]]:
        rows = self._all("SELECT key, size, mtime_ns, record FROM post_cache")
        return {key: (size, mtime, record) for key, size, mtime, record in rows}

    def cached_records(self, keys: list[str]) -> dict[str, bytes]:
        """The cached parse records of a few posts."""
        out = {}
        for key in keys:
            row = self._one("SELECT record FROM post_cache WHERE key = ?", (key,))
            if row:
                out[key] = row[0]
        return out

    def save_cache(self, rows: Iterable[tuple[str, int, int, bytes]], gone: Iterable[str]) -> None:
        with self.transaction():
            self._write_many("INSERT OR REPLACE INTO post_cache VALUES (?, ?, ?, ?)", rows)
            self._write_many("DELETE FROM post_cache WHERE key = ?", ((k,) for k in gone))

    def feed_files(self) -> dict[str, FeedRecord]:
        rows = self._all("SELECT path, fingerprint, size, mtime_ns, entries FROM feed_files")
        return {row[0]: FeedRecord(*row) for row in rows}

    def save_feeds(self, records: Iterable[FeedRecord], removed: Iterable[str]) -> None:
        with self.transaction():
            self._write_many("INSERT OR REPLACE INTO feed_files VALUES (?, ?, ?, ?, ?)",
                             ((r.path, r.fingerprint, r.size, r.mtime_ns, r.entries) for r in records))
            self._write_many("DELETE FROM feed_files WHERE path = ?", ((p,) for p in removed))

    # -- published posts ---------------------------------------------------------------------------------
    def published(self) -> dict[str, Published]:
        rows = self._all("SELECT key, post_id, first_published, content_hash, edited FROM published")
        return {row[0]: Published(*row) for row in rows}

    def record_published(self, rows: Iterable[NewPublished]) -> None:
        """Insert newly published posts with their permanent ids."""
        self._write_many(
            "INSERT INTO published (key, post_id, first_published, content_hash, title, url, categories, adopted) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            ((r.key, r.post_id, r.first_published.astimezone(UTC).isoformat(), r.content_hash, r.title, r.url,
              _categories(r.categories), int(r.adopted)) for r in rows))

    def update_published(self, rows: Iterable[NewPublished]) -> None:
        """Refresh hash, title, url and categories of posts whose content changed, and the time of the pass that
        saw the change (id and first time stay)."""
        self._write_many(
            "UPDATE published SET content_hash = ?, title = ?, url = ?, categories = ?, "
            "edited = COALESCE(?, edited) WHERE key = ?",
            ((r.content_hash, r.title, r.url, _categories(r.categories),
              r.edited.astimezone(UTC).isoformat() if r.edited else None, r.key) for r in rows))

    def published_between(self, start: datetime, end: datetime) -> list[PublishedPost]:
        """Posts first published in [start, end), newest first; adopted ones (a blog's back catalogue) never."""
        rows = self._all("SELECT key, title, url, categories, first_published FROM published "
                         "WHERE first_published >= ? AND first_published < ? AND adopted = 0 "
                         "ORDER BY first_published DESC, key",
                         (start.astimezone(UTC).isoformat(), end.astimezone(UTC).isoformat()))
        return [PublishedPost(k, t, u, tuple(json.loads(c)), datetime.fromisoformat(f)) for k, t, u, c, f in rows]

    def published_posts(self, keys: list[str]) -> dict[str, PublishedPost]:
        out = {}
        for key in keys:
            row = self._one("SELECT title, url, categories, first_published FROM published WHERE key = ?", (key,))
            if row:
                title, url, categories, first = row
                out[key] = PublishedPost(key, title, url, tuple(json.loads(categories)), datetime.fromisoformat(first))
        return out

    def known_categories(self) -> list[str]:
        """Every category of a published post, for the sign-up and preference forms."""
        cats: set[str] = set()
        for (text,) in self._all("SELECT DISTINCT categories FROM published"):
            cats.update(json.loads(text))
        return sorted(cats)

    # -- feed slugs and moved feeds -----------------------------------------------------------------------
    def feed_slugs(self) -> dict[str, FeedSlug]:
        rows = self._all("SELECT category, slug, assigned FROM feed_slugs")
        return {row[0]: FeedSlug(*row) for row in rows}

    def feed_moves(self) -> dict[str, FeedMove]:
        rows = self._all("SELECT old_slug, category, moved FROM feed_moves")
        return {row[0]: FeedMove(*row) for row in rows}

    def record_slugs(self, rows: Iterable[FeedSlug]) -> None:
        """Keep newly assigned slugs; a category already holding one keeps it (a slug taken twice is an error)."""
        self._write_many("INSERT INTO feed_slugs (category, slug, assigned) VALUES (?, ?, ?) "
                         "ON CONFLICT (category) DO NOTHING", ((r.category, r.slug, r.assigned) for r in rows))

    def rename_slug(self, category: str, old: str, new: str, now: str) -> bool:
        """Move a category's feed from `old` to `new`, remembering `old` as moved; False if `old` is not its slug."""
        with self.transaction():
            if not self._write("UPDATE feed_slugs SET slug = ? WHERE category = ? AND slug = ?", (new, category, old)):
                return False
            self._write("DELETE FROM feed_moves WHERE old_slug = ? AND category = ?", (new, category))
            self._write("INSERT INTO feed_moves (old_slug, category, moved) VALUES (?, ?, ?) ON CONFLICT (old_slug) "
                        "DO UPDATE SET category = excluded.category, moved = excluded.moved", (old, category, now))
        return True

    # -- WebSub publish notifications ----------------------------------------------------------------------
    _PING_COLUMNS = "hub, feed_url, state, attempts, queued, next_attempt, updated, COALESCE(last_error, '')"

    def queue_pings(self, rows: Iterable[tuple[str, str]], now: str) -> None:
        """(hub, feed URL) pairs to notify: pending from now, attempts reset (a newer change supersedes)."""
        self._write_many(
            "INSERT INTO websub_pings (hub, feed_url, state, attempts, queued, next_attempt, updated) "
            "VALUES (?, ?, 'pending', 0, ?, ?, ?) ON CONFLICT (hub, feed_url) DO UPDATE SET state = 'pending', "
            "attempts = 0, queued = excluded.queued, next_attempt = excluded.next_attempt, "
            "updated = excluded.updated, last_error = NULL", ((hub, url, now, now, now) for hub, url in rows))

    def drop_pings(self, keep_hubs: Iterable[str]) -> int:
        """Forget the pings of every hub not in `keep_hubs` (taken out of the config); how many were dropped."""
        hubs = list(keep_hubs)
        where = f" WHERE hub NOT IN ({', '.join('?' for _ in hubs)})" if hubs else ""
        return self._write(f"DELETE FROM websub_pings{where}", tuple(hubs))

    def claim_pings(self, now: str, claim_until: str, limit: int) -> list[Ping]:
        """Pending pings due by `now`, claimed in one statement until `claim_until` (a crash leaves them due
        again then), attempts counted."""
        rows = self._all_write(
            "UPDATE websub_pings SET next_attempt = ?, attempts = attempts + 1, updated = ? "
            "WHERE (hub, feed_url) IN (SELECT hub, feed_url FROM websub_pings WHERE state = 'pending' "
            f"AND next_attempt <= ? ORDER BY next_attempt, feed_url LIMIT ?) RETURNING {self._PING_COLUMNS}",
            (claim_until, now, now, limit))
        return sorted((Ping(*row) for row in rows), key=lambda p: (p.queued, p.feed_url, p.hub))

    def settle_ping(self, hub: str, feed_url: str, queued: str, state: str, next_attempt: str, error: str,
                    now: str) -> None:
        """Record a ping's outcome, unless the feed changed again meanwhile (then the newer ping stands)."""
        self._write("UPDATE websub_pings SET state = ?, next_attempt = ?, last_error = NULLIF(?, ''), updated = ? "
                    "WHERE hub = ? AND feed_url = ? AND queued = ?",
                    (state, next_attempt, error, now, hub, feed_url, queued))

    def next_ping_due(self) -> str | None:
        row = self._one("SELECT MIN(next_attempt) FROM websub_pings WHERE state = 'pending'")
        return row[0] if row else None

    def pings(self, states: tuple[str, ...] = ("pending", "failed"), limit: int = 100) -> list[Ping]:
        marks = ", ".join("?" for _ in states)
        rows = self._all(f"SELECT {self._PING_COLUMNS} FROM websub_pings WHERE state IN ({marks}) "
                         "ORDER BY updated DESC, feed_url, hub LIMIT ?", (*states, limit))
        return [Ping(*row) for row in rows]

    def ping_counts(self) -> dict[str, int]:
        return dict(self._all("SELECT state, COUNT(*) FROM websub_pings GROUP BY state"))  # type: ignore[arg-type]

    # -- runs ---------------------------------------------------------------------------------------------
    def record_run(self, kind: str, started: datetime, finished: datetime, summary: dict) -> None:
        self._write("INSERT INTO runs (kind, started, finished, summary) VALUES (?, ?, ?, ?)",
                    (kind, started.isoformat(), finished.isoformat(), json.dumps(summary, ensure_ascii=False)))

    def last_run(self, kind: str) -> RunInfo | None:
        row = self._one("SELECT finished, summary FROM runs WHERE kind = ? ORDER BY id DESC LIMIT 1", (kind,))
        return RunInfo(datetime.fromisoformat(row[0]), json.loads(row[1])) if row else None

    # -- subscribers --------------------------------------------------------------------------------------
    def subscriber(self, email: str) -> Subscriber | None:
        return _subscriber(self._one(f"SELECT {_SUBSCRIBER_COLUMNS} FROM subscribers WHERE email = ?", (email,)))

    def subscriber_by_id(self, subscriber_id: int) -> Subscriber | None:
        return _subscriber(self._one(f"SELECT {_SUBSCRIBER_COLUMNS} FROM subscribers WHERE id = ?",
                                     (subscriber_id,)))

    def insert_subscriber(self, email: str, name: str, categories: Iterable[str], status: str,
                          now: str) -> Subscriber:
        with self.transaction():
            row = self.conn.execute(
                "INSERT INTO subscribers (email, name, categories, status, joined, updated) "
                f"VALUES (?, ?, ?, ?, ?, ?) RETURNING {_SUBSCRIBER_COLUMNS}",
                (email, name, _categories(categories), status, now, now)).fetchone()
        return _subscriber(row)  # type: ignore[return-value]

    def update_subscriber(self, subscriber_id: int, name: str, categories: Iterable[str], status: str,
                          now: str) -> None:
        self._write("UPDATE subscribers SET name = ?, categories = ?, status = ?, updated = ? WHERE id = ?",
                    (name, _categories(categories), status, now, subscriber_id))

    def set_subscriber_status(self, subscriber_id: int, status: str, now: str) -> None:
        """Set the status; unsubscribing also drops the address's pending sign-ups, so no older link undoes it."""
        with self.transaction():
            if status == "unsubscribed":
                self._drop_confirmations_of(subscriber_id)
            self._write("UPDATE subscribers SET status = ?, updated = ? WHERE id = ?", (status, now, subscriber_id))

    def delete_subscriber(self, subscriber_id: int) -> None:
        """Forget the subscriber and the address's pending sign-ups."""
        with self.transaction():
            self._drop_confirmations_of(subscriber_id)
            self._write("DELETE FROM subscribers WHERE id = ?", (subscriber_id,))

    def _drop_confirmations_of(self, subscriber_id: int) -> None:
        self._write("DELETE FROM pending_confirmations WHERE email IN (SELECT email FROM subscribers WHERE id = ?)",
                    (subscriber_id,))

    def subscribers(self, status: str | None = None) -> Iterator[Subscriber]:
        """Every subscriber (optionally of one status), ordered by address, a page at a time."""
        sql = f"SELECT {_SUBSCRIBER_COLUMNS} FROM subscribers WHERE email > ?"
        if status:
            sql += " AND status = ?"
        after = ""
        while True:
            rows = self._all(sql + " ORDER BY email LIMIT 500", (after, status) if status else (after,))
            for row in rows:
                yield _subscriber(row)  # type: ignore[misc]
            if len(rows) < 500:
                return
            after = rows[-1][1]

    def purge_pending(self, before: str) -> int:
        """Forget sign-ups never confirmed whose confirmation link has expired."""
        return self._write("DELETE FROM subscribers WHERE status = 'pending' AND updated < ?", (before,))

    def count_subscribers(self) -> dict[str, int]:
        return dict(self._all("SELECT status, COUNT(*) FROM subscribers GROUP BY status"))  # type: ignore[arg-type]

    # -- digests and the send ledger ---------------------------------------------------------------------
    _DIGEST_COLUMNS = "id, period_start, period_end, subject, posts, status"

    def digest_for(self, period_end: str) -> Digest | None:
        return _digest(self._one(f"SELECT {self._DIGEST_COLUMNS} FROM digests WHERE period_end = ?", (period_end,)))

    def latest_digest(self) -> Digest | None:
        return _digest(self._one(f"SELECT {self._DIGEST_COLUMNS} FROM digests ORDER BY period_end DESC LIMIT 1"))

    def create_digest(self, start: str, end: str, subject: str, keys: list[str], now: str) -> Digest:
        """The digest row and one pending ledger row per active subscriber, in one transaction; if another
        process created it first, that one."""
        with self.transaction():
            row = self.conn.execute(
                "INSERT INTO digests (period_start, period_end, created, subject, posts) VALUES (?, ?, ?, ?, ?) "
                f"ON CONFLICT (period_end) DO NOTHING RETURNING {self._DIGEST_COLUMNS}",
                (start, end, now, subject, json.dumps(keys))).fetchone()
            if row is None:
                return self.digest_for(end)  # type: ignore[return-value]
            self.conn.execute("INSERT INTO ledger (digest_id, subscriber_id, email, updated) "
                              "SELECT ?, id, email, ? FROM subscribers WHERE status = 'active'", (row[0], now))
        return _digest(row)  # type: ignore[return-value]

    def recover_sending(self, digest_id: int, idempotent: bool, now: str) -> int:
        """Rows left 'sending' by a crash: back to pending (idempotent transports) or 'unknown'."""
        state, error = ("pending", None) if idempotent else (
            "unknown", "interrupted while sending: the message may or may not have been delivered")
        return self._write("UPDATE ledger SET state = ?, last_error = COALESCE(?, last_error), updated = ? "
                           "WHERE digest_id = ? AND state = 'sending'", (state, error, now, digest_id))

    def pending_entries(self, digest_id: int, after: int, limit: int) -> list[LedgerEntry]:
        """Pending rows after subscriber id `after`, in id order, with each subscriber as they are now."""
        rows = self._all(
            "SELECT l.subscriber_id, COALESCE(s.email, l.email), COALESCE(s.name, ''), COALESCE(s.categories, '[]'), "
            "COALESCE(s.status, 'deleted'), s.joined, l.attempts, l.message_id, l.batch_key FROM ledger l "
            "LEFT JOIN subscribers s ON s.id = l.subscriber_id "
            "WHERE l.digest_id = ? AND l.state = 'pending' AND l.subscriber_id > ? "
            "ORDER BY l.subscriber_id LIMIT ?", (digest_id, after, limit))
        return [LedgerEntry(Subscriber(sid, email, name, tuple(json.loads(cats)), status, joined or ""), *rest)
                for sid, email, name, cats, status, joined, *rest in rows]

    def mark_sending(self, digest_id: int, rows: list[tuple[int, str, str]], now: str) -> None:
        """Commit 'sending' (attempts + 1, Message-ID, batch key) before the transport is called."""
        self._write_many("UPDATE ledger SET state = 'sending', attempts = attempts + 1, message_id = ?, "
                         "batch_key = ?, updated = ? WHERE digest_id = ? AND subscriber_id = ?",
                         ((mid, batch, now, digest_id, sid) for sid, mid, batch in rows))

    def settle(self, digest_id: int, outcomes: list[Outcome], now: str) -> None:
        """Record outcomes."""
        self._write_many("UPDATE ledger SET state = ?, provider_id = COALESCE(NULLIF(?, ''), provider_id), "
                         "last_error = NULLIF(?, ''), updated = ? WHERE digest_id = ? AND subscriber_id = ?",
                         ((o.state, o.provider_id, o.error, now, digest_id, o.subscriber_id) for o in outcomes))

    def ledger_counts(self, digest_id: int) -> dict[str, int]:
        return dict(self._all("SELECT state, COUNT(*) FROM ledger WHERE digest_id = ? GROUP BY state",  # type: ignore
                              (digest_id,)))

    def ledger_problems(self, digest_id: int, limit: int = 1000) -> list[Problem]:
        """Failed, unknown and retrying rows."""
        return [Problem(*row) for row in self._all(
            "SELECT email, state, attempts, COALESCE(last_error, '') FROM ledger WHERE digest_id = ? AND "
            "(state IN ('failed', 'unknown') OR (state = 'pending' AND attempts > 0)) ORDER BY email LIMIT ?",
            (digest_id, limit))]

    def skip_reasons(self, digest_id: int) -> dict[str, int]:
        return dict(self._all("SELECT COALESCE(last_error, ''), COUNT(*) FROM ledger WHERE digest_id = ? "  # type: ignore
                              "AND state = 'skipped' GROUP BY last_error", (digest_id,)))

    def mark_missed(self, start: str, end: str, now: str) -> None:
        """Record a digest that was skipped because it was found too late, so it is reported once."""
        self._write("INSERT INTO digests (period_start, period_end, created, subject, posts, status) "
                    "VALUES (?, ?, ?, '', '[]', 'missed') ON CONFLICT (period_end) DO NOTHING", (start, end, now))

    def forget_missed(self, period_end: str) -> None:
        """Drop the 'missed' record of a period, so the operator can still send it by hand."""
        self._write("DELETE FROM digests WHERE period_end = ? AND status = 'missed'", (period_end,))

    def finish_digest(self, digest_id: int) -> None:
        self._write("UPDATE digests SET status = 'done' WHERE id = ?", (digest_id,))

    # -- the lease: one publisher at a time --------------------------------------------------------------
    def take_lease(self, name: str, owner: str, now: datetime, seconds: float,
                   dead_owner: str | None = None) -> tuple[bool, str, str]:
        """Take or renew the lease unless another owner holds an unexpired one; (taken, holder, expires).
        `dead_owner` names a holder known to be gone, whose lease may be taken at once."""
        expires = (now + timedelta(seconds=seconds)).isoformat()
        with self.transaction():
            row = self._one("SELECT owner, expires FROM leases WHERE name = ?", (name,))
            if row and row[0] not in (owner, dead_owner) and datetime.fromisoformat(row[1]) > now:
                return False, row[0], row[1]
            self.conn.execute("INSERT OR REPLACE INTO leases VALUES (?, ?, ?)", (name, owner, expires))
        return True, owner, expires

    def drop_lease(self, name: str, owner: str) -> None:
        self._write("DELETE FROM leases WHERE name = ? AND owner = ?", (name, owner))

    def lease(self, name: str) -> LeaseInfo | None:
        row = self._one("SELECT owner, expires FROM leases WHERE name = ?", (name,))
        return LeaseInfo(*row) if row else None

    # -- the subscription pages: rate limits and pending sign-ups --------------------------------------
    def take_rates(self, limits: list[RateLimit], now: float) -> int | None:
        """Take one event from every bucket, all or none: the index of the first bucket that is full, else None.

        GCRA: a bucket keeps its theoretical arrival time (tat); an event is allowed while tat is at most
        period - period/limit ahead of now, and moves tat on by period/limit. One upsert per bucket, so
        concurrent web processes on one database never both take the last place."""
        try:
            with self.transaction():
                for index, rate in enumerate(limits):
                    if rate.limit <= 0:
                        continue
                    interval = rate.period / rate.limit
                    row = self.conn.execute(
                        "INSERT INTO rate_buckets (bucket, tat) VALUES (?, ?) ON CONFLICT (bucket) DO UPDATE SET "
                        "tat = (CASE WHEN rate_buckets.tat > ? THEN rate_buckets.tat ELSE ? END) + ? "
                        "WHERE rate_buckets.tat <= ? RETURNING tat",
                        (rate.bucket, now + interval, now, now, interval, now + rate.period - interval)).fetchone()
                    if row is None:
                        raise _Full(index)
        except _Full as full:
            return full.index
        return None

    def add_confirmation(self, pending: PendingConfirmation) -> None:
        self._write("INSERT INTO pending_confirmations (nonce, email, categories, created, expires) "
                    "VALUES (?, ?, ?, ?, ?)", (pending.nonce, pending.email, _categories(pending.categories),
                                               pending.created, pending.expires))

    def pending_confirmation(self, nonce: str, now: str) -> PendingConfirmation | None:
        row = self._one("SELECT nonce, email, categories, created, expires FROM pending_confirmations "
                        "WHERE nonce = ? AND expires > ?", (nonce, now))
        return _pending(row)

    def confirm_signup(self, nonce: str, now: str) -> Subscriber | None:
        """Use up a pending sign-up: the subscriber becomes active with the categories it asked for, and the
        address's other pending sign-ups are dropped. None when the sign-up is unknown, used or expired."""
        with self.transaction():
            pending = _pending(self.conn.execute(
                "DELETE FROM pending_confirmations WHERE nonce = ? AND expires > ? "
                "RETURNING nonce, email, categories, created, expires", (nonce, now)).fetchone())
            if pending is None:
                return None
            self.conn.execute("DELETE FROM pending_confirmations WHERE email = ?", (pending.email,))
            row = self.conn.execute(
                "INSERT INTO subscribers (email, name, categories, status, joined, updated) "
                "VALUES (?, '', ?, 'active', ?, ?) ON CONFLICT (email) DO UPDATE SET "
                "categories = excluded.categories, status = 'active', updated = excluded.updated "
                f"RETURNING {_SUBSCRIBER_COLUMNS}",
                (pending.email, _categories(pending.categories), now, now)).fetchone()
        return _subscriber(row)

    def purge_web_state(self, now: str, epoch: float) -> int:
        """Forget expired sign-ups and rate buckets that have refilled; the number of rows removed."""
        with self.transaction():
            return (self._write("DELETE FROM pending_confirmations WHERE expires <= ?", (now,))
                    + self._write("DELETE FROM rate_buckets WHERE tat <= ?", (epoch,)))


class _Full(Exception):
    """A rate bucket is full: rolls back the buckets already taken."""

    def __init__(self, index: int) -> None:
        super().__init__(index)
        self.index = index


def _pending(row: tuple | None) -> PendingConfirmation | None:
    if row is None:
        return None
    nonce, email, categories, created, expires = row
    return PendingConfirmation(nonce, email, tuple(json.loads(categories)), created, expires)
