"""`trnews run` as an admin runs it: a real process left running against a real SQLite file.

Each test starts `trnews run` as a separate process (its log, one line per event, goes to a
file the test reads) and asks `trnews status` what it says, as an admin in another terminal
would: the scheduler's pid, the next collect and send as Oslo-time instants (worked out here
with zoneinfo, independently of the scheduler), the config taken up, refused and mended while
it runs, a second instance refused, SIGTERM and SIGKILL, a missed send made up once (or
skipped when too late), and a send stopped half-way and carried on by the next start.

Waits poll with generous deadlines only so that a broken scheduler fails instead of hanging;
nothing here measures speed.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import stat
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from datetime import time as clock_time
from pathlib import Path
from typing import IO, Any
from zoneinfo import ZoneInfo

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from support.mail import add_readers
from support.servers import FeedServer, free_port
from support.site import Site

from pipeline.store import Store, iso

OSLO = ZoneInfo("Europe/Oslo")
DEADLINE = 20.0
"""Seconds any wait gives up after: only so that a broken scheduler fails instead of hanging."""
STOP_SECONDS = 10
"""SPEC.md: SIGTERM stops `trnews run` within 10 seconds, with exit 0."""
COLLECT = "45 5 * * *"
"""A collect line that fires once a day, so that no collect runs in the middle of a test."""


# -- the config ---------------------------------------------------------------------------------


def config_text(site: Site, *, send: str, collect: str = COLLECT) -> str:
    """The site's config file with these cron lines in its [schedule] table."""
    site.send, site.collect = send, collect
    site.write()
    return site.config.read_text(encoding="utf-8")


def save(site: Site, text: str) -> None:
    """Save the config as an editor does (a new file renamed over the old one), so the
    scheduler never reads it half-written."""
    tmp = site.config.with_name(site.config.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, site.config)


def use_schedule(site: Site, *, send: str, collect: str = COLLECT) -> None:
    save(site, config_text(site, send=send, collect=collect))


# -- the scheduler as a process -----------------------------------------------------------------


@dataclass
class Running:
    """One `trnews run` process; its standard output and error go to files in the site."""

    proc: subprocess.Popen[str]
    out: Path
    err: Path
    files: list[IO[str]]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.out.read_text(encoding="utf-8")

    def wait_log(self, pattern: str, what: str) -> re.Match[str]:
        """Wait until the log has a line matching `pattern`."""
        found: list[re.Match[str]] = []

        def logged() -> bool:
            match = re.search(pattern, self.log(), re.MULTILINE)
            if match:
                found.append(match)
            return match is not None or self.proc.poll() is not None

        wait_for(logged, what)
        assert found, f"trnews run exited {self.proc.returncode} before {what}:\n{self.output()}"
        return found[0]

    def wait_started(self) -> None:
        self.wait_log(rf"Scheduler started \(pid {self.pid}\)", "the scheduler to start")

    def terminate(self) -> int:
        """SIGTERM, then the exit code, waited for as long as SPEC.md allows."""
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=STOP_SECONDS)
        self.close()
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=STOP_SECONDS)
        self.close()

    def close(self) -> None:
        for f in self.files:
            f.close()

    def output(self) -> str:
        return f"stdout:\n{self.log()}\nstderr:\n{self.err.read_text(encoding='utf-8')}"


@pytest.fixture
def start(site: Site) -> Iterator[Callable[..., Running]]:
    """Start `trnews [FLAGS] run` in the site; every process still running at the end is killed."""
    started: list[Running] = []

    def run(*flags: str) -> Running:
        n = len(started)
        out, err = site.root / f"run{n}.out", site.root / f"run{n}.err"
        files = [out.open("w", encoding="utf-8"), err.open("w", encoding="utf-8")]
        proc = subprocess.Popen(
            site.command(*flags, "run"),
            cwd=site.root,
            env=site.process_env(),
            stdout=files[0],
            stderr=files[1],
            text=True,
        )
        running = Running(proc, out, err, files)
        started.append(running)
        return running

    yield run
    for running in started:
        running.kill()


