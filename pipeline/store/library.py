"""What the library reads: every item collected, filtered, searched and paged, and the
messages each carries (`item_messages`, kept by pipeline.library.tag)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from ..models import Kind, LibraryItem
from .db import Database, _opt, iso, parse_iso


@dataclass(frozen=True)
class Query:
    """One library query as SQL sees it: every part optional, all of them must hold."""

    match: str = ""
    """An FTS5 query over titles and excerpts (pipeline.library.match builds it)."""
    message: str | None = None
    ambassador: str | None = None
    kind: Kind | None = None
    start: datetime | None = None
    until: datetime | None = None
    """Items dated from `start` until (not including) `until`."""

    def where(self) -> tuple[str, list[object]]:
        parts: list[str] = []
        params: list[object] = []
        if self.match:
            parts.append("i.id IN (SELECT rowid FROM items_fts WHERE items_fts MATCH ?)")
            params.append(self.match)
        if self.message is not None:
            parts.append("i.id IN (SELECT item_id FROM item_messages WHERE message_id = ?)")
            params.append(self.message)
        if self.ambassador is not None:
            parts.append("i.id IN (SELECT item_id FROM item_ambassadors WHERE ambassador_id = ?)")
            params.append(self.ambassador)
        if self.kind is not None:
            parts.append("i.kind = ?")
            params.append(self.kind.value)
        if self.start is not None:
            parts.append("i.date >= ?")
            params.append(iso(self.start))
        if self.until is not None:
            parts.append("i.date < ?")
            params.append(iso(self.until))
        return (" AND ".join(parts) or "1"), params


BROAD = 1000
"""Hits above which a page is read in date order from the date index rather than sorted."""


class Library(Database):
    """The library's queries, and the tags that say which messages an item carries."""

    def library_items(
        self, query: Query, *, limit: int, offset: int = 0
    ) -> tuple[list[LibraryItem], int]:
        """The items `query` finds, newest first, from `offset`, at most `limit`; and how many
        it finds in all."""
        where, params = query.where()
        if query.match and query == Query(match=query.match):  # a search alone: FTS5 counts it
            count = "SELECT count(*) FROM items_fts WHERE items_fts MATCH ?"
        else:
            count = f"SELECT count(*) FROM items i WHERE {where}"  # noqa: S608
        total = int(self._q(count, params).fetchone()[0])
        if not total or offset >= total:
            return [], total
        # Many hits are read in date order from the date index, each looked up among the hits,
        # until the page is full: for a search that finds most of 20,000 items, a fifth of the
        # time of sorting them all. Few hits are found first and sorted.
        order = "INDEXED BY items_date" if total > BROAD else ""
        rows = self._q(
            f"""SELECT i.id, i.link, i.title, i.excerpt, i.kind, i.date, i.published,
                       (SELECT group_concat(ambassador_id, char(31)) FROM item_ambassadors
                        WHERE item_id = i.id) AS ambassadors,
                       (SELECT group_concat(message_id, char(31)) FROM item_messages
                        WHERE item_id = i.id) AS messages
                FROM items i {order} WHERE {where}
                ORDER BY i.date DESC, i.id DESC
                LIMIT ? OFFSET ?""",  # noqa: S608
            (*params, limit, offset),
        )
        return [_library_item(r) for r in rows], total

    def message_counts(self) -> dict[str, int]:
        """How many items carry each message (a message without any is left out)."""
        rows = self._q("SELECT message_id, count(*) AS n FROM item_messages GROUP BY message_id")
        return {r["message_id"]: int(r["n"]) for r in rows}

    def library_mark(self) -> tuple[object, ...]:
        """What changes when anything the library shows does: a new item, a new credit, an
        item turned chronicle or film, its tags."""
        row = self._q(
            """SELECT (SELECT max(id) FROM items) AS newest,
                      (SELECT count(*) FROM items WHERE kind = 'chronicle') AS chronicles,
                      (SELECT count(*) FROM items WHERE kind = 'video') AS videos,
                      (SELECT count(*) FROM item_ambassadors) AS credits,
                      (SELECT count(*) FROM item_messages) AS tags,
                      (SELECT value FROM meta WHERE key = 'message_bank') AS bank"""
        ).fetchone()
        return tuple(row)

    # -- tags ------------------------------------------------------------------------------

    def has_untagged(self) -> bool:
        """Whether any item's messages are not yet known."""
        return self._q("SELECT 1 FROM items WHERE tagged = 0 LIMIT 1").fetchone() is not None

    def untagged_items(self) -> list[tuple[int, str, str]]:
        """Id, title and excerpt of every item whose messages are not yet known."""
        rows = self._q("SELECT id, title, excerpt FROM items WHERE tagged = 0 ORDER BY id")
        return [(int(r["id"]), r["title"], r["excerpt"]) for r in rows]

    def untag_all(self) -> None:
        """Forget every item's messages: the message bank changed, so all are tagged again."""
        self._q("DELETE FROM item_messages")
        self._q("UPDATE items SET tagged = 0 WHERE tagged = 1")

    def save_tags(self, items: Iterable[int], tags: Iterable[tuple[str, int]]) -> None:
        """Record `tags` (message id, item id) and mark `items` as tagged."""
        ids = [(i,) for i in items]
        self.conn.executemany("DELETE FROM item_messages WHERE item_id = ?", ids)
        self.conn.executemany(
            "INSERT OR IGNORE INTO item_messages (message_id, item_id) VALUES (?, ?)", tags
        )
        self.conn.executemany("UPDATE items SET tagged = 1 WHERE id = ?", ids)


def _library_item(r: sqlite3.Row) -> LibraryItem:
    return LibraryItem(
        id=r["id"],
        title=r["title"],
        link=r["link"],
        excerpt=r["excerpt"],
        kind=Kind(r["kind"]),
        date=parse_iso(r["date"]),
        published=_opt(r["published"]),
        ambassadors=tuple(sorted(r["ambassadors"].split("\x1f"))) if r["ambassadors"] else (),
        messages=tuple(sorted(r["messages"].split("\x1f"))) if r["messages"] else (),
    )
