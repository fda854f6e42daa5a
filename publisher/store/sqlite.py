"""The SQLite store: the embedded default, one database file holding both host-local and shared facts."""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ..errors import ClaimLost, StoreError
from ..files import PRIVATE_DIR, PRIVATE_FILE, make_dirs
from .base import (
    Claim,
    Digest,
    FeedMove,
    FeedRecord,
    FeedSlug,
    Holder,
    InDoubt,
    LeaseGrant,
    LeaseInfo,
    LedgerEntry,
    NewBatch,
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
    """
    CREATE TABLE batches (
        id INTEGER PRIMARY KEY,
        digest_id INTEGER NOT NULL REFERENCES digests (id),
        idempotency_key TEXT NOT NULL UNIQUE,
        state TEXT NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'sending', 'done')),
        created TEXT NOT NULL,
        owner TEXT,
        claim_until TEXT,
        fence INTEGER NOT NULL DEFAULT 0,
        tries INTEGER NOT NULL DEFAULT 0,
        tried TEXT,
        maybe_sent TEXT
    );
    CREATE INDEX batches_live ON batches (digest_id, state, id) WHERE state <> 'done';
    CREATE INDEX batches_claimed ON batches (owner) WHERE state <> 'done';
    ALTER TABLE ledger ADD COLUMN batch_id INTEGER REFERENCES batches (id);
    CREATE INDEX ledger_batch ON ledger (batch_id, subscriber_id);
    ALTER TABLE leases ADD COLUMN fence INTEGER NOT NULL DEFAULT 0;
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
    digest_id, start, end, subject, posts, status, created = row
    return Digest(digest_id, start, end, subject, tuple(json.loads(posts)), status, created)


def _ts(when: datetime) -> str:
    """A UTC time as stored where times are compared in SQL (leases, claims): one fixed width, so text order
    is time order."""
    return when.astimezone(UTC).isoformat(timespec="microseconds")


INTERRUPTED = "interrupted while its request was in flight: it may or may not have been delivered"


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
    _DIGEST_COLUMNS = "id, period_start, period_end, subject, posts, status, created"

    def digest_for(self, period_end: str) -> Digest | None:
        return _digest(self._one(f"SELECT {self._DIGEST_COLUMNS} FROM digests WHERE period_end = ?", (period_end,)))

    def latest_digest(self) -> Digest | None:
        return _digest(self._one(f"SELECT {self._DIGEST_COLUMNS} FROM digests ORDER BY period_end DESC LIMIT 1"))

    def unfinished_digests(self) -> list[Digest]:
        """Digests still being sent (resumed by every pass until they are done or given up), oldest first."""
        return [_digest(row) for row in self._all(  # type: ignore[misc]
            f"SELECT {self._DIGEST_COLUMNS} FROM digests WHERE status = 'sending' ORDER BY period_end")]

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

    _ENTRY_COLUMNS = ("l.subscriber_id, COALESCE(s.email, l.email), COALESCE(s.name, ''), "
                      "COALESCE(s.categories, '[]'), COALESCE(s.status, 'deleted'), s.joined, l.attempts, "
                      "l.message_id, l.batch_key, l.updated FROM ledger l "
                      "LEFT JOIN subscribers s ON s.id = l.subscriber_id")

    @staticmethod
    def _entries(rows: list[tuple]) -> list[LedgerEntry]:
        return [LedgerEntry(Subscriber(sid, email, name, tuple(json.loads(cats)), status, joined or ""), *rest)
                for sid, email, name, cats, status, joined, *rest in rows]

    def pending_entries(self, digest_id: int, after: int, limit: int) -> list[LedgerEntry]:
        """Pending rows not yet frozen into a batch, after subscriber id `after`, in id order, with each
        subscriber as they are now."""
        return self._entries(self._all(
            f"SELECT {self._ENTRY_COLUMNS} WHERE l.digest_id = ? AND l.state = 'pending' AND l.batch_id IS NULL "
            "AND l.subscriber_id > ? ORDER BY l.subscriber_id LIMIT ?", (digest_id, after, limit)))

    def _guard(self, holder: Holder, now: datetime) -> str:
        """Inside a transaction: check the lease this sender acts under; its expiry, or ClaimLost when another
        sender holds it now or it ran out. (SQLite's write lock, taken by BEGIN IMMEDIATE, keeps the lease
        from changing until the transaction ends; a server database reads the row FOR SHARE.)"""
        row = self.conn.execute(
            "SELECT expires FROM leases WHERE name = ? AND owner = ? AND fence = ? AND expires > ?",
            (holder.lease, holder.owner, holder.fence, _ts(now))).fetchone()
        if row is None:
            raise ClaimLost("this process no longer holds the lock it was sending under")
        return row[0]

    def settle(self, digest_id: int, outcomes: list[Outcome], holder: Holder, now: datetime) -> None:
        """Record outcomes decided before any request (skipped, given up) for rows not in a batch."""
        with self.transaction():
            self._guard(holder, now)
            self.conn.executemany(
                "UPDATE ledger SET state = ?, provider_id = COALESCE(NULLIF(?, ''), provider_id), "
                "last_error = NULLIF(?, ''), updated = ? WHERE digest_id = ? AND subscriber_id = ? "
                "AND state = 'pending' AND batch_id IS NULL",
                [(o.state, o.provider_id, o.error, _ts(now), digest_id, o.subscriber_id) for o in outcomes])

    def ledger_counts(self, digest_id: int) -> dict[str, int]:
        return dict(self._all("SELECT state, COUNT(*) FROM ledger WHERE digest_id = ? GROUP BY state",  # type: ignore
                              (digest_id,)))

    def ledger_problems(self, digest_id: int, limit: int | None = 1000) -> list[Problem]:
        """Failed, unknown and retrying rows (every one when `limit` is None)."""
        sql = ("SELECT email, state, attempts, COALESCE(last_error, ''), COALESCE(provider_id, '') FROM ledger "
               "WHERE digest_id = ? AND (state IN ('failed', 'unknown') OR (state = 'pending' AND attempts > 0)) "
               "ORDER BY email")
        if limit is None:
            return [Problem(*row) for row in self._all(sql, (digest_id,))]
        return [Problem(*row) for row in self._all(sql + " LIMIT ?", (digest_id, limit))]

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

    # -- batches: one provider request each, frozen before it is made ------------------------------------
    # A batch is claimed by one sender at a time (owner, claim_until = its lease's expiry, fence). Every
    # change of a batch says `WHERE id = ? AND fence = ?`, and the fence grows whenever the batch changes
    # hands, so a sender that lost it (paused, stalled, partitioned) finds its writes refused and stops.

    def recover_batches(self, digest_id: int, holder: Holder, idempotent: bool, replay_since: datetime | None,
                        now: datetime) -> int:
        """Batches whose request was in flight when their sender stopped (their claim expired, or it is
        `holder`'s own from an earlier run): replayed later with the same idempotency key (idempotent
        transports, while the provider still remembers the key: tried after `replay_since`), else their
        messages are 'unknown'. Rows left 'sending' by an older version too."""
        stamp = _ts(now)
        stale = "digest_id = ? AND state = 'sending' AND (claim_until IS NULL OR claim_until < ? OR owner = ?)"
        with self.transaction():
            self._guard(holder, now)
            reopened: list[tuple] = []
            if idempotent:
                reopened = self.conn.execute(
                    "UPDATE batches SET state = 'open', owner = NULL, claim_until = NULL, fence = fence + 1, "
                    f"maybe_sent = COALESCE(maybe_sent, tried) WHERE {stale} AND COALESCE(maybe_sent, tried, '') > ? "
                    "RETURNING id", (digest_id, stamp, holder.owner, _ts(replay_since) if replay_since else "")
                ).fetchall()
                self.conn.executemany("UPDATE ledger SET state = 'pending', updated = ? "
                                      "WHERE batch_id = ? AND state = 'sending'", [(stamp, i) for (i,) in reopened])
            closed = self.conn.execute(
                "UPDATE batches SET state = 'done', owner = NULL, claim_until = NULL, fence = fence + 1 "
                f"WHERE {stale} RETURNING id", (digest_id, stamp, holder.owner)).fetchall()
            # put back after an unanswered request, but the provider no longer remembers its key
            cutoff = (_ts(replay_since) if replay_since else "") if idempotent else "9"
            closed += self.conn.execute(
                "UPDATE batches SET state = 'done', owner = NULL, claim_until = NULL, fence = fence + 1 "
                "WHERE digest_id = ? AND state = 'open' AND maybe_sent IS NOT NULL AND maybe_sent <= ? "
                "AND (claim_until IS NULL OR claim_until < ? OR owner = ?) RETURNING id",
                (digest_id, cutoff, stamp, holder.owner)).fetchall()
            self.conn.executemany("UPDATE ledger SET state = 'unknown', last_error = ?, updated = ? "
                                  "WHERE batch_id = ? AND state IN ('pending', 'sending')",
                                  [(INTERRUPTED, stamp, i) for (i,) in closed])
            legacy = ("pending", None) if idempotent else ("unknown", INTERRUPTED)
            self.conn.execute("UPDATE ledger SET state = ?, last_error = COALESCE(?, last_error), updated = ? "
                              "WHERE digest_id = ? AND state = 'sending' AND batch_id IS NULL",
                              (*legacy, stamp, digest_id))
        return len(reopened) + len(closed)

    def freeze_batches(self, digest_id: int, batches: list[NewBatch], holder: Holder, created: str,
                       now: datetime) -> list[Claim]:
        """Write each batch (its key and exact membership) before its request is made, claimed by `holder`;
        all or none: ClaimLost if another sender froze one of these rows first."""
        stamp = _ts(now)
        claims = []
        with self.transaction():
            until = self._guard(holder, now)
            for batch in batches:
                (batch_id,) = self.conn.execute(
                    "INSERT INTO batches (digest_id, idempotency_key, created, owner, claim_until, fence) "
                    "VALUES (?, ?, ?, ?, ?, 1) RETURNING id",
                    (digest_id, batch.key, created, holder.owner, until)).fetchone()
                changed = self.conn.executemany(
                    "UPDATE ledger SET batch_id = ?, message_id = ?, updated = ? WHERE digest_id = ? "
                    "AND subscriber_id = ? AND state = 'pending' AND batch_id IS NULL",
                    [(batch_id, mid, stamp, digest_id, sid) for sid, mid in batch.members]).rowcount
                if changed != len(batch.members):
                    raise ClaimLost("another sender froze some of these messages into its own batch")
                claims.append(Claim(batch_id, digest_id, 1, batch.key, created))
        return claims

    def claim_batch(self, digest_id: int, holder: Holder, now: datetime) -> Claim | None:
        """Claim the oldest frozen batch that nobody holds (never sent, or put back after an outage or an
        unanswered idempotent request; or left by `holder` itself in an earlier run): one statement, the
        fence grows."""
        with self.transaction():
            until = self._guard(holder, now)
            row = self.conn.execute(
                "UPDATE batches SET owner = ?, claim_until = ?, fence = fence + 1 WHERE id = ("
                "SELECT id FROM batches WHERE digest_id = ? AND state = 'open' "
                "AND (claim_until IS NULL OR claim_until < ? OR owner = ?) ORDER BY id LIMIT 1) "
                "RETURNING id, digest_id, fence, idempotency_key, created, maybe_sent",
                (holder.owner, until, digest_id, _ts(now), holder.owner)).fetchone()
        return Claim(*row) if row else None

    def batch_members(self, batch_id: int) -> list[LedgerEntry]:
        """The rows frozen into a batch, in request order, with each subscriber as they are now."""
        return self._entries(self._all(
            f"SELECT {self._ENTRY_COLUMNS} WHERE l.batch_id = ? AND l.state IN ('pending', 'sending') "
            "ORDER BY l.subscriber_id", (batch_id,)))

    def start_batch(self, claim: Claim, holder: Holder, now: datetime) -> None:
        """Mark the batch and exactly its messages 'sending', committed before the request is made; refused
        (ClaimLost) unless this sender still holds both the lease and the batch."""
        stamp = _ts(now)
        with self.transaction():
            self._guard(holder, now)
            changed = self.conn.execute(
                "UPDATE batches SET state = 'sending', tries = tries + 1, tried = ? WHERE id = ? AND fence = ? "
                "AND state = 'open'", (stamp, claim.batch_id, claim.fence)).rowcount
            if changed != 1:
                raise ClaimLost(f"batch {claim.key} was taken over by another sender")
            self.conn.execute("UPDATE ledger SET state = 'sending', updated = ? WHERE batch_id = ? "
                              "AND state = 'pending'", (stamp, claim.batch_id))

    def settle_batch(self, claim: Claim, outcomes: list[Outcome], now: datetime, reopen: bool = False,
                     maybe_sent: bool = False) -> None:
        """Record a request's answer: each outcome counts one attempt ('pending' ones leave the batch, to be
        sent in a new one); without `reopen` there is an outcome for every member. Then the batch is done,
        or with `reopen` it is put back, unclaimed, for the same request to be made again (after an outage,
        or with `maybe_sent` an unanswered idempotent request). Refused (ClaimLost) if another sender holds
        the batch now."""
        stamp = _ts(now)
        with self.transaction():
            if reopen:
                changed = self.conn.execute(
                    "UPDATE batches SET state = 'open', owner = NULL, claim_until = NULL, fence = fence + 1, "
                    "maybe_sent = COALESCE(maybe_sent, ?) WHERE id = ? AND fence = ?",
                    (stamp if maybe_sent else None, claim.batch_id, claim.fence)).rowcount
            else:
                changed = self.conn.execute(
                    "UPDATE batches SET state = 'done', owner = NULL, claim_until = NULL WHERE id = ? AND fence = ?",
                    (claim.batch_id, claim.fence)).rowcount
            if changed != 1:
                raise ClaimLost(f"batch {claim.key} was taken over by another sender")
            settled = "WHERE batch_id = ? AND subscriber_id = ? AND state IN ('pending', 'sending')"
            self.conn.executemany(  # batch_id is left alone here: rewriting an indexed column costs
                "UPDATE ledger SET state = ?, provider_id = COALESCE(NULLIF(?, ''), provider_id), "
                "last_error = NULLIF(?, ''), attempts = attempts + CASE WHEN ? = 'skipped' THEN 0 ELSE 1 END, "
                f"updated = ? {settled}",
                [(o.state, o.provider_id, o.error, o.state, stamp, claim.batch_id, o.subscriber_id)
                 for o in outcomes if o.state != "pending"])
            self.conn.executemany(  # refused for now: out of the batch, sent later in a new one
                f"UPDATE ledger SET state = 'pending', last_error = NULLIF(?, ''), attempts = attempts + 1, "
                f"updated = ?, batch_id = NULL {settled}",
                [(o.error, stamp, claim.batch_id, o.subscriber_id) for o in outcomes if o.state == "pending"])
            if reopen:  # the members without an outcome wait for the same request again
                self.conn.execute("UPDATE ledger SET state = 'pending', updated = ? WHERE batch_id = ? "
                                  "AND state = 'sending'", (stamp, claim.batch_id))

    def give_up(self, digest_id: int, reason: str, now: datetime) -> int:
        """Stop trying a digest: rows not yet sent are 'failed' with `reason`, the digest is done."""
        stamp = _ts(now)
        with self.transaction():
            count = self.conn.execute("UPDATE ledger SET state = 'failed', last_error = ?, updated = ? "
                                      "WHERE digest_id = ? AND state = 'pending'", (reason, stamp, digest_id)).rowcount
            self.conn.execute("UPDATE batches SET state = 'done', owner = NULL, claim_until = NULL "
                              "WHERE digest_id = ? AND state = 'open'", (digest_id,))
            self.conn.execute("UPDATE digests SET status = 'done' WHERE id = ?", (digest_id,))
        return count

    def reopen(self, digest_id: int, state: str, now: str) -> int:
        """The operator's decision: rows 'unknown' or 'failed' become pending again (out of their batch, with
        their attempts reset), and the digest is sent again; how many."""
        if state not in ("unknown", "failed"):
            raise ValueError(state)
        with self.transaction():
            count = self.conn.execute(
                "UPDATE ledger SET state = 'pending', batch_id = NULL, attempts = 0, updated = ? "
                "WHERE digest_id = ? AND state = ?", (now, digest_id, state)).rowcount
            if count:
                self.conn.execute("UPDATE digests SET status = 'sending' WHERE id = ?", (digest_id,))
        return count

    def in_doubt(self, digest_id: int) -> list[InDoubt]:
        """The 'unknown' rows, with the batch key and time of the request that may have delivered them."""
        return [InDoubt(*row) for row in self._all(
            "SELECT l.subscriber_id, l.email, COALESCE(l.message_id, ''), COALESCE(l.provider_id, ''), "
            "COALESCE(b.idempotency_key, ''), COALESCE(b.tried, l.updated) FROM ledger l "
            "LEFT JOIN batches b ON b.id = l.batch_id WHERE l.digest_id = ? AND l.state = 'unknown' "
            "ORDER BY l.batch_id, l.subscriber_id", (digest_id,))]

    def resolve(self, digest_id: int, outcomes: list[Outcome], now: str) -> None:
        """What the provider said of 'unknown' rows: 'sent', or 'pending' (never accepted: sent again)."""
        with self.transaction():
            self.conn.executemany(
                "UPDATE ledger SET state = ?, provider_id = COALESCE(NULLIF(?, ''), provider_id), "
                "last_error = NULLIF(?, ''), updated = ?, batch_id = CASE WHEN ? = 'pending' THEN NULL ELSE "
                "batch_id END, attempts = CASE WHEN ? = 'pending' THEN 0 ELSE attempts END "
                "WHERE digest_id = ? AND subscriber_id = ? AND state = 'unknown'",
                [(o.state, o.provider_id, o.error, now, o.state, o.state, digest_id, o.subscriber_id)
                 for o in outcomes])
            if any(o.state == "pending" for o in outcomes):
                self.conn.execute("UPDATE digests SET status = 'sending' WHERE id = ?", (digest_id,))

    # -- the lease: one publisher at a time --------------------------------------------------------------
    def take_lease(self, name: str, owner: str, now: datetime, seconds: float,
                   dead_owner: str | None = None) -> LeaseGrant:
        """Take or renew the lease unless another owner holds an unexpired one: one statement. The fencing
        token grows whenever the lease changes hands; a renewal also extends the owner's claims.
        `dead_owner` names a holder known to be gone, whose lease and claims may be taken at once."""
        stamp, expires = _ts(now), _ts(now + timedelta(seconds=seconds))
        with self.transaction():
            row = self.conn.execute(
                "INSERT INTO leases (name, owner, expires, fence) VALUES (?, ?, ?, 1) ON CONFLICT (name) DO UPDATE "
                "SET fence = CASE WHEN leases.owner = excluded.owner THEN leases.fence ELSE leases.fence + 1 END, "
                "owner = excluded.owner, expires = excluded.expires "
                "WHERE leases.owner = excluded.owner OR leases.expires <= ? OR leases.owner = ? RETURNING fence",
                (name, owner, expires, stamp, dead_owner or "")).fetchone()
            if row is None:
                held = self.conn.execute("SELECT owner, expires, fence FROM leases WHERE name = ?",
                                         (name,)).fetchone()
                return LeaseGrant(False, *held)
            if dead_owner:
                self.conn.execute("UPDATE batches SET claim_until = ? WHERE owner = ? AND state <> 'done'",
                                  (stamp, dead_owner))
            self.conn.execute("UPDATE batches SET claim_until = ? WHERE owner = ? AND state <> 'done'",
                              (expires, owner))
        return LeaseGrant(True, owner, expires, row[0])

    def drop_lease(self, name: str, owner: str, now: datetime) -> None:
        """Let the lease go (it expires now; the row stays so its fencing token keeps growing), and with it
        the owner's claims: a batch left in flight is recovered by the next sender at once."""
        stamp = _ts(now)
        with self.transaction():
            self.conn.execute("UPDATE leases SET expires = ? WHERE name = ? AND owner = ?", (stamp, name, owner))
            self.conn.execute("UPDATE batches SET claim_until = ? WHERE owner = ? AND state <> 'done'",
                              (stamp, owner))

    def lease(self, name: str) -> LeaseInfo | None:
        row = self._one("SELECT owner, expires, fence FROM leases WHERE name = ?", (name,))
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