def wait_for(condition: Callable[[], bool], what: str, seconds: float = DEADLINE) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


def status(site: Site) -> dict[str, Any]:
    return dict(json.loads(site.run("status", "--json").stdout))


def wait_status(
    site: Site, condition: Callable[[dict[str, Any]], bool], what: str
) -> dict[str, Any]:
    """Ask `trnews status --json` until its answer meets `condition`; return that answer."""
    deadline = time.monotonic() + DEADLINE
    while True:
        data = status(site)
        if condition(data):
            return data
        assert time.monotonic() < deadline, f"gave up waiting for {what}; last status:\n{data}"
        time.sleep(0.2)


# -- Oslo time, worked out here -----------------------------------------------------------------


def next_at(after: datetime, hour: int, minute: int, weekday: int | None = None) -> datetime:
    """The first Oslo wall-clock `hour:minute` at or after the instant `after` (on `weekday`,
    Monday 0, if given), as an aware datetime in Oslo time."""
    day = after.astimezone(OSLO).date()
    while True:
        at = datetime.combine(day, clock_time(hour, minute), tzinfo=OSLO)
        if at >= after and (weekday is None or day.weekday() == weekday):
            return at
        day += timedelta(days=1)


def assert_instant(reported: str | None, expected: set[datetime]) -> datetime:
    """`reported` (ISO 8601 from status) is one of the `expected` instants, with Oslo's offset
    on that day. Two instants are expected where a slot could pass while the test runs."""
    assert reported is not None
    at = datetime.fromisoformat(reported)
    assert at.utcoffset() is not None, f"{reported} has no offset"
    matches = [e for e in expected if e == at]
    assert matches, f"{reported} is none of {sorted(e.isoformat() for e in expected)}"
    assert at.utcoffset() == matches[0].utcoffset(), f"{reported}: not Oslo's offset that day"
    return matches[0]


def wait_next_send(
    site: Site, since: datetime, hour: int, minute: int, weekday: int
) -> tuple[dict[str, Any], datetime]:
    """Ask `status` until its next send is the first Oslo `hour:minute` on `weekday` after
    `since` (or after now, should that slot pass meanwhile); the answer and that instant."""

    def expected() -> set[datetime]:
        return {next_at(t, hour, minute, weekday) for t in (since, datetime.now(UTC))}

    def shows(d: dict[str, Any]) -> bool:
        return d["next_send"] is not None and datetime.fromisoformat(d["next_send"]) in expected()

    data = wait_status(site, shows, f"next send {weekday=} {hour}:{minute:02}")
    return data, assert_instant(data["next_send"], expected())


def oslo_line(instant: datetime) -> str:
    """A daily cron line for the Oslo wall-clock minute of `instant`."""
    local = instant.astimezone(OSLO)
    return f"{local.minute} {local.hour} * * *"


# -- start, status, stop ------------------------------------------------------------------------


def test_status_shows_the_running_scheduler_and_its_next_runs_in_oslo_time(
    site: Site, start: Callable[..., Running]
) -> None:
    use_schedule(site, send="0 8 * * mon")
    before = datetime.now(UTC)
    run = start()
    run.wait_started()
    data = status(site)
    after = datetime.now(UTC)

    assert data["scheduler_pid"] == run.pid
    assert data["scheduler"]["running"] is True
    assert data["scheduler"]["config_problem"] is None
    send = assert_instant(data["next_send"], {next_at(t, 8, 0, weekday=0) for t in (before, after)})
    assert_instant(data["next_collect"], {next_at(t, 5, 45) for t in (before, after)})
    # Printed with Oslo's offset on that day (+01:00 in winter), whatever the host's zone.
    assert data["next_send"].endswith(send.isoformat()[-6:])
    assert data["last_runs"] == {"collect": None, "send": None}

    # The log's times are ISO 8601 in Oslo time, with its offset: the real instant, not UTC's
    # wall-clock time labelled as Oslo's.
    logged = re.search(r"^(\S+) INFO Scheduler started", run.log(), re.MULTILINE)
    assert logged, run.log()
    stamp = datetime.fromisoformat(logged.group(1))
    assert stamp.utcoffset() == datetime.now(OSLO).utcoffset()
    assert before.replace(microsecond=0) <= stamp <= after

    text = site.run("status").stdout
    assert f"Planlegger: kjører, pid {run.pid}" in text
    # One zone for the whole page, named once: every time in it is Oslo's.
    assert "Tidene er i Europe/Oslo." in text
    assert f"neste utsending: {send.astimezone(OSLO):%Y-%m-%d %H:%M} (man.)" in text, text
    assert run.proc.poll() is None


