"""The SQLite store: ordered, recorded migrations, and a ledger that cannot hold a reader twice."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import stat
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import Site

from pipeline.errors import StoreError
from pipeline.models import Rendered, SubscriberState
from pipeline.store import MIGRATIONS, Store

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
