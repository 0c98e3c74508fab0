"""The scheduler's rules against a controllable clock: DST nights, missed runs, double fires.

Two layers are tested. `WallClock` is the trigger APScheduler asks when to fire next; its
fire times are walked through both DST nights of 2026 in Oslo, against APScheduler's own
CronTrigger as the self-check that the trap is real. `Scheduler.run_job` is what a fire runs;
it is called at moments a fake clock names, with the real database, the real feeds over
loopback and the Maildir, so "sent once" is counted in the outbox.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from apscheduler.triggers.cron import CronTrigger

from pipeline import cycle
from pipeline.config import load_config
from pipeline.cron import WallClock, decide
from pipeline.models import FeedOutcome
from pipeline.schedule import (
    STATE_KEY,
    Scheduler,
    SchedulerLock,
    scheduler_status,
)
from pipeline.store import Store

OSLO = ZoneInfo("Europe/Oslo")


def oslo(*args: int, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=OSLO, fold=fold)  # type: ignore[misc]


def fires(trigger: object, start: datetime, end: datetime) -> list[datetime]:
    """The fire times APScheduler would use from `start` to `end`, asked as it asks."""
    out: list[datetime] = []
    prev = None
    now = start
    while True:
        nxt = trigger.get_next_fire_time(prev, now)  # type: ignore[attr-defined]
        if nxt is None or nxt > end:
            return out
        out.append(nxt)
        prev = now = nxt


# -- the trigger --------------------------------------------------------------------------------


def test_autumn_night_fires_a_0230_line_once_where_apscheduler_fires_twice() -> None:
    start, end = oslo(2026, 10, 24, 12), oslo(2026, 10, 26, 12)
    ours = fires(WallClock("30 2 * * *", OSLO), start, end)
    theirs = fires(CronTrigger.from_crontab("30 2 * * *", timezone=OSLO), start, end)
    # The self-check: APScheduler's own trigger runs 02:30 twice on the night of 25 October.
    assert len([t for t in theirs if t.astimezone(OSLO).day == 25]) == 2
    on_the_night = [t for t in ours if t.astimezone(OSLO).day == 25]
    assert on_the_night == [datetime(2026, 10, 25, 0, 30, tzinfo=UTC)]  # 02:30 CEST, the first
    assert ours[-1] == datetime(2026, 10, 26, 1, 30, tzinfo=UTC)  # 02:30 CET the day after


def test_spring_night_runs_a_0230_line_when_the_clocks_jump() -> None:
    got = fires(WallClock("30 2 * * *", OSLO), oslo(2026, 3, 28, 12), oslo(2026, 3, 30, 12))
    assert [t.astimezone(OSLO).isoformat() for t in got] == [
        "2026-03-29T03:00:00+02:00",  # 02:30 does not exist that night: run at the jump
        "2026-03-30T02:30:00+02:00",
    ]


def test_half_hourly_collect_is_never_doubled_nor_stalled_on_either_night() -> None:
    trigger = WallClock("*/30 * * * *", OSLO)
    for start in (oslo(2026, 10, 24, 22), oslo(2026, 3, 28, 22)):
        got = fires(trigger, start, start + timedelta(hours=10))
        walls = [t.astimezone(OSLO).replace(tzinfo=None) for t in got]
        assert len(set(walls)) == len(walls), "a wall-clock time ran twice"
        assert got == sorted(set(got))
        gaps = {b - a for a, b in pairwise(got)}
        # Half an hour, except across the repeated hour (one and a half) in October.
        assert gaps <= {timedelta(minutes=30), timedelta(minutes=90)}
    spring = fires(trigger, oslo(2026, 3, 29, 1, 15), oslo(2026, 3, 29, 3, 45))
    assert [t.astimezone(OSLO).strftime("%H:%M%z") for t in spring] == [
        "01:30+0100",
        "03:00+0200",
        "03:30+0200",
    ]


def test_weekly_send_stays_at_0800_oslo_time_across_daylight_saving() -> None:
    trigger = WallClock("0 8 * * mon", OSLO)
    spring = fires(trigger, oslo(2026, 3, 17), oslo(2026, 4, 1))
    autumn = fires(trigger, oslo(2026, 10, 13), oslo(2026, 10, 28))
    assert [t.astimezone(OSLO).isoformat() for t in spring + autumn] == [
        "2026-03-23T08:00:00+01:00",
        "2026-03-30T08:00:00+02:00",
        "2026-10-19T08:00:00+02:00",
        "2026-10-26T08:00:00+01:00",
    ]


def test_decide_runs_the_latest_slot_at_most_an_hour_late_and_skips_the_rest() -> None:
    trigger = WallClock("0 8 * * mon", OSLO)
    since = oslo(2026, 11, 23, 8)  # last Monday's send was handled
    on_time = decide(trigger, since, oslo(2026, 11, 30, 8, 0, 2))
    assert on_time.run is not None and on_time.run.key == "2026-11-30T08:00"
    assert decide(trigger, since, oslo(2026, 11, 30, 9, 0)).run is not None  # an hour: made up
    late = decide(trigger, since, oslo(2026, 11, 30, 9, 1))
    assert late.run is None and late.late is not None and late.late.key == "2026-11-30T08:00"
    down_a_month = decide(trigger, oslo(2026, 11, 2, 8), oslo(2026, 11, 30, 8, 30))
    assert down_a_month.run is not None and down_a_month.run.key == "2026-11-30T08:00"
    assert down_a_month.missed == 3 and down_a_month.first_missed is not None
    assert down_a_month.first_missed.key == "2026-11-09T08:00"
    assert decide(trigger, oslo(2026, 11, 30, 8), oslo(2026, 11, 30, 8, 30)).run is None


# -- the jobs, on a fake clock --------------------------------------------------------------------


@dataclass
class FakeClock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now.astimezone(UTC)

    def at(self, moment: datetime) -> None:
        self.now = moment


@pytest.fixture
def newsletter(site, feeds) -> Iterator[tuple]:  # type: ignore[no-untyped-def]
    """A site with one blog, two subscribers, and editions sent even without news."""
    url = feeds.add_file("/kari.xml", "blog_wordpress.xml")
    site.ambassador("kari", "Kari Nordmann", "Prorektor", feeds=[{"url": url, "kind": "blog"}])
    site.send_when_empty = True
    site.write()
    for address in ("a@example.org", "b@example.org"):
        site.run("subscribers", "add", address)
    yield site, feeds


def scheduler(site, clock: FakeClock) -> Scheduler:  # type: ignore[no-untyped-def]
    s = Scheduler(site.config, clock=clock)
    s.prepare()  # what `start` does first: note when the cron lines took effect
    return s


def editions(site) -> int:  # type: ignore[no-untyped-def]
    with Store.open(site.db) as store:
        return len(store.editions())


def test_a_send_that_fires_twice_sends_one_edition(newsletter, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    site, feeds = newsletter
    monkeypatch.setenv("TRNEWS_SECRET", "test-secret")
    clock = FakeClock(oslo(2026, 11, 29, 12))
    s = scheduler(site, clock)
    clock.at(oslo(2026, 11, 30, 8, 0, 1))
    s.run_job("send")
    s.run_job("send")  # the same fire again, as a restarted or doubled scheduler would
    clock.at(oslo(2026, 11, 30, 8, 40))
    s.run_job("send")
    assert len(site.messages()) == 2 and editions(site) == 1
    assert len(feeds.requests_to("/kari.xml")) == 1, "a send collects first, once"
    with Store.open(site.db) as store:
        run = store.last_runs()["send"]
    assert run.slot == "2026-11-30T08:00" and run.outcome == "ok"
    assert "edition 1 sent: 2 delivered" in (run.detail or "")


def test_the_autumn_night_does_not_send_twice(newsletter, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    site, _ = newsletter
    monkeypatch.setenv("TRNEWS_SECRET", "test-secret")
    site.send = "30 2 * * *"
    site.write()
    clock = FakeClock(oslo(2026, 10, 24, 12))
    s = scheduler(site, clock)
    clock.at(oslo(2026, 10, 25, 2, 30, 1))  # 02:30 CEST
    s.run_job("send")
    clock.at(oslo(2026, 10, 25, 2, 30, 1, fold=1))  # 02:30 CET, an hour later: fires again
    s.run_job("send")
    assert editions(site) == 1 and len(site.messages()) == 2
    clock.at(oslo(2026, 10, 26, 2, 30, 1))
    s.run_job("send")
    assert editions(site) == 2


def test_the_spring_night_does_not_skip(newsletter, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    site, _ = newsletter
    monkeypatch.setenv("TRNEWS_SECRET", "test-secret")
    site.send = "30 2 * * *"
    site.write()
    clock = FakeClock(oslo(2026, 3, 28, 12))
    s = scheduler(site, clock)
    clock.at(oslo(2026, 3, 29, 3, 0, 1))  # the clocks jumped from 02:00 to 03:00
    s.run_job("send")
    assert editions(site) == 1
    with Store.open(site.db) as store:
        assert store.last_runs()["send"].slot == "2026-03-29T02:30"


def test_a_send_missed_by_under_an_hour_is_made_up_once(newsletter, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    site, _ = newsletter
    monkeypatch.setenv("TRNEWS_SECRET", "test-secret")
    clock = FakeClock(oslo(2026, 11, 29, 12))
    scheduler(site, clock)  # a scheduler ran on Sunday, then the machine went down
    clock.at(oslo(2026, 11, 30, 8, 45))  # back up at 08:45 on Monday
    s = scheduler(site, clock)
    s.startup()
    s.startup()  # and restarted once more
    assert editions(site) == 1 and len(site.messages()) == 2


def test_a_send_missed_by_over_an_hour_is_logged_and_skipped(
    newsletter, monkeypatch, caplog
) -> None:  # type: ignore[no-untyped-def]
    site, _ = newsletter
    monkeypatch.setenv("TRNEWS_SECRET", "test-secret")
    clock = FakeClock(oslo(2026, 11, 29, 12))
    scheduler(site, clock)
    clock.at(oslo(2026, 11, 30, 10, 30))
    s = scheduler(site, clock)
    with caplog.at_level(logging.INFO, logger="pipeline.schedule"):
        s.startup()
    assert editions(site) == 0 and site.messages() == []
    assert (
        "Skipped the send of 2026-11-30 08:00 CET: missed by 2 h 30 min, more than the 1 h "
        "allowed; next send 2026-12-07 08:00 CET"
    ) in caplog.text
    clock.at(oslo(2026, 12, 7, 8, 0, 3))
    s.run_job("send")
    assert editions(site) == 1


def test_a_week_down_makes_up_one_collect_not_a_burst(newsletter, caplog) -> None:  # type: ignore[no-untyped-def]
    site, feeds = newsletter
    clock = FakeClock(oslo(2026, 11, 21, 12, 5))
    scheduler(site, clock)
    clock.at(oslo(2026, 11, 28, 12, 10))
    s = scheduler(site, clock)
    with caplog.at_level(logging.INFO, logger="pipeline.schedule"):
        s.run_job("collect")
        s.run_job("collect")
    assert len(feeds.requests_to("/kari.xml")) == 1
    # 12:30 on the 21st to 11:30 on the 28th: 7 × 48 − 1 slots, then the 12:00 one is run.
    assert "Skipped 335 missed collect runs from 2026-11-21 12:30 CET" in caplog.text
    assert "Running the collect of 2026-11-28 12:00 CET (10 min late)" in caplog.text


def test_an_edited_schedule_does_not_run_a_slot_already_passed(newsletter, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    site, _ = newsletter
    monkeypatch.setenv("TRNEWS_SECRET", "test-secret")
    clock = FakeClock(oslo(2026, 12, 1, 9, 20))
    s = scheduler(site, clock)
    site.send = "0 9 * * *"  # at 09:20 an admin moves the send to 09:00 every day
    site.write()
    s.watch()
    s.run_job("send")
    assert editions(site) == 0, "09:00 passed before the new line took effect"
    clock.at(oslo(2026, 12, 2, 9, 0, 2))
    s.run_job("send")
    assert editions(site) == 1


def test_a_broken_edit_is_reported_and_the_last_good_config_keeps_running(
    newsletter, caplog
) -> None:  # type: ignore[no-untyped-def]
    site, _ = newsletter
    clock = FakeClock(oslo(2026, 12, 1, 9, 20))
    s = scheduler(site, clock)
    good = site.config.read_text(encoding="utf-8")
    site.config.write_text(
        good.replace('send = "0 8 * * mon"', 'send = "0 25 * * *"\nsned = 1'), encoding="utf-8"
    )
    with caplog.at_level(logging.INFO, logger="pipeline.schedule"):
        s.watch()
        s.watch()  # the same broken file is reported once, not every look
    assert s.config.schedule.send == "0 8 * * mon"
    path = str(site.config)
    assert f"Config {path}: schedule.send: " in caplog.text
    assert f"Config {path}: schedule.sned: unknown key" in caplog.text
    assert caplog.text.count("not taken up") == 1
    site.config.write_text(good.replace("0 8 * * mon", "0 7 * * tue"), encoding="utf-8")
    with caplog.at_level(logging.INFO, logger="pipeline.schedule"):
        s.watch()
    assert s.config.schedule.send == "0 7 * * tue"
    assert (
        "send schedule is now '0 7 * * tue' (Europe/Oslo); next send 2026-12-08T07:00:00+01:00"
        in caplog.text
    )


def test_a_moved_database_is_refused_until_a_restart(newsletter, caplog, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    site, _ = newsletter
    s = scheduler(site, FakeClock(oslo(2026, 12, 1, 9, 20)))
    text = site.config.read_text(encoding="utf-8")
    site.config.write_text(text.replace("var/trnews.db", "var/other.db"), encoding="utf-8")
    with caplog.at_level(logging.INFO, logger="pipeline.schedule"):
        s.watch()
    assert s.config.database_path == site.db
    assert "restart 'trnews run' to switch" in caplog.text


def test_stop_ends_a_collect_without_waiting_for_a_slow_feed(site, feeds) -> None:  # type: ignore[no-untyped-def]
    """SIGTERM sets the scheduler's stop flag: a collect stops at once, keeping what is stored,
    instead of waiting out a slow feed's 30-second deadline."""
    fast = feeds.add_file("/fast.xml", "blog_wordpress.xml")
    slow = feeds.add_file("/slow.xml", "blogger_atom.xml", delay=20)
    site.ambassador("kari", "Kari Nordmann", feeds=[{"url": fast, "kind": "blog"}])
    site.ambassador("ola", "Ola Hansen", feeds=[{"url": slow, "kind": "blog"}])
    site.write()
    config = load_config(site.config)
    stop = threading.Event()
    with Store.open(site.db) as store:

        def stored(outcome: FeedOutcome) -> None:
            if outcome.url == fast:
                stop.set()  # SIGTERM arrives once the fast feed is in

        outcomes = cycle.collect(config, store, on_outcome=stored, stop=stop)
        assert [o.url for o in outcomes] == [fast]
        assert store.item_count() == outcomes[0].new_items > 0
        health = store.feed_health()
    assert slow not in health, "the slow feed is left for the next run, not marked failed"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("0 8 * * 1", ["Mon 30 Nov", "Mon 07 Dec"]),  # cron's 1 is Monday (APScheduler's Tuesday)
        ("0 8 * * 0", ["Sun 29 Nov", "Sun 06 Dec"]),
        ("0 8 * * 7", ["Sun 29 Nov", "Sun 06 Dec"]),  # 7 is Sunday too
        ("0 8 * * 1-5", ["Mon 30 Nov", "Tue 01 Dec", "Wed 02 Dec"]),
        ("0 8 * * fri-sun", ["Sun 29 Nov", "Fri 04 Dec", "Sat 05 Dec"]),
        ("0 8 * * */3", ["Sun 29 Nov", "Wed 02 Dec", "Sat 05 Dec"]),
        # Both days restricted: cron takes either, the 1st of the month or a Monday.
        ("0 8 1 * mon", ["Mon 30 Nov", "Tue 01 Dec", "Mon 07 Dec"]),
    ],
)
def test_cron_lines_mean_what_they_mean_in_cron(line: str, expected: list[str]) -> None:
    trigger = WallClock(line, OSLO)
    got = fires(trigger, oslo(2026, 11, 28, 9), oslo(2026, 12, 7, 9))
    assert [t.astimezone(OSLO).strftime("%a %d %b") for t in got][: len(expected)] == expected


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("0 8 * * 8", "8 is not a day (0 to 7, or sun to sat)"),
        ("0 8 * * fri-mon", "the range 'fri-mon' runs backwards"),
        ("0 25 * * *", "higher than the maximum value (23)"),
        ("0 8 * *", "is not a 5-field cron line"),
    ],
)
def test_a_bad_cron_line_is_a_config_error_that_says_why(site, line: str, problem: str) -> None:  # type: ignore[no-untyped-def]
    site.send = line
    site.write()
    proc = site.run("check", check=False)
    assert proc.returncode == 2
    assert f"trnews.toml: schedule.send: '{line}' is not a" in proc.stderr
    assert problem in proc.stderr


def test_status_never_shows_a_scheduler_pid_without_its_next_runs(tmp_path: Path) -> None:
    database = tmp_path / "trnews.db"
    Store.open(database).close()
    starting = SchedulerLock(database)
    # A scheduler that holds the lock but has not written its schedule yet is starting: not
    # shown as running, so no pid is shown with "next send: null".
    starting.acquire()
    try:
        with Store.open(database) as store:
            seen = scheduler_status(store)
        assert seen["scheduler_pid"] is None and seen["next_send"] is None
        with Store.open(database) as store:
            store.set_meta(STATE_KEY, json.dumps({"next_send": "2026-12-07T08:00:00+01:00"}))
        starting.announce()
        with Store.open(database) as store:
            seen = scheduler_status(store)
        assert seen["scheduler_pid"] == os.getpid()
        assert seen["next_send"] == "2026-12-07T08:00:00+01:00"
    finally:
        starting.release()
    with Store.open(database) as store:
        assert scheduler_status(store)["scheduler_pid"] is None
