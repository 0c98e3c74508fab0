"""The items collected and the ambassadors each is credited to."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from datetime import datetime

from ..models import Entry, Item, Kind
from .db import Database, iso, parse_iso


class Items(Database):
    """Items and their credits."""

    def store_entry(
        self, entry: Entry, *, kind: Kind, feed_url: str, ambassadors: Iterable[str], now: datetime
    ) -> bool:
        """Store one entry as an item credited to `ambassadors`; True if the article is new.

        The same article (same key) from another feed adds credits; a copy of a higher kind
        (`Kind.rank`: a chronicle over a film over a blog post) turns the item into that kind,
        and its title, excerpt and link win. The full-text index follows the item, and an
        item whose text changed is tagged again (pipeline.library).
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
            self._index_text(item_id, entry.title, entry.excerpt)
        else:
            row = self._q("SELECT id, kind FROM items WHERE key = ?", (entry.key,)).fetchone()
            item_id = row["id"]
            if kind.rank > Kind(row["kind"]).rank:
                self._q(
                    """UPDATE items SET kind = ?, link = coalesce(nullif(?, ''), link),
                           title = ?, excerpt = ?,
                           published = COALESCE(?, published), date = COALESCE(?, date),
                           feed_url = ?, tagged = 0
                       WHERE id = ?""",
                    (
                        kind.value,
                        entry.link,
                        entry.title,
                        entry.excerpt,
                        published,
                        published,
                        feed_url,
                        item_id,
                    ),
                )
                self._q("DELETE FROM items_fts WHERE rowid = ?", (item_id,))
                self._index_text(item_id, entry.title, entry.excerpt)
        self.conn.executemany(
            "INSERT OR IGNORE INTO item_ambassadors (item_id, ambassador_id) VALUES (?, ?)",
            [(item_id, a) for a in ambassadors],
        )
        return new

    def _index_text(self, item_id: int, title: str, excerpt: str) -> None:
        self._q(
            "INSERT INTO items_fts (rowid, title, excerpt) VALUES (?, nfc(?), nfc(?))",
            (item_id, title, excerpt),
        )

    def due_items(
        self, *, since: datetime, previous: datetime | None
    ) -> list[tuple[Item, list[str]]]:
        """Items in no edition yet, dated after `since`, and dated or first seen after `previous`
        (inclusive: an item seen in the very second an edition was built is not lost).

        An item an editor dropped at the desk is never due; one kept again after a drop is due
        whenever it was seen, within `since`.

        Returns each item with the ids of the ambassadors it is credited to, newest first.
        """
        rows = self._q(
            """SELECT i.*, group_concat(ia.ambassador_id, char(31)) AS ambassadors
               FROM items i JOIN item_ambassadors ia ON ia.item_id = i.id
               LEFT JOIN desk_choices dc ON dc.item_id = i.id
               WHERE NOT EXISTS (SELECT 1 FROM edition_items ei WHERE ei.item_id = i.id)
                 AND NOT EXISTS (SELECT 1 FROM left_out_items lo WHERE lo.item_id = i.id)
                 AND i.date >= :since
                 AND coalesce(dc.dropped, 0) = 0
                 AND (:previous IS NULL OR i.date >= :previous OR i.first_seen >= :previous
                      OR dc.dropped = 0)
               GROUP BY i.id
               ORDER BY i.date DESC, i.id DESC""",
            {"since": iso(since), "previous": iso(previous) if previous else None},
        )
        return [(_item(r), sorted(r["ambassadors"].split("\x1f"))) for r in rows]

    def dropped_items(self, *, since: datetime) -> list[int]:
        """The ids of the items an editor dropped at the desk that are in no edition and dated
        after `since`: a draft offers them again, left out, so that they can be kept."""
        rows = self._q(
            """SELECT i.id FROM items i JOIN desk_choices dc ON dc.item_id = i.id
               WHERE dc.dropped = 1 AND i.date >= ?
                 AND NOT EXISTS (SELECT 1 FROM edition_items ei WHERE ei.item_id = i.id)
                 AND NOT EXISTS (SELECT 1 FROM left_out_items lo WHERE lo.item_id = i.id)
               ORDER BY i.date DESC, i.id DESC""",
            (iso(since),),
        )
        return [int(r["id"]) for r in rows]

    def edition_count(self) -> int:
        return int(self._q("SELECT count(*) FROM editions").fetchone()[0])

    def item_count(self) -> int:
        return int(self._q("SELECT count(*) FROM items").fetchone()[0])


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
