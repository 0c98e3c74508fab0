"""Editions: their frozen content, their items and meetings, the delivery ledger (one row per
reader), the items left out, and the public archive."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime

from ..errors import StoreError
from ..models import (
    ArchivedEdition,
    DeliveryState,
    EditionRow,
    EditionStatus,
    LeftOutRow,
    Recipient,
    Rendered,
    SubscriberState,
)
from .db import Database, _opt, iso, parse_iso
from .subscribers import count_refusal


class Editions(Database):
    """Editions, their deliveries and the archive."""

    def last_edition_created(self) -> datetime | None:
        """When the latest edition's items were chosen: when it was built, or, for one frozen
        from a draft, when the draft was (items collected after that are due next)."""
        row = self._q("SELECT max(coalesce(cutoff, created)) AS c FROM editions").fetchone()
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
        cutoff: datetime | None = None,
    ) -> tuple[int, int]:
        """Freeze an edition and queue every active subscriber; returns (id, recipients).

        `left_out` holds the (item id, reason) of the items it could not show (see `leave_out`).
        `cutoff`, for an edition frozen from the desk's draft, is when the draft was built:
        items collected after it are due in the next edition.
        One transaction: either the edition exists with its items and its queue, or nothing does.
        """
        with self.transaction():
            cur = self._q(
                """INSERT INTO editions (created, status, subject, html, text, cutoff)
                   VALUES (?, ?, ?, ?, ?, ?)""",
                (
                    iso(created),
                    EditionStatus.SENDING.value,
                    rendered.subject,
                    rendered.html,
                    rendered.text,
                    iso(cutoff) if cutoff else None,
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
            """SELECT d.subscriber_id, d.email, s.name, s.state, s.hard_bounces
               FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id
               WHERE d.edition_id = ? AND d.state IN ('queued', 'sending') AND d.subscriber_id > ?
               ORDER BY d.subscriber_id LIMIT ?""",
            (edition_id, after, limit),
        ).fetchall()
        return [
            Recipient(
                r["subscriber_id"],
                r["email"],
                r["name"],
                SubscriberState(r["state"]),
                r["hard_bounces"],
            )
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
                self._clear_failures([subscriber_id])
                return False
            if state != DeliveryState.FAILED:
                return False
            return count_refusal(self, subscriber_id, bounce_limit, now)

    def settle_sent(
        self,
        sent: list[tuple[int, int]],
        going: list[tuple[int, int, str]],
        *,
        now: datetime,
        cleared: list[int] | None = None,
    ) -> None:
        """At once: the (edition, subscriber) rows of `sent` settled as sent, and the (edition,
        subscriber, Message-ID) rows of `going` marked as about to go on the wire; the readers
        `cleared` (among `sent`, with failures on record) have their record of failures
        cleared, as `record_delivery` does. What one commit of a send does for several
        connections: one statement, atomic by itself, unless there are failures to clear."""
        rows: list[tuple[int, int, str, str | None, int]]
        rows = [(eid, sid, "sent", None, 1) for eid, sid in sent]
        rows += [(eid, sid, "sending", mid, 0) for eid, sid, mid in going]
        if not rows:
            return
        # Only placeholders are joined into the text: one "(?, ?, ?, ?, ?)" a row.
        sql = f"""WITH v (edition_id, subscriber_id, state, message_id, tried) AS
                      (VALUES {", ".join(["(?, ?, ?, ?, ?)"] * len(rows))})
                  UPDATE deliveries SET state = v.state,
                      message_id = coalesce(v.message_id, deliveries.message_id),
                      attempts = attempts + v.tried,
                      last_error = CASE WHEN v.tried THEN NULL ELSE last_error END,
                      updated = ?
                  FROM v WHERE deliveries.edition_id = v.edition_id
                      AND deliveries.subscriber_id = v.subscriber_id"""  # noqa: S608
        params = [value for row in rows for value in row] + [iso(now)]
        if not cleared:
            self._q(sql, params)
            return
        with self.transaction():
            self._q(sql, params)
            self._clear_failures(cleared)

    def _clear_failures(self, subscriber_ids: list[int]) -> None:
        """A delivery clears the reader's record of editions refused for good."""
        self.conn.executemany(
            "UPDATE subscribers SET hard_bounces = 0 WHERE id = ? AND hard_bounces > 0",
            [(sid,) for sid in subscriber_ids],
        )

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
                """SELECT id AS edition_id FROM editions e WHERE EXISTS (
                       SELECT 1 FROM deliveries d WHERE d.edition_id = e.id
                       AND d.state = 'deferred' AND d.updated <= ?) ORDER BY id""",
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
            """SELECT id, (SELECT count(*) FROM deliveries d
                           WHERE d.edition_id = e.id AND d.state IN ('queued', 'sending')) AS n
               FROM editions e"""
        )  # edition by edition, each a range of the deliveries_state index
        return {int(r["id"]): int(r["n"]) for r in rows if r["n"]}

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

    def published_mark(self) -> tuple[int, int | None]:
        """How many editions `published_editions` lists, and the newest id among them: it
        changes when an edition is published."""
        row = self._q(
            """SELECT count(*) AS n, max(id) AS newest FROM editions e
               WHERE status = 'sent' OR EXISTS (
                   SELECT 1 FROM deliveries d WHERE d.edition_id = e.id AND d.state = 'sent')"""
        ).fetchone()
        return int(row["n"]), row["newest"]

    def published_edition(self, edition_id: int) -> tuple[ArchivedEdition, Rendered] | None:
        """One edition of `published_editions` with its frozen content, or None."""
        for edition in self.published_editions():
            if edition.id == edition_id:
                return edition, self.edition_content(edition_id)
        return None
