"""The SQLite database: every SQL statement of trnews lives here.

Schema changes are ordered, named migrations; each is applied once, in a transaction, and
recorded in the `migrations` table.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import sqlite3
import stat
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

from . import words
from .errors import StoreError
from .models import (
    AlertRow,
    DeliveryState,
    EditionRow,
    EditionStatus,
    Entry,
    Item,
    JobRun,
    Kind,
    LeftOutRow,
    Rendered,
    Subscriber,
    SubscriberState,
)

logger = logging.getLogger(__name__)

MIGRATIONS: list[tuple[str, str]] = [
    (
        "0001_initial",
        """
        CREATE TABLE meta (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL
        );
        CREATE TABLE feeds (
            url TEXT PRIMARY KEY,
            etag TEXT,
            last_modified TEXT,
            last_attempt TEXT,
            last_success TEXT,
            last_status INTEGER,
            consecutive_failures INTEGER NOT NULL DEFAULT 0,
            last_error TEXT,
            moved_to TEXT
        );
        CREATE TABLE items (
            id INTEGER PRIMARY KEY,
            key TEXT NOT NULL UNIQUE,
            link TEXT NOT NULL,
            title TEXT NOT NULL,
            excerpt TEXT NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('blog', 'chronicle')),
            published TEXT,
            first_seen TEXT NOT NULL,
            date TEXT NOT NULL,
            feed_url TEXT NOT NULL
        );
        CREATE INDEX items_date ON items (date);
        CREATE TABLE item_ambassadors (
            item_id INTEGER NOT NULL REFERENCES items (id) ON DELETE CASCADE,
            ambassador_id TEXT NOT NULL,
            PRIMARY KEY (item_id, ambassador_id)
        ) WITHOUT ROWID;
        CREATE TABLE subscribers (
            id INTEGER PRIMARY KEY,
            email TEXT NOT NULL UNIQUE COLLATE NOCASE,
            name TEXT NOT NULL DEFAULT '',
            state TEXT NOT NULL
                CHECK (state IN ('pending', 'active', 'unsubscribed', 'bounced')),
            source TEXT NOT NULL DEFAULT 'admin',
            created TEXT NOT NULL,
            updated TEXT NOT NULL
        );
        CREATE TABLE editions (
            id INTEGER PRIMARY KEY,
            created TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('sending', 'sent')),
            subject TEXT NOT NULL,
            html TEXT NOT NULL,
            text TEXT NOT NULL,
            finished TEXT
        );
        CREATE TABLE edition_items (
            edition_id INTEGER NOT NULL REFERENCES editions (id),
            item_id INTEGER NOT NULL REFERENCES items (id),
            shown INTEGER NOT NULL,
            PRIMARY KEY (edition_id, item_id)
        ) WITHOUT ROWID;
        CREATE INDEX edition_items_item ON edition_items (item_id);
        CREATE TABLE edition_meetings (
            edition_id INTEGER NOT NULL REFERENCES editions (id),
            meeting_key TEXT NOT NULL,
            PRIMARY KEY (edition_id, meeting_key)
        ) WITHOUT ROWID;
        CREATE TABLE deliveries (
            edition_id INTEGER NOT NULL REFERENCES editions (id),
            subscriber_id INTEGER NOT NULL,
            email TEXT NOT NULL,
            state TEXT NOT NULL
                CHECK (state IN ('queued', 'sent', 'deferred', 'failed', 'skipped')),
            message_id TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            last_error TEXT,
            updated TEXT NOT NULL,
            PRIMARY KEY (edition_id, subscriber_id)
        ) WITHOUT ROWID;
        CREATE INDEX deliveries_state ON deliveries (edition_id, state, subscriber_id);
        """,
    ),
    (
        "0002_feed_health",
        """
        ALTER TABLE feeds ADD COLUMN gone_since TEXT;
        ALTER TABLE feeds ADD COLUMN retry_after TEXT;
        """,
    ),
    (
        # A message is marked 'sending' just before it goes on the wire, so a hard kill leaves
        # evidence of who may have it already; SQLite cannot widen a CHECK in place, hence the
        # copy. `hard_bounces` counts a reader's editions in a row refused for good (5xx).
        "0003_delivery_ledger",
        """
        CREATE TABLE deliveries_new (
            edition_id INTEGER NOT NULL REFERENCES editions (id),
            subscriber_id INTEGER NOT NULL,
            email TEXT NOT NULL,
            state TEXT NOT NULL CHECK (
                state IN ('queued', 'sending', 'sent', 'deferred', 'failed', 'skipped')
            ),
            message_id TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            last_error TEXT,
            updated TEXT NOT NULL,
            PRIMARY KEY (edition_id, subscriber_id)
        ) WITHOUT ROWID;
        INSERT INTO deliveries_new (edition_id, subscriber_id, email, state, message_id, attempts,
                                    last_error, updated)
            SELECT edition_id, subscriber_id, email, state, message_id, attempts, last_error,
                   updated
            FROM deliveries;
        DROP TABLE deliveries;
        ALTER TABLE deliveries_new RENAME TO deliveries;
        CREATE INDEX deliveries_state ON deliveries (edition_id, state, subscriber_id);
        CREATE INDEX deliveries_by_state ON deliveries (state);
        ALTER TABLE subscribers ADD COLUMN hard_bounces INTEGER NOT NULL DEFAULT 0;
        """,
    ),
    (
        # The scheduler's ledger: one row per job and slot (the slot's wall-clock time in the
        # newsletter's zone), claimed before the job runs, so a slot is never run twice; and
        # the alerts to admins, kept until sent. `alerted_failing` is when the admins were told
        # a feed is failing, so they are told once, and once more when it recovers.
        "0004_scheduler",
        """
        CREATE TABLE job_runs (
            job TEXT NOT NULL CHECK (job IN ('collect', 'send')),
            slot TEXT NOT NULL,
            due TEXT NOT NULL,
            started TEXT NOT NULL,
            finished TEXT,
            outcome TEXT CHECK (outcome IN ('ok', 'failed', 'skipped', 'stopped')),
            detail TEXT,
            PRIMARY KEY (job, slot)
        ) WITHOUT ROWID;
        CREATE INDEX job_runs_started ON job_runs (job, started);
        CREATE TABLE alerts (
            id INTEGER PRIMARY KEY,
            key TEXT NOT NULL,
            recipient TEXT NOT NULL,
            created TEXT NOT NULL,
            subject TEXT NOT NULL,
            body TEXT NOT NULL,
            sent TEXT,
            tries INTEGER NOT NULL DEFAULT 0,
            last_error TEXT,
            UNIQUE (key, recipient)
        );
        CREATE INDEX alerts_pending ON alerts (sent);
        ALTER TABLE feeds ADD COLUMN alerted_failing TEXT;
        """,
    ),
    (
        # The web side. A consent record is one sign-up through the form: when, which text
        # (version, full text and its hash), from which form; `nonce` makes its confirmation
        # link its own, so a link of a purged or erased sign-up never confirms someone else.
        # `suppressed` keeps keyed hashes of forgotten addresses, so that an old list imported
        # again does not sign up someone who asked to be forgotten.
        "0005_web",
        """
        CREATE TABLE consents (
            id INTEGER PRIMARY KEY,
            subscriber_id INTEGER NOT NULL,
            nonce TEXT NOT NULL,
            form TEXT NOT NULL,
            text_version TEXT NOT NULL,
            text TEXT NOT NULL,
            text_sha256 TEXT NOT NULL,
            language TEXT NOT NULL,
            name TEXT NOT NULL DEFAULT '',
            given TEXT NOT NULL,
            confirmation_sent TEXT,
            confirmed TEXT,
            withdrawn TEXT
        );
        CREATE INDEX consents_subscriber ON consents (subscriber_id);
        CREATE TABLE suppressed (
            address_hash TEXT PRIMARY KEY,
            since TEXT NOT NULL
        ) WITHOUT ROWID;
        """,
    ),
    (
        # Items an edition left out because a template or MJML could not take their values
        # (see Renderer.render_edition): never due again, and named by `status`. `edition_id`
        # is null when, without them, there was nothing to send.
        "0006_left_out_items",
        """
        CREATE TABLE left_out_items (
            item_id INTEGER PRIMARY KEY REFERENCES items (id) ON DELETE CASCADE,
            edition_id INTEGER REFERENCES editions (id),
            reason TEXT NOT NULL,
            created TEXT NOT NULL
        );
        """,
    ),
    (
        # The mailbox a sign-up's address reaches (`mailbox`): at most one confirmation an
        # hour goes to one mailbox, however its address is spelt. Records made before this
        # have none; they still hold back their own address (`sign_up`).
        "0007_signup_mailbox",
        """
        ALTER TABLE consents ADD COLUMN mailbox TEXT NOT NULL DEFAULT '';
        CREATE INDEX consents_mailbox ON consents (mailbox, confirmation_sent);
        """,
    ),
    (
        # A confirmation message is owed from the sign-up until the server takes it:
        # `confirmation_sent` is set only then, `confirmation_retry` is when the next try is
        # due (null when none is owed), `confirmation_tries` counts the failed ones and
        # `confirmation_error` keeps the last reason. Records made before this owe nothing.
        "0008_confirmation_retries",
        """
        ALTER TABLE consents ADD COLUMN confirmation_retry TEXT;
        ALTER TABLE consents ADD COLUMN confirmation_tries INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE consents ADD COLUMN confirmation_error TEXT;
        CREATE INDEX consents_owed ON consents (confirmation_retry)
            WHERE confirmation_retry IS NOT NULL;
        """,
    ),
]


GMAIL = ("gmail.com", "googlemail.com")
"""Gmail's domains: one mailbox, and dots in the local part do not count."""


