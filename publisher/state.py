"""The SQLite store: parse cache, published posts and their permanent ids, written feeds, runs."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import NamedTuple

from .errors import StoreError

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
)


class Published(NamedTuple):
    key: str
    post_id: str
    first_published: str  # ISO 8601; parsed only where needed
    content_hash: str


@dataclass(frozen=True, slots=True)
class FeedRecord:
    path: str
    fingerprint: str
    size: int
    mtime_ns: int
    entries: int


class Store:
    """One SQLite database file; read-only stores (dry runs) never create or change it."""

    def __init__(self, conn: sqlite3.Connection, path: Path | None, readonly: bool) -> None:
        self.conn = conn
        self.path = path
        self.readonly = readonly

    @classmethod
    def open(cls, path: Path, readonly: bool = False) -> Store:
        try:
            if readonly and not path.exists():
                conn = sqlite3.connect(":memory:", isolation_level=None)
            elif readonly:
                # With no write-ahead log in use, immutable=1 reads without creating -shm/-wal files.
                live_wal = Path(f"{path}-wal").exists()
                uri = f"{path.resolve().as_uri()}?mode=ro" + ("" if live_wal else "&immutable=1")
                conn = sqlite3.connect(uri, uri=True, isolation_level=None)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(path, timeout=30, isolation_level=None)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=30000")
            conn.execute("PRAGMA foreign_keys=ON")
            store = cls(conn, path, readonly)
            store._migrate()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{path}: cannot open the state database ({exc}); "
                             "check the path in [state] database and its permissions") from None
        except OSError as exc:
            raise StoreError(f"{path}: cannot create the state database ({exc.strerror})") from None
        return store

    def _migrate(self) -> None:
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise StoreError(f"{self.path}: the state database is from a newer publisher (schema {version}); "
                             "upgrade publisher")
        if version == len(MIGRATIONS):
            return
        if self.readonly and self.path is not None and self.path.exists():
            # Upgrade a private in-memory copy: a dry run must not change the file.
            memory = sqlite3.connect(":memory:", isolation_level=None)
            self.conn.backup(memory)
            self.conn.close()
            self.conn = memory
        with self.transaction():
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in script.split(";"):
                    if statement.strip():
                        self.conn.execute(statement)
                self.conn.execute(f"PRAGMA user_version={number}")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE … COMMIT, rolled back on any error."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()

    # -- settings -----------------------------------------------------------------------------------------
    def get_meta(self, name: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return row[0] if row else None

    def set_meta(self, name: str, value: str) -> None:
        with self.transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (name, value))

    # -- parse cache -------------------------------------------------------------------------------------
    def cached_posts(self) -> dict[str, tuple[int, int, bytes]]:
        rows = self.conn.execute("SELECT key, size, mtime_ns, record FROM post_cache")
        return {key: (size, mtime, record) for key, size, mtime, record in rows}

    def cached_rows(self, keys: list[str]) -> dict[str, bytes]:
        """The cached parse records of a few posts."""
        out = {}
        for key in keys:
            row = self.conn.execute("SELECT record FROM post_cache WHERE key = ?", (key,)).fetchone()
            if row:
                out[key] = row[0]
        return out

    def save_cache(self, rows: Iterable[tuple[str, int, int, bytes]], gone: Iterable[str]) -> None:
        with self.transaction() as conn:
            conn.executemany("INSERT OR REPLACE INTO post_cache VALUES (?, ?, ?, ?)", rows)
            conn.executemany("DELETE FROM post_cache WHERE key = ?", ((k,) for k in gone))

    # -- published posts ---------------------------------------------------------------------------------
    def published(self) -> dict[str, Published]:
        rows = self.conn.execute("SELECT key, post_id, first_published, content_hash FROM published")
        return {key: Published(key, pid, first, h) for key, pid, first, h in rows}

    def record_published(self, rows: Iterable[tuple[str, str, str, str, str, str, list[str]]]) -> None:
        """Insert newly published posts; (key, post_id, first_published, hash, title, url, categories)."""
        with self.transaction() as conn:
            conn.executemany(
                "INSERT INTO published VALUES (?, ?, ?, ?, ?, ?, ?)",
                ((k, pid, first, h, t, u, json.dumps(c, ensure_ascii=False)) for k, pid, first, h, t, u, c in rows),
            )

    def update_published(self, rows: Iterable[tuple[str, str, str, list[str], str]]) -> None:
        """Refresh hash, title, url and categories of posts whose content changed; (hash, title, url, cats, key)."""
        with self.transaction() as conn:
            conn.executemany(
                "UPDATE published SET content_hash = ?, title = ?, url = ?, categories = ? WHERE key = ?",
                ((h, t, u, json.dumps(c, ensure_ascii=False), k) for h, t, u, c, k in rows),
            )

    # -- feed files --------------------------------------------------------------------------------------
    def feed_files(self) -> dict[str, FeedRecord]:
        rows = self.conn.execute("SELECT path, fingerprint, size, mtime_ns, entries FROM feed_files")
        return {row[0]: FeedRecord(*row) for row in rows}

    def save_feeds(self, records: Iterable[FeedRecord], removed: Iterable[str]) -> None:
        with self.transaction() as conn:
            conn.executemany("INSERT OR REPLACE INTO feed_files VALUES (?, ?, ?, ?, ?)",
                             ((r.path, r.fingerprint, r.size, r.mtime_ns, r.entries) for r in records))
            conn.executemany("DELETE FROM feed_files WHERE path = ?", ((p,) for p in removed))

    # -- runs ---------------------------------------------------------------------------------------------
    def record_run(self, kind: str, started: datetime, finished: datetime, summary: dict) -> None:
        with self.transaction() as conn:
            conn.execute("INSERT INTO runs (kind, started, finished, summary) VALUES (?, ?, ?, ?)",
                         (kind, started.isoformat(), finished.isoformat(), json.dumps(summary, ensure_ascii=False)))

    def last_run(self, kind: str) -> tuple[datetime, dict] | None:
        row = self.conn.execute("SELECT finished, summary FROM runs WHERE kind = ? ORDER BY id DESC LIMIT 1",
                                (kind,)).fetchone()
        return (datetime.fromisoformat(row[0]), json.loads(row[1])) if row else None

    # -- subscribers --------------------------------------------------------------------------------------
    def subscriber(self, email: str) -> tuple | None:
        """(id, email, name, categories json, status, joined) for one address, or None."""
        return self.conn.execute(
            "SELECT id, email, name, categories, status, joined FROM subscribers WHERE email = ?", (email,)).fetchone()

    def subscriber_by_id(self, subscriber_id: int) -> tuple | None:
        return self.conn.execute("SELECT id, email, name, categories, status, joined FROM subscribers WHERE id = ?",
                                 (subscriber_id,)).fetchone()

    def insert_subscriber(self, conn: sqlite3.Connection, email: str, name: str, categories: list[str],
                          status: str, now: str) -> None:
        conn.execute("INSERT INTO subscribers (email, name, categories, status, joined, updated) "
                     "VALUES (?, ?, ?, ?, ?, ?)",
                     (email, name, json.dumps(categories, ensure_ascii=False), status, now, now))

    def update_subscriber(self, conn: sqlite3.Connection, subscriber_id: int, name: str, categories: list[str],
                          status: str, now: str) -> None:
        conn.execute("UPDATE subscribers SET name = ?, categories = ?, status = ?, updated = ? WHERE id = ?",
                     (name, json.dumps(categories, ensure_ascii=False), status, now, subscriber_id))

    def set_subscriber_status(self, subscriber_id: int, status: str, now: str) -> None:
        with self.transaction() as conn:
            conn.execute("UPDATE subscribers SET status = ?, updated = ? WHERE id = ?", (status, now, subscriber_id))

    def delete_subscriber(self, subscriber_id: int) -> None:
        with self.transaction() as conn:
            conn.execute("DELETE FROM subscribers WHERE id = ?", (subscriber_id,))

    def subscribers(self, status: str | None = None) -> Iterator[tuple]:
        """Every subscriber (optionally of one status), ordered by address, streamed."""
        sql = "SELECT id, email, name, categories, status, joined FROM subscribers"
        args: tuple = ()
        if status:
            sql, args = sql + " WHERE status = ?", (status,)
        yield from self.conn.execute(sql + " ORDER BY email", args)

    def purge_pending(self, before: str) -> int:
        """Forget sign-ups never confirmed whose confirmation link has expired."""
        with self.transaction() as conn:
            cur = conn.execute("DELETE FROM subscribers WHERE status = 'pending' AND updated < ?", (before,))
        return cur.rowcount

    def count_subscribers(self) -> dict[str, int]:
        return dict(self.conn.execute("SELECT status, COUNT(*) FROM subscribers GROUP BY status"))

    # -- digests and the send ledger ---------------------------------------------------------------------
    def published_between(self, start: str, end: str) -> list[tuple[str, str, str, str, str]]:
        """(key, title, url, categories json, first_published) of posts first published in [start, end)."""
        return self.conn.execute(
            "SELECT key, title, url, categories, first_published FROM published "
            "WHERE first_published >= ? AND first_published < ? ORDER BY first_published DESC, key",
            (start, end)).fetchall()

    def published_rows(self, keys: list[str]) -> dict[str, tuple[str, str, str, str]]:
        out = {}
        for key in keys:
            row = self.conn.execute("SELECT title, url, categories, first_published FROM published WHERE key = ?",
                                    (key,)).fetchone()
            if row:
                out[key] = row
        return out

    def digest_for(self, period_end: str) -> tuple | None:
        """(id, period_start, period_end, subject, posts json, status) of the digest ending at period_end."""
        return self.conn.execute("SELECT id, period_start, period_end, subject, posts, status FROM digests "
                                 "WHERE period_end = ?", (period_end,)).fetchone()

    def latest_digest(self) -> tuple | None:
        return self.conn.execute("SELECT id, period_start, period_end, subject, posts, status FROM digests "
                                 "ORDER BY period_end DESC LIMIT 1").fetchone()

    def create_digest(self, start: str, end: str, subject: str, keys: list[str], now: str) -> int:
        """The digest row and one pending ledger row per active subscriber, in one transaction."""
        with self.transaction() as conn:
            cur = conn.execute("INSERT INTO digests (period_start, period_end, created, subject, posts) "
                               "VALUES (?, ?, ?, ?, ?)", (start, end, now, subject, json.dumps(keys)))
            digest_id = cur.lastrowid
            conn.execute("INSERT INTO ledger (digest_id, subscriber_id, email, updated) "
                         "SELECT ?, id, email, ? FROM subscribers WHERE status = 'active'", (digest_id, now))
        return digest_id

    def recover_sending(self, digest_id: int, idempotent: bool, now: str) -> int:
        """Rows left 'sending' by a crash: back to pending (idempotent transports) or 'unknown'."""
        state, error = ("pending", None) if idempotent else (
            "unknown", "interrupted while sending: the message may or may not have been delivered")
        with self.transaction() as conn:
            cur = conn.execute("UPDATE ledger SET state = ?, last_error = COALESCE(?, last_error), updated = ? "
                               "WHERE digest_id = ? AND state = 'sending'", (state, error, now, digest_id))
        return cur.rowcount

    def pending_rows(self, digest_id: int, after: int, limit: int) -> list[tuple]:
        """(subscriber id, email, name, categories json, status, attempts, message id, batch key), by id."""
        return self.conn.execute(
            "SELECT l.subscriber_id, COALESCE(s.email, l.email), COALESCE(s.name, ''), COALESCE(s.categories, '[]'), "
            "COALESCE(s.status, 'deleted'), l.attempts, l.message_id, l.batch_key FROM ledger l "
            "LEFT JOIN subscribers s ON s.id = l.subscriber_id "
            "WHERE l.digest_id = ? AND l.state = 'pending' AND l.subscriber_id > ? "
            "ORDER BY l.subscriber_id LIMIT ?", (digest_id, after, limit)).fetchall()

    def mark_sending(self, digest_id: int, rows: list[tuple[int, str, str]], now: str) -> None:
        """Commit 'sending' (attempts + 1, Message-ID, batch key) before the transport is called."""
        with self.transaction() as conn:
            conn.executemany("UPDATE ledger SET state = 'sending', attempts = attempts + 1, message_id = ?, "
                             "batch_key = ?, updated = ? WHERE digest_id = ? AND subscriber_id = ?",
                             ((mid, batch, now, digest_id, sid) for sid, mid, batch in rows))

    def settle(self, digest_id: int, rows: list[tuple[int, str, str, str]], now: str) -> None:
        """Record outcomes: (subscriber id, state, provider id, error)."""
        with self.transaction() as conn:
            conn.executemany("UPDATE ledger SET state = ?, provider_id = COALESCE(NULLIF(?, ''), provider_id), "
                             "last_error = NULLIF(?, ''), updated = ? WHERE digest_id = ? AND subscriber_id = ?",
                             ((state, pid, err, now, digest_id, sid) for sid, state, pid, err in rows))

    def ledger_counts(self, digest_id: int) -> dict[str, int]:
        return dict(self.conn.execute("SELECT state, COUNT(*) FROM ledger WHERE digest_id = ? GROUP BY state",
                                      (digest_id,)))

    def ledger_problems(self, digest_id: int, limit: int = 1000) -> list[tuple[str, str, int, str]]:
        """(email, state, attempts, last error) of failed, unknown and retrying rows."""
        return self.conn.execute(
            "SELECT email, state, attempts, COALESCE(last_error, '') FROM ledger WHERE digest_id = ? AND "
            "(state IN ('failed', 'unknown') OR (state = 'pending' AND attempts > 0)) ORDER BY email LIMIT ?",
            (digest_id, limit)).fetchall()

    def skip_reasons(self, digest_id: int) -> dict[str, int]:
        return dict(self.conn.execute("SELECT COALESCE(last_error, ''), COUNT(*) FROM ledger WHERE digest_id = ? "
                                      "AND state = 'skipped' GROUP BY last_error", (digest_id,)))

    def mark_missed(self, start: str, end: str, now: str) -> None:
        """Record a digest that was skipped because it was found too late, so it is reported once."""
        with self.transaction() as conn:
            conn.execute("INSERT OR IGNORE INTO digests (period_start, period_end, created, subject, posts, status) "
                         "VALUES (?, ?, ?, '', '[]', 'missed')", (start, end, now))

    def forget_missed(self, period_end: str) -> None:
        """Drop the 'missed' record of a period, so the operator can still send it by hand."""
        with self.transaction() as conn:
            conn.execute("DELETE FROM digests WHERE period_end = ? AND status = 'missed'", (period_end,))

    def finish_digest(self, digest_id: int) -> None:
        with self.transaction() as conn:
            conn.execute("UPDATE digests SET status = 'done' WHERE id = ?", (digest_id,))

    # -- the lease: one publisher at a time --------------------------------------------------------------
    def take_lease(self, name: str, owner: str, now: datetime, seconds: float,
                   dead_owner: str | None = None) -> tuple[bool, str, str]:
        """Take or renew the lease unless another owner holds an unexpired one; (taken, holder, expires).
        `dead_owner` names a holder known to be gone, whose lease may be taken at once."""
        expires = (now + timedelta(seconds=seconds)).isoformat()
        with self.transaction() as conn:
            row = conn.execute("SELECT owner, expires FROM leases WHERE name = ?", (name,)).fetchone()
            if row and row[0] not in (owner, dead_owner) and datetime.fromisoformat(row[1]) > now:
                return False, row[0], row[1]
            conn.execute("INSERT OR REPLACE INTO leases VALUES (?, ?, ?)", (name, owner, expires))
        return True, owner, expires

    def drop_lease(self, name: str, owner: str) -> None:
        with self.transaction() as conn:
            conn.execute("DELETE FROM leases WHERE name = ? AND owner = ?", (name, owner))

    def lease(self, name: str) -> tuple[str, str] | None:
        return self.conn.execute("SELECT owner, expires FROM leases WHERE name = ?", (name,)).fetchone()

    # -- sign-up confirmations (rate limits) -------------------------------------------------------------
    def confirmations_since(self, email: str, client: str, since: str) -> tuple[int, int]:
        """How many confirmation mails went to this address, and were asked for by this client, since `since`."""
        by_email = self.conn.execute("SELECT COUNT(*) FROM confirmations WHERE email = ? AND sent >= ?",
                                     (email, since)).fetchone()[0]
        by_client = self.conn.execute("SELECT COUNT(*) FROM confirmations WHERE client = ? AND sent >= ?",
                                      (client, since)).fetchone()[0]
        return by_email, by_client

    def record_confirmation(self, email: str, client: str, now: str) -> None:
        with self.transaction() as conn:
            conn.execute("INSERT INTO confirmations VALUES (?, ?, ?)", (email, client, now))

    def known_categories(self) -> list[str]:
        """Every category of a published post, for the sign-up and preference forms."""
        cats: set[str] = set()
        for (text,) in self.conn.execute("SELECT DISTINCT categories FROM published"):
            cats.update(json.loads(text))
        return sorted(cats)
