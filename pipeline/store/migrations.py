"""The schema: ordered, named migrations, each applied once in a transaction and recorded.

A database that records a migration this trnews does not know was written by a newer one:
it is refused, never written to.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from ..errors import StoreError
from .db import Database, iso

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
    (
        # Every message of a send changes its row's state twice; an index over every row's
        # state made each change cost a third B-tree write. Only the deferred rows are looked
        # up across editions (to queue them again), so only they are indexed that way.
        "0009_deferred_index",
        """
        DROP INDEX IF EXISTS deliveries_by_state;
        CREATE INDEX deliveries_deferred ON deliveries (updated) WHERE state = 'deferred';
        """,
    ),
    (
        # The editorial desk (`[editorial]`). A draft offers the items due when it was built
        # (`draft_items`) and snapshots the meetings it lists; at most one draft is not yet
        # sent. An editor's drop or keep is a choice about the item (`desk_choices`), so a
        # dropped item never goes out in a later edition unless kept again. Every action is
        # recorded (`desk_actions`). An edition frozen from a draft has the draft's `built`
        # moment as its `cutoff`: items collected after it are due in the next edition.
        "0010_editorial_desk",
        """
        CREATE TABLE drafts (
            id INTEGER PRIMARY KEY,
            nonce TEXT NOT NULL,
            created TEXT NOT NULL,
            built TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('open', 'approved', 'held', 'sent')),
            lead_item INTEGER REFERENCES items (id) ON DELETE SET NULL,
            note TEXT NOT NULL DEFAULT '',
            meetings TEXT NOT NULL DEFAULT '[]',
            new_meetings TEXT NOT NULL DEFAULT '[]',
            editors TEXT NOT NULL DEFAULT '[]',
            send_at TEXT,
            awaiting TEXT,
            edition_id INTEGER REFERENCES editions (id)
        );
        CREATE UNIQUE INDEX drafts_one_current ON drafts (state = 'sent') WHERE state != 'sent';
        CREATE TABLE draft_items (
            draft_id INTEGER NOT NULL REFERENCES drafts (id) ON DELETE CASCADE,
            item_id INTEGER NOT NULL REFERENCES items (id) ON DELETE CASCADE,
            PRIMARY KEY (draft_id, item_id)
        ) WITHOUT ROWID;
        CREATE TABLE desk_choices (
            item_id INTEGER PRIMARY KEY REFERENCES items (id) ON DELETE CASCADE,
            dropped INTEGER NOT NULL,
            by TEXT NOT NULL,
            at TEXT NOT NULL
        );
        CREATE TABLE desk_actions (
            id INTEGER PRIMARY KEY,
            draft_id INTEGER NOT NULL REFERENCES drafts (id) ON DELETE CASCADE,
            action TEXT NOT NULL,
            item_id INTEGER,
            text TEXT NOT NULL DEFAULT '',
            by TEXT NOT NULL,
            at TEXT NOT NULL
        );
        CREATE INDEX desk_actions_draft ON desk_actions (draft_id, id);
        ALTER TABLE editions ADD COLUMN cutoff TEXT;
        """,
    ),
    (
        # The scheduler's desk job (`draft`, made `draft_hours` before each send) and a send
        # slot the editors held up (`waiting`, until an approval or the next send). SQLite
        # cannot change a CHECK: the table is copied into one with the wider checks.
        "0011_desk_jobs",
        """
        CREATE TABLE job_runs_new (
            job TEXT NOT NULL CHECK (job IN ('collect', 'send', 'draft')),
            slot TEXT NOT NULL,
            due TEXT NOT NULL,
            started TEXT NOT NULL,
            finished TEXT,
            outcome TEXT CHECK (outcome IN ('ok', 'failed', 'skipped', 'stopped', 'waiting')),
            detail TEXT,
            PRIMARY KEY (job, slot)
        ) WITHOUT ROWID;
        INSERT INTO job_runs_new SELECT job, slot, due, started, finished, outcome, detail
            FROM job_runs;
        DROP TABLE job_runs;
        ALTER TABLE job_runs_new RENAME TO job_runs;
        CREATE INDEX job_runs_started ON job_runs (job, started);
        """,
    ),
    (
        # The region's indicators (`[[indicator]]`): each source's fetch state (validators for
        # a conditional GET, failures in a row, the dataset's unit and decimals), each
        # period's value as last published (null: missing, never 0), and every revision with
        # the value it replaced. Nothing here is ever deleted.
        "0012_indicators",
        """
        CREATE TABLE indicator_sources (
            indicator_id TEXT PRIMARY KEY,
            source TEXT NOT NULL,
            etag TEXT,
            last_modified TEXT,
            last_attempt TEXT,
            last_success TEXT,
            consecutive_failures INTEGER NOT NULL DEFAULT 0,
            last_error TEXT,
            unit TEXT NOT NULL DEFAULT '',
            decimals INTEGER,
            alerted_failing TEXT
        );
        CREATE TABLE indicator_values (
            indicator_id TEXT NOT NULL,
            period TEXT NOT NULL,
            value REAL,
            first_fetched TEXT NOT NULL,
            fetched TEXT NOT NULL,
            PRIMARY KEY (indicator_id, period)
        ) WITHOUT ROWID;
        CREATE TABLE indicator_revisions (
            id INTEGER PRIMARY KEY,
            indicator_id TEXT NOT NULL,
            period TEXT NOT NULL,
            old_value REAL,
            new_value REAL,
            found TEXT NOT NULL
        );
        CREATE INDEX indicator_revisions_period ON indicator_revisions (indicator_id, period, id);
        """,
    ),
    (
        # The library (SPEC.md "The library and the message bank"): items may be films
        # ('video'), which the CHECK must admit, so the table is copied into one with the
        # wider check (foreign keys are off while migrating: see `_migrate`). `tagged` is 0
        # until the item's messages are in `item_messages` (pipeline.library tags it); the
        # full-text index of titles and excerpts keeps æ, ø and å as letters of their own
        # (`remove_diacritics 0`: the default folds "får" into "far").
        "0013_library",
        """
        CREATE TABLE items_new (
            id INTEGER PRIMARY KEY,
            key TEXT NOT NULL UNIQUE,
            link TEXT NOT NULL,
            title TEXT NOT NULL,
            excerpt TEXT NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('blog', 'chronicle', 'video')),
            published TEXT,
            first_seen TEXT NOT NULL,
            date TEXT NOT NULL,
            feed_url TEXT NOT NULL,
            tagged INTEGER NOT NULL DEFAULT 0
        );
        INSERT INTO items_new (id, key, link, title, excerpt, kind, published, first_seen, date,
                               feed_url)
            SELECT id, key, link, title, excerpt, kind, published, first_seen, date, feed_url
            FROM items;
        DROP TABLE items;
        ALTER TABLE items_new RENAME TO items;
        CREATE INDEX items_date ON items (date);
        CREATE INDEX items_untagged ON items (id) WHERE tagged = 0;
        CREATE INDEX item_ambassadors_ambassador ON item_ambassadors (ambassador_id, item_id);
        CREATE TABLE item_messages (
            message_id TEXT NOT NULL,
            item_id INTEGER NOT NULL REFERENCES items (id) ON DELETE CASCADE,
            PRIMARY KEY (message_id, item_id)
        ) WITHOUT ROWID;
        CREATE INDEX item_messages_item ON item_messages (item_id);
        CREATE VIRTUAL TABLE items_fts USING fts5 (
            title, excerpt, tokenize = 'unicode61 remove_diacritics 0'
        );
        INSERT INTO items_fts (rowid, title, excerpt)
            SELECT id, nfc(title), nfc(excerpt) FROM items
        """,
    ),
    (
        # Bounces and complaints that came back later (pipeline.bounces): one row per report
        # and address it names, so a report read twice changes nothing. `withdrawn_by` says
        # how a consent was withdrawn when it was not by the reader's own hand (a complaint).
        "0014_bounces",
        """
        CREATE TABLE bounces (
            id INTEGER PRIMARY KEY,
            report TEXT NOT NULL,
            address TEXT NOT NULL,
            kind TEXT NOT NULL CHECK (
                kind IN ('permanent', 'temporary', 'delayed', 'complaint')
            ),
            reason TEXT NOT NULL,
            subscriber_id INTEGER,
            edition_id INTEGER,
            received TEXT NOT NULL,
            UNIQUE (report, address)
        );
        CREATE INDEX bounces_subscriber ON bounces (subscriber_id, id);
        CREATE INDEX bounces_received ON bounces (received);
        ALTER TABLE consents ADD COLUMN withdrawn_by TEXT;
        """,
    ),
]


class Migrations(Database):
    """Brings a database's schema up to date when it is opened."""

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
        # Foreign keys off while the schema changes, as SQLite's own recipe for copying a
        # table has it: dropping the old `items` must not cascade into the tables that refer
        # to it. Each migration is checked for broken references before it commits.
        self.conn.execute("PRAGMA foreign_keys = OFF")
        try:
            for name, sql in MIGRATIONS:
                if name in done:
                    continue
                logger.info("Applying database migration %s", name)
                with self.transaction():
                    for statement in sql.split(";"):
                        if statement.strip():
                            self.conn.execute(statement)
                    broken = self.conn.execute("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise StoreError(
                            f"migration {name} of {self.path} left {len(broken)} broken "
                            f"references (first in the table {broken[0][0]}); nothing was changed"
                        )
                    self.conn.execute(
                        "INSERT INTO migrations (name, applied) VALUES (?, ?)",
                        (name, iso(datetime.now(UTC))),
                    )
        finally:
            self.conn.execute("PRAGMA foreign_keys = ON")
