"""Bounces and complaints that came back later: one row per report and address it names, and
what each does to the reader (pipeline.bounces reads the reports)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..models import Subscriber
from .db import iso, parse_iso
from .subscribers import Subscribers, _subscriber, count_refusal


@dataclass(frozen=True)
class BounceEffect:
    """What one address of a report did."""

    new: bool
    """False when this report was read before: nothing happened again."""
    counted: bool = False
    """A permanent failure counted against the reader (one more edition refused in a row)."""
    bounced: bool = False
    """That count made the reader `bounced`."""
    unsubscribed: bool = False
    """A complaint unsubscribed the reader."""


BOUNCED_LATER = "bounced later: "
"""How a delivery's error begins when a bounce of it came back later."""
REFUSED_AT_DELIVERY = "5[0-9][0-9] *"
"""A SQLite GLOB for how a delivery's error begins when the server refused it for good."""


class Bounces(Subscribers):
    """The reports read from the return path's mailbox."""

    def subscriber_by_address(self, address: str) -> Subscriber | None:
        """The subscriber with this address, its case ignored (a bounce may change it)."""
        row = self._q(
            "SELECT * FROM subscribers WHERE email = ? OR lower(email) = lower(?) LIMIT 1",
            (address, address),
        ).fetchone()
        return _subscriber(row) if row else None

    def record_bounce(
        self,
        *,
        report: str,
        kind: str,
        address: str,
        reason: str,
        subscriber_id: int | None,
        edition_id: int | None,
        now: datetime,
        bounce_limit: int,
    ) -> BounceEffect:
        """Record one address of a report (`report` names the report: the same one read again
        changes nothing) and act on it, in one transaction.

        A permanent failure marks the reader's delivery of the edition failed and counts as a
        refusal for good at delivery does, once per edition: the reader's count becomes their
        editions refused in a row back to the last one delivered. Without `edition_id`
        (no VERP), the edition is the latest one delivered to the reader. A complaint
        unsubscribes the reader, noting on their consent records it was by complaint.
        """
        with self.transaction():
            row = self._q(
                """INSERT INTO bounces (report, address, kind, reason, subscriber_id, edition_id,
                                        received)
                   VALUES (?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT (report, address) DO NOTHING
                   RETURNING id""",
                (report, address, kind, reason, subscriber_id, edition_id, iso(now)),
            ).fetchone()
            if row is None:
                return BounceEffect(new=False)
            if subscriber_id is None:
                return BounceEffect(new=True)
            if kind == "complaint":
                return BounceEffect(
                    new=True, unsubscribed=self.unsubscribe(subscriber_id, now=now, by="complaint")
                )
            if kind != "permanent":
                return BounceEffect(new=True)
            return self._refused(row["id"], subscriber_id, edition_id, reason, now, bounce_limit)

    def _refused(
        self,
        bounce_id: int,
        subscriber_id: int,
        edition_id: int | None,
        reason: str,
        now: datetime,
        bounce_limit: int,
    ) -> BounceEffect:
        if edition_id is None:
            found = self._q(
                """SELECT max(edition_id) AS e FROM deliveries
                   WHERE subscriber_id = ? AND state IN ('sent', 'failed')""",
                (subscriber_id,),
            ).fetchone()
            edition_id = found["e"]
            if edition_id is None:
                return BounceEffect(new=True)
            self._q("UPDATE bounces SET edition_id = ? WHERE id = ?", (edition_id, bounce_id))
        changed = self._q(
            """UPDATE deliveries SET state = 'failed', last_error = ?, updated = ?
               WHERE edition_id = ? AND subscriber_id = ? AND state = 'sent'""",
            (f"{BOUNCED_LATER}{reason}", iso(now), edition_id, subscriber_id),
        ).rowcount
        if not changed:  # refused at delivery, or a bounce of it read already: counted once
            return BounceEffect(new=True)
        bounced = count_refusal(
            self, subscriber_id, bounce_limit, now, in_a_row=self._refused_in_a_row(subscriber_id)
        )
        return BounceEffect(new=True, counted=True, bounced=bounced)

    def _refused_in_a_row(self, subscriber_id: int) -> int:
        """The reader's latest editions refused for good in a row (at delivery, or bounced
        later), back to the last one sent: a message a relay took counts as delivered only
        until its bounce comes back. Rows that say nothing of the address (skipped, deferred,
        not sendable) neither count nor break the run."""
        n = 0
        for r in self._q(
            """SELECT state, coalesce(last_error GLOB ? OR last_error GLOB ?, 0) AS refused
               FROM deliveries
               WHERE subscriber_id = ? AND state IN ('sent', 'failed')
               ORDER BY edition_id DESC""",
            (f"{BOUNCED_LATER}*", REFUSED_AT_DELIVERY, subscriber_id),
        ):
            if r["state"] == "sent":
                break
            n += r["refused"]
        return n

    def bounce_counts(self, since: datetime) -> dict[str, int]:
        """The reports' addresses recorded since `since`, by kind."""
        counts = dict.fromkeys(("permanent", "temporary", "delayed", "complaint"), 0)
        for r in self._q(
            "SELECT kind, count(*) AS n FROM bounces WHERE received >= ? GROUP BY kind",
            (iso(since),),
        ):
            counts[r["kind"]] = r["n"]
        return counts

    def bounces_since(self, after_id: int, kind: str) -> list[dict[str, Any]]:
        """The rows of one kind recorded after the row id `after_id`, oldest first."""
        rows = self._q(
            """SELECT b.id, b.address, b.reason, b.received, s.email
               FROM bounces b LEFT JOIN subscribers s ON s.id = b.subscriber_id
               WHERE b.id > ? AND b.kind = ? ORDER BY b.id""",
            (after_id, kind),
        )
        return [dict(r) for r in rows]

    def last_bounce_id(self) -> int:
        return int(self._q("SELECT coalesce(max(id), 0) FROM bounces").fetchone()[0])

    def bounce_records(self) -> dict[int, tuple[int, dict[str, str] | None]]:
        """Each subscriber's permanent failures in a row, and their last failure (its kind,
        reason and time): a bounce read later, or a refusal at delivery."""
        out: dict[int, tuple[int, dict[str, str] | None]] = {}
        for r in self._q("SELECT id, hard_bounces FROM subscribers WHERE hard_bounces > 0"):
            out[r["id"]] = (r["hard_bounces"], None)
        rows = self._q(
            """SELECT subscriber_id, kind, reason, at FROM (
                   SELECT subscriber_id, kind, reason, received AS at,
                          row_number() OVER (PARTITION BY subscriber_id
                                             ORDER BY received DESC, n DESC) AS k
                   FROM (SELECT subscriber_id, kind, reason, received, 1 AS n FROM bounces
                         WHERE subscriber_id IS NOT NULL
                           AND kind IN ('permanent', 'temporary')
                         UNION ALL
                         SELECT subscriber_id, 'permanent', last_error, updated, 0 FROM deliveries
                         WHERE state = 'failed' AND last_error GLOB :refused))
               WHERE k = 1""",
            {"refused": REFUSED_AT_DELIVERY},
        )
        for r in rows:
            count = out.get(r["subscriber_id"], (0, None))[0]
            when = parse_iso(r["at"]).isoformat()
            out[r["subscriber_id"]] = (
                count,
                {"kind": r["kind"], "reason": r["reason"], "time": when},
            )
        return out