def mailbox(address: str) -> str:
    """The mailbox an address reaches, as the big providers read it: case folded, a `+tag`
    dropped from the local part (`kari+1@` is `kari@`), and at Gmail the dots too
    (`k.ari@googlemail.com` is `kari@gmail.com`). Used to limit what is sent to one person,
    never as where to send."""
    local, _, domain = address.strip().casefold().rpartition("@")
    local = local.partition("+")[0]
    if domain in GMAIL:
        local, domain = local.replace(".", ""), GMAIL[0]
    return f"{local}@{domain}"


def iso(value: datetime) -> str:
    """A UTC timestamp as stored: fixed width, so text order is time order."""
    return value.astimezone(UTC).isoformat(timespec="seconds")


def parse_iso(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _opt(value: str | None) -> datetime | None:
    return parse_iso(value) if value else None


@dataclass(frozen=True)
class FeedHealth:
    """What the database knows about one feed URL: its validators and how its fetches went."""

    url: str
    last_attempt: datetime | None
    last_success: datetime | None
    last_status: int | None
    consecutive_failures: int
    last_error: str | None
    moved_to: str | None
    gone_since: datetime | None = None
    """When it first answered 410 Gone; a gone feed is not fetched again."""
    retry_after: datetime | None = None
    """Its server asked not to be fetched before this time (429 or 503 with Retry-After)."""
    etag: str | None = None
    last_modified: str | None = None
    alerted_failing: datetime | None = None
    """When the admins were told this feed is failing; None once it recovers."""


@dataclass(frozen=True)
class Recipient:
    """One queued delivery: the reader as they were when the edition was frozen."""

    subscriber_id: int
    email: str
    name: str
    state: SubscriberState
    """The subscriber's state now: one who left since the freeze is skipped."""


@dataclass(frozen=True)
class ConsentText:
    """The consent text a form showed, as a consent record keeps it."""

    version: str
    text: str
    language: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


@dataclass(frozen=True)
class Confirmation:
    """A confirmation message to send: to whom, and the nonce its link is signed with."""

    subscriber_id: int
    email: str
    name: str
    nonce: str
    consent_id: int
    tries: int = 0
    """Tries of its message that failed so far."""


@dataclass(frozen=True)
class Consent:
    """One sign-up through a form, as recorded."""

    id: int
    subscriber_id: int
    nonce: str
    form: str
    text_version: str
    given: datetime
    confirmed: datetime | None
    withdrawn: datetime | None


@dataclass(frozen=True)
class ArchivedEdition:
    """An edition in the public archive."""

    id: int
    created: datetime
    subject: str


_NEXT_SUBSCRIBER_ID = """(SELECT max(
    coalesce((SELECT max(id) FROM subscribers), 0),
    coalesce((SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'retired_subscriber_id'), 0)
) + 1)"""
"""The id of a new subscriber: above every id in use and every id ever erased or purged."""


OWNER_ONLY = 0o600
"""The mode of the database (which holds the link-signing key when $TRNEWS_SECRET is unset),
its -wal and -shm (SQLite gives them the database's mode) and the scheduler's lock file."""


_OPENING = threading.Lock()
"""Held while a database is created and connected to, so that no connection of this process
takes a lock on the file before the descriptor that created it is closed."""


def open_owner_only(path: Path, flags: int = os.O_RDONLY) -> int:
    """A descriptor of `path` opened with `flags`; the file is created owner-only (0600)
    whatever the umask, and an existing one is tightened (`tighten`)."""
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, OWNER_ONLY)
    except FileExistsError:
        tighten(path)
        return os.open(path, flags)
    os.fchmod(fd, OWNER_ONLY)  # the umask may have taken some of it
    return fd


