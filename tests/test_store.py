"""The SQLite store: ordered, recorded migrations, and a ledger that cannot hold a reader twice."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import stat
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from support.site import Site

from pipeline.errors import StoreError
from pipeline.models import Rendered, SubscriberState
from pipeline.store import MIGRATIONS, Confirmation, ConsentText, Store, iso

NOW = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)


def test_a_new_database_records_every_migration_once(tmp_path: Path) -> None:
    db = tmp_path / "sub" / "trnews.db"
    Store.open(db).close()
    Store.open(db).close()  # opening again applies nothing twice
    with sqlite3.connect(db) as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM migrations ORDER BY name")]
    assert names == [name for name, _ in MIGRATIONS]


def test_a_database_from_a_newer_trnews_is_refused_with_a_hint(tmp_path: Path) -> None:
    db = tmp_path / "trnews.db"
    Store.open(db).close()
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO migrations VALUES ('9999_future', '2030-01-01')")
    with pytest.raises(StoreError, match=r"newer trnews.*upgrade"):
        Store.open(db)


def test_a_database_that_is_not_sqlite_is_a_clear_error(tmp_path: Path) -> None:
    db = tmp_path / "trnews.db"
    db.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match=re.escape(str(db))):
        Store.open(db)


def test_an_edition_queues_each_active_reader_once_and_only_them(tmp_path: Path) -> None:
    with Store.open(tmp_path / "trnews.db") as store:
        for n, state in enumerate(SubscriberState):
            store.add_subscriber(f"r{n}@example.org", state=state, source="admin", now=NOW)
        store.add_subscriber(
            "R1@Example.org", state=SubscriberState.ACTIVE, source="admin", now=NOW
        )
        edition, recipients = store.create_edition(
            created=NOW, rendered=Rendered("s", "<p>h</p>", "t"), shown=[], overflow=[], meetings=[]
        )
        queued = [r.email for r in store.queued_recipients(edition, batch=1)]
        assert recipients == len(queued) == 1  # "R1@Example.org" is the same reader as r1@
        assert queued == ["r1@example.org"]
        with pytest.raises(sqlite3.IntegrityError):
            store.conn.execute(
                "INSERT INTO deliveries (edition_id, subscriber_id, email, state, updated) "
                "VALUES (?, ?, 'x', 'queued', 'now')",
                (edition, store.subscriber("r1@example.org").id),  # type: ignore[union-attr]
            )


def test_backup_is_a_consistent_owner_only_copy_while_others_write(site: Site) -> None:
    """`trnews backup` as a process while another connection keeps writing (as `trnews run`
    and `serve` would): the copy holds a whole state, every committed write before it, and
    no half of one; it is one file, readable by the owner only, and restores."""
    site.run("subscribers", "add", "anne@example.org")
    stop = threading.Event()
    written: list[int] = []

    def writer() -> None:
        with Store.open(site.db) as store:
            n = 0
            while not stop.is_set():
                n += 1
                with store.transaction():  # two rows that only ever appear together
                    store.add_subscriber(
                        f"w{n}a@example.org", state=SubscriberState.ACTIVE, source="admin", now=NOW
                    )
                    store.add_subscriber(
                        f"w{n}b@example.org", state=SubscriberState.ACTIVE, source="admin", now=NOW
                    )
                written.append(n)

    thread = threading.Thread(target=writer)
    old_umask = os.umask(0o022)
    thread.start()
    try:
        while len(written) < 20:  # the writer is well under way, with its WAL growing
            time.sleep(0.01)
        committed = len(written)
        out = site.root / "backups" / "trnews-copy.db"
        done = site.run("backup", str(out))
    finally:
        stop.set()
        thread.join()
        os.umask(old_umask)
    assert "Wrote a copy of" in done.stdout and str(out) in done.stdout
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert [p.name for p in out.parent.iterdir()] == ["trnews-copy.db"]  # no -wal, no leftovers
    with sqlite3.connect(out) as copy:
        emails = {r[0] for r in copy.execute("SELECT email FROM subscribers")}
        assert copy.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    pairs = {e[: -len("a@example.org")] for e in emails if e.endswith("a@example.org")}
    assert pairs == {e[: -len("b@example.org")] for e in emails if e.endswith("b@example.org")}
    assert len(pairs) >= committed  # every write committed before the backup started
    # Restoring: the copy in place of the database, and trnews reads it.
    site.db.unlink()
    for extra in ("-wal", "-shm"):
        Path(f"{site.db}{extra}").unlink(missing_ok=True)
    shutil.copy(out, site.db)
    listed = json.loads(site.run("subscribers", "list", "--json").stdout)
    assert {s["email"] for s in listed} == emails


def test_backup_refuses_the_database_itself(site: Site) -> None:
    site.run("subscribers", "add", "anne@example.org")
    proc = site.run("backup", str(site.db), check=False)
    assert proc.returncode == 1
    assert "is the database itself" in proc.stderr
    assert json.loads(site.run("subscribers", "list", "--json").stdout)  # untouched


CONSENT = ConsentText("1", "Jeg vil ha nyhetsbrevet.", "nb")


def sign_up(store: Store, email: str, name: str, now: datetime) -> Confirmation | None:
    return store.sign_up(
        email, name, CONSENT, form="web:/", now=now, resend_after=timedelta(hours=1)
    )


def test_a_sign_up_recorded_before_the_mailbox_column_still_holds_its_address_back(
    tmp_path: Path,
) -> None:
    """A database upgraded with a confirmation just sent: no second one within the hour."""
    db = tmp_path / "trnews.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE migrations (name TEXT PRIMARY KEY, applied TEXT NOT NULL)")
        for name, sql in MIGRATIONS[: [n for n, _ in MIGRATIONS].index("0007_signup_mailbox")]:
            conn.executescript(sql)
            conn.execute("INSERT INTO migrations VALUES (?, '2026-11-01')", (name,))
        conn.execute(
            "INSERT INTO subscribers (id, email, state, source, created, updated) "
            "VALUES (1, 'kari@example.org', 'pending', 'web', ?, ?)",
            (iso(NOW), iso(NOW)),
        )
        conn.execute(
            "INSERT INTO consents (subscriber_id, nonce, form, text_version, text, text_sha256, "
            "language, name, given, confirmation_sent) "
            "VALUES (1, 'n', 'web:/', '1', 't', 'h', 'nb', 'Kari', ?, ?)",
            (iso(NOW), iso(NOW)),
        )

    with Store.open(db) as store:
        assert sign_up(store, "kari@example.org", "", NOW + timedelta(minutes=10)) is None
        assert sign_up(store, "kari@example.org", "", NOW + timedelta(minutes=61)) is not None


def test_a_pending_sign_up_is_purged_once_its_last_link_is_older_than_the_limit(
    tmp_path: Path,
) -> None:
    with Store.open(tmp_path / "trnews.db") as store:
        first = sign_up(store, "kari@example.org", "Kari", NOW)
        assert first is not None
        store.confirmation_sent(first.consent_id, NOW)  # a message still owed holds back another
        later = sign_up(store, "kari@example.org", "Kari N.", NOW + timedelta(days=6))
        assert first is not None and later is not None

        store.purge_pending(before=NOW + timedelta(minutes=1))  # 7 days after the first
        left = [c.id for c in store.consents(first.subscriber_id)]
        assert left == [later.consent_id]  # the first link is gone, the later one still works
        assert store.subscriber("kari@example.org") is not None

        store.purge_pending(before=NOW + timedelta(days=6, minutes=1))  # 7 days after the later
        assert store.subscriber("kari@example.org") is None
        assert store.consents(first.subscriber_id) == []


# -- owner-only files ----------------------------------------------------------------------------


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The usual umask, under which a file is created readable by every local user; the CLI
    processes started meanwhile inherit it."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_database_and_its_wal_and_shm_are_owner_only(site: Site, umask_022: None) -> None:
    site.run("subscribers", "add", "kari@example.org")
    assert mode(site.db) == 0o600

    # -wal and -shm exist while a connection is open.
    fresh = site.root / "other" / "trnews.db"
    with Store.open(fresh) as store:
        store.set_meta("probe", "1")
        wal, shm = (fresh.with_name(fresh.name + suffix) for suffix in ("-wal", "-shm"))
        assert (mode(fresh), mode(wal), mode(shm)) == (0o600, 0o600, 0o600)


def test_an_old_database_readable_by_others_is_made_owner_only_and_the_admin_told(
    site: Site, umask_022: None
) -> None:
    db = site.db
    db.parent.mkdir(parents=True)
    with closing(sqlite3.connect(db)):  # as an older trnews left it: 0644
        pass
    with closing(sqlite3.connect(db)) as conn:
        conn.execute("CREATE TABLE t (x)")
    assert mode(db) == 0o644

    proc = site.run("subscribers", "list")

    assert mode(db) == 0o600
    [line] = [x for x in proc.stderr.splitlines() if "owner-only" in x]
    assert str(db) in line and "0644" in line
    assert "owner-only" not in site.run("subscribers", "list").stderr  # said once


def test_opening_the_database_again_never_loses_what_an_open_connection_writes(
    site: Site,
) -> None:
    """SQLite's locks are per process: closing any descriptor of the database file drops them
    all, and then another process, closing last as it believes, takes the WAL with it."""
    site.run("subscribers", "add", "anne@example.org")
    with Store.open(site.db) as held:  # as a `trnews serve` thread keeps its connection
        assert [s.email for s in held.subscribers()] == ["anne@example.org"]
        Store.open(site.db).close()  # another thread of the same process opens it
        site.run("subscribers", "add", "bjorn@example.org")  # another process, which closes
        held.add_subscriber(
            "carla@example.org", "", state=SubscriberState.ACTIVE, source="admin", now=NOW
        )
        listed = json.loads(site.run("subscribers", "list", "--json").stdout)
    assert sorted(s["email"] for s in listed) == [
        "anne@example.org",
        "bjorn@example.org",
        "carla@example.org",
    ]