def test_a_numeric_day_of_week_means_what_it_means_in_cron(
    site: Site, start: Callable[..., Running]
) -> None:
    """Cron counts days from Sunday = 0, so "0 8 * * 1" is Monday 08:00 (APScheduler 3's own
    numbering starts at Monday = 0: read naively, the line would send on Tuesdays)."""
    use_schedule(site, send="0 8 * * 1", collect="0 6 * * 0")
    before = datetime.now(UTC)
    run = start()
    run.wait_started()
    data = status(site)
    after = datetime.now(UTC)
    assert_instant(data["next_send"], {next_at(t, 8, 0, weekday=0) for t in (before, after)})
    assert_instant(data["next_collect"], {next_at(t, 6, 0, weekday=6) for t in (before, after)})


def test_a_live_edit_is_taken_up_a_broken_one_refused_and_a_mended_one_taken_up_again(
    site: Site, start: Callable[..., Running]
) -> None:
    good = config_text(site, send="0 8 * * mon")
    save(site, good)
    run = start()
    run.wait_started()
    path = str(site.config)

    # A valid edit: the new line runs without a restart.
    edited_at = datetime.now(UTC)
    save(site, good.replace('send = "0 8 * * mon"', 'send = "30 9 * * tue"'))
    run.wait_log(
        re.escape(f"Config {path}: send schedule is now '30 9 * * tue' (Europe/Oslo)"),
        "the edit to be taken up",
    )
    _, edited = wait_next_send(site, edited_at, 9, 30, weekday=1)

    # A broken edit: an unknown key and a bad cron line, both named; the last good config runs.
    broken = good.replace('send = "0 8 * * mon"', 'send = "61 8 * * mon"').replace(
        "[newsletter]\n", '[newsletter]\ncolour = "blå"\n', 1
    )
    save(site, broken)
    run.wait_log(re.escape(f"Config {path} not taken up (2 problems)"), "the refusal")
    log = run.log()
    assert f"Config {path}: newsletter.colour: unknown key" in log
    assert f"Config {path}: schedule.send: '61 8 * * mon' is not a valid cron line" in log

    shown = site.run("status", "--json", check=False)
    assert shown.returncode == 2
    assert "newsletter.colour" in shown.stderr and "schedule.send" in shown.stderr
    data = json.loads(shown.stdout)
    assert data["scheduler_pid"] == run.pid
    problem = data["scheduler"]["config_problem"]
    assert "newsletter.colour" in problem and "schedule.send" in problem
    assert datetime.fromisoformat(data["next_send"]) == edited  # the last good line still runs

    text = site.run("status", check=False)
    assert text.returncode == 2
    assert "newsletter.colour: unknown key" in text.stderr
    assert "'61 8 * * mon' is not a valid cron line" in text.stderr
    assert f"Planlegger: kjører, pid {run.pid}" in text.stdout
    assert "konfigurasjonsfilen har feil og ble ikke tatt i bruk" in text.stdout

    # Mended, with yet another line: taken up again, and the problem is gone.
    mended_at = datetime.now(UTC)
    save(site, good.replace('send = "0 8 * * mon"', 'send = "15 7 * * wed"'))
    run.wait_log(re.escape(f"Config {path}: send schedule is now '15 7 * * wed'"), "the mend")
    data, _ = wait_next_send(site, mended_at, 7, 15, weekday=2)
    assert data["scheduler"]["config_problem"] is None
    assert run.proc.poll() is None


