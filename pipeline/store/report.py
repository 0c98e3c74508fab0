"""What the open report reads: items by ambassador and kind, and their texts, in a window."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from ..models import Kind
from .db import Database, iso


class Reports(Database):
    """The report's queries (nothing is written)."""

    def item_counts(self, start: datetime, until: datetime) -> dict[str, dict[Kind, int]]:
        """Items dated from `start` until (not including) `until`, by ambassador and kind."""
        counts: dict[str, dict[Kind, int]] = {}
        rows = self._q(
            """SELECT ia.ambassador_id AS ambassador, i.kind, count(*) AS n
               FROM items i JOIN item_ambassadors ia ON ia.item_id = i.id
               WHERE i.date >= ? AND i.date < ?
               GROUP BY ia.ambassador_id, i.kind""",
            (iso(start), iso(until)),
        )
        for r in rows:
            counts.setdefault(r["ambassador"], {})[Kind(r["kind"])] = r["n"]
        return counts

    def report_mark(self) -> tuple[object, ...]:
        """What changes when anything the report reads does: a new item, a new credit, an item
        turned chronicle or film (its title, excerpt and date with it), the day counting began,
        an indicator's fetch (new or revised values, a failure or a recovery)."""
        row = self._q(
            """SELECT (SELECT count(*) FROM items) AS items,
                      (SELECT max(id) FROM items) AS newest,
                      (SELECT count(*) FROM items WHERE kind = 'chronicle') AS chronicles,
                      (SELECT count(*) FROM items WHERE kind = 'video') AS videos,
                      (SELECT count(*) FROM item_ambassadors) AS credits,
                      (SELECT value FROM meta WHERE key = 'counting_since') AS since,
                      (SELECT count(*) FROM indicator_values) AS values_,
                      (SELECT max(fetched) FROM indicator_values) AS fetched,
                      (SELECT count(*) FROM indicator_revisions) AS revisions,
                      (SELECT max(last_attempt) FROM indicator_sources) AS attempted"""
        ).fetchone()
        return tuple(row)

    def item_texts(
        self, start: datetime, until: datetime, ambassadors: Sequence[str]
    ) -> list[tuple[str, str]]:
        """Title and excerpt of each item dated from `start` until (not including) `until` and
        credited to one of `ambassadors`."""
        marks = ",".join("?" * len(ambassadors))
        rows = self._q(
            f"""SELECT i.title, i.excerpt FROM items i
                WHERE i.date >= ? AND i.date < ? AND EXISTS (
                    SELECT 1 FROM item_ambassadors ia
                    WHERE ia.item_id = i.id AND ia.ambassador_id IN ({marks}))""",  # noqa: S608
            (iso(start), iso(until), *ambassadors),
        )
        return [(r["title"], r["excerpt"]) for r in rows]
