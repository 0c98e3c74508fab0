"""Subscribers, their consent records and confirmations, and the addresses forgotten."""

from __future__ import annotations

import hmac
import logging
import secrets
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from .. import words
from ..models import Confirmation, Consent, ConsentText, Subscriber, SubscriberState
from .db import Database, _opt, iso, parse_iso

logger = logging.getLogger(__name__)

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


_NEXT_SUBSCRIBER_ID = """(SELECT max(
    coalesce((SELECT max(id) FROM subscribers), 0),
    coalesce((SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'retired_subscriber_id'), 0)
) + 1)"""
"""The id of a new subscriber: above every id in use and every id ever erased or purged."""


class Subscribers(Database):
    """Subscribers, sign-ups and consent, erasure."""

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
            self._q("DELETE FROM bounces WHERE subscriber_id = ?", (row["id"],))
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

    # -- the web side: sign-ups and consent ------------------------------------------------

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

    def unsubscribe(self, subscriber_id: int, *, now: datetime, by: str | None = None) -> bool:
        """Unsubscribe a reader and note the withdrawal on their consent records (`by`: how, when
        not by the reader's own hand, e.g. "complaint"); True if this changed their state (False
        when they had unsubscribed already)."""
        with self.transaction():
            self._q(
                """UPDATE consents SET withdrawn = ?, withdrawn_by = ?
                   WHERE subscriber_id = ? AND withdrawn IS NULL""",
                (iso(now), by, subscriber_id),
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
                      confirmation_sent, confirmed, withdrawn, withdrawn_by
               FROM consents WHERE subscriber_id = ? ORDER BY id""",
            (row["id"],),
        )
        bounces = self._q(
            """SELECT kind, address, reason, edition_id, received FROM bounces
               WHERE subscriber_id = ? ORDER BY id""",
            (row["id"],),
        )
        return {
            "subscriber": dict(row),
            "consents": [dict(r) for r in consents],
            "deliveries": [dict(r) for r in deliveries],
            "bounces": [dict(r) for r in bounces],
        }

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


def count_refusal(
    db: Database,
    subscriber_id: int,
    bounce_limit: int,
    now: datetime,
    *,
    in_a_row: int | None = None,
) -> bool:
    """Count one more edition in a row refused for good against a reader (a 5xx at delivery),
    or set the count to `in_a_row` (a bounce that came back later, counted over the ledger):
    at `bounce_limit` an active reader becomes `bounced` and gets nothing more. A delivered
    edition clears the count (`Editions._clear_failures`). Returns True if this made them
    bounced."""
    row = db._q(
        """UPDATE subscribers SET hard_bounces = coalesce(:n, hard_bounces + 1),
               state = CASE WHEN coalesce(:n, hard_bounces + 1) >= :limit AND state = 'active'
                            THEN 'bounced' ELSE state END,
               updated = CASE WHEN coalesce(:n, hard_bounces + 1) >= :limit AND state = 'active'
                              THEN :now ELSE updated END
           WHERE id = :id
           RETURNING state""",
        {"limit": bounce_limit, "now": iso(now), "id": subscriber_id, "n": in_a_row},
    ).fetchone()
    return row is not None and row["state"] == SubscriberState.BOUNCED


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