def test_a_second_scheduler_on_the_same_database_exits_1_naming_the_first(
    site: Site, start: Callable[..., Running]
) -> None:
    use_schedule(site, send="0 8 * * mon")
    first = start()
    first.wait_started()

    second = subprocess.run(
        site.command("run"),
        cwd=site.root,
        env=site.process_env(),
        capture_output=True,
        text=True,
        timeout=DEADLINE,
    )
    assert second.returncode == 1, second.stdout + second.stderr
    assert f"another 'trnews run' (pid {first.pid}) already schedules this database" in (
        second.stderr
    )
    assert first.proc.poll() is None
    assert status(site)["scheduler_pid"] == first.pid


def test_the_lock_file_is_owner_only_whatever_the_umask(
    site: Site, start: Callable[..., Running]
) -> None:
    use_schedule(site, send="0 8 * * mon")
    old = os.umask(0o022)  # the usual umask, which `trnews run` inherits
    try:
        running = start()
    finally:
        os.umask(old)
    running.wait_started()
    lock = site.db.with_name(site.db.name + ".lock")
    assert lock.read_text(encoding="utf-8").strip() == str(running.pid)
    assert stat.S_IMODE(lock.stat().st_mode) == 0o600
    assert stat.S_IMODE(site.db.stat().st_mode) == 0o600


def test_sigterm_stops_with_exit_0_and_sigkill_leaves_no_stale_lock(
    site: Site, start: Callable[..., Running]
) -> None:
    use_schedule(site, send="0 8 * * mon")
    first = start()
    first.wait_started()
    assert first.terminate() == 0, first.output()
    assert "Stopped by SIGTERM" in first.log()
    data = status(site)
    assert (data["scheduler_pid"], data["next_send"], data["next_collect"]) == (None, None, None)
    assert data["scheduler"]["running"] is False

    killed = start()
    killed.wait_started()
    killed.kill()
    assert killed.proc.returncode == -signal.SIGKILL
    assert status(site)["scheduler_pid"] is None  # the kernel dropped the lock with the process

    third = start()
    third.wait_started()
    assert status(site)["scheduler_pid"] == third.pid


# -- missed sends -------------------------------------------------------------------------------


def missed_send(
    site: Site, feeds: FeedServer, readers: list[str], *, late: timedelta, noted: timedelta
) -> str:
    """A site whose send line's latest slot was `late` ago, noted in the database as in effect
    since `noted` ago (as a scheduler that was running then left it), with a working feed and
    these active readers. Returns the send line."""
    now = datetime.now(UTC)
    line = oslo_line(now - late)
    url = feeds.add_file("/kari.xml", "blog_wordpress.xml")
    site.ambassador("kari-nordmann", "Kari Nordmann", "Prorektor", [{"url": url, "kind": "blog"}])
    use_schedule(site, send=line)
    add_readers(site, [(r, "") for r in readers])  # creates the database
    noted_line = {"line": line, "timezone": "Europe/Oslo", "since": iso(now - noted)}
    with Store.open(site.db) as store:
        store.set_meta("schedule.send", json.dumps(noted_line))
    return line


