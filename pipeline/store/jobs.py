"""The scheduler's ledger (one row per job and slot) and the alerts to admins kept until sent."""

from __future__ import annotations

import sqlite3
from datetime import datetime

from ..models import AlertRow, JobRun
from .db import Database, _opt, iso, parse_iso


class Jobs(Database):
    """Job runs and alerts."""

    # -- the scheduler -----------------------------------------------------------------------

    def claim_run(self, job: str, slot: str, *, due: datetime, now: datetime) -> JobRun | None:
        """Claim `job`'s `slot` for a run starting now; None (and nothing written) if that
        slot was claimed before, by this process or any earlier one."""
        row = self._q(
            "INSERT INTO job_runs (job, slot, due, started) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (job, slot) DO NOTHING RETURNING *",
            (job, slot, iso(due), iso(now)),
        ).fetchone()
        return _job_run(row) if row else None

    def finish_run(
        self, job: str, slot: str, *, now: datetime, outcome: str, detail: str = ""
    ) -> None:
        self._q(
            "UPDATE job_runs SET finished = ?, outcome = ?, detail = ? WHERE job = ? AND slot = ?",
            (iso(now), outcome, detail, job, slot),
        )

    def run_of(self, job: str, slot: str) -> JobRun | None:
        row = self._q("SELECT * FROM job_runs WHERE job = ? AND slot = ?", (job, slot)).fetchone()
        return _job_run(row) if row else None

    def last_slot(self, job: str) -> str | None:
        """The latest slot of `job` ever claimed (run or skipped)."""
        row = self._q("SELECT max(slot) AS slot FROM job_runs WHERE job = ?", (job,)).fetchone()
        return row["slot"] if row else None

    def last_runs(self) -> dict[str, JobRun]:
        """Each job's latest run that was not skipped, by job name."""
        rows = self._q(
            "SELECT * FROM job_runs AS r WHERE outcome IS NOT 'skipped' AND slot = "
            "(SELECT max(slot) FROM job_runs WHERE job = r.job AND outcome IS NOT 'skipped')"
        )
        return {r["job"]: _job_run(r) for r in rows}

    # -- alerts --------------------------------------------------------------------------------

    def add_alert(
        self, key: str, recipients: list[str], *, subject: str, body: str, now: datetime
    ) -> bool:
        """Queue an alert for each recipient; False if it was made before (an alert with the
        same key is never made twice). With no recipients it is kept as settled: only logged."""
        rows: list[tuple[str, str, str, str, str, str | None]] = [
            (key, r, iso(now), subject, body, None) for r in recipients
        ] or [(key, "", iso(now), subject, body, iso(now))]
        before = self.conn.total_changes
        self.conn.executemany(
            "INSERT INTO alerts (key, recipient, created, subject, body, sent) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (key, recipient) DO NOTHING",
            rows,
        )
        return self.conn.total_changes > before

    def pending_alerts(self) -> list[AlertRow]:
        rows = self._q("SELECT * FROM alerts WHERE sent IS NULL ORDER BY id")
        return [
            AlertRow(
                id=r["id"],
                key=r["key"],
                recipient=r["recipient"],
                created=parse_iso(r["created"]),
                subject=r["subject"],
                body=r["body"],
                tries=r["tries"],
            )
            for r in rows
        ]

    def alert_sent(self, alert_id: int, now: datetime, error: str | None = None) -> None:
        """Settle an alert: sent, or (with `error`) given up on."""
        self._q(
            "UPDATE alerts SET sent = ?, tries = tries + 1, last_error = ? WHERE id = ?",
            (iso(now), error, alert_id),
        )

    def alert_failed(self, alert_id: int, error: str) -> None:
        """Note a try that failed; the alert stays queued."""
        self._q(
            "UPDATE alerts SET tries = tries + 1, last_error = ? WHERE id = ?", (error, alert_id)
        )


def _job_run(r: sqlite3.Row) -> JobRun:
    return JobRun(
        job=r["job"],
        slot=r["slot"],
        due=parse_iso(r["due"]),
        started=parse_iso(r["started"]),
        finished=_opt(r["finished"]),
        outcome=r["outcome"],
        detail=r["detail"],
    )
