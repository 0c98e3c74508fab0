"""The scheduler (`trnews run`): collect and send on the config's cron lines, for years.

APScheduler 3 runs the jobs, with its traps closed (LIBRARIES.md):
- The cron lines are read as wall-clock times in `newsletter.timezone` by our own trigger,
  `cron.WallClock`, never in the host's zone. A time the autumn night shows twice is one slot, run
  at its first occurrence; a time the spring night skips runs when the clocks jump (03:00 in
  Oslo), as cron does.
- Every run first claims its slot in the database (`job_runs`, unique per job and slot), so a
  slot is run at most once, whatever fires twice: a double fire, a restart, a DST night.
- A run is never silently dropped for being late (APScheduler's default grace is 1 s): this
  module decides, with one rule for a busy worker, a suspended machine and a restart alike.
  The latest slot is run if it is at most `GRACE` late; older missed slots are logged and
  skipped, never run in a burst.
- One scheduler per database: `SchedulerLock` is an flock on `{database}.lock`, which the
  kernel drops when the process dies, so a crash leaves no stale lock.

The jobs call the same cycle functions as the CLI (`cycle.collect`, `cycle.send`). With the
editorial desk (`[editorial]` review or approve), a third job makes the draft `draft_hours`
before each send and mails it to the editors (its slots are the send's, earlier: `cron.Ahead`).
A send the desk does not clear (`desk.gate`) sends nothing: the slot is noted on the draft as
`awaiting`, the editors and admins are told once, and the run is recorded as `waiting`; the
desk watch (every `DESK_SECONDS`) sends the edition as soon as an editor approves it, if that
is before the next scheduled send, and records it on that slot's run. The config
file is watched: a valid edit takes effect within `WATCH_SECONDS`, a broken one is logged
(file, key, problem) and the last good config keeps running.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any
from zoneinfo import ZoneInfo

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from . import alerts, cycle, words
from .config import Config, load_config
from .cron import GRACE, MINUTE, SLOT_FORMAT, Ahead, Slot, WallClock, decide
from .errors import (
    AwaitingEditors,
    ConfigError,
    SchedulerRunning,
    TransportUnavailable,
    TrnewsError,
)
from .models import DeskDraft, DeskVerb, DraftState, JobRun
from .store import Store, iso, open_owner_only, parse_iso

logger = logging.getLogger(__name__)

JOBS = ("collect", "send", "draft")
"""The cron jobs; "draft" runs only with the editorial desk (`[editorial]` review or approve)."""
DESK_SECONDS = 15
"""How often a send the editors held up is looked at: an approval is acted on within this."""
WATCH_SECONDS = 2.0
"""How often the config file is looked at."""
SETTLE_SECONDS = 0.2
"""A changed config file is read once it has stayed the same this long, so that a file still
being written is not reported as broken."""
RETRY_WAIT = timedelta(minutes=30)
"""Readers deferred by a 4xx reply are tried again by collect runs at most this often
(RFC 5321 asks for at least 30 minutes between tries)."""

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


# -- the lock -----------------------------------------------------------------------------------


def lock_path(database: Path) -> Path:
    return database.with_name(database.name + ".lock")


class SchedulerLock:
    """An exclusive flock on `{database}.lock` holding the scheduler's pid; the kernel releases
    it when the process ends, however it ends.

    The pid is written by `announce`, once the scheduler has written its next runs: until then
    `holder` sees a scheduler that is still starting, and `status` never shows a pid without
    the schedule that goes with it."""

    ATTEMPTS = 10
    """`holder()` takes the lock shared for an instant; a start that meets it tries again."""

    def __init__(self, database: Path) -> None:
        self.path = lock_path(database)
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = os.fdopen(open_owner_only(self.path, os.O_RDWR | os.O_APPEND), "a+", encoding="utf-8")
        for attempt in range(self.ATTEMPTS):
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    f.close()
                    raise
                if attempt == self.ATTEMPTS - 1:
                    f.close()
                    raise SchedulerRunning(self.path, _read_pid(self.path)) from e
                time.sleep(0.1)
        f.seek(0)
        f.truncate()
        f.flush()
        self._file = f

    def announce(self) -> None:
        """Write this process's pid into the held lock: the scheduler is running."""
        assert self._file is not None
        self._file.seek(0)
        self._file.truncate()
        self._file.write(f"{os.getpid()}\n")
        self._file.flush()

    def release(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.truncate(0)
            self._file.close()  # closing drops the flock
            self._file = None


def holder(database: Path) -> int | None:
    """The pid of the scheduler running on `database`, or None when none runs (or one is still
    starting: it holds the lock but has not announced its pid)."""
    path = lock_path(database)
    try:
        f = path.open(encoding="utf-8")
    except FileNotFoundError:
        return None
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return _read_pid(path)
        fcntl.flock(f, fcntl.LOCK_UN)
        return None


def _read_pid(path: Path) -> int | None:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


# -- what status shows --------------------------------------------------------------------------

STATE_KEY = "scheduler"
"""The meta key holding the running scheduler's next runs and the config it runs."""


def scheduler_status(store: Store) -> dict[str, Any]:
    """`next_collect`, `next_send`, `scheduler_pid` and each job's last run, for `status`."""
    pid = holder(store.path)
    state: dict[str, Any] = {}
    if pid is not None:
        with contextlib.suppress(ValueError, TypeError):
            state = json.loads(store.get_meta(STATE_KEY) or "{}")
    runs = store.last_runs()
    return {
        "next_collect": state.get("next_collect") if pid is not None else None,
        "next_send": state.get("next_send") if pid is not None else None,
        "next_draft": state.get("next_draft") if pid is not None else None,
        "scheduler_pid": pid,
        "scheduler": {
            "running": pid is not None,
            "started": state.get("started") if pid is not None else None,
            "config_loaded": state.get("config_loaded") if pid is not None else None,
            "config_problem": state.get("config_problem") if pid is not None else None,
        },
        "last_runs": {
            job: _run_json(runs[job]) if job in runs else None
            for job in JOBS
            if job != "draft" or job in runs  # the desk's job: shown once it has run
        },
    }


def _run_json(run: JobRun) -> dict[str, Any]:
    return {
        "slot": run.slot,
        "started": run.started.isoformat(),
        "finished": run.finished.isoformat() if run.finished else None,
        "outcome": run.outcome or "unfinished",
        "detail": run.detail,
    }


# -- the scheduler ------------------------------------------------------------------------------


def _fingerprint(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


class Scheduler:
    """`trnews run`: the two jobs, the config watch and the lock, for one config file.

    `clock` is what the jobs take as now (tests move it); APScheduler's own wake-ups use the
    real clock, and each run asks `decide` what is due at `clock()`.
    """

    def __init__(
        self,
        config_path: Path,
        *,
        clock: Clock = utc_now,
        stop: threading.Event | None = None,
    ) -> None:
        self.config_path = config_path
        self.clock = clock
        self.stop = stop or threading.Event()
        """Set by SIGTERM or Ctrl-C: the job in flight stops at its next checkpoint."""
        self.config = load_config(config_path)
        self._fingerprint = _fingerprint(config_path)
        self._problem: str | None = None
        self._loaded = self._started = clock()
        self._lock = SchedulerLock(self.config.database_path)
        self._aps: BackgroundScheduler | None = None
        self._state_lock = threading.Lock()

    # -- life ------------------------------------------------------------------------------

    def start(self) -> None:
        """Take the lock, note the schedule, start the jobs and the watch; catch up once."""
        self._lock.acquire()
        try:
            self.prepare()
            tz = self.config.newsletter.tz
            aps = BackgroundScheduler(
                timezone=tz,
                executors={
                    # One worker: collect and send never overlap, so the send's collect and
                    # the ledger see one writer.
                    "default": ThreadPoolExecutor(1),
                    "watch": ThreadPoolExecutor(1),
                },
                job_defaults={
                    # Lateness is decided by `decide`, with one rule; APScheduler must hand
                    # every late fire over (its default drops a run 1 s late) once.
                    "misfire_grace_time": None,
                    "coalesce": True,
                    "max_instances": 1,
                },
            )
            for job in JOBS:
                aps.add_job(
                    self.run_job,
                    self._trigger(self.config, job),
                    args=[job],
                    id=job,
                    name=job,
                )
            # At start: carry on a send left unfinished, then make up a missed slot (at most
            # GRACE late) of each job.
            aps.add_job(self.startup, "date", id="startup", name="startup")
            aps.add_job(self.watch, "interval", seconds=WATCH_SECONDS, id="watch", executor="watch")
            # On the jobs' own worker: a late approval's send never overlaps a slot's.
            aps.add_job(self.watch_desk, "interval", seconds=DESK_SECONDS, id="desk")
            self._write_state()  # the next runs first, then the pid that makes them visible
            aps.start()
            self._aps = aps
            self._lock.announce()
        except BaseException:
            self._lock.release()
            raise
        logger.info(
            "Scheduler started (pid %d) for %s: collect '%s', send '%s' in %s; next collect "
            "%s, next send %s",
            os.getpid(),
            self.config.database_path,
            self.config.schedule.collect,
            self.config.schedule.send,
            self.config.newsletter.timezone,
            self._next("collect"),
            self._next("send"),
        )

    def prepare(self) -> None:
        """Open the database (migrating it) and note when each cron line took effect."""
        with self._store() as store:
            self._note_lines(store, self.config)

    def shutdown(self) -> None:
        """Stop taking work, let the job in flight stop at its next checkpoint, release."""
        self.stop.set()
        if self._aps is not None:
            self._aps.shutdown(wait=True)
            self._aps = None
        with contextlib.suppress(TrnewsError), self._store() as store:
            store.set_meta(STATE_KEY, "{}")
        self._lock.release()
        logger.info("Scheduler stopped")

    # -- jobs ------------------------------------------------------------------------------

    def startup(self) -> None:
        self.resume_owed()
        for job in JOBS:
            self.run_job(job)
        self.watch_desk()

    def run_job(self, job: str) -> None:
        """Run `job`'s due slot if any (a missed one at most GRACE late), exactly once."""
        if self.stop.is_set():
            return
        config = self.config
        if job == "draft" and not config.editorial.active:
            return
        now = self.clock()
        trigger = self._trigger(config, job)
        try:
            with self._store(config) as store:
                self._run_due(config, store, job, trigger, now)
        except TrnewsError as e:
            logger.error("%s: %s", job, e)
        except Exception:
            logger.exception("%s: unexpected error; please report it", job)
        self._write_state()

    def _run_due(
        self, config: Config, store: Store, job: str, trigger: WallClock, now: datetime
    ) -> None:
        decision = decide(trigger, self._since(store, job, trigger), now)
        tz = config.newsletter.tz
        if decision.missed and decision.first_missed is not None:
            logger.warning(
                "Skipped %s from %s (trnews run was not running or busy); "
                "only the latest is made up, and only if at most %d min late",
                words.count(decision.missed, f"missed {job} run"),
                _local(decision.first_missed.at, tz),
                GRACE // MINUTE,
            )
        if decision.late is not None:
            late = decision.late
            detail = (
                f"missed by {_duration(now - late.at)}, more than the {_duration(GRACE)} allowed"
            )
            if store.claim_run(job, late.key, due=late.at, now=now):
                store.finish_run(job, late.key, now=now, outcome="skipped", detail=detail)
            logger.warning(
                "Skipped the %s of %s: %s; next %s %s",
                job,
                _local(late.at, tz),
                detail,
                job,
                _local_or_none(trigger.next_slot(now), tz),
            )
            return
        slot = decision.run
        if slot is None:
            return
        if store.claim_run(job, slot.key, due=slot.at, now=now) is None:
            earlier = store.run_of(job, slot.key)
            logger.warning(
                "Not running the %s of %s again: it ran already (started %s)",
                job,
                slot.key,
                _local(earlier.started, tz) if earlier else "?",
            )
            return
        behind = now - slot.at
        logger.info(
            "Running the %s of %s%s",
            job,
            _local(slot.at, tz),
            f" ({_duration(behind)} late)" if behind >= MINUTE else "",
        )
        outcome, detail = "failed", ""
        try:
            if job == "collect":
                outcome, detail = self._collect(config, store)
                if outcome == "ok" and not self.stop.is_set():
                    self._resume(config, store)
            elif job == "draft":
                outcome, detail = self._draft(config, store, slot)
            else:
                outcome, detail = self._send(config, store, slot)
        except TrnewsError as e:
            detail = str(e)
            raise
        finally:
            store.finish_run(job, slot.key, now=self.clock(), outcome=outcome, detail=detail)
            log = logger.info if outcome == "ok" else logger.warning
            log("The %s of %s: %s: %s", job, _local(slot.at, tz), outcome, detail)

    def _draft(self, config: Config, store: Store, slot: Slot) -> tuple[str, str]:
        """Make (or rebuild) the draft of the send `slot` prepares and mail it to the editors."""
        from . import desk

        send_at = slot.at + timedelta(hours=config.editorial.draft_hours)
        _, collected = self._collect(config, store)
        if self.stop.is_set():
            return "stopped", f"{collected}; stopped while collecting, before the draft"
        before = store.current_draft()
        now = self.clock()
        draft = desk.make_draft(config, store, now, send_at=send_at)
        send = _day(send_at, config.newsletter.tz)
        if draft is None:
            return "ok", f"{collected}; no draft for the send of {send}: nothing new to send"
        mailed = desk.mail_editors(config, store, draft, now)
        reached = [m.editor for m in mailed if m.error is None]
        made = "Made" if before is None else "Rebuilt"
        line = (
            f"{made} draft {draft.id} for the send of {send} and mailed it to "
            f"{words.count(len(reached), 'editor')}"
        )
        missed = [f"{m.editor} ({m.error})" for m in mailed if m.error is not None]
        if missed:
            line += f"; not to {', '.join(missed)}: they can use 'trnews desk'"
        logger.info("%s", line)
        return ("ok" if not missed else "failed"), f"{collected}; {line}"

    def _collect(self, config: Config, store: Store) -> tuple[str, str]:
        outcomes = cycle.collect(config, store, stop=self.stop)
        from .web import send_owed_confirmations

        send_owed_confirmations(config, store)  # those a stopped `serve` could not send
        failing = [o for o in outcomes if o.error and not o.skipped]
        new = sum(o.new_items for o in outcomes)
        detail = (
            f"{words.count(len(outcomes), 'feed')}, {words.count(new, 'new item')}, "
            f"{len(failing)} failing"
        )
        if self.stop.is_set():
            return "stopped", detail + "; stopped before every feed was fetched"
        return "ok", detail

    def _send(
        self, config: Config, store: Store, slot: Slot, *, collect: bool = True
    ) -> tuple[str, str]:
        collected = ""

        def collect_first() -> None:
            nonlocal collected
            _, collected = self._collect(config, store)

        try:
            report = cycle.send_job(
                config,
                store,
                slot=slot.key,
                collect_first=collect_first if collect else None,
                now=self.clock(),
                stop=self.stop,
            )
        except AwaitingEditors as e:
            return "waiting", _awaiting(config, store, slot, e, self.clock())
        except TransportUnavailable as e:
            return "failed", f"{e}; the readers not yet sent to stay queued"
        except TrnewsError as e:
            return "failed", str(e)
        if report is None:
            return "stopped", "stopped while collecting, before sending"
        if report.edition_id is None:
            return "ok", f"{collected}; no edition: {report.reason}"
        verb = "resumed" if report.resumed else "sent"
        detail = (
            f"{collected}; edition {report.edition_id} {verb}: {report.delivered} delivered, "
            f"{report.deferred} deferred, {report.failed} failed"
        )
        if self.stop.is_set() and report.remaining:
            return "stopped", f"{detail}; {words.count(report.remaining, 'reader')} still owed"
        return "ok", detail

    def watch_desk(self) -> None:
        """Send the edition an editor approved after its slot, at once, if the next
        scheduled send has not come yet (that send handles it otherwise)."""
        config = self.config
        if self.stop.is_set() or not config.editorial.active:
            return
        try:
            with self._store(config) as store:
                self._late_approval(config, store)
        except TrnewsError as e:
            logger.error("desk: %s", e)
        except Exception:
            logger.exception("desk: unexpected error; please report it")

    def _late_approval(self, config: Config, store: Store) -> None:
        now = self.clock()
        found = _cleared_late(config, store, now)
        if found is None:
            return
        draft, slot = found
        tz = config.newsletter.tz
        held = f"the edition held since the send of {_day(slot.at, tz)}"
        approver = draft.last_by(DeskVerb.APPROVE) or "an editor"
        logger.info("Sending %s: %s approved it", held, approver)
        outcome, detail = "failed", ""
        try:
            outcome, detail = self._send(config, store, slot, collect=False)
        except TrnewsError as e:
            detail = str(e)
            raise
        finally:
            if outcome == "ok":
                detail = f"sent {held} after {approver} approved it; {detail.lstrip('; ')}"
            if store.run_of("send", slot.key) is None:
                store.claim_run("send", slot.key, due=slot.at, now=now)
            store.finish_run("send", slot.key, now=self.clock(), outcome=outcome, detail=detail)
            log = logger.info if outcome == "ok" else logger.warning
            log("The send of %s: %s: %s", _local(slot.at, tz), outcome, detail)
            self._write_state()

    def resume_owed(self) -> None:
        """Carry on a send that a stop, a crash or a mail-server outage left unfinished."""
        if self.stop.is_set():
            return
        config = self.config
        try:
            with self._store(config) as store:
                self._resume(config, store)
        except TrnewsError as e:
            logger.error("resume: %s", e)
        except Exception:
            logger.exception("resume: unexpected error; please report it")

    def _resume(self, config: Config, store: Store) -> None:
        owed = store.owed_counts()
        if owed:
            logger.info(
                "Carrying on %s %s: %s still owed",
                "edition" if len(owed) == 1 else "editions",
                ", ".join(map(str, sorted(owed))),
                words.count(sum(owed.values()), "reader"),
            )
        try:
            report = cycle.send(
                config,
                store,
                now=self.clock(),
                stop=self.stop,
                build=False,
                retry_wait=RETRY_WAIT,
            )
        except TransportUnavailable as e:
            logger.warning(
                "Could not carry on the send: %s; trying again after the next collect", e
            )
            return
        if report.edition_id is not None:
            logger.info(
                "Carried on edition %d: %d delivered, %d deferred, %d failed",
                report.edition_id,
                report.delivered,
                report.deferred,
                report.failed,
            )

    # -- the config --------------------------------------------------------------------------

    def watch(self) -> None:
        """Take up an edited config file; keep the last good one if the edit is broken."""
        fingerprint = _fingerprint(self.config_path)
        if fingerprint == self._fingerprint:
            return
        time.sleep(SETTLE_SECONDS)
        if _fingerprint(self.config_path) != fingerprint:
            return  # an editor is still writing it: look again next time
        self._fingerprint = fingerprint
        try:
            new = load_config(self.config_path)
        except ConfigError as e:
            self._reject([str(p) for p in e.problems], e.path)
            return
        if new.database_path != self.config.database_path:
            self._reject(
                [
                    f"storage.database: changed from {self.config.database_path} to "
                    f"{new.database_path}; a running scheduler keeps its database: restart "
                    "'trnews run' to switch"
                ],
                str(self.config_path),
            )
            return
        self._apply(new)

    def _reject(self, problems: list[str], path: str) -> None:
        for p in problems:
            logger.error("Config %s: %s", path, p)
        self._problem = "; ".join(problems)
        logger.error(
            "Config %s not taken up (%s); still running the config loaded %s. "
            "Fix the file: it is read again within seconds of the next save",
            path,
            words.count(len(problems), "problem"),
            _local(self._loaded, self.config.newsletter.tz),
        )
        self._write_state()

    def _apply(self, new: Config) -> None:
        old = self.config
        changed = [
            job
            for job in JOBS
            if self._line(new, job) != self._line(old, job)
            or new.newsletter.timezone != old.newsletter.timezone
        ]
        self.config = new
        self._loaded = self.clock()
        self._problem = None
        with self._store(new) as store:
            self._note_lines(store, new)
        aps = self._aps
        for job in changed:
            if aps is not None:
                aps.reschedule_job(job, trigger=self._trigger(new, job))
            logger.info(
                "Config %s: %s schedule is now '%s' (%s); next %s %s",
                self.config_path,
                job,
                self._line(new, job),
                new.newsletter.timezone,
                job,
                self._next(job),
            )
        if not changed:
            logger.info("Config %s reloaded; the schedule is unchanged", self.config_path)
        self._write_state()

    @staticmethod
    def _line(config: Config, job: str) -> str:
        if job == "draft":
            ed = config.editorial
            return f"{config.schedule.send}, {ed.draft_hours:g} h ahead" if ed.active else "off"
        return config.schedule.collect if job == "collect" else config.schedule.send

    @staticmethod
    def _trigger(config: Config, job: str) -> WallClock:
        tz = config.newsletter.tz
        if job == "draft":  # made whether or not the desk is on: `run_job` asks
            return Ahead(config.schedule.send, tz, timedelta(hours=config.editorial.draft_hours))
        return WallClock(Scheduler._line(config, job), tz)

    def _note_lines(self, store: Store, config: Config) -> None:
        """Record when each job's cron line (and zone) took effect: slots before that are
        never made up, so a schedule edited at 09:20 to '0 9 * * *' does not send at once."""
        now = self.clock()
        for job in JOBS:
            key = f"schedule.{job}"
            line = {"line": self._line(config, job), "timezone": config.newsletter.timezone}
            try:
                stored = json.loads(store.get_meta(key) or "{}")
            except ValueError:
                stored = {}
            if {k: stored.get(k) for k in line} != line:
                store.set_meta(key, json.dumps({**line, "since": iso(now)}))

    def _since(self, store: Store, job: str, trigger: WallClock) -> datetime:
        """The instant after which `job`'s slots count: its last slot handled, or when its
        line took effect, whichever is later."""
        noted = json.loads(store.get_meta(f"schedule.{job}") or "{}")
        since = parse_iso(noted["since"]) if noted.get("since") else self.clock()
        last = store.last_slot(job)
        if last is not None:
            since = max(since, trigger.instant_of(datetime.strptime(last, SLOT_FORMAT)))
        return since

    # -- state for `trnews status` ----------------------------------------------------------

    def _next(self, job: str) -> str | None:
        config = self.config
        if job == "draft" and not config.editorial.active:
            return None
        slot = self._trigger(config, job).next_slot(self.clock())
        return slot.at.astimezone(config.newsletter.tz).isoformat() if slot else None

    def _write_state(self) -> None:
        state = {
            "pid": os.getpid(),
            "started": iso(self._started),
            "next_collect": self._next("collect"),
            "next_send": self._next("send"),
            "next_draft": self._next("draft"),
            "config_loaded": iso(self._loaded),
            "config_problem": self._problem,
        }
        with self._state_lock, contextlib.suppress(TrnewsError), self._store() as store:
            store.set_meta(STATE_KEY, json.dumps(state))

    @contextlib.contextmanager
    def _store(self, config: Config | None = None) -> Iterator[Store]:
        store = Store.open((config or self.config).database_path)
        try:
            yield store
        finally:
            store.close()


def _local(value: datetime, tz: ZoneInfo) -> str:
    return value.astimezone(tz).strftime("%Y-%m-%d %H:%M %Z")


def _awaiting(config: Config, store: Store, slot: Slot, e: AwaitingEditors, now: datetime) -> str:
    """The desk did not clear the send of `slot`: note the slot on the draft, tell the
    editors and the admins once, and say what happens next."""
    store.draft_awaiting(e.draft_id, slot.at, now=now)
    draft = store.draft(e.draft_id)
    assert draft is not None
    tz = config.newsletter.tz
    upcoming = WallClock(config.schedule.send, tz).next_slot(slot.at + MINUTE)
    alerts.awaiting_editors(config, store, draft, slot.at, upcoming.at if upcoming else None, now)
    alerts.flush(config, store)
    why = "is held at the desk" if draft.state is DraftState.HELD else "awaits approval"
    return (
        f"not sent: draft {draft.id} {why}; it is sent within a minute of an editor's "
        f"approval before the next send ({_day(upcoming.at, tz) if upcoming else 'none'}), "
        "else by that send"
    )


def _cleared_late(config: Config, store: Store, now: datetime) -> tuple[DeskDraft, Slot] | None:
    """The draft a scheduled send found not cleared, now cleared by the desk, with that send's
    slot; None when there is none, or when the next scheduled send has come (it sends the
    edition as usual)."""
    from . import desk

    draft = store.current_draft()
    if draft is None or draft.awaiting is None:
        return None
    try:
        desk.gate(config, draft)
    except AwaitingEditors:
        return None
    trigger = WallClock(config.schedule.send, config.newsletter.tz)
    upcoming = trigger.next_slot(draft.awaiting + MINUTE)
    if upcoming is not None and now >= upcoming.at:
        return None
    return draft, Slot(trigger.wall_of(draft.awaiting), draft.awaiting)


def _day(value: datetime, tz: ZoneInfo) -> str:
    """An instant as an admin reads a send's time in the log: "Mon 7 Dec 08:00"."""
    local = value.astimezone(tz)
    return f"{local:%a} {local.day} {local:%b %H:%M}"


def _local_or_none(slot: Slot | None, tz: ZoneInfo) -> str:
    return _local(slot.at, tz) if slot else "never"


def _duration(d: timedelta) -> str:
    minutes = int(d.total_seconds() // 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{hours // 24} days {hours % 24} h"


def run(config_path: Path, *, stop: threading.Event) -> None:
    """`trnews run` until `stop` is set: start, wait, shut down cleanly."""
    scheduler = Scheduler(config_path, stop=stop)
    scheduler.start()
    stop.wait()
    logger.info("Stopping: finishing the message in flight, then exiting")
    closing = threading.Thread(target=scheduler.shutdown, name="shutdown")
    closing.start()
    closing.join(STOP_DEADLINE)
    if closing.is_alive():
        # Only a call that cannot be interrupted gets here (a mail server that takes its full
        # timeout to answer). The ledger was written before it: what was on the wire is marked
        # `sending`, and the next start sends it again with the same Message-ID.
        logger.warning(
            "The job in flight did not stop within %d s (waiting on the network); exiting "
            "anyway: the delivery ledger has its state, and the next start carries on",
            STOP_DEADLINE,
        )
        logging.shutdown()
        os._exit(0)


STOP_DEADLINE = 8
"""Seconds SIGTERM waits for the job in flight before exiting anyway (Docker's and SPEC.md's
limit is 10)."""