def test_a_send_missed_minutes_ago_is_made_up_once_at_start_and_never_again(
    site: Site, feeds: FeedServer, start: Callable[..., Running]
) -> None:
    readers = ["kari@example.org", "ola@example.org"]
    missed_send(site, feeds, readers, late=timedelta(minutes=10), noted=timedelta(hours=2))

    first = start()
    first.wait_log(r"Running the send of .* \(\d+ min late\)", "the missed send to run")
    first.wait_log(r"The send of .*: ok: ", "the send to finish")
    data = status(site)
    assert data["last_runs"]["send"]["outcome"] == "ok"
    [edition] = data["editions"]
    assert (edition["status"], edition["delivered"], edition["owed"]) == ("sent", 2, 0)
    assert sorted(str(m["To"]) for m in site.messages()) == readers
    assert first.terminate() == 0, first.output()

    # Started again: the slot was handled, so nothing is sent, whatever the start makes up.
    again = start("-v")
    again.wait_log(r'Job "startup .* executed successfully', "the start's catch-up to finish")
    assert again.terminate() == 0, again.output()
    assert "Running the send" not in again.log()
    assert len(site.messages()) == len(readers)


def test_a_send_missed_by_more_than_an_hour_is_logged_and_skipped(
    site: Site, feeds: FeedServer, start: Callable[..., Running]
) -> None:
    missed_send(
        site, feeds, ["kari@example.org"], late=timedelta(hours=2), noted=timedelta(hours=3)
    )
    run = start()
    skipped = run.wait_log(r"Skipped the send of .*", "the late send to be skipped").group(0)
    assert "more than the 1 h allowed" in skipped
    assert run.terminate() == 0, run.output()
    assert "Running the send" not in run.log()
    assert site.messages() == []
    data = status(site)
    assert data["editions"] == []
    assert data["last_runs"]["send"] is None  # a skipped slot is not a run


# -- a send stopped half-way --------------------------------------------------------------------


@dataclass
class SlowRelay:
    """An aiosmtpd handler that takes `delay` seconds over each message, and records who got
    one (the approach of test_delivery_faults.Faulty, cut down to a slow relay)."""

    delay: float
    received: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        await asyncio.sleep(self.delay)
        with self.lock:
            self.received.extend(envelope.rcpt_tos)
        return "250 OK"

    def counts(self) -> Counter[str]:
        with self.lock:
            return Counter(self.received)


@contextmanager
def slow_relay(site: Site, delay: float) -> Iterator[SlowRelay]:
    """A slow SMTP server on loopback, and the site's transport pointed at it, one connection."""
    handler = SlowRelay(delay)
    port = free_port()  # Controller(port=0) fails: it probes the port it was given
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    site.transport, site.smtp_port = "smtp", port
    try:
        yield handler
    finally:
        controller.stop()


def test_sigterm_during_a_send_stops_with_exit_0_and_the_next_start_carries_on(
    site: Site, feeds: FeedServer, start: Callable[..., Running]
) -> None:
    readers = [f"leser{i:02}@example.org" for i in range(30)]
    with slow_relay(site, delay=0.1) as relay:
        missed_send(site, feeds, readers, late=timedelta(minutes=10), noted=timedelta(hours=2))
        text = site.config.read_text(encoding="utf-8")
        save(site, text.replace('security = "none"\n', 'security = "none"\nconnections = 1\n'))

        first = start()
        wait_for(lambda: len(relay.received) >= 5, "the send to be under way")
        assert first.terminate() == 0, first.output()
        sent = len(relay.received)
        assert sent < len(readers), "the send finished before SIGTERM"
        data = status(site)
        [edition] = data["editions"]
        assert edition["owed"] == len(readers) - sent > 0
        assert data["last_runs"]["send"]["outcome"] == "stopped"

        again = start("-v")
        again.wait_log(
            rf"Carrying on edition 1: {edition['owed']} readers? still owed",
            "the start to carry on the send",
        )
        again.wait_log(r"Carried on edition 1: ", "the send to be carried on")
        again.wait_log(r'Job "startup .* executed successfully', "the start's catch-up")
        [edition] = status(site)["editions"]
        assert (edition["status"], edition["delivered"], edition["owed"]) == ("sent", 30, 0)
        assert relay.counts() == dict.fromkeys(readers, 1)  # nobody lost, nobody doubled
        assert "Running the send" not in again.log()  # the slot itself is not run again
