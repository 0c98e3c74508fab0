"""The connection to the SQLite database: opening it owner-only, transactions, errors, meta.

Every query goes through `Database._q`, which turns a locked or busy database into a
StoreError; `transaction()` is BEGIN IMMEDIATE … COMMIT. The families of tables (feeds, items,
editions, subscribers, jobs, the report) each add their methods to `Database` in a module of
their own; `pipeline.store.Store` is all of them in one.
"""

from __future__ import annotations

import logging
import os
import secrets
import sqlite3
import stat
import threading
import unicodedata
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from ..errors import StoreError

logger = logging.getLogger(__name__)


def iso(value: datetime) -> str:
    """A UTC timestamp as stored: fixed width, so text order is time order."""
    return value.astimezone(UTC).isoformat(timespec="seconds")


def parse_iso(value: str) -> datetime:
    return datetime.fromisoformat(value)


def nfc(value: str | None) -> str | None:
    """`value` composed (Unicode NFC): how text enters the full-text index and queries it."""
    return unicodedata.normalize("NFC", value) if value is not None else None


def _opt(value: str | None) -> datetime | None:
    return parse_iso(value) if value else None


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


class Database:
    """One open SQLite database: the connection, its transactions and its meta table."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self.conn = conn
        self.path = path

    # -- opening and migrating -------------------------------------------------------------

    @classmethod
    def open(cls, path: Path) -> Self:
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
        # The full-text index reads its text composed (NFC), as queries are: "å" typed as "a"
        # and a combining ring would otherwise be two tokens (see store/library.py).
        conn.create_function("nfc", 1, nfc, deterministic=True)
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
        """Bring the schema up to date: `migrations.Migrations` does it."""
        raise NotImplementedError

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

    def __enter__(self) -> Self:
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

    def ping(self) -> None:
        """Ask the database something: a StoreError if it does not answer."""
        self._q("SELECT count(*) FROM migrations").fetchone()

    def data_version(self) -> int:
        """SQLite's `PRAGMA data_version`: a number that changes when another connection (of
        this process or another) has committed since this one last asked. It costs no query of
        any table: SQLite reads it from the WAL index in shared memory."""
        return int(self._q("PRAGMA data_version").fetchone()[0])


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
