"""The region's indicators as published: each source's fetch state, each period's value as
last published, and every revision (migration 0012_indicators). Nothing is ever deleted: a
period a source stops listing keeps its last value, and a revised value keeps its old one."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from ..models import Observation
from .db import Database, _opt, iso


@dataclass(frozen=True)
class IndicatorSource:
    """What the last fetches of one indicator's source left."""

    indicator_id: str
    source: str
    etag: str | None
    last_modified: str | None
    last_attempt: datetime | None
    last_success: datetime | None
    consecutive_failures: int
    last_error: str | None
    unit: str
    """The dataset's own unit, if it gives one."""
    decimals: int | None
    """The dataset's own decimals, if it gives them."""
    alerted_failing: datetime | None


@dataclass(frozen=True)
class Saved:
    new: int
    """Periods stored for the first time (or published for the first time after missing)."""
    revised: int
    """Periods whose published value changed."""


class Indicators(Database):
    """Indicator sources, values and revisions."""

    def indicator_source(self, indicator_id: str) -> IndicatorSource | None:
        row = self._q(
            "SELECT * FROM indicator_sources WHERE indicator_id = ?", (indicator_id,)
        ).fetchone()
        if row is None:
            return None
        return IndicatorSource(
            indicator_id=row["indicator_id"],
            source=row["source"],
            etag=row["etag"],
            last_modified=row["last_modified"],
            last_attempt=_opt(row["last_attempt"]),
            last_success=_opt(row["last_success"]),
            consecutive_failures=row["consecutive_failures"],
            last_error=row["last_error"],
            unit=row["unit"],
            decimals=row["decimals"],
            alerted_failing=_opt(row["alerted_failing"]),
        )

    def save_series(
        self,
        indicator_id: str,
        source: str,
        observations: Iterable[Observation],
        *,
        now: datetime,
        unit: str = "",
        decimals: int | None = None,
        etag: str | None = None,
        last_modified: str | None = None,
    ) -> Saved:
        """Store a fetched series, in one transaction: new periods added, changed values
        replaced with the old one kept as a revision, and the source marked as working.
        Periods the source no longer lists keep their last value."""
        new = revised = 0
        with self.transaction():
            for o in observations:
                row = self._q(
                    "SELECT value FROM indicator_values WHERE indicator_id = ? AND period = ?",
                    (indicator_id, o.period),
                ).fetchone()
                if row is None:
                    self._q(
                        """INSERT INTO indicator_values
                               (indicator_id, period, value, first_fetched, fetched)
                           VALUES (?, ?, ?, ?, ?)""",
                        (indicator_id, o.period, o.value, iso(now), iso(now)),
                    )
                    new += 1
                    continue
                if row["value"] == o.value:
                    continue
                if row["value"] is None:
                    new += 1  # published now, missing before: no revision of a value
                else:
                    revised += 1
                    self._q(
                        """INSERT INTO indicator_revisions
                               (indicator_id, period, old_value, new_value, found)
                           VALUES (?, ?, ?, ?, ?)""",
                        (indicator_id, o.period, row["value"], o.value, iso(now)),
                    )
                self._q(
                    """UPDATE indicator_values SET value = ?, fetched = ?
                       WHERE indicator_id = ? AND period = ?""",
                    (o.value, iso(now), indicator_id, o.period),
                )
            self._source_worked(
                indicator_id,
                source,
                now=now,
                unit=unit,
                decimals=decimals,
                etag=etag,
                last_modified=last_modified,
            )
        return Saved(new, revised)

    def indicator_not_modified(self, indicator_id: str, source: str, *, now: datetime) -> None:
        """The source answered 304: what is stored stands."""
        with self.transaction():
            row = self.indicator_source(indicator_id)
            self._source_worked(
                indicator_id,
                source,
                now=now,
                unit=row.unit if row else "",
                decimals=row.decimals if row else None,
                etag=row.etag if row else None,
                last_modified=row.last_modified if row else None,
            )

    def indicator_failed(
        self, indicator_id: str, source: str, error: str, *, now: datetime
    ) -> None:
        """The source could not be fetched or read: the stored series stands, the error is
        kept for the report and `status`, and the failures in a row are counted."""
        self._q(
            """INSERT INTO indicator_sources
                   (indicator_id, source, last_attempt, consecutive_failures, last_error)
               VALUES (?, ?, ?, 1, ?)
               ON CONFLICT (indicator_id) DO UPDATE SET
                   source = excluded.source, last_attempt = excluded.last_attempt,
                   consecutive_failures = consecutive_failures + 1,
                   last_error = excluded.last_error""",
            (indicator_id, source, iso(now), error),
        )

    def _source_worked(
        self,
        indicator_id: str,
        source: str,
        *,
        now: datetime,
        unit: str,
        decimals: int | None,
        etag: str | None,
        last_modified: str | None,
    ) -> None:
        self._q(
            """INSERT INTO indicator_sources
                   (indicator_id, source, etag, last_modified, last_attempt, last_success,
                    consecutive_failures, last_error, unit, decimals)
               VALUES (?, ?, ?, ?, ?, ?, 0, NULL, ?, ?)
               ON CONFLICT (indicator_id) DO UPDATE SET
                   source = excluded.source, etag = excluded.etag,
                   last_modified = excluded.last_modified,
                   last_attempt = excluded.last_attempt, last_success = excluded.last_success,
                   consecutive_failures = 0, last_error = NULL,
                   unit = excluded.unit, decimals = excluded.decimals""",
            (indicator_id, source, etag, last_modified, iso(now), iso(now), unit, decimals),
        )

    def indicator_series(self, indicator_id: str) -> list[Observation]:
        """Every stored period of one indicator with its value as last published, and the value
        it was revised from when the last change was a revision."""
        rows = self._q(
            """SELECT v.period, v.value,
                      (SELECT r.old_value FROM indicator_revisions r
                       WHERE r.indicator_id = v.indicator_id AND r.period = v.period
                       ORDER BY r.id DESC LIMIT 1) AS revised_from
               FROM indicator_values v WHERE v.indicator_id = ?""",
            (indicator_id,),
        )
        return [Observation(r["period"], r["value"], r["revised_from"]) for r in rows]

    def indicator_alerted(self, indicator_id: str, when: datetime | None) -> None:
        """Note (or clear) that the admins were told this source is failing."""
        self._q(
            "UPDATE indicator_sources SET alerted_failing = ? WHERE indicator_id = ?",
            (iso(when) if when else None, indicator_id),
        )