def create_owner_only(path: Path) -> None:
    """Create `path` empty and owner-only (0600) whatever the umask, or tighten it if it is
    there. An existing file is never opened here: closing a descriptor of a database would
    drop every POSIX lock SQLite holds on it in this process (fcntl locks are per process)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, OWNER_ONLY)
    except FileExistsError:
        tighten(path)
        return
    try:
        os.fchmod(fd, OWNER_ONLY)  # the umask may have taken some of it
    finally:
        os.close(fd)


def tighten(path: Path) -> None:
    """Take from a file whatever its group and other users may do, saying so; nothing if
    there is no such file."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return
    if not mode & 0o077:
        return
    try:
        path.chmod(mode & 0o700)
    except PermissionError:
        logger.warning(
            "%s can be read by other users (mode %04o) and belongs to another user: "
            "make it owner-only with 'chmod 600 %s'",
            path,
            mode,
            path,
        )
        return
    logger.warning(
        "%s could be read by other users (mode %04o); made it owner-only (%04o)",
        path,
        mode,
        mode & 0o700,
    )


class Store:
    """One open SQLite database."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self.conn = conn
        self.path = path

    # -- opening and migrating -------------------------------------------------------------

    @classmethod
    def open(cls, path: Path) -> Store:
        """Open (creating if needed) the database at `path` and bring its schema up to date.

        The database, its -wal and -shm are owner-only (0600), made so if they were not."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tighten(path.with_name(path.name + "-wal"))
            tighten(path.with_name(path.name + "-shm"))
            with _OPENING:
                create_owner_only(path)  # before SQLite would create it with the umask's mode
                # Delivery threads share the connection, one at a time under the ledger's lock.
                conn = sqlite3.connect(
                    path, timeout=10, isolation_level=None, check_same_thread=False
                )
        except (OSError, sqlite3.Error) as e:
            raise StoreError(f"cannot open the database {path}: {e}") from e
        conn.row_factory = sqlite3.Row
        store = cls(conn, path)
        try:
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            store._migrate()
        except sqlite3.Error as e:
            conn.close()
            raise StoreError(f"cannot use the database {path}: {e}") from e
        return store

    def _migrate(self) -> None:
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied TEXT NOT NULL)"
        )
        done = {r["name"] for r in self.conn.execute("SELECT name FROM migrations")}
        known = {name for name, _ in MIGRATIONS}
        if done - known:
            raise StoreError(
                f"the database {self.path} was written by a newer trnews "
                f"(migrations {', '.join(sorted(done - known))}); upgrade trnews"
            )
        for name, sql in MIGRATIONS:
            if name in done:
                continue
            logger.info("Applying database migration %s", name)
            with self.transaction():
                for statement in sql.split(";"):
                    if statement.strip():
                        self.conn.execute(statement)
                self.conn.execute(
                    "INSERT INTO migrations (name, applied) VALUES (?, ?)",
                    (name, iso(datetime.now(UTC))),
                )

    def backup(self, target: Path) -> None:
        """Write a consistent copy of the database to `target`, readable by the owner only.

        SQLite's online backup reads one snapshot through this connection, committed WAL
        frames included (copying the file would miss them), while `trnews run` and `serve` go
        on writing. The copy is checked, then moved into place in one rename, so `target` is
        never a half-written file.
        """
        if target.exists() and target.resolve() == self.path.resolve():
            raise StoreError(f"{target} is the database itself: name another file")
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
        try:
            os.close(os.open(partial, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600))
            partial.chmod(0o600)  # whatever the umask, and an old file of that name
            copy = sqlite3.connect(partial)
            try:
                self.conn.backup(copy)
                (verdict,) = copy.execute("PRAGMA quick_check").fetchone()
                copy.execute("PRAGMA journal_mode = DELETE")  # one file, ready to restore
            finally:
                copy.close()
            if verdict != "ok":
                raise StoreError(f"the copy of {self.path} does not check out: {verdict}")
            partial.replace(target)
        except (OSError, sqlite3.Error) as e:
            raise StoreError(f"cannot back up {self.path} to {target}: {e}") from e
        finally:
            partial.unlink(missing_ok=True)

    def transaction(self) -> _Transaction:
        return _Transaction(self.conn, self.path)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _q(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        try:
            return self.conn.execute(sql, params)
        except sqlite3.OperationalError as e:
            raise StoreError(f"database {self.path}: {e}; if another trnews is busy, retry") from e

    # -- meta ------------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        row = self._q("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row["value"] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self._q(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def secret(self) -> str:
        """The key that signs links when none is set in the environment; made once, then kept."""
        with self.transaction():
            value = self.get_meta("secret")
            if value is None:
                value = secrets.token_urlsafe(32)
                self.set_meta("secret", value)
        return value

    # -- feeds -----------------------------------------------------------------------------

    def record_fetch(
        self,
        url: str,
        *,
        now: datetime,
        error: str | None,
        status: int | None,
        etag: str | None = None,
        last_modified: str | None = None,
        moved_to: str | None = None,
        retry_after: datetime | None = None,
    ) -> None:
        """Record one fetch of a feed: its validators on success, its error on failure.

        A feed is gone from its first 410 answer until it answers anything else; `retry_after`
        is when its server asked to be asked again (Retry-After), if it did.
        """
        self._q("INSERT OR IGNORE INTO feeds (url) VALUES (?)", (url,))
        if error is None:
            self._q(
                """UPDATE feeds SET last_attempt = :now, last_success = :now, last_status = :status,
                       consecutive_failures = 0, last_error = NULL, moved_to = :moved,
                       gone_since = NULL, retry_after = NULL,
                       etag = COALESCE(:etag, etag), last_modified = COALESCE(:lm, last_modified)
                   WHERE url = :url""",
                {
                    "now": iso(now),
                    "status": status,
                    "moved": moved_to,
                    "etag": etag,
                    "lm": last_modified,
                    "url": url,
                },
            )
        else:
            self._q(
                """UPDATE feeds SET last_attempt = :now, last_status = :status, last_error = :error,
                       consecutive_failures = consecutive_failures + 1,
                       gone_since = CASE WHEN :status = 410 THEN COALESCE(gone_since, :now)
                                         END,
                       retry_after = :retry_after
                   WHERE url = :url""",
                {
                    "now": iso(now),
                    "status": status,
                    "error": error,
                    "retry_after": iso(retry_after) if retry_after else None,
                    "url": url,
                },
            )
        if self.get_meta("counting_since") is None:
            self.set_meta("counting_since", iso(now))

    def feed_health(self) -> dict[str, FeedHealth]:
        """Every feed the database knows, by URL."""
        return {r["url"]: _feed_health(r) for r in self._q("SELECT * FROM feeds")}

    def feed(self, url: str) -> FeedHealth | None:
        row = self._q("SELECT * FROM feeds WHERE url = ?", (url,)).fetchone()
        return _feed_health(row) if row else None

    # -- items -----------------------------------------------------------------------------

    def store_entry(
        self, entry: Entry, *, kind: Kind, feed_url: str, ambassadors: Iterable[str], now: datetime
    ) -> bool:
        """Store one entry as an item credited to `ambassadors`; True if the article is new.

        The same article (same key) from another feed adds credits; a chronicle copy turns a
        blog item into a chronicle and its title, excerpt and link win.
        """
        published = iso(entry.published) if entry.published else None
        seen = iso(now)
        # One statement for a new article, the common case: the insert says whether it was.
        inserted = self._q(
            """INSERT INTO items (key, link, title, excerpt, kind, published, first_seen, date,
                                  feed_url)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT (key) DO NOTHING
               RETURNING id""",
            (
                entry.key,
                entry.link,
                entry.title,
                entry.excerpt,
                kind.value,
                published,
                seen,
                published or seen,
                feed_url,
            ),
        ).fetchone()
        new = inserted is not None
        if inserted is not None:
            item_id = inserted["id"]
        else:
            row = self._q("SELECT id, kind FROM items WHERE key = ?", (entry.key,)).fetchone()
            item_id = row["id"]
            if row["kind"] == Kind.BLOG and kind is Kind.CHRONICLE:
                self._q(
                    """UPDATE items SET kind = 'chronicle', link = coalesce(nullif(?, ''), link),
                           title = ?, excerpt = ?,
                           published = COALESCE(?, published), date = COALESCE(?, date),
                           feed_url = ?
                       WHERE id = ?""",
                    (
                        entry.link,
                        entry.title,
                        entry.excerpt,
                        published,
                        published,
                        feed_url,
                        item_id,
                    ),
                )
        self.conn.executemany(
            "INSERT OR IGNORE INTO item_ambassadors (item_id, ambassador_id) VALUES (?, ?)",
            [(item_id, a) for a in ambassadors],
        )
        return new

    def due_items(
        self, *, since: datetime, previous: datetime | None
    ) -> list[tuple[Item, list[str]]]:
        """Items in no edition yet, dated after `since`, and dated or first seen after `previous`
        (inclusive: an item seen in the very second an edition was built is not lost).

        Returns each item with the ids of the ambassadors it is credited to, newest first.
        """
        rows = self._q(
            """SELECT i.*, group_concat(ia.ambassador_id, char(31)) AS ambassadors
               FROM items i JOIN item_ambassadors ia ON ia.item_id = i.id
               WHERE NOT EXISTS (SELECT 1 FROM edition_items ei WHERE ei.item_id = i.id)
                 AND NOT EXISTS (SELECT 1 FROM left_out_items lo WHERE lo.item_id = i.id)
                 AND i.date >= :since
                 AND (:previous IS NULL OR i.date >= :previous OR i.first_seen >= :previous)
               GROUP BY i.id
               ORDER BY i.date DESC, i.id DESC""",
            {"since": iso(since), "previous": iso(previous) if previous else None},
        )
        return [(_item(r), sorted(r["ambassadors"].split("\x1f"))) for r in rows]

    def edition_count(self) -> int:
        return int(self._q("SELECT count(*) FROM editions").fetchone()[0])

    def item_count(self) -> int:
        return int(self._q("SELECT count(*) FROM items").fetchone()[0])

    # -- editions --------------------------------------------------------------------------

    def last_edition_created(self) -> datetime | None:
        row = self._q("SELECT max(created) AS c FROM editions").fetchone()
        return _opt(row["c"])

    def listed_meetings(self) -> set[str]:
        return {r["meeting_key"] for r in self._q("SELECT meeting_key FROM edition_meetings")}

    def unfinished_edition(self) -> int | None:
        row = self._q(
            "SELECT id FROM editions WHERE status = 'sending' ORDER BY id LIMIT 1"
        ).fetchone()
        return int(row["id"]) if row else None

    def create_edition(
        self,
        *,
        created: datetime,
        rendered: Rendered,
        shown: Iterable[int],
        overflow: Iterable[int],
        meetings: Iterable[str],
        left_out: Iterable[tuple[int, str]] = (),
    ) -> tuple[int, int]:
        """Freeze an edition and queue every active subscriber; returns (id, recipients).

        `left_out` holds the (item id, reason) of the items it could not show (see `leave_out`).
        One transaction: either the edition exists with its items and its queue, or nothing does.
        """
        with self.transaction():
            cur = self._q(
                """INSERT INTO editions (created, status, subject, html, text)
                   VALUES (?, ?, ?, ?, ?)""",
                (
                    iso(created),
                    EditionStatus.SENDING.value,
                    rendered.subject,
                    rendered.html,
                    rendered.text,
                ),
            )
            edition_id = int(cur.lastrowid or 0)
            self.conn.executemany(
                "INSERT INTO edition_items (edition_id, item_id, shown) VALUES (?, ?, ?)",
                [(edition_id, i, 1) for i in shown] + [(edition_id, i, 0) for i in overflow],
            )
            self.conn.executemany(
                "INSERT INTO edition_meetings (edition_id, meeting_key) VALUES (?, ?)",
                [(edition_id, k) for k in meetings],
            )
            self.leave_out(left_out, edition_id=edition_id, now=created)
            cur = self._q(
                """INSERT INTO deliveries (edition_id, subscriber_id, email, state, updated)
                   SELECT ?, id, email, 'queued', ? FROM subscribers WHERE state = 'active'""",
                (edition_id, iso(created)),
            )
            return edition_id, cur.rowcount

    def leave_out(
        self, items: Iterable[tuple[int, str]], *, edition_id: int | None, now: datetime
    ) -> None:
        """Record items (id, reason) an edition could not show: no later edition tries them."""
        rows = [(item_id, edition_id, reason, iso(now)) for item_id, reason in items]
        if rows:
            self.conn.executemany(
                """INSERT OR REPLACE INTO left_out_items (item_id, edition_id, reason, created)
                   VALUES (?, ?, ?, ?)""",
                rows,
            )

    def left_out_items(self, limit: int = 20) -> list[LeftOutRow]:
        """The items left out of editions, the latest first."""
        rows = self._q(
            """SELECT lo.item_id, i.title, i.link, i.feed_url, lo.reason, lo.edition_id,
                      lo.created
               FROM left_out_items lo JOIN items i ON i.id = lo.item_id
               ORDER BY lo.created DESC, lo.item_id DESC
               LIMIT ?""",
            (limit,),
        )
        return [
            LeftOutRow(
                item_id=r["item_id"],
                title=r["title"],
                link=r["link"],
                feed_url=r["feed_url"],
                reason=r["reason"],
                edition_id=r["edition_id"],
                when=parse_iso(r["created"]),
            )
            for r in rows
        ]

    def edition_content(self, edition_id: int) -> Rendered:
        row = self._q(
            "SELECT subject, html, text FROM editions WHERE id = ?", (edition_id,)
        ).fetchone()
        if row is None:
            raise StoreError(f"no edition {edition_id} in {self.path}")
        return Rendered(subject=row["subject"], html=row["html"], text=row["text"])

    def owed(self, edition_id: int, *, after: int = 0, limit: int = 500) -> list[Recipient]:
        """One batch of the readers still owed this edition (queued, or `sending` when a run was
        killed mid-send), in subscriber order after the subscriber id `after`."""
        rows = self._q(
            """SELECT d.subscriber_id, d.email, s.name, s.state
               FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id
               WHERE d.edition_id = ? AND d.state IN ('queued', 'sending') AND d.subscriber_id > ?
               ORDER BY d.subscriber_id LIMIT ?""",
            (edition_id, after, limit),
        ).fetchall()
        return [
            Recipient(r["subscriber_id"], r["email"], r["name"], SubscriberState(r["state"]))
            for r in rows
        ]

    def queued_recipients(self, edition_id: int, batch: int = 500) -> Iterator[Recipient]:
        """The readers still owed this edition, streamed in batches in subscriber order."""
        after = 0
        while rows := self.owed(edition_id, after=after, limit=batch):
            yield from rows
            after = rows[-1].subscriber_id

    def mark_sending(
        self, edition_id: int, subscriber_id: int, *, message_id: str, now: datetime
    ) -> None:
        """Note that this reader's message is about to go on the wire; committed at once, so a
        hard kill leaves the row `sending` and the next run sends it again, same Message-ID."""
        self._q(
            """UPDATE deliveries SET state = 'sending', message_id = ?, updated = ?
               WHERE edition_id = ? AND subscriber_id = ?""",
            (message_id, iso(now), edition_id, subscriber_id),
        )

    def unmark_sending(self, edition_id: int, subscriber_id: int) -> None:
        """Queue a reader again whose message was not accepted (the server went away)."""
        self._q(
            """UPDATE deliveries SET state = 'queued'
               WHERE edition_id = ? AND subscriber_id = ? AND state = 'sending'""",
            (edition_id, subscriber_id),
        )

    def record_delivery(
        self,
        edition_id: int,
        subscriber_id: int,
        state: DeliveryState | str,
        *,
        now: datetime,
        message_id: str | None = None,
        error: str | None = None,
        bounce_limit: int | None = None,
    ) -> bool:
        """Settle one reader's row of the ledger; committed at once.

        With `bounce_limit`, the reader's record of hard failures follows: a `sent` row clears
        it, a `failed` one adds one, and at `bounce_limit` editions in a row the subscriber
        becomes `bounced` and gets nothing more. Returns True if this made them bounced.
        """
        with self.transaction():
            self._q(
                """UPDATE deliveries SET state = ?, message_id = COALESCE(?, message_id),
                       attempts = attempts + 1, last_error = ?, updated = ?
                   WHERE edition_id = ? AND subscriber_id = ?""",
                (str(state), message_id, error, iso(now), edition_id, subscriber_id),
            )
            if bounce_limit is None:
                return False
            if state == DeliveryState.SENT:
                self._q(
                    "UPDATE subscribers SET hard_bounces = 0 WHERE id = ? AND hard_bounces > 0",
                    (subscriber_id,),
                )
                return False
            if state != DeliveryState.FAILED:
                return False
            bounced = self._q(
                """UPDATE subscribers SET hard_bounces = hard_bounces + 1,
                       state = CASE WHEN hard_bounces + 1 >= :limit AND state = 'active'
                                    THEN 'bounced' ELSE state END,
                       updated = CASE WHEN hard_bounces + 1 >= :limit AND state = 'active'
                                      THEN :now ELSE updated END
                   WHERE id = :id
                   RETURNING state""",
                {"limit": bounce_limit, "now": iso(now), "id": subscriber_id},
            ).fetchone()
            return bounced is not None and bounced["state"] == SubscriberState.BOUNCED

    def queued_count(self, edition_id: int) -> int:
        """Readers still owed this edition: queued, or left `sending` by a killed run."""
        return int(
            self._q(
                """SELECT count(*) FROM deliveries
                   WHERE edition_id = ? AND state IN ('queued', 'sending')""",
                (edition_id,),
            ).fetchone()[0]
        )

    def requeue_deferred(
        self, *, since: datetime, now: datetime, tried_before: datetime | None = None
    ) -> list[int]:
        """Queue again the readers deferred (4xx) in editions built after `since` and last
        tried before `tried_before` (default: now); give up on those of older editions (they
        become failed). Returns the editions that have readers queued again."""
        tried_before = tried_before or now
        with self.transaction():
            self._q(
                """UPDATE deliveries SET state = 'failed', updated = ?,
                       last_error = 'gave up after the retry period: ' || coalesce(last_error, '')
                   WHERE state = 'deferred' AND edition_id IN
                       (SELECT id FROM editions WHERE created < ?)""",
                (iso(now), iso(since)),
            )
            rows = self._q(
                """SELECT DISTINCT edition_id FROM deliveries
                   WHERE state = 'deferred' AND updated <= ? ORDER BY edition_id""",
                (iso(tried_before),),
            ).fetchall()
            self._q(
                "UPDATE deliveries SET state = 'queued' WHERE state = 'deferred' AND updated <= ?",
                (iso(tried_before),),
            )
        return [int(r["edition_id"]) for r in rows]

    def finish_edition_if_done(self, edition_id: int, now: datetime) -> bool:
        """Mark the edition sent when no reader is still owed it; True if it is now sent."""
        if self.queued_count(edition_id):
            return False
        self._q(
            "UPDATE editions SET status = 'sent', finished = ? WHERE id = ? AND status = 'sending'",
            (iso(now), edition_id),
        )
        return True

    def editions(self, limit: int = 20) -> list[EditionRow]:
        rows = self._q(
            """SELECT e.id, e.created, e.status, e.subject,
                   (SELECT count(*) FROM edition_items ei WHERE ei.edition_id = e.id) AS items,
                   count(d.subscriber_id) AS recipients,
                   coalesce(sum(d.state = 'sent'), 0) AS delivered,
                   coalesce(sum(d.state = 'failed'), 0) AS failed,
                   coalesce(sum(d.state = 'deferred'), 0) AS deferred
               FROM editions e LEFT JOIN deliveries d ON d.edition_id = e.id
               GROUP BY e.id ORDER BY e.id DESC LIMIT ?""",
            (limit,),
        )
        return [
            EditionRow(
                id=r["id"],
                created=parse_iso(r["created"]),
                status=EditionStatus(r["status"]),
                subject=r["subject"],
                items=r["items"],
                recipients=r["recipients"],
                delivered=r["delivered"],
                failed=r["failed"],
                deferred=r["deferred"],
            )
            for r in rows
        ]

    def on_the_wire(self, edition_id: int) -> int:
        """Readers left `sending` by a run that was killed: their message may have arrived."""
        return int(
            self._q(
                "SELECT count(*) FROM deliveries WHERE edition_id = ? AND state = 'sending'",
                (edition_id,),
            ).fetchone()[0]
        )

    def owed_counts(self) -> dict[int, int]:
        """Edition id → readers still owed it (queued, or `sending` when a run was killed)."""
        rows = self._q(
            """SELECT edition_id, count(*) AS n FROM deliveries
               WHERE state IN ('queued', 'sending') GROUP BY edition_id"""
        )
        return {int(r["edition_id"]): int(r["n"]) for r in rows}

    # -- subscribers -----------------------------------------------------------------------

    def subscriber(self, email: str) -> Subscriber | None:
        row = self._q("SELECT * FROM subscribers WHERE email = ?", (email,)).fetchone()
        return _subscriber(row) if row else None

    def add_subscriber(
        self, email: str, name: str = "", *, state: SubscriberState, source: str, now: datetime
    ) -> tuple[Subscriber, SubscriberState | None]:
        """Add or update a subscriber; returns it and its previous state (None if new)."""
        with self.transaction():
            old = self.subscriber(email)
            if old is None:
                # Never the id of an erased or purged subscriber: old links name that id.
                self._q(
                    f"""INSERT INTO subscribers (id, email, name, state, source, created, updated)
                       VALUES ({_NEXT_SUBSCRIBER_ID}, ?, ?, ?, ?, ?, ?)""",  # noqa: S608
                    (email, name, state.value, source, iso(now), iso(now)),
                )
            else:
                self._q(
                    "UPDATE subscribers SET name = ?, state = ?, updated = ? WHERE id = ?",
                    (name or old.name, state.value, iso(now), old.id),
                )
            new = self.subscriber(email)
        assert new is not None
        return new, (old.state if old else None)

    def rename_subscriber(self, email: str, name: str, *, now: datetime) -> bool:
        cur = self._q(
            "UPDATE subscribers SET name = ?, updated = ? WHERE email = ?",
            (name, iso(now), email),
        )
        return cur.rowcount > 0

    def set_subscriber_state(self, email: str, state: SubscriberState, now: datetime) -> bool:
        cur = self._q(
            "UPDATE subscribers SET state = ?, updated = ? WHERE email = ?",
            (state.value, iso(now), email),
        )
        return cur.rowcount > 0

    def erase_subscriber(self, email: str, *, now: datetime | None = None) -> bool:
        """Forget an address entirely: the subscriber, its consent records, the address in the
        delivery ledger; only a keyed hash of it is kept (`suppressed`), so that an import of
        an old list leaves it out. The id is retired, never given to anyone else."""
        with self.transaction():
            row = self._q("SELECT id, email FROM subscribers WHERE email = ?", (email,)).fetchone()
            if row is None:
                return False
            self._q("UPDATE deliveries SET email = '' WHERE subscriber_id = ?", (row["id"],))
            self._q("DELETE FROM consents WHERE subscriber_id = ?", (row["id"],))
            self._q("DELETE FROM subscribers WHERE id = ?", (row["id"],))
            self._retire_id(row["id"])
            self._q(
                "INSERT OR IGNORE INTO suppressed (address_hash, since) VALUES (?, ?)",
                (self.address_hash(row["email"]), iso(now or datetime.now(UTC))),
            )
        return True

    def _retire_id(self, subscriber_id: int) -> None:
        self._q(
            """INSERT INTO meta (key, value) VALUES ('retired_subscriber_id', ?)
               ON CONFLICT (key) DO UPDATE SET
                   value = max(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER))""",
            (str(subscriber_id),),
        )

    def address_hash(self, email: str) -> str:
        """A keyed hash of an address (the key is made once and kept in the database): it tells
        whether an address was forgotten, without keeping the address or letting a list of
        known addresses be hashed and compared by someone who only has a copy of this table."""
        with self.transaction():
            key = self.get_meta("suppression_key")
            if key is None:
                key = secrets.token_urlsafe(32)
                self.set_meta("suppression_key", key)
        return hmac.new(key.encode(), email.strip().casefold().encode(), "sha256").hexdigest()

    def is_suppressed(self, email: str) -> bool:
        """True if this address was forgotten (`subscribers forget`) and not signed up since."""
        row = self._q(
            "SELECT 1 FROM suppressed WHERE address_hash = ?", (self.address_hash(email),)
        ).fetchone()
        return row is not None

    def subscriber_by_id(self, subscriber_id: int) -> Subscriber | None:
        row = self._q("SELECT * FROM subscribers WHERE id = ?", (subscriber_id,)).fetchone()
        return _subscriber(row) if row else None

    # -- the web side: sign-ups, consent, the archive ----------------------------------------

    def sign_up(
        self,
        email: str,
        name: str,
        consent: ConsentText,
        *,
        form: str,
        now: datetime,
        resend_after: timedelta,
    ) -> Confirmation | None:
        """Record a sign-up through a form; returns the confirmation to send, or None.

        A sign-up that sends a message gets a consent record of its own (when, which text,
        which form, the name given) with the nonce its link is signed with: its link confirms
        that record and no other, and a later sign-up never changes it, nor the name of a
        pending subscriber. A new address becomes `pending`; a pending, unsubscribed or bounced
        one keeps its state until a link is followed; an active address changes nothing.
        At most one message goes to one mailbox (see `mailbox`) within `resend_after`: a
        sign-up in that time records nothing, and the link already sent keeps working.
        """
        box = mailbox(email)
        with self.transaction():
            sub = self.subscriber(email)
            if sub is not None and sub.state is SubscriberState.ACTIVE:
                return None
            # A message sent within the hour, or one still owed (it goes when the server
            # answers), holds back another.
            recent = self._q(
                """SELECT 1 FROM consents
                   WHERE (mailbox = ? OR subscriber_id = ?)
                     AND (confirmation_sent > ? OR confirmation_retry IS NOT NULL)
                   LIMIT 1""",
                (box, sub.id if sub else 0, iso(now - resend_after)),
            ).fetchone()
            if recent is not None:
                return None
            if sub is None:
                sub, _ = self.add_subscriber(
                    email, name, state=SubscriberState.PENDING, source="web", now=now
                )
            nonce = secrets.token_urlsafe(12)
            consent_id = self._q(
                """INSERT INTO consents (subscriber_id, nonce, form, text_version, text,
                                         text_sha256, language, name, given, confirmation_retry,
                                         mailbox)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                   RETURNING id""",
                (
                    sub.id,
                    nonce,
                    form,
                    consent.version,
                    consent.text,
                    consent.sha256,
                    consent.language,
                    name,
                    iso(now),
                    iso(now),
                    box,
                ),
            ).fetchone()["id"]
        return Confirmation(sub.id, sub.email, name, nonce, consent_id)

    def owed_confirmations(
        self, due: datetime, *, max_tries: int | None = None
    ) -> list[Confirmation]:
        """The confirmation messages owed whose next try is due by `due` (and that failed
        fewer than `max_tries` times), oldest sign-up first."""
        rows = self._q(
            """SELECT c.id, c.subscriber_id, s.email, c.name, c.nonce, c.confirmation_tries
               FROM consents c
               JOIN subscribers s ON s.id = c.subscriber_id
               WHERE c.confirmation_retry IS NOT NULL AND c.confirmation_retry <= ?
                 AND c.confirmation_tries < ? AND s.state != 'active'
               ORDER BY c.id""",
            (iso(due), max_tries if max_tries is not None else 1 << 62),
        ).fetchall()
        return [
            Confirmation(
                r["subscriber_id"],
                r["email"],
                r["name"],
                r["nonce"],
                r["id"],
                r["confirmation_tries"],
            )
            for r in rows
        ]

    def confirmation_sent(self, consent_id: int, now: datetime) -> None:
        """The server took this sign-up's confirmation message: nothing is owed any more."""
        self._q(
            """UPDATE consents SET confirmation_sent = ?, confirmation_retry = NULL,
                                   confirmation_error = NULL
               WHERE id = ?""",
            (iso(now), consent_id),
        )

    def confirmation_failed(self, consent_id: int, error: str, retry: datetime | None) -> None:
        """A try of this sign-up's confirmation failed: try again at `retry`, or never (None:
        the address can never get it)."""
        self._q(
            """UPDATE consents SET confirmation_tries = confirmation_tries + 1,
                                   confirmation_error = ?, confirmation_retry = ?
               WHERE id = ?""",
            (error, iso(retry) if retry else None, consent_id),
        )

    def retry_confirmations(self, now: datetime) -> int:
        """Make every owed confirmation due now with a fresh count of tries; returns how many."""
        cur = self._q(
            """UPDATE consents SET confirmation_retry = ?, confirmation_tries = 0
               WHERE confirmation_retry IS NOT NULL""",
            (iso(now),),
        )
        return cur.rowcount

    def unsent_confirmations(self) -> tuple[int, int | None, str | None]:
        """The confirmation messages owed that failed at least once: how many, the oldest
        sign-up's consent id and the last reason."""
        row = self._q(
            """SELECT count(*) AS n, min(id) AS oldest,
                      (SELECT confirmation_error FROM consents
                       WHERE confirmation_retry IS NOT NULL AND confirmation_tries > 0
                       ORDER BY id DESC LIMIT 1) AS error
               FROM consents WHERE confirmation_retry IS NOT NULL AND confirmation_tries > 0"""
        ).fetchone()
        return int(row["n"]), row["oldest"], row["error"]

    def consents(self, subscriber_id: int) -> list[Consent]:
        """Every consent record of a subscriber, oldest first."""
        rows = self._q(
            "SELECT * FROM consents WHERE subscriber_id = ? ORDER BY id", (subscriber_id,)
        )
        return [_consent(r) for r in rows]

    def confirm(self, consent_id: int, *, now: datetime) -> None:
        """The reader followed the confirmation link of this sign-up: they are active now."""
        with self.transaction():
            row = self._q(
                "SELECT subscriber_id, name FROM consents WHERE id = ?", (consent_id,)
            ).fetchone()
            if row is None:
                return
            self._q("UPDATE consents SET confirmed = ? WHERE id = ?", (iso(now), consent_id))
            self._q(
                """UPDATE subscribers SET state = 'active', hard_bounces = 0, updated = ?,
                       name = CASE WHEN ? != '' THEN ? ELSE name END
                   WHERE id = ?""",
                (iso(now), row["name"], row["name"], row["subscriber_id"]),
            )
            sub = self.subscriber_by_id(row["subscriber_id"])
            if sub is not None:  # signed up again: no longer held back from imports
                self._q(
                    "DELETE FROM suppressed WHERE address_hash = ?",
                    (self.address_hash(sub.email),),
                )

    def unsubscribe(self, subscriber_id: int, *, now: datetime) -> bool:
        """Unsubscribe a reader and note the withdrawal on their consent records; True if this
        changed their state (False when they had unsubscribed already)."""
        with self.transaction():
            self._q(
                "UPDATE consents SET withdrawn = ? WHERE subscriber_id = ? AND withdrawn IS NULL",
                (iso(now), subscriber_id),
            )
            cur = self._q(
                """UPDATE subscribers SET state = 'unsubscribed', updated = ?
                   WHERE id = ? AND state != 'unsubscribed'""",
                (iso(now), subscriber_id),
            )
        return cur.rowcount > 0

    def purge_pending(self, before: datetime) -> int:
        """Delete sign-ups never confirmed since `before`: their consent records, and pending
        subscribers left with none (a former reader who asked again and never confirmed
        keeps their row). Returns the number of pending subscribers deleted."""
        cutoff = iso(before)
        with self.transaction():
            self._q(
                """DELETE FROM consents
                   WHERE confirmed IS NULL AND withdrawn IS NULL AND given < ?""",
                (cutoff,),
            )
            ids = [
                int(r["id"])
                for r in self._q(
                    """SELECT id FROM subscribers s
                       WHERE state = 'pending' AND updated < ?
                         AND NOT EXISTS (SELECT 1 FROM consents c WHERE c.subscriber_id = s.id)""",
                    (cutoff,),
                )
            ]
            for subscriber_id in ids:
                self._q("DELETE FROM subscribers WHERE id = ?", (subscriber_id,))
                self._retire_id(subscriber_id)
        if ids:
            logger.info(
                "Purged %s not confirmed since %s", words.count(len(ids), "sign-up"), cutoff
            )
        return len(ids)

    def person(self, email: str) -> dict[str, Any] | None:
        """Everything the database holds about one address (GDPR access): the subscriber row,
        its consent records and its deliveries; None if the address is unknown."""
        row = self._q("SELECT * FROM subscribers WHERE email = ?", (email,)).fetchone()
        if row is None:
            return None
        deliveries = self._q(
            """SELECT d.edition_id, e.subject, e.created AS edition_created, d.email, d.state,
                      d.message_id, d.attempts, d.last_error, d.updated
               FROM deliveries d JOIN editions e ON e.id = d.edition_id
               WHERE d.subscriber_id = ? ORDER BY d.edition_id""",
            (row["id"],),
        )
        consents = self._q(
            """SELECT id, form, text_version, text, text_sha256, language, name, given,
                      confirmation_sent, confirmed, withdrawn
               FROM consents WHERE subscriber_id = ? ORDER BY id""",
            (row["id"],),
        )
        return {
            "subscriber": dict(row),
            "consents": [dict(r) for r in consents],
            "deliveries": [dict(r) for r in deliveries],
        }

    def published_editions(self) -> list[ArchivedEdition]:
        """The editions readers have: sent, or being delivered with a message out; newest
        first."""
        rows = self._q(
            """SELECT id, created, subject FROM editions e
               WHERE status = 'sent' OR EXISTS (
                   SELECT 1 FROM deliveries d WHERE d.edition_id = e.id AND d.state = 'sent')
               ORDER BY created DESC, id DESC"""
        )
        return [ArchivedEdition(r["id"], parse_iso(r["created"]), r["subject"]) for r in rows]

    def published_edition(self, edition_id: int) -> tuple[ArchivedEdition, Rendered] | None:
        """One edition of `published_editions` with its frozen content, or None."""
        for edition in self.published_editions():
            if edition.id == edition_id:
                return edition, self.edition_content(edition_id)
        return None

    def ping(self) -> None:
        """Ask the database something: a StoreError if it does not answer."""
        self._q("SELECT count(*) FROM migrations").fetchone()

    def subscribers(self, state: SubscriberState | None = None) -> Iterator[Subscriber]:
        sql = "SELECT * FROM subscribers"
        params: tuple[str, ...] = ()
        if state is not None:
            sql += " WHERE state = ?"
            params = (state.value,)
        for row in self._q(sql + " ORDER BY email", params):
            yield _subscriber(row)

    def subscriber_counts(self) -> dict[str, int]:
        counts = {s.value: 0 for s in SubscriberState}
        for r in self._q("SELECT state, count(*) AS n FROM subscribers GROUP BY state"):
            counts[r["state"]] = r["n"]
        return counts

    # -- the scheduler -----------------------------------------------------------------------

    def claim_run(self, job: str, slot: str, *, due: datetime, now: datetime) -> JobRun | None:
        """Claim `job`'s `slot` for a run starting now; None (and nothing written) if that
        slot was claimed before, by this process or any earlier one."""
        row = self._q(
            "INSERT INTO job_runs (job, slot, due, started) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (job, slot) DO NOTHING RETURNING *",
            (job, slot, iso(due), iso(now)),
        ).fetchone()
        return _job_run(row) if row else None

    def finish_run(
        self, job: str, slot: str, *, now: datetime, outcome: str, detail: str = ""
    ) -> None:
        self._q(
            "UPDATE job_runs SET finished = ?, outcome = ?, detail = ? WHERE job = ? AND slot = ?",
            (iso(now), outcome, detail, job, slot),
        )

    def run_of(self, job: str, slot: str) -> JobRun | None:
        row = self._q("SELECT * FROM job_runs WHERE job = ? AND slot = ?", (job, slot)).fetchone()
        return _job_run(row) if row else None

    def last_slot(self, job: str) -> str | None:
        """The latest slot of `job` ever claimed (run or skipped)."""
        row = self._q("SELECT max(slot) AS slot FROM job_runs WHERE job = ?", (job,)).fetchone()
        return row["slot"] if row else None

    def last_runs(self) -> dict[str, JobRun]:
        """Each job's latest run that was not skipped, by job name."""
        rows = self._q(
            "SELECT * FROM job_runs AS r WHERE outcome IS NOT 'skipped' AND slot = "
            "(SELECT max(slot) FROM job_runs WHERE job = r.job AND outcome IS NOT 'skipped')"
        )
        return {r["job"]: _job_run(r) for r in rows}

    # -- alerts --------------------------------------------------------------------------------

    def mark_feeds_alerted(self, urls: Iterable[str], now: datetime | None) -> None:
        """Note that admins were told these feeds are failing (now), or that they recovered."""
        self.conn.executemany(
            "UPDATE feeds SET alerted_failing = ? WHERE url = ?",
            [(iso(now) if now else None, url) for url in urls],
        )

    def add_alert(
        self, key: str, recipients: list[str], *, subject: str, body: str, now: datetime
    ) -> bool:
        """Queue an alert for each recipient; False if it was made before (an alert with the
        same key is never made twice). With no recipients it is kept as settled: only logged."""
        rows: list[tuple[str, str, str, str, str, str | None]] = [
            (key, r, iso(now), subject, body, None) for r in recipients
        ] or [(key, "", iso(now), subject, body, iso(now))]
        before = self.conn.total_changes
        self.conn.executemany(
            "INSERT INTO alerts (key, recipient, created, subject, body, sent) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (key, recipient) DO NOTHING",
            rows,
        )
        return self.conn.total_changes > before

    def pending_alerts(self) -> list[AlertRow]:
        rows = self._q("SELECT * FROM alerts WHERE sent IS NULL ORDER BY id")
        return [
            AlertRow(
                id=r["id"],
                key=r["key"],
                recipient=r["recipient"],
                created=parse_iso(r["created"]),
                subject=r["subject"],
                body=r["body"],
                tries=r["tries"],
            )
            for r in rows
        ]

    def alert_sent(self, alert_id: int, now: datetime, error: str | None = None) -> None:
        """Settle an alert: sent, or (with `error`) given up on."""
        self._q(
            "UPDATE alerts SET sent = ?, tries = tries + 1, last_error = ? WHERE id = ?",
            (iso(now), error, alert_id),
        )

    def alert_failed(self, alert_id: int, error: str) -> None:
        """Note a try that failed; the alert stays queued."""
        self._q(
            "UPDATE alerts SET tries = tries + 1, last_error = ? WHERE id = ?", (error, alert_id)
        )


class _Transaction:
    """BEGIN IMMEDIATE … COMMIT, rolled back on an exception; a lock is a StoreError."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self.conn = conn
        self.path = path
        self.outer = False

    def __enter__(self) -> None:
        if self.conn.in_transaction:
            return
        self.outer = True
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as e:
            raise StoreError(f"database {self.path}: {e}; if another trnews is busy, retry") from e

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self.outer:
            return
        if exc_type is None:
            self.conn.execute("COMMIT")
        else:
            self.conn.execute("ROLLBACK")


def _feed_health(r: sqlite3.Row) -> FeedHealth:
    return FeedHealth(
        url=r["url"],
        last_attempt=_opt(r["last_attempt"]),
        last_success=_opt(r["last_success"]),
        last_status=r["last_status"],
        consecutive_failures=r["consecutive_failures"],
        last_error=r["last_error"],
        moved_to=r["moved_to"],
        gone_since=_opt(r["gone_since"]),
        retry_after=_opt(r["retry_after"]),
        etag=r["etag"],
        last_modified=r["last_modified"],
        alerted_failing=_opt(r["alerted_failing"]),
    )


def _job_run(r: sqlite3.Row) -> JobRun:
    return JobRun(
        job=r["job"],
        slot=r["slot"],
        due=parse_iso(r["due"]),
        started=parse_iso(r["started"]),
        finished=_opt(r["finished"]),
        outcome=r["outcome"],
        detail=r["detail"],
    )


def _item(r: sqlite3.Row) -> Item:
    return Item(
        id=r["id"],
        key=r["key"],
        link=r["link"],
        title=r["title"],
        excerpt=r["excerpt"],
        kind=Kind(r["kind"]),
        date=parse_iso(r["date"]),
        first_seen=parse_iso(r["first_seen"]),
    )


def _consent(r: sqlite3.Row) -> Consent:
    return Consent(
        id=r["id"],
        subscriber_id=r["subscriber_id"],
        nonce=r["nonce"],
        form=r["form"],
        text_version=r["text_version"],
        given=parse_iso(r["given"]),
        confirmed=_opt(r["confirmed"]),
        withdrawn=_opt(r["withdrawn"]),
    )


def _subscriber(r: sqlite3.Row) -> Subscriber:
    return Subscriber(
        id=r["id"],
        email=r["email"],
        name=r["name"],
        state=SubscriberState(r["state"]),
        created=parse_iso(r["created"]),
    )
