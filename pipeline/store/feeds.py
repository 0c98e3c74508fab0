"""The feeds table: each feed URL's validators and how its fetches went."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from datetime import datetime

from ..models import FeedHealth
from .db import Database, _opt, iso


class Feeds(Database):
    """The feeds' validators and health."""

    def record_fetch(
        self,
        url: str,
        *,
        now: datetime,
        error: str | None,
        status: int | None,
        etag: str | None = None,
        last_modified: str | None = None,
        moved_to: str | None = None,
        retry_after: datetime | None = None,
    ) -> None:
        """Record one fetch of a feed: its validators on success, its error on failure.

        A feed is gone from its first 410 answer until it answers anything else; `retry_after`
        is when its server asked to be asked again (Retry-After), if it did.
        """
        self._q("INSERT OR IGNORE INTO feeds (url) VALUES (?)", (url,))
        if error is None:
            self._q(
                """UPDATE feeds SET last_attempt = :now, last_success = :now, last_status = :status,
                       consecutive_failures = 0, last_error = NULL, moved_to = :moved,
                       gone_since = NULL, retry_after = NULL,
                       etag = COALESCE(:etag, etag), last_modified = COALESCE(:lm, last_modified)
                   WHERE url = :url""",
                {
                    "now": iso(now),
                    "status": status,
                    "moved": moved_to,
                    "etag": etag,
                    "lm": last_modified,
                    "url": url,
                },
            )
        else:
            self._q(
                """UPDATE feeds SET last_attempt = :now, last_status = :status, last_error = :error,
                       consecutive_failures = consecutive_failures + 1,
                       gone_since = CASE WHEN :status = 410 THEN COALESCE(gone_since, :now)
                                         END,
                       retry_after = :retry_after
                   WHERE url = :url""",
                {
                    "now": iso(now),
                    "status": status,
                    "error": error,
                    "retry_after": iso(retry_after) if retry_after else None,
                    "url": url,
                },
            )
        if self.get_meta("counting_since") is None:
            self.set_meta("counting_since", iso(now))

    def feed_health(self) -> dict[str, FeedHealth]:
        """Every feed the database knows, by URL."""
        return {r["url"]: _feed_health(r) for r in self._q("SELECT * FROM feeds")}

    def feed(self, url: str) -> FeedHealth | None:
        row = self._q("SELECT * FROM feeds WHERE url = ?", (url,)).fetchone()
        return _feed_health(row) if row else None

    def mark_feeds_alerted(self, urls: Iterable[str], now: datetime | None) -> None:
        """Note that admins were told these feeds are failing (now), or that they recovered."""
        self.conn.executemany(
            "UPDATE feeds SET alerted_failing = ? WHERE url = ?",
            [(iso(now) if now else None, url) for url in urls],
        )


def _feed_health(r: sqlite3.Row) -> FeedHealth:
    return FeedHealth(
        url=r["url"],
        last_attempt=_opt(r["last_attempt"]),
        last_success=_opt(r["last_success"]),
        last_status=r["last_status"],
        consecutive_failures=r["consecutive_failures"],
        last_error=r["last_error"],
        moved_to=r["moved_to"],
        gone_since=_opt(r["gone_since"]),
        retry_after=_opt(r["retry_after"]),
        etag=r["etag"],
        last_modified=r["last_modified"],
        alerted_failing=_opt(r["alerted_failing"]),
    )
